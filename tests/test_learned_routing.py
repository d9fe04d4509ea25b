"""`arbitrage.routing: learned` in real Dagster runs on the (shrunk) tiny profile: every teacher answers the calibration
slice, the router learns from its scores, and elsewhere only the router's top-k teachers generate."""

from pathlib import Path

import polars as pl
import pytest
import yaml

from conftest import FAST, merge
from helpers import materialize_upstream

ROOT = Path(__file__).parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    home = tmp_path_factory.mktemp("learned_home")
    profile = merge(merge(yaml.safe_load((ROOT / "resources" / "tiny.yaml").read_text()), FAST), {
        "name": "learned",
        "arbitrage": {"routing": "learned", "learned_topk": 1, "calibration_fraction": 0.3},
        "training": {"baselines": False},
    })
    written = []
    first, second = materialize_upstream(home, profile, ["arbitrage_sft", "router_accuracy"], runs=2,
                                         after_each=lambda: written.append(files(home / "data" / "shards")))
    return home / "data", first, second, written[0] == written[1]


def files(root):
    """Every shard and score-cache file with its modification time."""
    return {(str(p), p.stat().st_mtime_ns) for p in root.rglob("*.parquet")}


def read(data, asset):
    return pl.read_parquet(data / "warehouse" / asset / "*.parquet")


def metadata(results, asset):
    return [m.metadata for r in results for m in r.asset_materializations_for_node(asset)]


def test_only_the_router_top_teacher_answers_outside_the_calibration_slice(learned):
    data, first, *_ = learned
    pool, ranks = read(data, "pool_completions"), read(data, "router")
    calibration = ranks.filter("calibration")["prompt_id"].unique()
    teachers = ranks["teacher"].n_unique()
    answered = pool.group_by("prompt_id").agg(teachers=pl.col("teacher").n_unique(), samples=pl.len())
    inside = answered.filter(pl.col("prompt_id").is_in(calibration.implode()))
    outside = answered.filter(~pl.col("prompt_id").is_in(calibration.implode()))
    assert inside.height == calibration.len() and set(inside["teachers"]) == {teachers}
    assert set(outside["teachers"]) == {1} and set(outside["samples"]) == {FAST["generation"]["samples"]}
    top = ranks.filter(pl.col("rank") == 1).select("prompt_id", router_pick="teacher")
    picked = pool.join(outside.select("prompt_id"), on="prompt_id").join(top, on="prompt_id")
    assert (picked["teacher"] == picked["router_pick"]).all()
    # Cost in the metadata (and so in SQL): at most 1/|pool| of every-teacher generation, plus the slice's share.
    train = ranks["prompt_id"].n_unique()
    for meta in metadata(first, "pool_completions"):
        assert meta["share_of_every_teacher"].value <= 1 / teachers + calibration.len() / train + 1e-9
        assert meta["teacher_seconds"].value > 0


def test_the_router_learned_from_the_calibration_scores_and_reports_accuracy(learned):
    data, first, *_ = learned
    ranks, scores, accuracy = read(data, "router"), read(data, "calibration_scores"), read(data, "router_accuracy")
    assert set(ranks.filter("trained_on")["prompt_id"]) <= set(scores["prompt_id"])
    assert set(accuracy["routing"]) == {"fixed", "learned_1", "learned_2"}
    assert accuracy.filter(pl.col("language") == "all")["prompts"].min() > 0
    assert (data / "models" / "router" / "router.joblib").stat().st_size > 0
    assert "Held-out accuracy" in (data / "models" / "router" / "README.md").read_text()


def test_reward_scores_cover_every_completion_once_and_arbitrage_picks_one_per_prompt(learned):
    data, *_ = learned
    pool, scores, sft = read(data, "pool_completions"), read(data, "reward_scores"), read(data, "arbitrage_sft")
    keys = ["prompt_id", "teacher", "sample"]
    assert scores.select(keys).sort(keys).equals(pool.select(keys).sort(keys))
    assert sft["prompt_id"].is_unique().all() and sft.height == pool["prompt_id"].n_unique()
    assert set(sft["routing"]) == {"learned"}


def test_a_second_run_generates_and_scores_nothing(learned):
    _, _, second, unchanged = learned
    for asset in ("calibration_completions", "pool_completions"):
        assert all(m["shards_generated"].value == 0 for m in metadata(second, asset))
    assert unchanged  # no generation shard or score-cache file written or deleted
