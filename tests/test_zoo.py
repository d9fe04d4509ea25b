"""The gpu profile's path on CPU: the whole graph over tiny random checkpoints of the real architectures (zoo_models).

Cohere with and without qk-norm, Qwen2, Llama 3 and Gemma2 teachers with their own tokenizers and chat templates, a
Cohere student, a Llama reward model and a Qwen2 LLM judge, `models.build: false`, generation with transformers. The
models are random, so this asserts mechanics: every asset materializes, every verdict is parsed or counted as
unparsed, merges load, lineage and cards are there, and a second identical run trains and generates nothing.
"""

import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import torch
import transformers
import yaml

from aya_assets.catalog.refresh import refresh_catalog
from aya_assets.catalog.sql import run_query
from aya_assets.definitions import build_definitions
from aya_assets.evaluation.winrates import SELECTION_FRACTION, in_selection
from aya_assets.generation.hf import TransformersBackend
from aya_assets.languages import LANGUAGE_CODES
from aya_assets.checkpoints.files import content_hash
from aya_assets.cli.runner import materialize_all
from helpers import materialize_upstream
from zoo_models import SEED_PROMPTS, build_zoo

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[1]
TEACHERS = ["aya_expanse", "command_r_plus", "qwen2_5", "llama3_1", "gemma2"]
MODEL_ASSETS = ["sft_checkpoints", "sft_averaged", "sft_merged", "baseline_sft", "dpo_offline", "dpo_offline_averaged",
                "dpo_offline_merged", "online_1_dpo", "online_1_averaged", "online_1_merged", "safety_sft", "safety_dpo",
                "safety_merged"]
# The published Aya Red-teaming layout (English, French, Serbian and Tagalog files, no references), as a local copy.
PUBLISHED_REDTEAM = ROOT / "tests" / "data" / "aya_redteaming"
REDTEAM_LANGUAGES = ["en", "fr", "ja", "ar"]


def write_prompts(path: Path, train: int = 3, eval_: int = 1) -> Path:
    """A few seed prompts per language (`train` + `eval_`), as a JSONL source of its own."""
    rows = []
    for code in LANGUAGE_CODES:
        seed = [json.loads(line) for line in (SEED_PROMPTS / f"{code}.jsonl").read_text(encoding="utf-8").splitlines()]
        for split, k in (("train", train), ("eval", eval_)):
            rows += [{**r, "language": code} for r in seed if r["split"] == split][:k]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def zoo_profile(zoo: dict[str, Path], prompts: Path) -> dict:
    """resources/gpu.yaml with the zoo's local paths, transformers on CPU, no translator, the zoo's judge, tiny steps."""
    profile = yaml.safe_load((ROOT / "resources" / "gpu.yaml").read_text())
    profile["name"] = "zoo"
    profile["prompts"] = {"sources": [{"kind": "jsonl", "name": "zoo_prompts", "path": str(prompts),
                                       "columns": {"text": "text", "language": "language", "reference": "reference",
                                                   "category": "category", "split": "split"}}]}
    profile["models"] = {
        "build": False,
        "teachers": [{"name": t, "path": str(zoo[t])} for t in TEACHERS]
        + [{"name": "weak_english", "path": str(zoo["weak_english"]), "in_pool": False}],
        "translation_source": "weak_english",
        "student": {"name": "student_base", "path": str(zoo["student"])},
        "reward_model": {"name": "reward_model", "path": str(zoo["reward_model"])},
    }
    profile["generation"] = {"backend": "transformers", "device": "cpu", "batch_size": 64, "samples": 2,
                             "max_new_tokens": 6, "temperature": 0.8, "top_p": 0.95, "shard_size": 64}
    profile["arbiter"] = {"language_weight": 1.0, "batch_size": 64, "device": "cpu"}
    profile["training"] = {"sft": {"steps": 2, "learning_rate": 0.001, "batch_size": 4, "max_length": 128},
                           "baselines": True, "cluster_replay": 0.0,
                           "dpo": {"steps": 2, "learning_rate": 0.0001, "batch_size": 4, "max_length": 128},
                           "min_margin": 0.1}
    profile["online"] = {"rounds": 1, "samples": 2, "temperature": 1.0}
    profile["translation"] = {"translator": "none"}
    profile["evaluation"] = {"baselines": ["student_base", "best_single_teacher"], "judge": "llm",
                             "judge_model": str(zoo["judge"]), "judge_max_new_tokens": 8, "max_unparsed_share": 1.0,
                             "bootstrap_resamples": 100}
    # Safety trains on the bundled set (a few languages, for time) and is also judged on the published layout's
    # prompts; the harm judge is the zoo's LLM (random: its verdicts are mostly unparsed, and counted as such).
    profile["safety"] = {
        "sources": [{"kind": "aya_redteaming", "name": "redteam_seed", "path": "data/seed/redteam",
                     "languages": REDTEAM_LANGUAGES},
                    {"kind": "aya_redteaming", "name": "aya_redteaming", "path": str(PUBLISHED_REDTEAM), "split": "eval"}],
        "sft": {"steps": 2, "learning_rate": 0.001, "batch_size": 4, "max_length": 128},
        "dpo": {"steps": 2, "learning_rate": 0.0001, "batch_size": 4, "max_length": 128},
        "sweep": [0.0, 1.0], "merge_weight": 0.5, "harm_judge": "llm", "harm_judge_model": str(zoo["judge"]),
        "harm_judge_max_new_tokens": 4}
    return profile


class Counter:
    """Calls of one method."""

    def __init__(self, monkeypatch, owner, name):
        self.calls, original = 0, getattr(owner, name)

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)


def outputs(data: Path) -> dict[str, int]:
    """Every shard and checkpoint weight file with its mtime: a run that generates or trains nothing leaves it as it was."""
    files = [*(data / "shards").rglob("*.parquet"), *(data / "models").rglob("*.safetensors")]
    return {str(f): f.stat().st_mtime_ns for f in files}


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("zoo_home")
    zoo = build_zoo(home / "zoo")
    profile = home / "zoo.yaml"
    profile.write_text(yaml.safe_dump(zoo_profile(zoo, write_prompts(home / "prompts.jsonl")), sort_keys=False))
    (home / "dagster").mkdir()
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
        mp.setenv("AYA_HOME", str(home))
        generate = Counter(mp, TransformersBackend, "generate")
        train = Counter(mp, transformers.Trainer, "train")
        defs = build_definitions(str(profile))
        first = materialize_all(defs, instance)
        before, calls = outputs(home / "data"), {"generate": generate.calls, "train": train.calls}
        second = materialize_all(defs, instance)
        yield {"data": home / "data", "zoo": zoo, "defs": defs, "instance": instance, "first": first, "second": second,
               "calls": {"first": calls, "second": {"generate": generate.calls - calls["generate"],
                                                   "train": train.calls - calls["train"]}},
               "before": before, "after": outputs(home / "data")}


def materialized(results) -> dict[str, set]:
    out: dict[str, set] = {}
    for result in results:
        for event in result.get_asset_materialization_events():
            mat = event.event_specific_data.materialization
            out.setdefault(mat.asset_key.to_user_string(), set()).add(mat.partition)
    return out


def metadata(results, asset: str) -> list[dict]:
    return [{k: v.value for k, v in m.metadata.items()} for r in results for m in r.asset_materializations_for_node(asset)]


def test_every_asset_and_partition_materializes(zoo_run):
    graph = zoo_run["defs"].resolve_asset_graph()
    expected = {}
    for key in graph.materializable_asset_keys:
        partitions = graph.get(key).partitions_def
        expected[key.to_user_string()] = set(partitions.get_partition_keys()) if partitions else {None}
    for run in ("first", "second"):
        assert all(r.success for r in zoo_run[run])
        assert materialized(zoo_run[run]) == expected, run


def test_every_verdict_is_parsed_or_counted_as_unparsed(zoo_run):
    rates = pl.read_parquet(zoo_run["data"] / "warehouse" / "win_rates" / "*.parquet")
    seed = yaml.safe_load((ROOT / "resources" / "gpu.yaml").read_text()).get("seed", 0)
    # The prompts every rate is measured on: eval prompts outside the slice that chooses best_single_teacher.
    eval_prompts = pl.read_parquet(zoo_run["data"] / "warehouse" / "prompts" / "*.parquet").filter(
        (pl.col("split") == "eval")
        & ~pl.col("prompt_id").map_elements(lambda p: in_selection(p, seed, SELECTION_FRACTION), return_dtype=pl.Boolean))
    per_language = eval_prompts.group_by("language").len().rename({"len": "eval_prompts"})
    rows = rates.join(per_language, on="language", how="left").with_columns(
        pl.col("eval_prompts").fill_null(eval_prompts.height))  # language "all": every eval prompt
    assert rows.height > 0
    # Every eval prompt is judged in both orders, and each judgement is a verdict or counted as unparsed; a prompt is
    # decided (won, tied or lost) unless both of its judgements are unparsed.
    assert (rows["judgements"] == 2 * rows["eval_prompts"]).all()
    assert (rows["wins"] + rows["ties"] + rows["losses"] == rows["prompts"]).all()
    undecided = rows["eval_prompts"] - rows["prompts"]
    assert ((undecided >= 0) & (2 * undecided <= rows["unparsed"])).all()
    overall = rows.filter(pl.col("language") == "all")
    assert overall["unparsed"].sum() < overall["judgements"].sum()  # the zoo's judge writes labels most of the time
    assert len(set(overall["baseline"]) - {"student_base"}) == 1  # best_single_teacher resolved to one single_* stage


def test_merges_load_with_transformers(zoo_run):
    models = zoo_run["data"] / "models"
    for merged in ("sft_merged", "dpo_offline_merged", "online_1_merged", "sft_averaged/slavic_greek", "safety_merged/0.50"):
        model = transformers.AutoModelForCausalLM.from_pretrained(models / merged)
        assert type(model).__name__ == "CohereForCausalLM", merged
        assert torch.isfinite(model(torch.tensor([[5, 6, 7]])).logits).all(), merged
        assert (models / merged / "merge_recipe.yaml").is_file()


def test_cards_name_their_partitions_and_base_checkpoint(zoo_run):
    models, zoo = zoo_run["data"] / "models", zoo_run["zoo"]
    cards = [*(models / "sft_checkpoints").glob("*/README.md"), *(models / "dpo_offline").glob("*/README.md")]
    assert len(cards) == 8
    for card in cards:  # the configured student checkpoint every cluster model started from, by path and hash
        student = next(line for line in card.read_text().splitlines() if line.startswith("- student_base:"))
        assert f"path {zoo['student']};" in student and f"content_hash {content_hash(zoo['student'])}" in student, card
    clusters = yaml.safe_load((ROOT / "resources" / "gpu.yaml").read_text())["clusters"]
    for cluster, languages in clusters.items():
        card = (models / "dpo_offline" / cluster / "README.md").read_text()
        assert f"offline_pairs: partitions {','.join(sorted(languages))};" in card, cluster
        assert "sft_merged: runs" in card and f"content_hash {content_hash(models / 'sft_merged')}" in card
        sft = (models / "sft_checkpoints" / cluster / "README.md").read_text()
        assert f"arbitrage_sft: partitions {','.join(sorted(languages))};" in sft, cluster


UPSTREAM = """
    WITH RECURSIVE up(asset) AS (
        SELECT '{asset}' UNION SELECT d.upstream_asset FROM asset_deps d JOIN up ON d.asset = up.asset
    ) SELECT asset FROM up ORDER BY 1"""


def test_lineage_reaches_the_configured_checkpoints(zoo_run):
    data = zoo_run["data"]
    db = refresh_catalog(data / "aya.duckdb", data / "warehouse", zoo_run["instance"], zoo_run["defs"])
    upstream = set(run_query(db, data / "warehouse", UPSTREAM.format(asset="win_rates"))["asset"])
    assert {"prompts", "teacher_models", "student_base", "reward_model", "pool_completions", "arbitrage_sft",
            "sft_merged", "offline_pairs", "translation_pairs", "dpo_offline_merged", "online_1_merged",
            "eval_generations"} <= upstream
    mats = run_query(db, data / "warehouse", "SELECT count(*) FROM materializations WHERE asset = 'teacher_models'")
    assert mats.item() == 2 * (len(TEACHERS) + 1)  # two runs, every teacher partition each time
    configured = metadata(zoo_run["first"], "student_base")[0]
    assert configured["path"] == str(zoo_run["zoo"]["student"])
    assert configured["content_hash"] == content_hash(zoo_run["zoo"]["student"])


def test_a_second_identical_run_trains_and_generates_nothing(zoo_run):
    # SFT: 10 baselines (5 single teachers, random, fixed, learned top-1 and top-2, reward) + 4 clusters + the safety
    # SFT; DPO: 4 offline + 4 online + the safety DPO. Generation: pool, translation source, online samples, the eval
    # and red-team stages, the judge and the harm judge.
    assert zoo_run["calls"]["first"]["train"] == 24 and zoo_run["calls"]["first"]["generate"] > 20
    assert zoo_run["calls"]["second"] == {"generate": 0, "train": 0}
    assert zoo_run["after"] == zoo_run["before"]  # no shard or weight file written, none deleted
    second = zoo_run["second"]
    for asset in MODEL_ASSETS:
        assert all(m["reused"] is True for m in metadata(second, asset)), asset
    for asset in ("pool_completions", "online_1_completions"):
        assert all(m["shards_generated"] == 0 for m in metadata(second, asset)), asset


def test_safety_on_the_configured_checkpoints_and_the_published_red_team_layout(zoo_run):
    data = zoo_run["data"]
    warehouse, models = data / "warehouse", data / "models"
    redteam = pl.read_parquet(warehouse / "redteam_prompts" / "*.parquet")
    published = redteam.filter(pl.col("source") == "aya_redteaming")
    # The published copy's English and French rows, held out, without references; its Serbian and Tagalog left out.
    assert set(published["language"]) == {"en", "fr"} and (published["split"] == "eval").all()
    assert published["reference"].is_null().all() and published["category"].is_not_null().all()
    assert set(redteam["language"]) == set(REDTEAM_LANGUAGES)
    rates = pl.read_parquet(warehouse / "harm_rates" / "*.parquet")
    stages = zoo_run["defs"].resolve_asset_graph().get(dg.AssetKey("eval_generations")).partitions_def.get_partition_keys()
    assert set(rates["stage"]) == set(stages) and set(rates["language"]) == {"all", *REDTEAM_LANGUAGES}
    overall = rates.filter(pl.col("language") == "all")
    # Every held-out red-team answer was either judged by the guard LLM or counted as unjudged.
    assert (overall["n"] + overall["unjudged"] == redteam.filter(pl.col("split") == "eval").height).all()
    recipe = yaml.safe_load((models / "safety_merged" / "0.50" / "merge_recipe.yaml").read_text())
    assert sorted(m["parameters"]["weight"] for m in recipe["models"]) == [0.5, 0.5]
    kept = [p.name for p in (models / "sft_checkpoints").glob("*/kept/*")]
    assert kept and set(kept) == {"step-1", "step-2"}  # 2 steps, every max(1, 10% of 2) = 1, last 3 kept: both
    assert not (warehouse / "harm_classifier").exists()  # the LLM judge needs no classifier
    assert pl.read_parquet(warehouse / "safety_tradeoff" / "*.parquet")["weight"].to_list() == [0.0, 0.5, 1.0]


def test_learned_routing_on_the_configured_checkpoints(zoo_run, tmp_path):
    """routing: learned over the real architectures' checkpoints: every teacher (each with its own tokenizer) answers
    the calibration slice, the arbiter (a sequence classifier) scores it, and elsewhere only the router's pick answers."""
    profile = zoo_profile(zoo_run["zoo"], write_prompts(tmp_path / "prompts.jsonl"))
    profile["name"] = "zoo_learned"
    profile["arbitrage"] = {"routing": "learned", "learned_topk": 1, "calibration_fraction": 0.4}
    profile["training"]["baselines"] = False
    (results,) = materialize_upstream(tmp_path, profile, ["arbitrage_sft"])
    warehouse = tmp_path / "data" / "warehouse"
    pool = pl.read_parquet(warehouse / "pool_completions" / "*.parquet")
    ranks = pl.read_parquet(warehouse / "router" / "*.parquet")
    outside = pool.join(ranks.filter("calibration").select("prompt_id").unique(), on="prompt_id", how="anti")
    top = ranks.filter(pl.col("rank") == 1).select("prompt_id", pick="teacher")
    assert not outside.is_empty() and outside.join(top, on="prompt_id").filter(pl.col("teacher") != pl.col("pick")).is_empty()
    inside = pool.join(ranks.filter("calibration").select("prompt_id").unique(), on="prompt_id", how="semi")
    assert inside["teacher"].n_unique() == len(TEACHERS)
    assert pl.read_parquet(warehouse / "arbitrage_sft" / "*.parquet")["prompt_id"].n_unique() == pool["prompt_id"].n_unique()
    shares = [m["share_of_every_teacher"] for m in metadata(results, "pool_completions")]
    assert shares and max(shares) < 1.0
