"""The catalog refresh: the DuckDB file any SQL client can open (a view per table asset, lineage tables), written
only here, beside a temp name and then renamed."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl

from aya_assets.artifacts.atomic import atomic_file

MATERIALIZATIONS_SCHEMA = {
    "asset": pl.String,
    "partition": pl.String,
    "run_id": pl.String,
    "job": pl.String,  # the run's job: the recipe step (models_job, sft_cluster_job, ...)
    "timestamp": pl.Datetime("us", "UTC"),
    "code_version": pl.String,
    "data_version": pl.String,
    "metadata": pl.String,  # the materialization's scalar metadata (row counts, losses, margins…) as JSON
}


def view_name(asset_key: dg.AssetKey) -> str:
    return "__".join(asset_key.path)


def asset_deps(defs: dg.Definitions) -> pl.DataFrame:
    graph = defs.resolve_asset_graph()
    rows = [
        {"asset": key.to_user_string(), "upstream_asset": parent.to_user_string()}
        for key in graph.get_all_asset_keys()
        for parent in sorted(graph.get(key).parent_keys)
    ]
    return pl.DataFrame(rows, schema={"asset": pl.String, "upstream_asset": pl.String}).sort("asset", "upstream_asset")


def scalar_metadata(metadata: dict) -> dict:
    """Numbers, text and paths from a materialization's metadata (charts and tables stay in the UI)."""
    out = {}
    for key, entry in metadata.items():
        value = getattr(entry, "value", entry)
        if isinstance(value, (int, float, str, bool)) and not (isinstance(value, str) and value.startswith("![")):
            out[key] = value
    return out


def materializations(instance: dg.DagsterInstance, defs: dg.Definitions) -> pl.DataFrame:
    rows = []
    for key in defs.resolve_asset_graph().get_all_asset_keys():
        cursor = None
        while True:
            result = instance.fetch_materializations(key, limit=1000, cursor=cursor)
            for record in result.records:
                mat = record.asset_materialization
                rows.append(
                    {
                        "asset": key.to_user_string(),
                        "partition": mat.partition,
                        "run_id": record.run_id,
                        "job": None,
                        "timestamp": record.timestamp,
                        "code_version": mat.tags.get("dagster/code_version"),
                        "data_version": mat.tags.get("dagster/data_version"),
                        "metadata": json.dumps(scalar_metadata(mat.metadata)),
                    }
                )
            if not result.has_more:
                break
            cursor = result.cursor
    run_ids = sorted({row["run_id"] for row in rows})
    jobs = {r.dagster_run.run_id: r.dagster_run.job_name for r in instance.get_run_records(dg.RunsFilter(run_ids=run_ids))} if run_ids else {}
    for row in rows:
        row["job"] = jobs.get(row["run_id"])
    frame = pl.DataFrame(rows, schema={**MATERIALIZATIONS_SCHEMA, "timestamp": pl.Float64})
    micros = (pl.col("timestamp") * 1_000_000).cast(pl.Int64)
    return frame.with_columns(timestamp=pl.from_epoch(micros, time_unit="us").dt.replace_time_zone("UTC"))


def refresh_catalog(db_path: Path, warehouse: Path, instance: dg.DagsterInstance, defs: dg.Definitions,
                    fingerprint: str | None = None) -> Path:
    """Rebuild the DuckDB file beside a temp name, then rename: a SQL client never sees half a catalog.

    `fingerprint` (catalog.sql.fingerprint of the inputs, taken before reading them) lets `aya sql` skip the next
    refresh while nothing changed."""
    tables = []
    with atomic_file(db_path) as tmp:
        con = duckdb.connect(str(tmp))
        for key in defs.resolve_asset_graph().get_all_asset_keys():
            folder = warehouse.joinpath(*key.path)
            if not any(folder.glob("*.parquet")):
                continue
            tables.append({"view": view_name(key), "folder": str(folder.relative_to(warehouse))})
            pattern = str(folder / "*.parquet").replace("'", "''")
            con.execute(
                f'CREATE VIEW "{view_name(key)}" AS SELECT * EXCLUDE (filename), '
                f"regexp_extract(filename, '([^/]+)\\.parquet$', 1) AS partition "
                f"FROM read_parquet('{pattern}', filename = true, union_by_name = true)"
            )
        mats, deps = materializations(instance, defs), asset_deps(defs)
        catalog_tables = pl.DataFrame(tables, schema={"view": pl.String, "folder": pl.String})
        con.execute("CREATE TABLE materializations AS SELECT * REPLACE (metadata::JSON AS metadata) FROM mats")
        con.execute("CREATE TABLE asset_deps AS SELECT * FROM deps")
        # The views' folders relative to the warehouse, for `aya sql`, which reads them without read_parquet.
        con.execute("CREATE TABLE catalog_tables AS SELECT * FROM catalog_tables")
        con.execute("CREATE TABLE catalog_info AS SELECT ?::VARCHAR AS fingerprint, now() AS refreshed_at",
                    [fingerprint])
        con.close()
    return db_path
