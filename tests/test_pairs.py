"""Preference pairs per cluster: the margin check judges each cluster, and a cluster without pairs is skipped, not fatal."""

import json
import shutil

import dagster as dg
import polars as pl
import pytest
import yaml

from aya_assets.checkpoints.build import report_metadata
from aya_assets.checkpoints.io import CHECKPOINT_IO, Checkpoint, CheckpointIOManager
from aya_assets.checkpoints.files import content_hash
from aya_assets.merge.assets import within_run_asset
from aya_assets.partitions import per_language
from aya_assets.preference.assets import PAIRS_MARGIN, SKIPPED, dpo_asset, pairs_check, pairs_outputs
from aya_assets.preference.pairs import cluster_pairs, conversational, failing_clusters
from aya_assets.profile import load_profile
from aya_assets.stages import Recipe, Stage
from aya_assets.artifacts.store import ArtifactStore
from aya_assets.cli.runner import materialize_all
from aya_assets.artifacts.tables import WarehouseIOManager
from conftest import FAST

CLUSTERS = {"romance_germanic": ["en", "es", "fr", "de"], "slavic_greek": ["en", "es", "fr", "ru"]}


def pairs(rows: list[tuple[str, float | None]]) -> pl.DataFrame:
    """Pair rows of (language, margin), in the schema best_vs_worst writes."""
    frame = pl.DataFrame(
        {
            "prompt_id": [f"p{i}" for i in range(len(rows))],
            "language": [lang for lang, _ in rows],
            "kind": "best_vs_worst",
            "prompt_text": [f"question {i} ({lang})" for i, (lang, _) in enumerate(rows)],
            "chosen_text": "a good answer",
            "rejected_text": "bad",
            "chosen_source": "t#0",
            "rejected_source": "t#1",
            "chosen_score": 1.0,
            "rejected_score": [None if m is None else 1.0 - m for _, m in rows],
            "margin": [m for _, m in rows],
        },
        schema_overrides={"rejected_score": pl.Float64, "margin": pl.Float64},
    )
    return conversational(frame)


@pytest.mark.parametrize(
    "rows, failing",
    [
        ([("de", 0.5), ("ru", 0.4)], []),
        ([("de", 0.5), ("de", 0.7)], ["slavic_greek"]),  # 2 pairs overall, none in the Slavic cluster's languages
        ([("en", 0.5)], []),  # en feeds every cluster
        ([], ["romance_germanic", "slavic_greek"]),
        ([("de", 0.5), ("ru", -0.2), ("ru", 0.1)], ["slavic_greek"]),  # the cluster's mean margin is negative
        ([("de", None), ("ru", None)], []),  # translation pairs carry no margin
    ],
)
def test_failing_clusters_are_judged_per_cluster(rows, failing):
    assert failing_clusters(cluster_pairs(pairs(rows), CLUSTERS)) == failing


def test_cluster_pairs_counts_shared_languages_in_every_cluster():
    table = cluster_pairs(pairs([("en", 0.2), ("de", 0.4), ("ru", 0.6)]), CLUSTERS)
    assert table.rows() == [("romance_germanic", 2, pytest.approx(0.3)), ("slavic_greek", 2, pytest.approx(0.4))]


@pytest.fixture
def graph(aya_home, write_profile, ckpt, instance):
    """Stub pairs in German only, stub sft_merged and student_base, and the real DPO asset over the four clusters."""
    profile_path = write_profile(**FAST)  # the four default clusters; only romance_germanic has German
    profile = load_profile(profile_path)
    store = ArtifactStore(root=str(aya_home / "data"))

    @dg.asset(**per_language("test"), check_specs=[pairs_check("toy_pairs")])
    def toy_pairs(context: dg.AssetExecutionContext):
        table = pairs([("de", 0.5)] * 8)
        yield from pairs_outputs(context, table, "toy_pairs", profile.clusters)

    def stub(name: str, source):
        @dg.asset(name=name, io_manager_key=CHECKPOINT_IO)
        def _stub() -> dg.Output[Checkpoint]:
            out = store.models / name
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(source, out)
            return dg.Output(Checkpoint(str(out)), metadata=report_metadata(out, False, {}, name))

        return _stub

    dpo = dpo_asset(Stage("toy_dpo", "test", "cluster", "train", "sft_merged"), ["toy_pairs"], profile.training.dpo,
                    Recipe(profile), "DPO on toy pairs.")
    # Its within-run merge: these runs keep no checkpoints (no averaged stage in the recipe asks them to), so each
    # average is its run as is, with the run's record (pairs, skipped) carried on for the across-cluster weights.
    averaged = within_run_asset(Stage("toy_averaged", "test", "cluster", "merge", "toy_dpo"), profile, "Averaged.")
    defs = dg.Definitions(
        assets=[toy_pairs, stub("student_base", ckpt["base"]), stub("sft_merged", ckpt["a"]), dpo, averaged],
        resources={"store": store, CHECKPOINT_IO: CheckpointIOManager(store=store),
                   "io_manager": WarehouseIOManager(base_dir=str(store.warehouse))},
    )
    results = materialize_all(defs, instance)
    return store, results


def test_a_cluster_without_pairs_keeps_its_input_model_and_the_run_goes_on(graph, ckpt):
    store, results = graph
    assert all(r.success for r in results)
    mats = {m.partition: m for r in results for m in r.asset_materializations_for_node("toy_dpo")}
    assert len(mats) == 4 and mats["romance_germanic"].metadata["skipped"].value == "no"
    assert all(mats[c].metadata["skipped"].value == SKIPPED for c in ("slavic_greek", "mideast_indic", "east_asian"))
    skipped, trained = store.models / "toy_dpo" / "east_asian", store.models / "toy_dpo" / "romance_germanic"
    assert content_hash(skipped) != content_hash(store.models / "sft_merged")  # training_data.parquet is extra
    assert (skipped / "model.safetensors").read_bytes() == (store.models / "sft_merged" / "model.safetensors").read_bytes()
    assert (trained / "model.safetensors").read_bytes() != (store.models / "sft_merged" / "model.safetensors").read_bytes()
    assert "Skipped: no pairs; this is sft_merged unchanged." in (skipped / "README.md").read_text()
    assert '"pairs": 0' in (skipped / "aya_build.json").read_text()  # a data-proportional merge gives it weight 0
    for cluster, record in (("east_asian", {"pairs": 0, "skipped": SKIPPED}), ("romance_germanic", {"pairs": 8})):
        average = store.models / "toy_averaged" / cluster
        built = json.loads((average / "aya_build.json").read_text())
        assert {k: built.get(k) for k in record} == record and built["averaged_steps"] == []
        assert (average / "model.safetensors").read_bytes() == (store.models / "toy_dpo" / cluster / "model.safetensors").read_bytes()
    # The margin check names the cluster without pairs (a warning: the run went on).
    check = next(e for r in results for e in r.get_asset_check_evaluations() if e.check_name == PAIRS_MARGIN)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["failing_clusters"].text == "slavic_greek, mideast_indic, east_asian"
    assert check.metadata["pairs_romance_germanic"].value == 8 and check.metadata["pairs_east_asian"].value == 0


def test_the_dpo_card_lists_the_partitions_it_trained_on_and_the_base_checkpoint(graph):
    store, _ = graph
    card = (store.models / "toy_dpo" / "romance_germanic" / "README.md").read_text()
    made_from = card.split("## Made from")[1].split("## Settings")[0]
    lines = {line.split(":")[0].removeprefix("- "): line for line in made_from.strip().splitlines()}
    assert "partitions de,en,es,fr,it,nl,pt,ro;" in lines["toy_pairs"]
    base = store.models / "student_base"
    assert f"path {base}" in lines["student_base"] and f"content_hash {content_hash(base)}" in lines["student_base"]
    assert f"content_hash {content_hash(store.models / 'sft_merged')}" in lines["sft_merged"]
    settings = yaml.safe_load(card.split("```yaml\n")[1].split("```")[0])
    assert settings["reference"] == str(store.models / "sft_merged")
