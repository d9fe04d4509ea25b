"""The Dagster code location: every stage's assets, wired to the resources of the active profile."""

import dagster as dg

from aya_assets.paths import data_dir
from aya_assets.profile import load_profile, profile_path
from aya_assets.prompts.assets import prompts
from aya_assets.resources import ArtifactStore, ProfileResource
from aya_assets.store import WarehouseIOManager


def build_definitions(profile_name: str | None = None) -> dg.Definitions:
    load_profile(profile_name)  # fail at load time, naming the bad key, not mid-run
    store = ArtifactStore(root=str(data_dir()))
    return dg.Definitions(
        assets=[prompts],
        resources={
            "profile": ProfileResource(name_or_path=str(profile_path(profile_name))),
            "store": store,
            "io_manager": WarehouseIOManager(base_dir=str(store.warehouse)),
        },
    )


defs = build_definitions()
