"""Materialize the whole graph (or a selection) in dependency order, independent steps side by side.

Language-partitioned assets run as single-run backfills over all their partitions (the partition-range
tags); assets partitioned by teacher, cluster or stage run once per partition. Each run is of its group's named
job (`models`, `sft`, `online_1`, ...). A step starts once every step that materializes an upstream asset of one
of its assets (any partition) has succeeded; with `workers` > 1 the steps run in that many worker processes, the
plan's order deciding which ready step goes first, and the instance's pools (pool="gpu") still bound how many GPU
steps run at once across all processes. This is what `make demo` and the end-to-end tests do; the UI and
`dagster asset backfill` launch the same runs.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from dagster._core.events import DagsterEventType
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from aya_assets.console import STEP, StepLine


STEP_TAG = "aya/step"  # which step of `aya materialize` a run was: its last duration estimates the next
MATERIALIZE_TAG = "aya/materialize"  # which `materialize_all` call a run belongs to, whichever process ran it
# What a worker process needs from the parent's environment to find the same profile, data and instance.
WORKER_ENV = ("AYA_HOME", "AYA_PROFILE", "DAGSTER_HOME")
# What a run whose worker was stopped can be left in: not_started and starting before its first step, started in one.
UNFINISHED = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
INTERRUPT_GRACE_S = 10.0  # after Ctrl-C, how long running steps get to record their runs as failed before their worker is killed


def _single_run(node) -> bool:
    policy = node.backfill_policy
    return policy is not None and policy.max_partitions_per_run is None


def layers(defs: dg.Definitions, selection: list[dg.AssetKey] | None = None) -> list[list[dg.AssetKey]]:
    """Selected asset keys in dependency order, grouped into runs of consecutive single-run-backfill keys sharing a
    partitioning. An unpartitioned asset is a step of its own, so that two of them that do not depend on each other
    (the reward model and the teachers after student_base; stage_quality and win_rates) can run side by side; the
    assets of one multi-asset that cannot be subset (router and router_accuracy) are one step, whichever of them is
    selected."""
    graph = defs.resolve_asset_graph()
    every = [k for k in graph.toposorted_asset_keys if graph.get(k).is_materializable]
    keys = every if selection is None else [k for k in every if k in set(selection)]
    out: list[list[dg.AssetKey]] = []
    placed: set[dg.AssetKey] = set()
    for key in keys:
        if key in placed:
            continue
        node = graph.get(key)
        assets_def = graph.assets_def_for_key(key)
        if len(assets_def.keys) > 1 and not assets_def.can_subset:
            siblings = [k for k in every if k in assets_def.keys]  # selecting one selects them all
            out.append(siblings)
            placed |= set(siblings)
            continue
        if out:
            last = graph.get(out[-1][0])
            # Single-run-backfill assets of one partitioning and recipe step (group: one stage job runs them) share a
            # run with their upstreams.
            if (node.partitions_def is not None and last.partitions_def == node.partitions_def and _single_run(node)
                    and _single_run(last) and node.group_name == last.group_name):
                out[-1].append(key)
                continue
        out.append([key])
    return out


class MaterializeFailed(RuntimeError):
    """A run of `materialize_all` failed: which assets and partition, and the run whose log has the whole story."""

    def __init__(self, where: str, run_id: str | None, failed_checks: list[str] = ()):
        super().__init__(where)
        self.where, self.run_id, self.failed_checks = where, run_id, list(failed_checks)


def failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """What each failed check of a run says."""
    return check_failures(record.dagster_event.event_specific_data
                          for record in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION))


def check_failures(evaluations) -> list[str]:
    """'asset/check: what it says' for each failed evaluation (its description, else its short scalar metadata)."""
    out = []
    for evaluation in evaluations:
        if evaluation.passed:
            continue
        # Short scalars only: tables and long lists stay on the check's page in the UI.
        said = evaluation.description or "; ".join(
            f"{key}: {entry.value}" for key, entry in evaluation.metadata.items()
            if isinstance(entry, (dg.TextMetadataValue, dg.IntMetadataValue, dg.FloatMetadataValue))
            and len(str(entry.value)) <= 60)
        out.append(f"{evaluation.asset_key.to_user_string()}/{evaluation.check_name}" + (f": {said}" if said else ""))
    return out


@dataclass(frozen=True)
class Step:
    """One run of `materialize_all`: the assets, their partition (or range) and what the console calls it."""

    keys: list[dg.AssetKey]
    label: str  # the assets and the partition: what an error names
    tags: dict
    partition_key: str | None = None
    note: str = ""
    split: int | None = None  # the steps of one layer split into partition ranges share it, and do not wait for each other


def _splittable(graph, layer: list[dg.AssetKey]) -> bool:
    """Whether a single-run layer should run as several partition ranges side by side: one of its assets uses a pool
    (a model generates or scores there: the work worth a second process), and every edge inside it maps a partition to
    the same partition (an asset reading another language's rows, or its own earlier partitions, may not)."""
    inside = set(layer)
    identity = all(isinstance(graph.get_partition_mapping(key, parent), dg.IdentityPartitionMapping)
                   for key in layer for parent in graph.get(key).parent_keys & inside)
    return identity and any(graph.get(key).pools for key in layer)


def plan(defs: dg.Definitions, selection: list[dg.AssetKey] | None = None, chunks: int = 1) -> list[Step]:
    """The steps in plan order. A single-run layer becomes `chunks` runs over contiguous partition ranges where that
    pays (`_splittable`): the 23 languages' pool generation and scoring as two runs on two workers, not one on both
    cores (one torch thread serves a tiny model about as fast as two)."""
    graph = defs.resolve_asset_graph()
    steps = []
    for number, layer in enumerate(layers(defs, selection)):
        node = graph.get(layer[0])
        names = ", ".join(k.to_user_string() for k in layer)
        if node.partitions_def is None:
            steps.append(Step(layer, names, {}))
            continue
        keys = node.partitions_def.get_partition_keys()
        if not _single_run(node):
            steps += [Step(layer, f"{names} [{key}]", {}, key) for key in keys]
            continue
        parts = min(chunks, len(keys)) if _splittable(graph, layer) else 1
        for i in range(parts):
            part = keys[i * len(keys) // parts:(i + 1) * len(keys) // parts]
            label, note = ((names, f" ({len(keys)} partitions, one run)") if parts == 1 else
                           (f"{names} [{'…'.join(dict.fromkeys([part[0], part[-1]]))}]",
                            f" ({len(part)} of {len(keys)} partitions, one run)"))
            steps.append(Step(layer, label, {ASSET_PARTITION_RANGE_START_TAG: part[0], ASSET_PARTITION_RANGE_END_TAG: part[-1]},
                              note=note, split=number if parts > 1 else None))
    return steps


def job(defs: dg.Definitions, step: Step):
    """The named job that holds the step's assets (definitions.stage_jobs), so the run is named after its recipe step;
    Dagster's implicit asset job for definitions without one (a test's hand-built graph)."""
    graph = defs.resolve_asset_graph()
    for candidate in defs.jobs or []:
        if isinstance(candidate, UnresolvedAssetJobDefinition) and set(step.keys) <= candidate.selection.resolve(graph):
            return defs.resolve_job_def(candidate.name)
    return defs.resolve_implicit_global_asset_job_def()


def step_dependencies(defs: dg.Definitions, steps: list[Step]) -> list[set[int]]:
    """For each step, the earlier steps it waits for: those that materialize an ancestor of one of its assets, in any
    partition (coarse but safe: a cluster's SFT waits for every language's data, not just its own)."""
    graph = defs.resolve_asset_graph()
    out = []
    for i, step in enumerate(steps):
        ancestors, todo = set(), list(step.keys)
        while todo:
            for parent in graph.get(todo.pop()).parent_keys - ancestors:
                ancestors.add(parent)
                todo.append(parent)
        # Ancestors through assets outside the selection count too; an asset that depends on itself waits for its earlier partitions.
        out.append({j for j in range(i) if (step.split is None or steps[j].split != step.split) and ancestors.intersection(steps[j].keys)})
    return out


def _ready(pending: list[int], deps: list[set[int]], done: set[int]) -> list[int]:
    """The pending steps whose upstream steps are all done, in plan order: the order they start in."""
    return [i for i in pending if deps[i] <= done]


def _seconds_left(estimates: list[float], deps: list[set[int]], done: set[int], running: dict[int, float], workers: int) -> float:
    """When the last step would end if each took its estimate, scheduled as `materialize_all` schedules them;
    `running`: how long each running step has run so far."""
    now, done = 0.0, set(done)
    ends = {i: max(0.0, estimates[i] - spent) for i, spent in running.items()}
    pending = [i for i in range(len(estimates)) if i not in done and i not in ends]
    while pending or ends:
        for i in _ready(pending, deps, done)[:workers - len(ends)]:
            pending.remove(i)
            ends[i] = now + estimates[i]
        if not ends:
            break
        i = min(ends, key=ends.get)
        now = ends.pop(i)
        done.add(i)
    return now


def _left(previous: list[float | None], mean: float, deps, done: set[int], running: dict[int, float], workers: int) -> str:
    """', about m:ss left ...' by the steps' last runs; a step never run before is guessed at this run's mean step,
    and the line says so. Empty when nothing is left."""
    unfinished = [i for i in range(len(previous)) if i not in done]
    if not unfinished:
        return ""
    estimates = [mean if s is None else s for s in previous]
    left = _seconds_left(estimates, deps, done, running, workers)
    return f", about {_clock(left)} left" + (" at this run's pace so far" if any(previous[i] is None for i in unfinished)
                                            else " by the last run")


def _last_seconds(instance: dg.DagsterInstance, label: str) -> float | None:
    """How long this step's latest successful run took: the estimate for the next one."""
    records = instance.get_run_records(dg.RunsFilter(tags={STEP_TAG: label}, statuses=[dg.DagsterRunStatus.SUCCESS]),
                                       limit=1)
    if not records or records[0].start_time is None or records[0].end_time is None:
        return None
    return records[0].end_time - records[0].start_time


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def set_pool_limits(instance: dg.DagsterInstance, pools: dict[str, int]) -> None:
    """The instance's concurrency slots per pool (the profile's `pools`): every run claims against them, this call's
    workers and the UI's runs alike, in every process (aya_assets/instance.py)."""
    for pool, slots in pools.items():
        instance.event_log_storage.set_concurrency_slots(pool, slots)


def _run(defs: dg.Definitions, instance: dg.DagsterInstance, step: Step, tags: dict, run_config: dict) -> dg.ExecuteInProcessResult:
    return job(defs, step).execute_in_process(
        asset_selection=step.keys, instance=instance, tags={**step.tags, **tags},
        partition_key=step.partition_key, run_config=run_config, raise_on_error=True)


def _failed(instance: dg.DagsterInstance, tags: dict) -> MaterializeFailed:
    """The error for the step whose run has these tags: its label, its run (if it got as far as one), its failed checks."""
    runs = instance.get_runs(dg.RunsFilter(tags=tags), limit=1)
    run_id = runs[0].run_id if runs else None
    return MaterializeFailed(tags[STEP_TAG], run_id, failed_checks(instance, run_id) if run_id else [])


def materialize_all(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    selection: list[dg.AssetKey] | None = None,
    line: StepLine = STEP,
    verbose: bool = False,
    workers: int = 1,
    pools: dict[str, int] | None = None,
    build: Callable[[], dg.Definitions] | None = None,
) -> list[dg.ExecuteInProcessResult]:
    """Every step, each once its upstream steps have succeeded, with a console line ([k/N], its time, elapsed, what
    remains by the last runs' times); Dagster's own event log goes to the instance (the run page), and to the console
    only when `verbose`. With `workers` > 1 the steps run in that many processes, each building the definitions with
    `build` (a picklable callable: `defs` itself cannot cross processes); `pools` sets the instance's pool limits first.
    On a failed step nothing new starts, the running steps finish, and MaterializeFailed names the failed one.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    run_config = {} if verbose else {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    steps = plan(defs, selection, chunks=workers)
    deps = step_dependencies(defs, steps)
    if pools:
        set_pool_limits(instance, pools)
    call = uuid.uuid4().hex
    tags = [{STEP_TAG: step.label, MATERIALIZE_TAG: call} for step in steps]
    previous = [_last_seconds(instance, step.label) for step in steps]
    # A chain (each step waits for the one before) gains nothing from workers: it runs here, as with one worker.
    if workers > 1 and any(i - 1 not in deps[i] for i in range(1, len(steps))):
        if build is None or not instance.is_persistent:
            raise ValueError("materialize_all with workers > 1 needs `build`, which builds the definitions in each worker, "
                             "and an instance they can open (not an ephemeral one)")
        results = _with_workers(defs, instance, steps, deps, tags, previous, run_config, line, min(workers, len(steps)), build)
        return [results[i] for i in sorted(results)]
    results, started = [], time.perf_counter()
    for k, step in enumerate(steps, 1):
        line.begin(f"[{k}/{len(steps)}] {step.label}{step.note}")
        step_started = time.perf_counter()
        try:
            results.append(_run(defs, instance, step, tags[k - 1], run_config))
        except Exception as exc:
            raise _failed(instance, tags[k - 1]) from exc
        done = time.perf_counter() - started
        left = _left(previous, done / k, deps, set(range(k)), {}, 1)
        line.end(f"{time.perf_counter() - step_started:.1f} s, elapsed {_clock(done)}{left}")
    return results


def _with_workers(defs, instance, steps: list[Step], deps, tags, previous, run_config, line: StepLine, workers: int,
                  build: Callable[[], dg.Definitions]) -> dict[int, dg.ExecuteInProcessResult]:
    """Each step as soon as its upstream steps are done, plan order first: in a worker process with a line when it
    starts and one when it ends; a step that can only run alone (nothing else running or ready) runs here instead, on
    every core, with the one-worker line (the workers start meanwhile). Each step's result."""
    def say(text: str) -> None:
        line.stream.write(text + "\n")
        line.stream.flush()

    def prefix(i: int) -> str:
        return f"[{i + 1}/{len(steps)}] {steps[i].label}{steps[i].note}"

    def timing(i: int, took: float) -> str:
        seconds.append(took)
        left = "" if failure else _left(previous, sum(seconds) / len(seconds), deps, done,
                                         {j: time.perf_counter() - t for j, t in running.values()}, workers)
        return f"{took:.1f} s, elapsed {_clock(time.perf_counter() - started)}{left}"

    env = {key: os.environ[key] for key in WORKER_ENV if key in os.environ}
    threads = max(1, (os.cpu_count() or 1) // workers)
    before = set(multiprocessing.active_children())
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                               initargs=(build, instance.get_ref(), env, threads))
    for _ in range(workers):  # every worker starts now, side by side, not when a second step first becomes ready
        pool.submit(_started)
    pending, running = list(range(len(steps))), {}  # running: future -> (step, when it started)
    done, seconds, results = set(), [], {}
    failure: tuple[int, BaseException] | None = None
    started, ended = time.perf_counter(), False
    try:
        while pending or running:
            ready = [] if failure else _ready(pending, deps, done)
            if len(ready) == 1 and not running:
                i = ready[0]
                pending.remove(i)
                line.begin(prefix(i))
                since = time.perf_counter()
                try:
                    results[i] = _run(defs, instance, steps[i], tags[i], run_config)
                except Exception as exc:
                    failure = (i, exc)
                    continue
                done.add(i)
                line.end(timing(i, time.perf_counter() - since))
                continue
            for i in ready[:workers - len(running)]:
                pending.remove(i)
                running[pool.submit(_run_in_worker, steps[i], tags[i], run_config)] = (i, time.perf_counter())
                say(f"{prefix(i)} …")
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=lambda f: running[f][0]):
                i, since = running.pop(future)
                if future.exception() is not None:  # not .result(): a worker's KeyboardInterrupt is its step's failure
                    failure = failure or (i, future.exception())
                    waiting = f"; waiting for {len(running)} running step(s), starting none" if running else ""
                    say(f"{prefix(i)} — failed after {time.perf_counter() - since:.1f} s{waiting}")
                    continue
                run_id, took, trained = future.result()
                results[i] = _result(defs, instance, steps[i], run_id)
                done.add(i)
                say(f"{prefix(i)} — {timing(i, took)}" + "".join(f"; {text}" for text in trained))
        ended = True
    finally:
        if ended:
            # Every step has ended: the idle workers exit on their own, so what their steps' libraries left open
            # (semaphores, shared memory) is cleaned up, not reported as leaked when `aya` exits.
            pool.shutdown(wait=True)
        else:
            _stop_workers(pool, set(multiprocessing.active_children()) - before, running)
        _close_unfinished(instance, tags[0][MATERIALIZE_TAG])  # runs whose worker died (killed, out of memory)
    if failure is not None:
        raise _failed(instance, tags[failure[0]]) from failure[1]
    return results


def _stop_workers(pool: ProcessPoolExecutor, ours: set, running: dict) -> None:
    """After Ctrl-C (or an error here), with steps perhaps still running: no worker outlives the call."""
    pool.shutdown(wait=False, cancel_futures=True)
    # Idle workers end at once; Dagster takes SIGTERM as Ctrl-C: a running step stops, its run recorded as failed.
    for child in ours:
        child.terminate()
    try:
        wait(running, timeout=INTERRUPT_GRACE_S)
    finally:
        for child in ours:  # stuck past the grace
            child.kill()
            child.join()
        # With its workers gone the pool's manager thread ends; joined here, it cannot hold up the interpreter's exit
        # (concurrent.futures joins it at exit, which after Ctrl-C once kept `aya` alive past a minute in CI).
        pool.shutdown(wait=True, cancel_futures=True)


def _close_unfinished(instance: dg.DagsterInstance, call: str) -> None:
    """Runs of this call whose worker was stopped before Dagster could end them: marked failed, their pool slots given
    back (else the next GPU step would wait for a slot that nobody frees)."""
    for run in instance.get_runs(dg.RunsFilter(tags={MATERIALIZE_TAG: call}, statuses=UNFINISHED)):
        instance.report_run_failed(run, "its aya materialize worker was stopped")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)


def _result(defs: dg.Definitions, instance: dg.DagsterInstance, step: Step, run_id: str) -> dg.ExecuteInProcessResult:
    """What execute_in_process returned in the worker, rebuilt from the instance's event log (without captured
    outputs: those stay with the IO managers)."""
    events = [entry.dagster_event for entry in instance.all_logs(run_id) if entry.is_dagster_event]
    return dg.ExecuteInProcessResult(events, instance.get_run_by_id(run_id), None, job(defs, step))


_WORKER: dict = {}  # in a worker process: the definitions and the instance, built once by _start_worker


def _start_worker(build: Callable[[], dg.Definitions], instance_ref, env: dict, threads: int) -> None:
    """One worker process: the parent's environment, its share of the cores, the definitions and the instance."""
    os.environ.update(env)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # between steps Ctrl-C is the parent's to handle (_run_in_worker)
    import torch

    torch.set_num_threads(threads)
    # What trains in a step is folded into the parent's line for it (_run_in_worker returns it), not printed here.
    STEP.stream = open(os.devnull, "w")
    _WORKER.update(defs=build(), instance=dg.DagsterInstance.from_ref(instance_ref))


def _started() -> None:
    """A no-op task: submitted once per worker, it has the pool start them all at once."""


def _run_in_worker(step: Step, tags: dict, run_config: dict) -> tuple[str, float, list[str]]:
    """One step in a worker: its run id, its seconds (the worker's start-up not counted) and what trained in it."""
    # Inside a step Ctrl-C interrupts it as in-process, so Dagster records its run as failed.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    STEP.begin(step.label)
    started = time.perf_counter()
    try:
        run_id = _run(_WORKER["defs"], _WORKER["instance"], step, tags, run_config).run_id
        return run_id, time.perf_counter() - started, list(STEP.trained)
    except Exception as exc:
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:  # an error whose class cannot be rebuilt from its args: the parent gets its name and message
            raise RuntimeError(f"{type(exc).__name__}: {exc}") from exc
        raise
    finally:
        STEP.end("")
        # Idle again: Ctrl-C is the parent's, SIGTERM ends the worker (Dagster leaves its interrupt handler on SIGTERM).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
