"""Materialization metadata per partition: a single-run backfill reports each partition's own rows, schema and preview."""

import json

import dagster as dg
import polars as pl
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from aya_assets.definitions import build_definitions
from aya_assets.artifacts.tables import PARTITION_COLUMN, WarehouseIOManager, markdown_table


def backfill_tags(keys: list[str]) -> dict[str, str]:
    return {ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]}


def latest_metadata(instance, asset: str, partition: str) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def assert_describes(meta: dict, file) -> None:
    """The materialization's metadata is that of the table in `file`, not of the whole run's output."""
    table = pl.read_parquet(file)
    assert meta["dagster/row_count"] == table.height
    assert meta["preview"] == markdown_table(table)
    assert [(c.name, c.type) for c in meta["dagster/column_schema"].columns] == [(n, str(t)) for n, t in table.schema.items()]
    assert meta["path"] == str(file)


def test_single_run_backfill_of_prompts_reports_each_partition(aya_home, instance, write_profile, tmp_path):
    persian = tmp_path / "fa.jsonl"  # three more rows for fa, so that its row count differs from its neighbours'
    persian.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in
                               ["پایتخت ایران کجاست؟", "چگونه نان بپزیم؟", "یک شعر کوتاه درباره باران بنویس."]), encoding="utf-8")
    profile = write_profile(prompts={"sources": [{"kind": "seed"},
                                                 {"kind": "jsonl", "name": "extra_fa", "path": str(persian), "language": "fa"}]})
    defs = build_definitions(profile)
    keys = ["ko", "fa", "pl", "pt"]  # consecutive in the language partitions
    result = dg.materialize(defs.assets, selection=["prompts"], instance=instance, resources=defs.resources,
                            tags=backfill_tags(keys))
    assert result.success and len({m.partition for m in result.asset_materializations_for_node("prompts")}) == 4
    warehouse = aya_home / "data" / "warehouse" / "prompts"
    for key in keys:
        meta = latest_metadata(instance, "prompts", key)
        assert_describes(meta, warehouse / f"{key}.parquet")  # the preview is of that file, which holds only `key`
        assert set(pl.read_parquet(warehouse / f"{key}.parquet")["language"]) == {key}
        assert meta["dagster/row_count"] == (24 + 3 if key == "fa" else 24)
        assert meta["sources"] == ("extra_fa, seed" if key == "fa" else "seed")
        assert meta["skipped_over_max_chars"] == 0


clusters = dg.StaticPartitionsDefinition(["north", "south", "east"])


@dg.asset(partitions_def=clusters, backfill_policy=dg.BackfillPolicy.single_run(), metadata={PARTITION_COLUMN: "cluster"})
def cluster_table(context: dg.AssetExecutionContext) -> pl.DataFrame:
    sizes = {"north": 1, "south": 2, "east": 3}
    return pl.DataFrame({"cluster": [k for k in context.partition_keys for _ in range(sizes[k])],
                         "value": list(range(sum(sizes[k] for k in context.partition_keys)))})


def test_warehouse_reports_each_partition_of_any_single_run_backfill(tmp_path, instance):
    result = dg.materialize([cluster_table], instance=instance, tags=backfill_tags(clusters.get_partition_keys()),
                            resources={"io_manager": WarehouseIOManager(base_dir=str(tmp_path / "warehouse"))})
    assert result.success
    for key, rows in {"north": 1, "south": 2, "east": 3}.items():
        meta = latest_metadata(instance, "cluster_table", key)
        assert_describes(meta, tmp_path / "warehouse" / "cluster_table" / f"{key}.parquet")
        assert meta["dagster/row_count"] == rows


def test_single_partition_and_unpartitioned_outputs_keep_their_metadata(tmp_path, instance):
    @dg.asset
    def whole_table() -> pl.DataFrame:
        return pl.DataFrame({"language": ["de", "de", "ja"], "value": [1, 2, 3]})

    io = {"io_manager": WarehouseIOManager(base_dir=str(tmp_path / "warehouse"))}
    assert dg.materialize([whole_table], instance=instance, resources=io).success
    assert dg.materialize([cluster_table], instance=instance, resources=io, partition_key="south").success
    whole = instance.fetch_materializations(dg.AssetKey("whole_table"), limit=1).records[0].asset_materialization
    assert whole.metadata["dagster/row_count"].value == 3 and "rows_per_language" in whole.metadata
    assert_describes(latest_metadata(instance, "cluster_table", "south"), tmp_path / "warehouse" / "cluster_table" / "south.parquet")
