"""Where tables, checkpoints and reports live (default: data/ under AYA_HOME or the checkout)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from aya_assets import paths


def model_key(asset: str, partition: str | None = None) -> str:
    return f"{asset}/{partition}" if partition else asset


class ArtifactStore(dg.ConfigurableResource):
    root: str = ""
    # "asset" or "asset/partition" -> [path or hub id, revision or ""]: the checkpoints a profile configures instead of
    # building (models.build: false). Every other checkpoint lives under models/.
    configured: dict[str, list[str]] = {}

    @property
    def data(self) -> Path:
        return Path(self.root) if self.root else paths.data_dir()

    @property
    def warehouse(self) -> Path:
        return self.data / "warehouse"

    @property
    def models(self) -> Path:
        return self.data / "models"

    @property
    def reports(self) -> Path:
        return self.data / "reports"

    @property
    def shards(self) -> Path:
        return self.data / "shards"

    def checkpoint(self, asset: str, partition: str | None = None) -> tuple[str, str | None]:
        """(path or hub id, revision) of a model asset's checkpoint: the one place that knows (checkpoints/io.py)."""
        key = model_key(asset, partition)
        if key in self.configured:
            path, revision = self.configured[key]
            return path, revision or None
        return str(self.models / key), None
