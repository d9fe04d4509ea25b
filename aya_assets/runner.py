"""Materialize the whole graph (or a selection) in-process: one run per layer of equally-partitioned assets.

Each layer runs as a single-run backfill over all of its partitions (the partition-range tags), which is
what `make demo` and the end-to-end test do; the UI and `dagster asset backfill` do the same per asset.
"""

from __future__ import annotations

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG


def layers(defs: dg.Definitions, selection: list[dg.AssetKey] | None = None) -> list[list[dg.AssetKey]]:
    """Selected asset keys in dependency order, grouped into runs of consecutive keys sharing a partitioning."""
    graph = defs.resolve_asset_graph()
    keys = [k for k in graph.toposorted_asset_keys if graph.get(k).is_materializable]
    if selection is not None:
        keys = [k for k in keys if k in set(selection)]
    out: list[list[dg.AssetKey]] = []
    for key in keys:
        pdef = graph.get(key).partitions_def
        if out and graph.get(out[-1][0]).partitions_def == pdef:
            out[-1].append(key)
        else:
            out.append([key])
    return out


def materialize_all(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    selection: list[dg.AssetKey] | None = None,
    log=print,
) -> list[dg.ExecuteInProcessResult]:
    graph = defs.resolve_asset_graph()
    assets = [*(defs.assets or []), *(defs.asset_checks or [])]
    results = []
    for layer in layers(defs, selection):
        pdef = graph.get(layer[0]).partitions_def
        tags = {}
        if pdef is not None:
            partition_keys = pdef.get_partition_keys()
            tags = {ASSET_PARTITION_RANGE_START_TAG: partition_keys[0], ASSET_PARTITION_RANGE_END_TAG: partition_keys[-1]}
        log(f"materializing {', '.join(k.to_user_string() for k in layer)}" + (f" ({len(partition_keys)} partitions)" if pdef else ""))
        results.append(
            dg.materialize(
                assets, selection=layer, instance=instance, resources=defs.resources, tags=tags, raise_on_error=True
            )
        )
    return results
