"""`aya sql`: views per table asset, lineage tables, and a connection that can neither write nor wander."""

import hashlib
import os

import dagster as dg
import duckdb
import pytest

from aya_assets.cli import main as cli
from aya_assets.catalog.refresh import refresh_catalog
from aya_assets.catalog.sql import QueryLimits, SqlLimitHit, SqlRefused, open_query_connection, run_query
from aya_assets.definitions import build_definitions


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """Three partitions materialized once for the module; every test only reads."""
    home = tmp_path_factory.mktemp("aya_home")
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        mp.setenv("AYA_HOME", str(home))
        defs = build_definitions()
        for lang in ("en", "hi", "zh"):
            dg.materialize(defs.assets, partition_key=lang, instance=instance, resources=defs.resources,
                           selection=["prompts"])
        warehouse = home / "data" / "warehouse"
        yield refresh_catalog(home / "data" / "aya.duckdb", warehouse, instance, defs), warehouse


def listing(root) -> dict:
    """Every file under `root` with its bytes' hash: what a refused statement must leave exactly as it was."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_views_and_lineage_tables(catalog):
    db, warehouse = catalog
    counts = run_query(db, warehouse, "SELECT language, partition, count(*) AS n FROM prompts GROUP BY ALL ORDER BY 1")
    assert counts.rows() == [("en", "en", 324), ("hi", "hi", 324), ("zh", "zh", 324)]  # 300 numbers + 24 free text
    mats = run_query(db, warehouse, "SELECT asset, partition, run_id, job, code_version FROM materializations ORDER BY 2")
    assert mats["partition"].to_list() == ["en", "hi", "zh"]
    assert set(mats["job"]) == {"__ephemeral_asset_job__"}  # dg.materialize's; `aya materialize` runs name their step
    code_version = build_definitions().get_assets_def("prompts").code_versions_by_key[dg.AssetKey("prompts")]
    assert set(mats["code_version"]) == {code_version} and mats["run_id"].n_unique() == 3
    assert run_query(db, warehouse, "SELECT count(*) FROM asset_deps").item() >= 0
    # The partition column filters like any other, and other DuckDB clients see the same views in the file.
    assert run_query(db, warehouse, "SELECT count(*) FROM prompts WHERE partition = 'hi'").item() == 324
    with duckdb.connect(str(db), read_only=True) as other:
        assert other.execute("SELECT count(*) FROM prompts").fetchone() == (972,)


def hostile(warehouse) -> list[str]:
    inside, elsewhere = warehouse / "zz.parquet", warehouse.parents[1] / "zz.parquet"
    return [
        f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{inside}'",
        f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{warehouse / 'prompts' / 'en.parquet'}'",
        f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{elsewhere}'",
        f"EXPLAIN COPY (SELECT 1) TO '{inside}'",
        f"SELECT 1; COPY (SELECT 1) TO '{inside}'",
        f"COPY (SELECT 1) TO '{inside}'",
        "COPY materializations TO '/tmp/aya_leak.csv'",
        f"ATTACH '{warehouse.parent / 'new.duckdb'}' AS other",
        "INSTALL httpfs",
        "LOAD httpfs",
        "CREATE TEMP TABLE spill AS SELECT range, repeat('x', 1000) AS pad FROM range(10000000)",
        "CREATE TABLE x AS SELECT 1",
        "INSERT INTO materializations VALUES ('a','b','c',now(),'d','e', '{}')",
        "UPDATE materializations SET asset = 'x'",
        "DELETE FROM materializations",
        "DROP VIEW prompts",
        "SET memory_limit = '100GB'",
        "SET enable_external_access = true",
        "SET allowed_directories = ['/']",
        "RESET lock_configuration",
        "PRAGMA enable_profiling",
        f"EXPORT DATABASE '{warehouse.parent / 'export'}'",
        "CHECKPOINT",
        "SELECT 1; DROP VIEW prompts",
        "CALL pragma_version()",
        f"SELECT * FROM read_parquet('{warehouse}/prompts/*.parquet')",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM read_blob('/etc/hostname')",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM duckdb_extensions()",
    ]


def test_every_write_or_file_access_is_refused_and_nothing_changes(catalog):
    db, warehouse = catalog
    data = warehouse.parent
    before = listing(data)
    for query in hostile(warehouse):
        with pytest.raises(SqlRefused, match="refused|read-only"):
            run_query(db, warehouse, query)
    assert listing(data) == before  # the catalog file included: no user query writes it
    assert not (data.parent / "zz.parquet").exists()


def test_the_connection_itself_cannot_write_without_the_statement_filter(catalog):
    """By construction: the same statements executed straight on the locked connection fail in DuckDB."""
    db, warehouse = catalog
    before = listing(warehouse.parent)
    con = open_query_connection(db, warehouse, QueryLimits())
    try:
        for query in [f"COPY (SELECT 1) TO '{warehouse / 'zz.parquet'}'",
                      f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{warehouse / 'prompts' / 'en.parquet'}'",
                      f"ATTACH '{warehouse.parent / 'new.duckdb'}'", "INSTALL httpfs", "LOAD httpfs",
                      "SET enable_external_access = true", "SET memory_limit = '100GB'", "SET temp_directory = '/tmp'"]:
            with pytest.raises(duckdb.Error, match="(?i)permission|disabled|locked"):
                con.execute(query)
    finally:
        con.close()
    assert listing(warehouse.parent) == before


def test_the_timeout_and_the_memory_limit_fire(catalog):
    db, warehouse = catalog
    with pytest.raises(SqlLimitHit, match=r"ran past 0\.5 s.*--timeout"):
        run_query(db, warehouse, "SELECT count(*) FROM range(1000000000) a, range(1000000) b",
                  QueryLimits(timeout_s=0.5))
    with pytest.raises(SqlLimitHit, match="more than 100MB.*--memory-limit"):
        run_query(db, warehouse, "SELECT list(range) FROM range(200000000)", QueryLimits(memory_limit="100MB"))
    settings = run_query(db, warehouse, "SELECT current_setting('threads') AS t, current_setting('temp_directory') AS d")
    assert 1 <= settings["t"].item() <= min(8, os.cpu_count()) and settings["d"].item() == ""


def test_cli_exit_codes(catalog, capsys, monkeypatch):
    monkeypatch.setenv("AYA_HOME", str(catalog[0].parents[1]))
    assert cli.main(["sql", "select count(*) as n from prompts", "--csv"]) == 0
    assert capsys.readouterr().out.strip().splitlines() == ["n", "972"]
    assert cli.main(["sql", "DELETE FROM materializations"]) == 2
    assert "read-only" in capsys.readouterr().err
    assert cli.main(["sql", "select * from no_such_table"]) == 1
    assert cli.main(["sql", "--timeout", "0.3", "SELECT count(*) FROM range(1000000000) a, range(1000000) b"]) == 1
    assert "ran past 0.3 s" in capsys.readouterr().err


def test_aya_home_moves_the_instance_and_an_unchanged_catalog_is_not_rebuilt(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AYA_HOME", str(tmp_path))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    checkout_instance = listing(cli.paths.PACKAGE_ROOT / "data" / "dagster") if (cli.paths.PACKAGE_ROOT / "data" / "dagster").exists() else {}
    assert cli.main(["materialize", "--select", "prompts"]) == 0
    capsys.readouterr()
    # The runs are recorded beside the data, not in the checkout's instance.
    home = tmp_path / "data" / "dagster"
    with cli.paths.dagster_home(home), dg.DagsterInstance.from_config(str(home)) as instance:
        assert len(instance.get_runs()) == 1
    assert "DAGSTER_HOME" not in os.environ
    if checkout_instance:
        assert listing(cli.paths.PACKAGE_ROOT / "data" / "dagster") == checkout_instance
    db = tmp_path / "data" / "aya.duckdb"
    built = db.stat().st_mtime_ns
    assert cli.main(["sql", "select count(*) from prompts", "--csv"]) == 0
    assert cli.main(["sql", "select count(*) from materializations", "--csv"]) == 0
    assert db.stat().st_mtime_ns == built  # nothing changed since materialize refreshed it: no rebuild
    assert capsys.readouterr().out.split() == ["count_star()", "7452", "count_star()", "23"]
    (tmp_path / "data" / "warehouse" / "prompts" / "de.parquet").touch()
    assert cli.main(["sql", "select 1"]) == 0
    assert db.stat().st_mtime_ns != built  # the warehouse changed: refreshed


@pytest.mark.parametrize("query, tables", [
    ("SELECT * FROM prompts", {"prompts"}),
    ("WITH x AS (SELECT * FROM main.prompts) SELECT * FROM x, materializations", {"prompts", "materializations"}),
    ("SELECT 1 WHERE 1 IN (SELECT 1 FROM teacher_wins)", {"teacher_wins"}),
    ("SELEC nonsense", None),  # DuckDB cannot tell: every view is registered, and the query fails on its own
])
def test_only_the_tables_a_query_names_are_registered(query, tables):
    from aya_assets.catalog.sql import referenced_tables

    assert referenced_tables(query) == tables
