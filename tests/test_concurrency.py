"""Concurrent runs: the instance's `gpu` pool lets one GPU step run at a time, across processes and across
`materialize_all`'s workers; concurrent writers never interleave."""

import json
import multiprocessing
import time
import uuid
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from test_runner import materialize_sleepy, spans as sleepy_spans

from aya_assets.artifacts.tables import atomic_write_parquet
from aya_assets.definitions import build_definitions

CHECKOUT = Path(__file__).parents[1]
# Assets that hold a model on the accelerator: training, generation, scoring, merging.
GPU_KINDS = {"pytorch", "transformers", "mergekit", "vllm"}


def intervals_overlap(spans: list[tuple[float, float]]) -> bool:
    spans = sorted(spans)
    return any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))


def _run_one(home: str, name: str, pool: str | None, log: str, barrier) -> None:
    """One run in its own process, as two `aya` commands or two UI launches would be."""

    @dg.asset(name=name, pool=pool)
    def _asset() -> None:
        start = time.monotonic()
        # Long enough that, without the pool, both bodies overlap even if one run's start lags the other's under load.
        time.sleep(5.0)
        with open(log, "a") as f:
            f.write(json.dumps([start, time.monotonic()]) + "\n")

    instance = dg.DagsterInstance.from_config(home)
    barrier.wait(timeout=60)  # both processes have imported and built their asset: start the runs together
    assert dg.materialize([_asset], instance=instance).success


def two_runs_at_once(home: Path, pool: str | None, log: Path) -> list[tuple[float, float]]:
    """Two runs of one `pool` asset each, from two processes started together; each asset body's (start, end)."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    runs = [ctx.Process(target=_run_one, args=(str(home), f"step_{i}", pool, str(log), barrier)) for i in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=180)
        assert run.exitcode == 0
    return [tuple(json.loads(line)) for line in log.read_text().splitlines()]


@pytest.fixture
def project_home(tmp_path, monkeypatch) -> Path:
    """A DAGSTER_HOME with the checkout's own dagster.yaml (storage class, concurrency settings), as `aya` lays it
    out: its paths are Dagster's defaults under DAGSTER_HOME, which the spawned processes inherit."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_bytes((CHECKOUT / "dagster.yaml").read_bytes())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def _claimer(home: str, rounds: int, barrier, results) -> None:
    """Each round: claim the `gpu` slot together with the other claimers, report, then give it back."""
    instance = dg.DagsterInstance.from_config(home)  # held: the storage refers back to it weakly
    storage = instance.event_log_storage
    for round_ in range(rounds):
        run_id = uuid.uuid4().hex
        barrier.wait(timeout=60)
        results.put((round_, storage.claim_concurrency_slot("gpu", run_id, "step").is_claimed))
        barrier.wait(timeout=60)  # every claim is in before any slot is given back
        storage.free_concurrency_slots_for_run(run_id)


def test_one_gpu_slot_is_claimed_once_by_racing_processes(project_home):
    """Four processes claim the one `gpu` slot at the same instant, ten times: exactly one wins each time.

    Dagster's stock sqlite claim (select a free row, then update it by id) gave 2-4 winners in 9 of 30 such rounds.
    """
    instance = dg.DagsterInstance.from_config(str(project_home))
    instance.event_log_storage.set_concurrency_slots("gpu", 1)
    ctx, rounds = multiprocessing.get_context("spawn"), 10
    barrier, results = ctx.Barrier(4), ctx.Queue()
    claimers = [ctx.Process(target=_claimer, args=(str(project_home), rounds, barrier, results)) for _ in range(4)]
    for c in claimers:
        c.start()
    outcome = [results.get(timeout=180) for _ in range(4 * rounds)]
    for c in claimers:
        c.join(timeout=60)
        assert c.exitcode == 0
    winners = [sum(claimed for round_, claimed in outcome if round_ == r) for r in range(rounds)]
    assert winners == [1] * rounds


@pytest.mark.parametrize("pool, overlap", [("gpu", False), (None, True)], ids=["gpu_pool_serialises", "no_pool_overlaps"])
def test_gpu_pool_limit_holds_across_two_runs(project_home, tmp_path, pool, overlap):
    # The pool takes its limit from dagster.yaml's default_limit.
    instance = dg.DagsterInstance.from_config(str(project_home))  # held: the storage refers back to it weakly
    storage = instance.event_log_storage
    storage.initialize_concurrency_limit_to_default("gpu")
    assert storage.get_concurrency_info("gpu").slot_count == 1
    spans = two_runs_at_once(project_home, pool, tmp_path / "spans.jsonl")
    assert len(spans) == 2, spans
    # Without the pool both bodies run side by side, so the test can see an overlap; in the pool they never do.
    assert intervals_overlap(spans) is overlap, spans


def test_gpu_pool_limit_holds_across_workers(project_home, tmp_path):
    """The gpu profile's one slot: two GPU steps free to run side by side, in two workers, still run one at a time
    (with two slots they overlap: test_runner's test_independent_steps_overlap_and_dependent_ones_wait)."""
    log = tmp_path / "log.jsonl"
    materialize_sleepy(project_home, log, pool="gpu", pools={"gpu": 1})
    shards = {name: span for name, span in sleepy_spans(log).items() if name.startswith("shard")}
    assert len(shards) == 2 and not intervals_overlap(list(shards.values())), shards
    pids = {json.loads(line)["pid"] for line in log.read_text().splitlines() if json.loads(line)["name"].startswith("shard")}
    assert len(pids) == 2  # one shard per worker: each waited for the other's slot, not for a free worker


def test_every_model_holding_asset_is_in_the_gpu_pool():
    graph = build_definitions("tiny").resolve_asset_graph()
    model_assets = [graph.get(k) for k in graph.get_all_asset_keys()
                    if graph.get(k).is_materializable and GPU_KINDS & set(graph.get(k).kinds)]
    assert len(model_assets) > 20
    outside = [node.key.to_user_string() for node in model_assets if node.pools != {"gpu"}]
    assert outside == []


def _writer(path: str, value: int, rounds: int) -> None:
    frame = pl.DataFrame({"writer": [value] * 20_000, "row": list(range(20_000))})
    for _ in range(rounds):
        atomic_write_parquet(frame, Path(path))


def test_two_writers_to_one_partition_never_interleave(tmp_path):
    """Two processes rewrite the same partition file while it is read: every read is one writer's whole table."""
    path = tmp_path / "warehouse" / "pool_completions" / "de.parquet"
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_writer, args=(str(path), value, 15)) for value in (1, 2)]
    for w in writers:
        w.start()
    seen = set()
    while any(w.is_alive() for w in writers):
        if path.exists():
            frame = pl.read_parquet(path)
            assert frame.height == 20_000 and frame["writer"].n_unique() == 1
            assert frame["row"].to_list() == list(range(20_000))
            seen.add(frame["writer"][0])
    for w in writers:
        w.join()
        assert w.exitcode == 0
    assert seen and seen <= {1, 2}
    assert [p.name for p in path.parent.iterdir()] == ["de.parquet"]  # no temp file left behind
