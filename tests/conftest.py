import os

os.environ["HF_HUB_OFFLINE"] = "1"  # no test may reach a hub
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import dagster as dg  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402


@pytest.fixture
def aya_home(tmp_path, monkeypatch) -> Path:
    """A fresh data/ root for one test: warehouse, models and catalog all land under tmp_path."""
    monkeypatch.setenv("AYA_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster").mkdir(exist_ok=True)
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as inst:
        yield inst


@pytest.fixture
def write_profile(tmp_path):
    """Write a profile YAML built from the tiny one with overrides; returns its path."""

    def _write(**overrides) -> str:
        base = yaml.safe_load((Path(__file__).parents[1] / "resources" / "tiny.yaml").read_text())
        base.update(overrides)
        path = tmp_path / f"profile_{len(list(tmp_path.glob('profile_*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump(base, allow_unicode=True))
        return str(path)

    return _write
