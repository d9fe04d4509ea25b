"""Checkpoints as data: a model asset's output is a `Checkpoint`, and consumers take it through `ins`.

`ArtifactStore.checkpoint(asset, partition)` is the one place that knows where a checkpoint lives: a configured path or
hub id (`models.build: false`), else data/models/<asset>/<partition>. The IO manager hands that to every consumer:
one `Checkpoint` per input, or `dict[partition, Checkpoint]` where the input is annotated as a dict or carries
`BY_PARTITION` (a merge reading every cluster, evaluation reading the one partition its stage names, or none).
Nothing is loaded: weights stay on disk until the consumer opens them.
"""


import typing
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from aya_assets.artifacts.store import ArtifactStore
from aya_assets.checkpoints.files import model_identity

CHECKPOINT_IO = "checkpoint_io"
# AssetIn metadata asking for dict[partition, Checkpoint] where the annotation cannot say so (a **kwargs input).
BY_PARTITION_KEY = "aya/checkpoints_by_partition"
BY_PARTITION = {BY_PARTITION_KEY: True}


@dataclass(frozen=True)
class Checkpoint:
    path: str  # a local checkpoint directory, or a hub id for configured models
    revision: str | None = None  # hub ids only: branch, tag or commit

    @property
    def local(self) -> Path:
        return Path(self.path)

    def identity(self) -> str:
        """What the model is, for cache keys and fingerprints: its content hash when local, else id@revision."""
        return model_identity(self.path, self.revision)


def located(store: ArtifactStore, asset: str, partition: str | None = None) -> Checkpoint:
    path, revision = store.checkpoint(asset, partition)
    return Checkpoint(path, revision)


class CheckpointIOManager(dg.ConfigurableIOManager):
    """Passes checkpoints between assets by location (see the module docstring); nothing is copied or pickled."""

    store: ArtifactStore

    def handle_output(self, context: dg.OutputContext, obj: Checkpoint) -> None:
        partition = context.asset_partition_key if context.has_asset_partitions else None
        expected = located(self.store, context.asset_key.to_user_string(), partition)
        if obj != expected:  # an asset writing somewhere its consumers will not look is a bug, not a setting
            raise ValueError(f"{context.asset_key.to_user_string()}: checkpoint at {obj.path}, but it lives at {expected.path}")

    def load_input(self, context: dg.InputContext) -> "Checkpoint | dict[str, Checkpoint]":
        asset = context.asset_key.to_user_string()
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        by_partition = (context.definition_metadata or {}).get(BY_PARTITION_KEY)
        if by_partition or typing.get_origin(context.dagster_type.typing_type) is dict:
            return {key: located(self.store, asset, key) for key in keys}
        if len(keys) != 1:
            raise ValueError(f"{context.name}: {asset} maps to partitions {keys}; annotate the input as dict[str, Checkpoint]")
        return located(self.store, asset, keys[0])
