"""Materialize the whole graph (or a selection) in-process, in dependency order.

Language-partitioned assets run as single-run backfills over all their partitions (the partition-range
tags); assets partitioned by teacher, cluster or stage run once per partition. This is what `make demo`
and the end-to-end tests do; the UI and `dagster asset backfill` launch the same runs.
"""

from __future__ import annotations

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG


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

    def __init__(self, where: str, run_id: str | None):
        super().__init__(where)
        self.where, self.run_id = where, run_id


def materialize_all(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    selection: list[dg.AssetKey] | None = None,
    log=print,
) -> list[dg.ExecuteInProcessResult]:
    graph = defs.resolve_asset_graph()
    assets = [*(defs.assets or []), *(defs.asset_checks or [])]
    results = []

    def run(layer, tags, partition_key=None):
        try:
            results.append(dg.materialize(assets, selection=layer, instance=instance, resources=defs.resources,
                                          tags=tags, partition_key=partition_key, raise_on_error=True))
        except Exception as exc:
            where = ", ".join(k.to_user_string() for k in layer) + (f" [{partition_key}]" if partition_key else "")
            latest = instance.get_runs(limit=1)
            raise MaterializeFailed(where, latest[0].run_id if latest else None) from exc

    for layer in layers(defs, selection):
        node = graph.get(layer[0])
        names = ", ".join(k.to_user_string() for k in layer)
        if node.partitions_def is None:
            log(f"materializing {names}")
            run(layer, {})
            continue
        keys = node.partitions_def.get_partition_keys()
        if _single_run(node):
            log(f"materializing {names} ({len(keys)} partitions, one run)")
            run(layer, {ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]})
        else:
            for key in keys:
                log(f"materializing {names} [{key}]")
                run(layer, {}, partition_key=key)
    return results
