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


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory) -> dict[str, Path]:
    """Tiny Llama checkpoints by role, and broken variants (tests/helpers.py); built once per test session."""
    from helpers import build_checkpoints

    return build_checkpoints(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster").mkdir(exist_ok=True)
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as inst:
        yield inst


def merge(base: dict, overrides: dict) -> dict:
    """Deep merge: nested mappings are merged key by key, anything else replaced."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# The tiny profile shrunk further so that the whole graph trains and generates in seconds in tests.
FAST = {
    "models": {
        "tokenizer_vocab": 600,
        "architecture": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "max_positions": 160},
        "teacher_training": {"steps": 12, "learning_rate": 0.005, "batch_size": 8},
        "student_training": {"steps": 6, "learning_rate": 0.005, "batch_size": 8},
        "reward_training": {"steps": 12, "learning_rate": 0.002, "batch_size": 8},
    },
    "generation": {"samples": 2, "max_new_tokens": 6, "batch_size": 64},
    "training": {"sft": {"steps": 6, "learning_rate": 0.005, "batch_size": 8},
                 "dpo": {"steps": 4, "learning_rate": 0.001, "batch_size": 8}},
    "online": {"rounds": 1, "samples": 2},
    "evaluation": {"bootstrap_resamples": 200},
}


@pytest.fixture
def write_profile(tmp_path):
    """Write a profile YAML built from the tiny one with (deep-merged) overrides; returns its path."""

    def _write(**overrides) -> str:
        base = merge(yaml.safe_load((Path(__file__).parents[1] / "resources" / "tiny.yaml").read_text()), overrides)
        path = tmp_path / f"profile_{len(list(tmp_path.glob('profile_*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump(base, allow_unicode=True, sort_keys=False))
        return str(path)

    return _write


@pytest.fixture
def fast_profile(write_profile) -> str:
    return write_profile(**FAST)


def pytest_collection_modifyitems(config, items):
    """Tests marked gpu need a CUDA device: skip them where torch sees none."""
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if gpu:
        import torch

        if not torch.cuda.is_available():
            for item in gpu:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))
