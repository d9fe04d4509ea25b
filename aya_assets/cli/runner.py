"""Materialize the whole graph (or a selection) in-process, in dependency order.

Language-partitioned assets run as single-run backfills over all their partitions (the partition-range
tags); assets partitioned by teacher, cluster or stage run once per partition. Each run is of its group's named
job (`models`, `sft`, `online_1`, ...). This is what `make demo` and the end-to-end tests do; the UI and
`dagster asset backfill` launch the same runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from dagster._core.events import DagsterEventType

from aya_assets.console import STEP, StepLine
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG


STEP_TAG = "aya/step"  # which step of `aya materialize` a run was: its last duration estimates the next


def _single_run(node) -> bool:
    policy = node.backfill_policy
    return policy is not None and policy.max_partitions_per_run is None


def layers(defs: dg.Definitions, selection: list[dg.AssetKey] | None = None) -> list[list[dg.AssetKey]]:
    """Selected asset keys in dependency order, grouped into runs of consecutive keys sharing a partitioning."""
    graph = defs.resolve_asset_graph()
    keys = [k for k in graph.toposorted_asset_keys if graph.get(k).is_materializable]
    if selection is not None:
        keys = [k for k in keys if k in set(selection)]
    out: list[list[dg.AssetKey]] = []
    for key in keys:
        node = graph.get(key)
        if out:
            last = graph.get(out[-1][0])
            # Unpartitioned and single-run-backfill assets of one partitioning can share a run with their upstreams.
            if last.partitions_def == node.partitions_def and (node.partitions_def is None or _single_run(node) and _single_run(last)):
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


def plan(defs: dg.Definitions, selection: list[dg.AssetKey] | None = None) -> list[Step]:
    graph = defs.resolve_asset_graph()
    steps = []
    for layer in layers(defs, selection):
        node = graph.get(layer[0])
        names = ", ".join(k.to_user_string() for k in layer)
        if node.partitions_def is None:
            steps.append(Step(layer, names, {}))
            continue
        keys = node.partitions_def.get_partition_keys()
        if _single_run(node):
            steps.append(Step(layer, names, {ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]},
                              note=f" ({len(keys)} partitions, one run)"))
        else:
            steps += [Step(layer, f"{names} [{key}]", {}, key) for key in keys]
    return steps


def job(defs: dg.Definitions, step: Step):
    """The named job that holds the step's assets (definitions.stage_jobs), so the run is named after its recipe step;
    Dagster's implicit asset job for definitions without one (a test's hand-built graph)."""
    graph = defs.resolve_asset_graph()
    for candidate in defs.jobs or []:
        if isinstance(candidate, UnresolvedAssetJobDefinition) and set(step.keys) <= candidate.selection.resolve(graph):
            return defs.resolve_job_def(candidate.name)
    return defs.resolve_implicit_global_asset_job_def()


def _last_seconds(instance: dg.DagsterInstance, label: str) -> float | None:
    """How long this step's latest successful run took: the estimate for the next one."""
    records = instance.get_run_records(dg.RunsFilter(tags={STEP_TAG: label}, statuses=[dg.DagsterRunStatus.SUCCESS]),
                                       limit=1)
    if not records or records[0].start_time is None or records[0].end_time is None:
        return None
    return records[0].end_time - records[0].start_time


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def materialize_all(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    selection: list[dg.AssetKey] | None = None,
    line: StepLine = STEP,
    verbose: bool = False,
) -> list[dg.ExecuteInProcessResult]:
    """Every step in order, one console line each ([k/N], its time, elapsed, what remains by the last runs' times);
    Dagster's own event log goes to the instance (the run page), and to the console only when `verbose`."""
    run_config = {} if verbose else {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    steps = plan(defs, selection)
    previous = [_last_seconds(instance, step.label) for step in steps]
    results, started = [], time.perf_counter()
    for k, step in enumerate(steps, 1):
        line.begin(f"[{k}/{len(steps)}] {step.label}{step.note}")
        step_started = time.perf_counter()
        try:
            results.append(job(defs, step).execute_in_process(
                asset_selection=step.keys, instance=instance, tags={**step.tags, STEP_TAG: step.label},
                partition_key=step.partition_key, run_config=run_config, raise_on_error=True))
        except Exception as exc:
            latest = instance.get_runs(limit=1)
            run_id = latest[0].run_id if latest else None
            raise MaterializeFailed(step.label, run_id, failed_checks(instance, run_id) if run_id else []) from exc
        done = time.perf_counter() - started
        # Steps never run before are guessed at the mean of this run's steps so far, and the line says so.
        mean, unknown = done / k, any(s is None for s in previous[k:])
        left = sum(mean if s is None else s for s in previous[k:])
        estimate = f", about {_clock(left)} left" + (" at this run's pace so far" if unknown else " by the last run")
        line.end(f"{time.perf_counter() - step_started:.1f} s, elapsed {_clock(done)}" + (estimate if k < len(steps) else ""))
    return results
