"""Where the project's files live; AYA_HOME overrides the checkout (tests point it at a temp dir)."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def project_root() -> Path:
    return Path(os.environ.get("AYA_HOME", PACKAGE_ROOT)).resolve()


def data_dir() -> Path:
    return project_root() / "data"


def resolve(path: str | Path, base: Path | None = None) -> Path:
    """Resolve a profile path: absolute stays, relative is taken from the checkout (where data/seed lives)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base or PACKAGE_ROOT) / p
