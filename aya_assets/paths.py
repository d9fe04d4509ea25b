"""Where the project's files live; AYA_HOME overrides the checkout (tests point it at a temp dir)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PROFILE = "tiny"


def project_root() -> Path:
    return Path(os.environ.get("AYA_HOME", PACKAGE_ROOT)).resolve()


def data_dir() -> Path:
    return project_root() / "data"


def resolve(path: str | Path, base: Path | None = None) -> Path:
    """Resolve a profile path: absolute stays, relative is taken from the checkout (where data/seed lives)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base or PACKAGE_ROOT) / p


def profile_path(name_or_path: str | None = None) -> Path:
    """A profile name (tiny, gpu) from resources/, or a path to a YAML file; AYA_PROFILE by default."""
    ref = name_or_path or os.environ.get("AYA_PROFILE", DEFAULT_PROFILE)
    candidate = Path(ref)
    if candidate.suffix in {".yaml", ".yml"}:
        return resolve(candidate)
    return PACKAGE_ROOT / "resources" / f"{ref}.yaml"


def instance_home() -> Path:
    """The Dagster instance's home: DAGSTER_HOME when the user sets it (their own instance, e.g. PostgreSQL),
    else data/dagster beside the warehouse and models, so AYA_HOME moves the runs with the data."""
    return Path(os.environ["DAGSTER_HOME"]).resolve() if os.environ.get("DAGSTER_HOME") else data_dir() / "dagster"



@contextmanager
def dagster_home(home: Path | None = None) -> Iterator[Path]:
    """DAGSTER_HOME set to `home` (default: instance_home()) for the block. An instance home of ours gets this
    checkout's dagster.yaml, whose paths are Dagster's defaults under DAGSTER_HOME; a user's own is left as it is."""
    from aya_assets.artifacts.atomic import write_bytes

    own = home is None and not os.environ.get("DAGSTER_HOME")
    home = home or instance_home()
    if own:
        template = (PACKAGE_ROOT / "dagster.yaml").read_bytes()
        if not (home / "dagster.yaml").is_file() or (home / "dagster.yaml").read_bytes() != template:
            write_bytes(home / "dagster.yaml", template)
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        yield home
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous
