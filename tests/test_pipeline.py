"""The whole tiny graph (shrunk further) in real in-process Dagster runs, from prompts to win rates."""

import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from aya_assets.catalog.refresh import refresh_catalog
from aya_assets.catalog.sql import run_query
from aya_assets.definitions import build_definitions
from aya_assets.cli.runner import materialize_all
from conftest import FAST, merge

pytestmark = pytest.mark.slow
POOL_TEACHERS = 4


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    home = tmp_path_factory.mktemp("aya_home")
    tiny = yaml.safe_load((Path(__file__).parents[1] / "resources" / "tiny.yaml").read_text())
    profile = home / "fast.yaml"
    profile.write_text(yaml.safe_dump(merge(tiny, FAST), sort_keys=False))
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        mp.setenv("AYA_HOME", str(home))
        defs = build_definitions(str(profile))
        results = materialize_all(defs, instance)
        yield home / "data", defs, instance, results


def read(data, asset):
    return pl.read_parquet(data / "warehouse" / asset / "*.parquet")


def materializations(results, asset):
    return [m for r in results for m in r.asset_materializations_for_node(asset)]


def test_every_run_succeeds_and_checks_pass(graph):
    _, _, _, results = graph
    assert all(r.success for r in results)
    evaluations = [e for r in results for e in r.get_asset_check_evaluations()]
    failed = [e.check_name for e in evaluations if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR]
    assert not failed
    assert {"every_train_prompt_selected", "pool_degenerate_rate", "reward_length_correlation", "merge_sanity",
            "pairs_positive_margin", "final_not_below_arbitrage_sft"} <= {e.check_name for e in evaluations}


def test_runs_are_named_after_their_step_and_checkpoints_report_their_content_hash_as_data_version(graph):
    _, defs, instance, results = graph
    names = {instance.get_run_by_id(r.run_id).job_name for r in results}
    assert names == {job.name for job in defs.jobs} and {"models_job", "sft_cluster_job", "online_1_language_job"} <= names
    for asset in ("student_base", "sft_checkpoints", "sft_merged", "online_1_merged"):
        for m in materializations(results, asset):
            assert m.tags["dagster/data_version"] == m.metadata["content_hash"].value  # Dagster's staleness sees content


def test_pool_covers_teachers_prompts_and_samples(graph):
    data, *_ = graph
    pool = read(data, "pool_completions")
    prompts = read(data, "prompts").filter(pl.col("split") == "train")
    assert pool.height == prompts.height * POOL_TEACHERS * 2
    assert pool["teacher"].n_unique() == POOL_TEACHERS and "weak_english" not in pool["teacher"].to_list()
    assert set(pool["prompt_id"]) == set(prompts["prompt_id"])
    assert pool["finish_reason"].is_in(["stop", "length"]).all() and (pool["tokens"] <= 6).all()


def test_scores_keep_each_component(graph):
    data, *_ = graph
    scores = read(data, "reward_scores")
    assert {"reward", "language_confidence", "score"} <= set(scores.columns)
    assert scores["language_confidence"].is_between(0, 1).all()
    recombined = scores["reward"] + 1.0 * scores["language_confidence"]
    assert (recombined - scores["score"]).abs().max() < 1e-9


def test_arbitrage_sft_one_best_row_per_train_prompt(graph):
    data, *_ = graph
    sft, scores = read(data, "arbitrage_sft"), read(data, "reward_scores")
    train = read(data, "prompts").filter(pl.col("split") == "train")
    assert sorted(sft["prompt_id"]) == sorted(train["prompt_id"])
    best = scores.group_by("prompt_id").agg(pl.col("score").max().alias("best"))
    assert sft.join(best, on="prompt_id").filter(pl.col("score") != pl.col("best")).is_empty()
    first = sft["messages"][0].to_list()
    assert [m["role"] for m in first] == ["user", "assistant"]


def test_teacher_wins_table_and_heatmap(graph):
    data, *_ = graph
    wins = read(data, "teacher_wins")
    assert wins.height == 23 * POOL_TEACHERS
    shares = wins.group_by("language").agg(pl.col("win_share").sum())
    assert (shares["win_share"] - 1.0).abs().max() < 1e-9
    assert (data / "reports" / "teacher_wins.png").read_bytes()[:4] == b"\x89PNG"


def test_no_eval_prompt_reaches_any_model(graph):
    data, *_ = graph
    prompts = read(data, "prompts")
    eval_ids = set(prompts.filter(pl.col("split") == "eval")["prompt_id"])
    eval_texts = set(prompts.filter(pl.col("split") == "eval")["text"]) | set(
        prompts.filter(pl.col("split") == "eval")["reference"]
    )
    used = [pl.read_parquet(p) for p in (data / "models").rglob("training_data.parquet")]
    # 5 teachers, student, reward model, 4 cluster SFTs, 6 baselines, 4 offline DPOs, 4 online DPOs.
    assert len(used) == 5 + 1 + 1 + 4 + 6 + 4 + 4
    assert not eval_ids & set(pl.concat(used, how="diagonal")["prompt_id"])
    # Nothing that trains (pool, arbitrage, pairs, online samples) sees an eval prompt either.
    for asset in ("pool_completions", "arbitrage_sft", "offline_pairs", "translation_pairs", "online_1_completions"):
        assert not eval_ids & set(read(data, asset)["prompt_id"]), asset
    # The tokenizer saw only train text: its build record counts exactly the train prompts and references.
    build = json.loads((data / "models" / "tokenizer" / "aya_build.json").read_text())
    assert build["training_texts"] == 2 * prompts.filter(pl.col("split") == "train").height
    assert eval_texts  # the eval set exists and was held out


def test_model_cards_name_their_inputs(graph):
    data, *_ = graph
    card = (data / "models" / "teacher_models" / "teacher_slavic_greek" / "README.md").read_text()
    assert "prompts" in card and "tokenizer" in card and "runs" in card


UPSTREAM = """
    WITH RECURSIVE up(asset) AS (
        SELECT '{asset}' UNION SELECT d.upstream_asset FROM asset_deps d JOIN up ON d.asset = up.asset
    ) SELECT asset FROM up ORDER BY 1"""


def test_sql_lineage_reaches_prompts(graph):
    data, defs, instance, _ = graph
    db = refresh_catalog(data / "aya.duckdb", data / "warehouse", instance, defs)
    upstream = set(run_query(db, data / "warehouse", UPSTREAM.format(asset="online_1_merged"))["asset"])
    assert {"prompts", "teacher_models", "reward_model", "arbitrage_sft", "sft_checkpoints", "sft_merged",
            "offline_pairs", "translation_pairs", "dpo_offline_merged", "online_1_pairs"} <= upstream
    assert run_query(db, data / "warehouse", "SELECT count(*) FROM teacher_wins").item() == 23 * POOL_TEACHERS
    mats = run_query(db, data / "warehouse", "SELECT count(*) FROM materializations WHERE asset = 'sft_checkpoints'")
    assert mats.item() == 4


def test_cluster_sft_trains_on_its_languages_plus_replay_and_merges_by_data_share(graph):
    from transformers import AutoModelForCausalLM

    data, defs, *_ = graph
    models = data / "models"
    used = pl.read_parquet(models / "sft_checkpoints" / "east_asian" / "training_data.parquet")
    own = {"en", "es", "fr", "zh", "ja", "ko", "vi", "id"}
    arbitrage = read(data, "arbitrage_sft")
    # Every row of the cluster's languages, and the tiny profile's replay share (0.5) of the other 15 languages' rows.
    assert used.filter(pl.col("language").is_in(own)).height == arbitrage.filter(pl.col("language").is_in(own)).height
    replayed = used.filter(~pl.col("language").is_in(own)).height
    assert replayed == round(0.5 * arbitrage.filter(~pl.col("language").is_in(own)).height)
    # With replay every language partition feeds every cluster, in the asset graph too.
    graph_ = defs.resolve_asset_graph()
    mapping = graph_.get(dg.AssetKey("sft_checkpoints")).partition_mappings[dg.AssetKey("arbitrage_sft")]
    assert isinstance(mapping, dg.AllPartitionMapping)
    AutoModelForCausalLM.from_pretrained(models / "sft_merged")
    recipe = yaml.safe_load((models / "sft_merged" / "merge_recipe.yaml").read_text())
    assert recipe["merge_method"] == "linear" and len(recipe["models"]) == 4
    weights = [m["parameters"]["weight"] for m in recipe["models"]]
    assert abs(sum(weights) - 1.0) < 1e-9 and len(set(weights)) == 1  # every cluster has 8 languages × 16 prompts
    for baseline in ("random", "reward", "single_teacher_east_asian"):
        assert (models / "baseline_sft" / baseline / "model.safetensors").exists()


def test_preference_pairs_use_trl_conversational_schema(graph):
    data, *_ = graph
    offline, translation = read(data, "offline_pairs"), read(data, "translation_pairs")
    for pairs in (offline, translation):
        row = pairs.row(0, named=True)
        assert [m["role"] for m in row["prompt"]] == ["user"]
        assert [m["role"] for m in row["chosen"]] == ["assistant"] == [m["role"] for m in row["rejected"]]
    assert (offline["margin"] >= 0.1).all()
    assert "en" not in translation["language"].to_list() and translation["rejected_source"][0].startswith("weak_english")


def test_dpo_rounds_log_margins_and_reference_is_the_previous_merge(graph):
    data, _, _, results = graph
    for asset in ("dpo_offline", "online_1_dpo"):
        mats = materializations(results, asset)
        assert len(mats) == 4
        assert all("reward_margins_curve" in m.metadata and "last_reward_margins" in m.metadata for m in mats)
    card = (data / "models" / "online_1_dpo" / "slavic_greek" / "README.md").read_text()
    assert "dpo_offline_merged" in card and "online_1_pairs" in card


def test_win_rates_report_and_charts(graph):
    data, *_ = graph
    rates = read(data, "win_rates")
    stages = set(rates["stage"])
    assert {"sft_merged", "dpo_offline_merged", "online_1_merged", "random", "reward"} <= stages
    overall = rates.filter(pl.col("language") == "all")
    assert (overall["wins"] + overall["ties"] + overall["losses"] == overall["prompts"]).all()
    assert ((overall["ci_low"] <= overall["win_rate"]) & (overall["win_rate"] <= overall["ci_high"])).all()
    assert set(rates["baseline"]) == {"student_base"} | {b for b in rates["baseline"] if b.startswith("single_")}
    assert len(set(rates["baseline"])) == 2
    report = (data / "reports" / "latest.md").read_text()
    assert "step_by_step.png" in report and "per_language.png" in report
    for chart in ("step_by_step.png", "per_language.png"):
        assert (data / "reports" / chart).read_bytes()[:4] == b"\x89PNG"
    generations = read(data, "eval_generations")
    eval_ids = set(read(data, "prompts").filter(pl.col("split") == "eval")["prompt_id"])
    assert set(generations["prompt_id"]) == eval_ids


def test_rerun_reuses_models_and_shards(graph):
    data, defs, instance, _ = graph
    keys = [dg.AssetKey(k) for k in ("teacher_models", "pool_completions", "sft_merged")]
    results = materialize_all(defs, instance, selection=keys)
    assert all(m.metadata["reused"].value is True for m in materializations(results, "teacher_models"))
    assert materializations(results, "pool_completions")[0].metadata["shards_generated"].value == 0
    assert materializations(results, "sft_merged")[0].metadata["reused"].value is True
