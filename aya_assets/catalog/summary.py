"""The short summary `make demo` prints: what was built, in numbers."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from aya_assets.catalog.sql import run_query

QUERIES = {
    "prompts per language": (
        "SELECT language, count(*) FILTER (split = 'train') AS train, count(*) FILTER (split = 'eval') AS eval "
        "FROM prompts GROUP BY 1 ORDER BY 1"
    ),
}


def summary(db: Path, warehouse: Path) -> str:
    parts = []
    for title, query in QUERIES.items():
        try:
            frame = run_query(db, warehouse, query)
        except Exception as exc:  # a stage not materialized yet has no view; say so instead of failing the demo
            parts.append(f"{title}: not available ({exc})")
            continue
        with pl.Config(tbl_rows=100, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
            parts.append(f"{title}:\n{frame}")
    return "\n\n".join(parts)
