"""What an artifact was made from: upstream assets, partitions and runs, for model cards and metadata."""

from __future__ import annotations

import dagster as dg
from dagster_shared.check import CheckError

# Materialization metadata that identifies a checkpoint (models/assets.py, checkpoints.report_metadata): a card names
# the checkpoint it started from by these, not only by the run that made it.
CHECKPOINT_KEYS = ("path", "revision", "content_hash")


def consumed_partitions(context: dg.AssetExecutionContext, key: dg.AssetKey) -> list[str] | None:
    """The partitions of upstream `key` this step reads (its partition mapping applied), None for all or unpartitioned."""
    names = [name for name, k in context.assets_def.keys_by_input_name.items() if k == key]
    if not names:
        return None
    try:
        return sorted(context.asset_partition_keys_for_input(names[0]))
    except CheckError:  # dagster 1.13's answer for an unpartitioned upstream (dg.materialize sets no repository to ask)
        return None


def upstream_runs(context: dg.AssetExecutionContext, keys: list[dg.AssetKey]) -> dict[str, str]:
    """For each upstream asset: the partitions this step read from it, the runs that last wrote them and, for a
    checkpoint, its path and content hash (a cluster's DPO names its 8 languages, not all 23 that exist)."""
    out = {}
    for key in keys:
        wanted = consumed_partitions(context, key)
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=wanted), limit=1000
        ).records  # newest first
        latest: dict[str | None, dg.AssetMaterialization] = {}
        runs: dict[str | None, str] = {}
        for record in records:
            partition = record.asset_materialization.partition
            if partition not in latest:
                latest[partition], runs[partition] = record.asset_materialization, record.run_id
        partitions = sorted(p for p in latest if p)
        parts = [] if None in latest and not partitions else [f"partitions {','.join(partitions) or '-'}"]
        parts.append(f"runs {','.join(sorted({r[:8] for r in runs.values()})) or 'none'}")
        parts += checkpoint_identity(latest)
        out[key.to_user_string()] = "; ".join(parts)
    return out


def checkpoint_identity(latest: dict[str | None, dg.AssetMaterialization]) -> list[str]:
    """`path …`, `revision …`, `content_hash …` of a checkpoint asset's latest materialization (per partition)."""
    found = []
    for name in CHECKPOINT_KEYS:
        values = {p: m.metadata[name].value for p, m in latest.items() if "content_hash" in m.metadata and name in m.metadata}
        if len(values) == 1 and None in values:
            found.append(f"{name} {values[None]}")
        elif values:
            found.append(f"{name} " + ", ".join(f"{p}={v}" for p, v in sorted(values.items())))  # one per partition
    return found
