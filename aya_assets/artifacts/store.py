"""Resources shared by every stage: the profile and the artifact store."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import dagster as dg

from aya_assets import paths
from aya_assets.profile import Profile, load_profile


class ProfileResource(dg.ConfigurableResource):
    """The validated profile (resources/<name>.yaml); every stage reads its settings from here."""

    name_or_path: str = "tiny"

    @cached_property
    def profile(self) -> Profile:
        return load_profile(self.name_or_path)


class ArtifactStore(dg.ConfigurableResource):
    """Where tables, checkpoints and reports live (default: data/ under AYA_HOME or the checkout)."""

    root: str = ""

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
