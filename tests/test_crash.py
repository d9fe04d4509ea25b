"""SIGKILL in the middle of pool generation and of DPO training, then a re-run: finished work is reused,
nothing half-written is ever visible, and the result equals an uninterrupted run with the same seeds."""

import os
import signal
import subprocess
import sys
import time

import polars as pl
import pytest
from conftest import seed_rows
from safetensors.torch import load_file

from aya_assets.arbitrage.pool import generate_pool
from aya_assets.checkpoints.build import build_or_reuse
from aya_assets.generation import SamplingSettings, TransformersBackend
from aya_assets.training.dpo import DPOSettings, train_dpo

pytestmark = pytest.mark.slow
SAMPLING = SamplingSettings(n=2, max_new_tokens=8, temperature=0.9, seed=3)
DPO = DPOSettings(steps=30, learning_rate=1e-3, batch_size=4)

# The child processes run exactly what the pipeline runs; the parent kills them with SIGKILL mid-way.
POOL_CHILD = """
import sys, polars as pl
from pathlib import Path
from aya_assets.arbitrage.pool import generate_pool
from aya_assets.generation import SamplingSettings, TransformersBackend
prompts = pl.read_parquet(sys.argv[1]); model = sys.argv[2]
generate_pool(prompts, {"t": model}, {"t": "h"}, TransformersBackend(batch_size=4),
              SamplingSettings(n=2, max_new_tokens=8, temperature=0.9, seed=3), Path(sys.argv[3]), 2, log=lambda _: None)
"""
DPO_CHILD = """
import sys, json
from pathlib import Path
from aya_assets.checkpoints.build import build_or_reuse
from aya_assets.training.dpo import DPOSettings, train_dpo
pairs = json.loads(Path(sys.argv[2]).read_text())
build_or_reuse(Path(sys.argv[3]), "fp", lambda tmp: train_dpo(Path(sys.argv[1]), pairs, tmp,
               DPOSettings(steps=30, learning_rate=1e-3, batch_size=4)).__dict__)
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory, trained_lm, seed_prompts):
    """A tiny model trained a few steps on the German and Russian train answers, and those prompts (in a file too)."""
    root = tmp_path_factory.mktemp("crash")
    rows = seed_rows(seed_prompts, ("de", "ru"), split="train")
    rows.write_parquet(root / "prompts.parquet")
    return root, rows, trained_lm(("de", "ru"), steps=4, split="train")


def run_and_kill(code: str, args: list[str], ready) -> None:
    """Start `code` in a fresh interpreter, SIGKILL it as soon as `ready()` holds (it must not finish first)."""
    child = subprocess.Popen([sys.executable, "-c", code, *args], env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 300
    while not ready():
        assert child.poll() is None, "the child finished before it could be killed"
        assert time.monotonic() < deadline, "the child never reached the kill point"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL


def test_sigkill_during_pool_generation(setup):
    root, rows, model = setup
    shards = root / "shards"
    run_and_kill(POOL_CHILD, [str(root / "prompts.parquet"), str(model), str(shards)],
                 ready=lambda: len(list(shards.rglob("*.parquet"))) >= 3)
    survived = {p.name for p in shards.rglob("*.parquet")}
    for f in shards.rglob("*.parquet"):
        pl.read_parquet(f)  # every visible shard is complete
    resumed, counts = generate_pool(rows, {"t": str(model)}, {"t": "h"}, TransformersBackend(batch_size=4),
                                    SAMPLING, shards, 2, log=lambda _: None)
    assert counts["reused"] >= len(survived) >= 3 and counts["generated"] > 0
    assert not [p for p in shards.rglob("*") if p.name.endswith(".tmp")]  # the killed writer's temp files are gone
    clean, _ = generate_pool(rows, {"t": str(model)}, {"t": "h"}, TransformersBackend(batch_size=4),
                             SAMPLING, root / "clean", 2, log=lambda _: None)
    assert resumed.drop("seconds").equals(clean.drop("seconds"))


def test_sigkill_during_dpo_training(setup):
    import json

    root, rows, model = setup
    pairs = [{"prompt": [{"role": "user", "content": t}], "chosen": [{"role": "assistant", "content": r}],
              "rejected": [{"role": "assistant", "content": "?"}]} for t, r in rows.select("text", "reference").iter_rows()]
    (root / "pairs.json").write_text(json.dumps(pairs))
    out = root / "dpo"
    run_and_kill(DPO_CHILD, [str(model), str(root / "pairs.json"), str(out)],
                 ready=lambda: any(p.name.endswith(".tmp") for p in root.glob(".dpo.*")))
    assert not out.exists()  # nothing half-trained is visible
    reused, _ = build_or_reuse(out, "fp", lambda tmp: train_dpo(model, pairs, tmp, DPO).__dict__)
    assert not reused and not list(root.glob(".dpo.*"))
    reference = root / "dpo_uninterrupted"
    build_or_reuse(reference, "fp", lambda tmp: train_dpo(model, pairs, tmp, DPO).__dict__)
    a, b = load_file(out / "model.safetensors"), load_file(reference / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert build_or_reuse(out, "fp", lambda tmp: pytest.fail("must not retrain"))[0] is True
