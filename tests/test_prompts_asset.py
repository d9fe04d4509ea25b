"""The prompts asset in real Dagster runs: a few partitions, a single-run backfill of all 23, bad input, its checks."""

import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from aya_assets.definitions import build_definitions
from aya_assets.languages import LANGUAGE_CODES
from aya_assets.cli.runner import materialize_all


def warehouse_files(home, asset="prompts"):
    return sorted(p.name for p in (home / "data" / "warehouse" / asset).glob("*.parquet"))


def test_materialize_a_few_partitions(aya_home, instance):
    defs = build_definitions()
    for lang in ("de", "ja"):
        result = dg.materialize(
            defs.assets, partition_key=lang, instance=instance, resources=defs.resources, selection=["prompts"]
        )
        assert result.success
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks["prompts_unique_ids"] and checks["prompts_schema"] and checks["prompts_known_language"]
    assert warehouse_files(aya_home) == ["de.parquet", "ja.parquet"]
    df = pl.read_parquet(aya_home / "data" / "warehouse" / "prompts" / "ja.parquet")
    # The tiny profile: 300 generated number items and the 24 bundled free-text prompts per language.
    assert set(df["language"]) == {"ja"} and df.height == 324
    assert df.group_by("source").len().sort("source").rows() == [("number_words", 300), ("seed", 24)]
    mats = result.asset_materializations_for_node("prompts")
    assert mats[0].metadata["dagster/row_count"].value == 324
    assert "preview" in mats[0].metadata and "dagster/column_schema" in mats[0].metadata


def test_single_run_backfill_of_all_23_languages(aya_home, instance):
    results = materialize_all(build_definitions(), instance, selection=[dg.AssetKey("prompts")])
    assert len(results) == 1 and results[0].success  # one run for all partitions
    assert warehouse_files(aya_home) == sorted(f"{c}.parquet" for c in LANGUAGE_CODES)
    mats = instance.fetch_materializations(dg.AssetKey("prompts"), limit=100).records
    assert {m.asset_materialization.partition for m in mats} == set(LANGUAGE_CODES)
    assert len({m.run_id for m in mats}) == 1


def test_arena_hard_source_added_by_profile_lands_in_its_partition(aya_home, instance, write_profile, tmp_path):
    question = tmp_path / "question.jsonl"
    question.write_text(
        "\n".join(
            json.dumps({"question_id": f"tr{i}", "category": "arena-hard-v0.1", "cluster": "c",
                        "turns": [{"content": f"İstanbul'da gezilecek {i}. yer hangisidir?"}]}, ensure_ascii=False)
            for i in range(5)
        ),
        encoding="utf-8",
    )
    profile = write_profile(prompts={"sources": [{"kind": "seed"},
                                                 {"kind": "arena_hard", "path": str(question), "language": "tr"}]})
    defs = build_definitions(profile)
    assert dg.materialize(defs.assets, partition_key="tr", instance=instance, resources=defs.resources,
                          selection=["prompts"]).success
    df = pl.read_parquet(aya_home / "data" / "warehouse" / "prompts" / "tr.parquet")
    arena = df.filter(pl.col("source") == "arena_hard")
    assert sorted(arena["source_id"]) == [f"tr{i}" for i in range(5)]
    assert df.height == 24 + 5


def test_bad_prompt_file_fails_the_run_and_writes_nothing(aya_home, instance, write_profile, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "Bonjour"}\n{"text": ""}\n', encoding="utf-8")
    profile = write_profile(prompts={"sources": [{"kind": "seed"},
                                                 {"kind": "jsonl", "name": "bad", "path": str(bad), "language": "fr"}]})
    defs = build_definitions(profile)
    with pytest.raises(Exception, match=r"bad\.jsonl:2: empty text"):
        dg.materialize(defs.assets, partition_key="fr", instance=instance, resources=defs.resources, selection=["prompts"])
    assert warehouse_files(aya_home) == []
    assert not list((aya_home / "data").rglob("*.tmp"))


def test_arena_hard_as_published_reports_its_skipped_row_in_the_partition(aya_home, instance, write_profile):
    question = Path(__file__).parent / "data" / "arena-hard-v0.1" / "question.jsonl"  # BOM, entities, one 8,611-char row
    profile = write_profile(prompts={"sources": [{"kind": "seed"}, {"kind": "arena_hard", "path": str(question), "language": "en"}]})
    defs = build_definitions(profile)
    result = dg.materialize(defs.assets, partition_key="en", instance=instance, resources=defs.resources, selection=["prompts"])
    assert result.success
    meta = result.asset_materializations_for_node("prompts")[0].metadata
    assert meta["dagster/row_count"].value == 24 + 4 and meta["skipped_over_max_chars"].value == 1
    assert f"{question}:3" in meta["skipped_rows"].value and "8611" in meta["skipped_rows"].value


ENGLISH = [
    "How do I reverse a linked list in place, and what is the time complexity of doing so?",
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain the difference between a process and a thread to a new programmer.",
    "What are the main causes of inflation, and how do central banks respond to it?",
    "Give me a weekly meal plan for a vegetarian who trains for a marathon.",
    "Summarize the plot of a classic detective novel without revealing the ending.",
    "How can I improve the performance of a slow SQL query that joins three large tables?",
    "Describe how photosynthesis works in terms a ten year old would understand.",
    "What should I consider when choosing between renting and buying a house?",
    "Draft a polite email asking my manager for feedback on my last project.",
]


def language_id(result) -> dg.AssetCheckEvaluation:
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == "prompts_language_id")


def test_english_prompts_labelled_greek_fail_the_run_until_the_data_is_fixed(aya_home, instance, write_profile, tmp_path):
    question = tmp_path / "question.jsonl"
    question.write_text("".join(json.dumps({"question_id": f"q{i}", "category": "arena-hard-v0.1", "cluster": "c",
                                            "turns": [{"content": text}]}) + "\n" for i, text in enumerate(ENGLISH)))
    mislabelled = build_definitions(write_profile(prompts={"sources": [
        {"kind": "seed"}, {"kind": "arena_hard", "path": str(question), "language": "el"}]}))

    def run(defs, key):
        return dg.materialize(defs.assets, partition_key=key, instance=instance, resources=defs.resources,
                              selection=["prompts"], raise_on_error=False)

    failed = run(mislabelled, "el")
    assert not failed.success  # the check is blocking and ERROR: the run fails, nothing downstream would start
    check = language_id(failed)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["failing_languages"].value == "el (29%)"  # 10 English rows of 34
    assert check.metadata["mismatched_rows"].value == 10

    # Re-materializing another partition checks the warehouse, where el is still English.
    again = run(mislabelled, "de")
    assert not again.success and language_id(again).metadata["failing_languages"].value == "el (29%)"

    fixed = run(build_definitions(), "el")
    assert fixed.success and language_id(fixed).passed


def test_every_prompts_check_has_a_description():
    specs = list(build_definitions().get_assets_def("prompts").check_specs)
    assert len(specs) == 6 and all(spec.description and spec.blocking for spec in specs)
