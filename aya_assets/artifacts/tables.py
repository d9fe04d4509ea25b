"""The warehouse: one Parquet file per asset partition, written atomically, read back as Polars.

Hand-written because dagster-polars' IO manager refuses multi-partition outputs, and a single-run
backfill over all 23 languages is how this pipeline is meant to be driven.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
from tabulate import tabulate

from aya_assets.artifacts.atomic import atomic_file

PARTITION_COLUMN = "aya/partition_column"  # definition-metadata key naming the column that holds the partition
UNPARTITIONED = "all"


def atomic_write_parquet(df: pl.DataFrame, path: Path) -> Path:
    """Write to a temp file beside `path`, then rename: readers never see half a file."""
    with atomic_file(path) as tmp:
        df.write_parquet(tmp)
    return path


def table_path(base_dir: Path, asset_key: dg.AssetKey, partition: str | None) -> Path:
    return base_dir.joinpath(*asset_key.path) / f"{partition or UNPARTITIONED}.parquet"


def split_by_partition(df: pl.DataFrame, column: str, keys: list[str]) -> dict[str, pl.DataFrame]:
    """One frame per partition key (empty where the key has no rows); rows outside `keys` are an error."""
    if len(keys) == 1 and column not in df.columns:
        return {keys[0]: df}
    if column not in df.columns:
        raise ValueError(f"output spans partitions {keys} but has no {column!r} column to split by")
    stray = sorted(set(df[column].unique().to_list()) - set(keys))
    if stray:
        raise ValueError(f"output has rows for {column}={stray}, outside the partitions being written {keys}")
    return {key: df.filter(pl.col(column) == key) for key in keys}


def _cell(value, width: int = 60) -> str:
    text = str(value).replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def markdown_table(df: pl.DataFrame, rows: int = 5) -> str:
    head = df.head(rows)
    return tabulate([[_cell(v) for v in row] for row in head.rows()], headers=head.columns, tablefmt="github")


def table_metadata(df: pl.DataFrame, count_by: str | None = None) -> dict[str, dg.MetadataValue]:
    """Row count, column schema, a Markdown preview and (optionally) counts per language or cluster."""
    meta: dict[str, dg.MetadataValue] = {
        "dagster/row_count": dg.MetadataValue.int(df.height),
        "dagster/column_schema": dg.MetadataValue.table_schema(
            dg.TableSchema(columns=[dg.TableColumn(name, str(dtype)) for name, dtype in df.schema.items()])
        ),
        "preview": dg.MetadataValue.md(markdown_table(df)),
    }
    if count_by and count_by in df.columns and df.height:
        counts = df.group_by(count_by).len().sort(count_by)
        meta[f"rows_per_{count_by}"] = dg.MetadataValue.md(markdown_table(counts, rows=counts.height))
    return meta


def add_partition_metadata(context: dg.OutputContext, partition: str | None, meta: dict) -> None:
    """Metadata for the materialization of one partition of an output (or of the whole output, unpartitioned)."""
    if partition is None or len(context.asset_partition_keys) == 1:
        context.add_output_metadata(meta)
    else:
        # dagster 1.13: OutputContext.add_output_metadata lands on every partition of a multi-partition output, and it
        # has no partition argument; the step context's add_asset_metadata(partition_key=) is the one that
        # AssetExecutionContext.add_asset_metadata calls, and its metadata reaches only that partition's event.
        context.step_context.add_asset_metadata(meta, asset_key=context.asset_key, partition_key=partition)


def stored_partitions(base_dir: Path, asset_key: dg.AssetKey, keys: list[str]) -> list[str]:
    """The keys among `keys` whose table is in the warehouse."""
    return [key for key in keys if table_path(base_dir, asset_key, key).is_file()]


def read_partitions(base_dir: Path, asset_key: dg.AssetKey, keys: list[str | None]) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(table_path(base_dir, asset_key, key)) for key in keys], how="diagonal_relaxed")


class WarehouseIOManager(dg.ConfigurableIOManager):
    """Stores Polars frames as data/warehouse/<asset>/<partition>.parquet."""

    base_dir: str

    @property
    def _base(self) -> Path:
        return Path(self.base_dir)

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame) -> None:
        if obj is None:
            return
        column = (context.definition_metadata or {}).get(PARTITION_COLUMN, "language")
        if context.has_asset_partitions:
            parts = split_by_partition(obj, column, list(context.asset_partition_keys))
        else:
            parts = {None: obj}
        for key, frame in parts.items():
            path = atomic_write_parquet(frame, table_path(self._base, context.asset_key, key))
            meta = table_metadata(frame, count_by=None if key else column) | {"path": dg.MetadataValue.path(str(path))}
            add_partition_metadata(context, key, meta)

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        files = [table_path(self._base, context.asset_key, key) for key in keys]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise FileNotFoundError(
                f"{context.asset_key.to_user_string()}: not materialized yet for {len(missing)} partition(s): "
                + ", ".join(missing[:5])
            )
        return read_partitions(self._base, context.asset_key, keys)
