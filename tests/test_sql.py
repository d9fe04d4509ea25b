"""`aya sql`: views per table asset, lineage tables, and a connection that cannot write or wander."""

import dagster as dg
import pytest

from aya_assets import cli
from aya_assets.catalog.sql import SqlRefused, refresh_catalog, run_query
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


def test_views_and_lineage_tables(catalog):
    db, warehouse = catalog
    counts = run_query(db, warehouse, "SELECT language, partition, count(*) AS n FROM prompts GROUP BY ALL ORDER BY 1")
    assert counts.rows() == [("en", "en", 24), ("hi", "hi", 24), ("zh", "zh", 24)]
    mats = run_query(db, warehouse, "SELECT asset, partition, run_id, code_version FROM materializations ORDER BY 2")
    assert mats["partition"].to_list() == ["en", "hi", "zh"]
    assert set(mats["code_version"]) == {"1"} and mats["run_id"].n_unique() == 3
    assert run_query(db, warehouse, "SELECT count(*) FROM asset_deps").item() >= 0


HOSTILE = [
    "CREATE TABLE x AS SELECT 1",
    "INSERT INTO materializations VALUES ('a','b','c',now(),'d','e')",
    "UPDATE materializations SET asset = 'x'",
    "DELETE FROM materializations",
    "DROP VIEW prompts",
    "COPY materializations TO '/tmp/aya_leak.csv'",
    "ATTACH '/tmp/aya_other.duckdb' AS other",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "SET allowed_directories = ['/']",
    "PRAGMA enable_profiling",
    "EXPORT DATABASE '/tmp/aya_export'",
    "CHECKPOINT",
    "SELECT 1; DROP VIEW prompts",
    "CALL pragma_version()",
]


@pytest.mark.parametrize("query", HOSTILE)
def test_write_and_config_statements_are_refused(catalog, query):
    db, warehouse = catalog
    with pytest.raises(SqlRefused, match="not allowed"):
        run_query(db, warehouse, query)


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM read_blob('/etc/hostname')",
        "SELECT * FROM read_parquet('/tmp/*.parquet')",
        "SELECT * FROM glob('/etc/*')",
    ],
)
def test_file_functions_are_confined_to_the_warehouse(catalog, query):
    db, warehouse = catalog
    with pytest.raises(Exception, match="(?i)permission|disabled"):
        run_query(db, warehouse, query)


def test_reading_the_warehouse_directly_is_allowed(catalog):
    db, warehouse = catalog
    query = f"SELECT count(*) FROM read_parquet('{warehouse}/prompts/*.parquet')"
    assert run_query(db, warehouse, query).item() == 72


def test_cli_exit_codes(catalog, capsys, monkeypatch):
    monkeypatch.setenv("AYA_HOME", str(catalog[0].parents[1]))
    assert cli.main(["sql", "select count(*) as n from prompts", "--csv"]) == 0
    assert capsys.readouterr().out.strip().splitlines() == ["n", "72"]
    assert cli.main(["sql", "DELETE FROM materializations"]) == 2
    assert "read-only" in capsys.readouterr().err
    assert cli.main(["sql", "select * from no_such_table"]) == 1
