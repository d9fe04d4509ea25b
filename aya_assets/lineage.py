"""What an artifact was made from: upstream assets, partitions and runs, for model cards and metadata."""

from __future__ import annotations

import dagster as dg


def upstream_runs(context: dg.AssetExecutionContext, keys: list[dg.AssetKey]) -> dict[str, str]:
    """For each upstream asset: the partitions it has and the runs that last wrote them."""
    out = {}
    for key in keys:
        latest: dict[str | None, str] = {}
        for record in context.instance.fetch_materializations(key, limit=500).records:  # newest first
            latest.setdefault(record.asset_materialization.partition, record.run_id)
        partitions = sorted(p for p in latest if p)
        runs = sorted({run[:8] for run in latest.values()})
        out[key.to_user_string()] = (
            f"partitions {','.join(partitions) if partitions else '-'}; runs {','.join(runs) if runs else 'none'}"
        )
    return out
