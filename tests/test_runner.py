"""The runner: its plan, what it says about failed checks, and steps run side by side in worker processes."""

import functools
import io
import json
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import dagster as dg
import psutil
import pytest

from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from aya_assets.cli import runner
from aya_assets.cli.runner import (MATERIALIZE_TAG, STEP_TAG, MaterializeFailed, check_failures, materialize_all, plan,
                                   step_dependencies)
from aya_assets.console import StepLine
from bench.demo_times import demo_times

CHECKOUT = Path(__file__).parents[1]


def evaluation(passed: bool, description=None, **metadata) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(asset_key=dg.AssetKey("prompts"), check_name="language_id", passed=passed,
                                   description=description, metadata=metadata)


@pytest.mark.parametrize("evaluations, said", [
    ([evaluation(True)], []),
    ([evaluation(False, "el: 29% of rows read as another language")],
     ["prompts/language_id: el: 29% of rows read as another language"]),
    # Without a description, the short scalars only: tables and long lists stay in the UI.
    ([evaluation(False, failing=dg.MetadataValue.text("el (29%)"), rows=dg.MetadataValue.int(10),
                 table=dg.MetadataValue.md("| a |\n|---|"), long=dg.MetadataValue.text("x" * 61))],
     ["prompts/language_id: failing: el (29%); rows: 10"]),
    ([evaluation(False)], ["prompts/language_id"]),
])
def test_check_failures_say_what_failed_in_one_line_each(evaluations, said):
    assert check_failures(evaluations) == said


def test_plan_counts_every_run_of_the_tiny_graph_once():
    from aya_assets.definitions import build_definitions  # here: worker processes import this module for the sleepy graph

    steps = plan(build_definitions())
    labels = [s.label for s in steps]
    assert labels[0] == "prompts, redteam_prompts" and steps[0].note == " (23 partitions, one run)"
    assert len(labels) == len(set(labels))  # each step's label is its key for the next run's time estimate
    # Unpartitioned assets are steps of their own, free to run side by side: the reward model next to the teachers,
    # stage_quality next to win_rates.
    assert {"tokenizer", "student_base", "reward_model", "stage_quality", "win_rates"} <= set(labels)
    dependencies = step_dependencies(build_definitions(), steps)
    index = {label: i for i, label in enumerate(labels)}
    teacher = index["teacher_models [teacher_east_asian]"]
    assert index["reward_model"] not in dependencies[teacher] and index["student_base"] in dependencies[teacher]
    assert index["stage_quality"] not in dependencies[index["win_rates"]]


def test_plan_splits_a_language_layer_into_ranges_that_run_side_by_side():
    from aya_assets.definitions import build_definitions

    defs = build_definitions()
    steps = plan(defs, chunks=2)
    dependencies = step_dependencies(defs, steps)
    index = {s.label: i for i, s in enumerate(steps)}
    pool = [i for i, s in enumerate(steps) if s.label.startswith("pool_completions, reward_scores, arbitrage_sft [")]
    assert len(pool) == 2 and [steps[i].note for i in pool] == [" (11 of 23 partitions, one run)", " (12 of 23 partitions, one run)"]
    covered = [steps[i].tags for i in pool]  # contiguous ranges, together every language once
    keys = defs.resolve_asset_graph().get(dg.AssetKey("pool_completions")).partitions_def.get_partition_keys()
    assert (covered[0][ASSET_PARTITION_RANGE_START_TAG], covered[1][ASSET_PARTITION_RANGE_END_TAG]) == (keys[0], keys[-1])
    assert keys.index(covered[1][ASSET_PARTITION_RANGE_START_TAG]) == keys.index(covered[0][ASSET_PARTITION_RANGE_END_TAG]) + 1
    assert pool[0] not in dependencies[pool[1]]  # the halves overlap
    assert set(pool) <= dependencies[index["sft_checkpoints [east_asian]"]]  # what reads them waits for both
    assert len(plan(defs, chunks=1)) == len(steps) - 5  # the pool's, the translation pairs' and each online round's
    assert "prompts, redteam_prompts" in index and "offline_pairs" in index  # no model runs there: one run is cheaper than two


def test_a_layer_whose_asset_reads_another_partition_is_not_split():
    languages = dg.StaticPartitionsDefinition(["en", "de", "fr"])
    one_run = dict(partitions_def=languages, backfill_policy=dg.BackfillPolicy.single_run())

    @dg.asset(**one_run, pool="gpu")
    def rows() -> None: ...

    @dg.asset(**one_run, ins={"rows": dg.AssetIn(partition_mapping=dg.StaticPartitionMapping({"en": ["en", "de", "fr"],
                                                                                             "de": "de", "fr": "fr"}))})
    def contrast(rows) -> None: ...

    @dg.asset(**one_run)
    def own(rows) -> None: ...

    assert [s.label for s in plan(dg.Definitions(assets=[rows, contrast]), chunks=2)] == ["rows, contrast"]
    assert [s.label for s in plan(dg.Definitions(assets=[rows, own]), chunks=2)] == ["rows, own [en]", "rows, own [de…fr]"]

    @dg.asset(**one_run)
    def light() -> None: ...

    assert [s.label for s in plan(dg.Definitions(assets=[light]), chunks=2)] == ["light"]  # no pool: no model there


# A graph whose steps only sleep, run for real in worker processes: root, then shard [a] and shard [b] (one run each,
# free to overlap), then total (after both). The steps' worker processes import this module to build it again.
SHARDS = dg.StaticPartitionsDefinition(["a", "b"])


def sleepy_definitions(log: str, seconds: float = 2.0, fail: str | None = None, pool: str | None = None) -> dg.Definitions:
    """Each body appends {name, pid, start, end} to `log`; `fail` (root or a shard's key) raises instead; the shards
    carry `pool`."""

    def nap(name: str, seconds: float) -> None:
        start = time.time()
        with open(log, "a") as f:  # the start first: a test that interrupts the run looks for it
            f.write(json.dumps({"name": name, "pid": os.getpid(), "start": start}) + "\n")
        time.sleep(seconds)
        with open(log, "a") as f:
            f.write(json.dumps({"name": name, "pid": os.getpid(), "start": start, "end": time.time()}) + "\n")

    @dg.asset
    def root() -> None:
        if fail == "root":
            raise ValueError("root broke")
        nap("root", 0.2)

    @dg.asset(partitions_def=SHARDS, deps=[root], pool=pool)
    def shard(context: dg.AssetExecutionContext) -> None:
        if context.partition_key == fail:
            raise ValueError(f"{fail} broke")
        nap(f"shard [{context.partition_key}]", seconds)

    @dg.asset(deps=[shard])
    def total() -> None:
        nap("total", 0.2)

    return dg.Definitions(assets=[root, shard, total])


def spans(log: Path) -> dict[str, tuple[float, float]]:
    """Each finished body's (start, end) by name, from the log the sleepy graph writes."""
    return {row["name"]: (row["start"], row["end"]) for row in map(json.loads, log.read_text().splitlines()) if "end" in row}


def run_spans(instance: dg.DagsterInstance) -> dict[str, tuple[float, float]]:
    """Each run's (start, end) by its step label, as the instance recorded them."""
    return {r.dagster_run.tags[STEP_TAG]: (r.start_time, r.end_time) for r in instance.get_run_records()}


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A DAGSTER_HOME laid out as `aya` lays it out (the checkout's dagster.yaml: its storage, its pool settings)."""
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_bytes((CHECKOUT / "dagster.yaml").read_bytes())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def materialize_sleepy(home: Path, log: Path, workers: int = 2, pools: dict | None = None, **graph) -> tuple[dg.DagsterInstance, list]:
    build = functools.partial(sleepy_definitions, str(log), **graph)
    instance = dg.DagsterInstance.from_config(str(home))
    return instance, materialize_all(build(), instance, workers=workers, pools=pools, build=build, line=StepLine(io.StringIO()))


def test_independent_steps_overlap_and_dependent_ones_wait(home, tmp_path):
    # In the gpu pool with the tiny profile's 2 slots: the profile's limit, not dagster.yaml's default of 1, holds.
    instance, results = materialize_sleepy(home, tmp_path / "log.jsonl", pool="gpu", pools={"gpu": 2})
    assert [r.success for r in results] == [True] * 4
    # The shards' bodies ran side by side (their runs alone could overlap with one waiting for a slot).
    (a_start, a_end), (b_start, b_end) = spans(tmp_path / "log.jsonl")["shard [a]"], spans(tmp_path / "log.jsonl")["shard [b]"]
    assert a_start < b_end and b_start < a_end
    # By the instance's run times: root's run ended before either shard's began, total's began after both ended.
    runs = run_spans(instance)
    assert sorted(runs) == ["root", "shard [a]", "shard [b]", "total"]
    assert runs["root"][1] <= min(runs["shard [a]"][0], runs["shard [b]"][0]), runs
    assert max(runs["shard [a]"][1], runs["shard [b]"][1]) <= runs["total"][0], runs
    # The shards ran in two worker processes; root and total, which can only run alone, here (on every core).
    pids = {row["name"]: row["pid"] for row in map(json.loads, (tmp_path / "log.jsonl").read_text().splitlines())}
    assert pids["root"] == pids["total"] == os.getpid() and len({pids["shard [a]"], pids["shard [b]"]} - {os.getpid()}) == 2
    # The results are what execute_in_process returns, whichever process ran the step.
    assert {m.partition for r in results for m in r.asset_materializations_for_node("shard")} == {"a", "b"}
    assert len({r.tags[MATERIALIZE_TAG] for r in instance.get_runs()}) == 1  # one call: one id on all its runs
    times = demo_times(home)  # which groups the latest call's runs by that id, whichever process ran them
    assert times["runs"] == 4 and times["finished"] and times["wall_s"] == pytest.approx(runs["total"][1] - runs["root"][0])
    assert multiprocessing.active_children() == []  # every worker was joined


@pytest.mark.parametrize("fail, ran", [
    # In a worker: the other shard was running, so it finished; total waits for both shards, so it never started.
    ("a", {"root": "SUCCESS", "shard [a]": "FAILURE", "shard [b]": "SUCCESS"}),
    # Here (it runs alone): nothing else starts.
    ("root", {"root": "FAILURE"}),
], ids=["in_a_worker", "alone_here"])
def test_a_failed_step_is_named_and_the_running_ones_finish(home, tmp_path, fail, ran):
    with pytest.raises(MaterializeFailed) as failed:
        materialize_sleepy(home, tmp_path / "log.jsonl", fail=fail)
    instance = dg.DagsterInstance.from_config(str(home))
    where = "root" if fail == "root" else f"shard [{fail}]"
    assert failed.value.where == where and instance.get_run_by_id(failed.value.run_id).tags[STEP_TAG] == where
    assert isinstance(failed.value.__cause__, ValueError) and str(failed.value.__cause__) == f"{fail} broke"
    assert {r.tags[STEP_TAG]: r.status.value for r in instance.get_runs()} == ran
    assert multiprocessing.active_children() == []


def test_one_worker_runs_every_step_here_in_plan_order(home, tmp_path):
    instance, results = materialize_sleepy(home, tmp_path / "log.jsonl", workers=1, seconds=0.1)
    assert [r.success for r in results] == [True] * 4
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert {row["pid"] for row in rows} == {os.getpid()}
    assert [row["name"] for row in rows if "end" in row] == ["root", "shard [a]", "shard [b]", "total"]
    assert len({r.tags[MATERIALIZE_TAG] for r in instance.get_runs()}) == 1


def _interrupted(home: str, log: str) -> None:
    """`aya materialize` to be interrupted, in its own process group as under a terminal: shards that sleep a minute."""
    os.setsid()
    runner.INTERRUPT_GRACE_S = 1.0  # a step that goes on after Ctrl-C (here: the one the signal missed) is stopped soon
    build = functools.partial(sleepy_definitions, log, seconds=60.0, pool="gpu")
    instance = dg.DagsterInstance.from_config(home)
    materialize_all(build(), instance, workers=2, pools={"gpu": 2}, build=build, line=StepLine(io.StringIO()))


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# kill -INT to aya alone: passes alone and with the rest of this file, but in the whole suite on 2 cores aya was still
# alive a minute after the signal (twice, at ab92686 and 65b73ac); the cause is not found yet (see issue #16's note).
ALONE_FLAKES = pytest.mark.xfail(strict=False, reason="in the whole suite aya outlived a minute after kill -INT; cause open")


@pytest.mark.parametrize("everyone", [True, pytest.param(False, marks=ALONE_FLAKES)],
                         ids=["ctrl_c_in_a_terminal", "sigint_to_aya_alone"])
def test_an_interrupt_leaves_no_worker_and_no_open_run(home, tmp_path, everyone):
    log = tmp_path / "log.jsonl"
    aya = multiprocessing.get_context("spawn").Process(target=_interrupted, args=(str(home), str(log)))
    aya.start()
    deadline = time.monotonic() + 120
    while not (log.exists() and {"shard [a]", "shard [b]"} <= {json.loads(line)["name"] for line in log.read_text().splitlines()}):
        assert time.monotonic() < deadline and aya.is_alive(), "the shards never started"
        time.sleep(0.2)
    workers = {json.loads(line)["pid"] for line in log.read_text().splitlines()}
    # Ctrl-C in a terminal reaches the whole process group, workers included; `kill -INT` reaches aya alone.
    (os.killpg if everyone else os.kill)(aya.pid, signal.SIGINT)
    aya.join(timeout=60)
    assert aya.exitcode not in (None, 0)
    assert [pid for pid in workers if alive(pid)] == []
    instance = dg.DagsterInstance.from_config(str(home))
    statuses = {r.tags[STEP_TAG]: r.status for r in instance.get_runs()}
    assert statuses == {"root": dg.DagsterRunStatus.SUCCESS, "shard [a]": dg.DagsterRunStatus.FAILURE,
                        "shard [b]": dg.DagsterRunStatus.FAILURE}
    assert instance.event_log_storage.get_concurrency_info("gpu").active_slot_count == 0  # no slot held by a dead run


def test_a_worker_that_dies_fails_its_step_and_leaves_no_run_open(home, tmp_path):
    """A worker killed mid-step (as by the out-of-memory killer): its step fails, and its run does not stay 'started'
    holding a gpu slot that the next GPU step would wait for forever."""
    log = tmp_path / "log.jsonl"

    def kill_shard_a() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
            if any(row["name"] == "shard [b]" for row in rows):  # both shards are running
                os.kill(next(row["pid"] for row in rows if row["name"] == "shard [a]"), signal.SIGKILL)
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_shard_a)
    killer.start()
    with pytest.raises(MaterializeFailed) as failed:
        materialize_sleepy(home, log, seconds=60.0, pool="gpu", pools={"gpu": 2})
    killer.join()
    assert failed.value.where == "shard [a]" and isinstance(failed.value.__cause__, BrokenProcessPool)
    instance = dg.DagsterInstance.from_config(str(home))
    assert {r.tags[STEP_TAG]: r.status.value for r in instance.get_runs()} == {
        "root": "SUCCESS", "shard [a]": "FAILURE", "shard [b]": "FAILURE"}
    assert instance.event_log_storage.get_concurrency_info("gpu").active_slot_count == 0
    assert multiprocessing.active_children() == []


def test_the_assets_of_a_multi_asset_that_cannot_be_subset_are_one_step():
    @dg.asset
    def rows() -> None: ...

    @dg.multi_asset(outs={"model": dg.AssetOut(), "model_accuracy": dg.AssetOut()}, deps=[rows])
    def model():
        yield dg.Output(None, output_name="model")
        yield dg.Output(None, output_name="model_accuracy")

    @dg.asset(deps=["model"])
    def uses_model() -> None: ...

    defs = dg.Definitions(assets=[rows, model, uses_model])
    steps = plan(defs)
    assert [sorted(k.to_user_string() for k in s.keys) for s in steps] == [["rows"], ["model", "model_accuracy"], ["uses_model"]]
    # Selecting one of them runs both (Dagster cannot run one alone).
    assert [sorted(k.to_user_string() for k in s.keys) for s in plan(defs, [dg.AssetKey("model")])] == [["model", "model_accuracy"]]
