"""Read-only SQL over every artifact, bounded in memory and time.

Each query runs on a fresh in-memory DuckDB connection that can open no file at all (`enable_external_access =
false`, configuration locked): the warehouse reaches it as registered Arrow datasets and the lineage tables as
in-memory copies, both set up before the lock. That is what DuckDB offers for "read these files, write nothing":
`allowed_directories` would confine paths, but it permits writes as well as reads.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

# The tables the catalog refresh writes besides the views; `aya sql` copies these into each query connection.
LINEAGE_TABLES = ("materializations", "asset_deps")
EXPLAIN = re.compile(r"^\s*EXPLAIN\s+(ANALYZE\s+)?(\([^)]*\)\s*)?", re.IGNORECASE)


class SqlRefused(ValueError):
    """The query is not a single read: exit 2."""


class SqlLimitHit(RuntimeError):
    """The query ran past its memory or time bound: exit 1."""


@dataclass(frozen=True)
class QueryLimits:
    memory_limit: str = "2GB"
    timeout_s: float = 60.0
    # Enough for scans, and never the whole of a shared box.
    threads: int = max(1, min(8, len(os.sched_getaffinity(0))))


def _stats(root: Path, pattern: str) -> list[tuple[str, int, int]]:
    if not root.is_dir():
        return []
    return sorted((str(p.relative_to(root)), st.st_size, st.st_mtime_ns)
                  for p in root.rglob(pattern) if p.is_file() and not p.name.startswith(".") for st in [p.stat()])


def fingerprint(warehouse: Path, instance_storage: Path | None, profile_file: Path, code: Path) -> str | None:
    """What the catalog is built from, by file size and mtime: the warehouse, the sqlite instance, the profile, the
    code that shapes the graph. None (always refresh) when the instance is not a sqlite directory we can stat."""
    if instance_storage is None or not instance_storage.is_dir():
        return None
    parts = [_stats(warehouse, "*.parquet"), _stats(instance_storage, "*.db*"), str(profile_file),
             profile_file.read_bytes() if profile_file.is_file() else b"", _stats(code, "*.py")]
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def stored_fingerprint(db_path: Path) -> str | None:
    if not db_path.is_file():
        return None
    try:
        with duckdb.connect(str(db_path), read_only=True) as con:
            return con.execute("SELECT fingerprint FROM catalog_info").fetchone()[0]
    except duckdb.Error:  # an older catalog without the table, or not a DuckDB file: rebuild it
        return None


def check_read_only(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """One SELECT (or EXPLAIN [ANALYZE] of one): a second line of defence behind a connection that cannot write."""
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise SqlRefused(f"cannot parse query: {exc}") from None
    if not statements:
        raise SqlRefused("empty query")
    if len(statements) > 1:
        raise SqlRefused(f"refused: {len(statements)} statements; `aya sql` runs one SELECT at a time")
    statement = statements[0]
    kind = statement.type.name
    if kind == "EXPLAIN":
        inner = EXPLAIN.sub("", statement.query, count=1)
        try:
            explained = con.extract_statements(inner)
        except duckdb.Error:
            explained = []
        kind = explained[0].type.name if len(explained) == 1 else "unparsable"
        kind = "EXPLAIN" if kind == "SELECT" else f"EXPLAIN of {kind}"
    if kind not in {"SELECT", "EXPLAIN"}:
        raise SqlRefused(f"refused: {kind} statements are not allowed; `aya sql` is read-only (SELECT only)")


def _dataset(folder: Path):
    """One Arrow dataset over a table asset's partition files, with a `partition` column from each file name."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    files = sorted(str(p) for p in folder.glob("*.parquet"))
    schema = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")
    schema = schema.append(pa.field("partition", pa.string()))
    partitions = [ds.field("partition") == Path(f).stem for f in files]
    return ds.FileSystemDataset.from_paths(files, schema=schema, format=ds.ParquetFileFormat(),
                                           filesystem=pa.fs.LocalFileSystem(), partitions=partitions)


def referenced_tables(query: str) -> set[str] | None:
    """The tables a query names (None where DuckDB cannot tell: then every view is registered)."""
    try:
        with duckdb.connect() as parser:
            return {name.split(".")[-1] for name in parser.get_table_names(query)}
    except duckdb.Error:
        return None


def open_query_connection(db_path: Path, warehouse: Path, limits: QueryLimits,
                          only: set[str] | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with the catalog's tables and the views in `only` (default: all), then locked with
    every file access off. Registering only what a query names keeps a query on a large warehouse from reading
    every partition file's schema first."""
    con = duckdb.connect(config={"memory_limit": limits.memory_limit, "threads": limits.threads,
                                 "temp_directory": ""})  # no spilling: a query past the limit fails instead of writing
    con.execute("ATTACH ? AS catalog (READ_ONLY)", [str(db_path)])
    for table in LINEAGE_TABLES:
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM catalog.main.{table}")
    views = con.execute("SELECT view, folder FROM catalog.main.catalog_tables").fetchall()
    con.execute("DETACH catalog")
    for view, folder in views:
        if (only is None or view in only) and any((warehouse / folder).glob("*.parquet")):
            con.register(view, _dataset(warehouse / folder))
    con.execute("SET python_enable_replacements = false")  # no Python variable becomes a table by its name
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def _execute(con: duckdb.DuckDBPyConnection, query: str, limits: QueryLimits) -> pl.DataFrame:
    timer = threading.Timer(limits.timeout_s, con.interrupt)
    timer.start()
    try:
        return con.sql(query).pl()
    except duckdb.InterruptException:
        raise SqlLimitHit(f"the query ran past {limits.timeout_s:g} s; narrow it (WHERE, LIMIT) "
                          f"or raise the bound (--timeout)") from None
    except duckdb.PermissionException as exc:  # the connection's own lock, behind check_read_only
        raise SqlRefused(f"refused: `aya sql` opens no file ({exc}); query the table views instead, "
                         f"e.g. SELECT * FROM prompts") from None
    except duckdb.OutOfMemoryException:
        raise SqlLimitHit(f"the query needs more than {limits.memory_limit} of memory; narrow it (WHERE, LIMIT) "
                          f"or raise the bound (--memory-limit)") from None
    finally:
        timer.cancel()


def run_query(db_path: Path, warehouse: Path, query: str, limits: QueryLimits | None = None) -> pl.DataFrame:
    limits = limits or QueryLimits()
    con = open_query_connection(db_path, warehouse, limits, referenced_tables(query))
    try:
        check_read_only(con, query)
        return _execute(con, query, limits)
    finally:
        con.close()
