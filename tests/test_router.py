"""The learned router on small hand-made tables: what it learns, how it ranks, which completions top-k routing
generates, its accuracy against fixed routing, and what each routing costs."""

import hashlib

import polars as pl
import pytest

from aya_assets.arbitrage import router as R
from aya_assets.arbitrage import routing
from aya_assets.arbitrage.pool import plan_shards
from aya_assets.profile import load_profile

TEACHERS = ["a", "b", "c"]
# Who wins: in de teacher a, in ja teacher b, except that ja prompts about "Kanji" go to teacher c.
WORDS = {"de": ["Zahl", "Haus", "Baum", "Wasser"], "ja": ["数字", "家", "木", "Kanji"]}


def pid(lang: str, i: int) -> str:
    return hashlib.sha256(f"{lang}|{i}".encode()).hexdigest()[:16]


def winner(lang: str, word: str) -> str:
    return "a" if lang == "de" else "c" if word == "Kanji" else "b"


def prompts(per_language: int = 200) -> pl.DataFrame:
    return pl.DataFrame([{"prompt_id": pid(lang, i), "language": lang, "prompt": f"{words[i % 4]} {i}"}
                         for lang, words in WORDS.items() for i in range(per_language)])


def scores(frame: pl.DataFrame, samples: int = 2) -> pl.DataFrame:
    """Every teacher answers every prompt `samples` times; the winner scores 1, the others 0; 0.5 s per completion."""
    rows = [{**p, "teacher": t, "sample": s, "completion": f"{t}{s}", "seconds": 0.5,
             "score": float(t == winner(p["language"], p["prompt"].split()[0]))}
            for p in frame.iter_rows(named=True) for t in TEACHERS for s in range(samples)]
    return pl.DataFrame(rows)


@pytest.fixture(scope="module")
def trained():
    frame = prompts()
    table = scores(frame)
    model, ranks = R.train_router(table, frame, TEACHERS, calibration_fraction=0.5)
    return frame, table, model, ranks


def test_the_router_learns_the_winner_from_language_and_text(trained):
    frame, table, model, ranks = trained
    top = ranks.filter(pl.col("rank") == 1).join(frame, on=["prompt_id", "language"])
    expected = [winner(lang, text.split()[0]) for lang, text in zip(top["language"], top["prompt"])]
    assert (top["teacher"] == pl.Series(expected)).mean() == 1.0
    # Every teacher is ranked once per prompt, by its chance of being among the best, descending.
    assert ranks.group_by("prompt_id").agg(pl.col("teacher").n_unique())["teacher"].unique().to_list() == [3]
    assert ranks["probability"].is_between(0, 1).all()
    by_prompt = ranks.sort("prompt_id", "rank").group_by("prompt_id", maintain_order=True).agg("probability")
    assert all(p == sorted(p, reverse=True) for p in by_prompt["probability"].to_list())


def test_it_trains_only_on_the_calibration_slice_less_its_held_out_share(trained):
    frame, table, model, ranks = trained
    per_prompt = ranks.filter(pl.col("rank") == 1)
    calibration = set(routing.calibration_prompts(table.lazy(), 0.5).collect()["prompt_id"])
    assert set(per_prompt.filter("calibration")["prompt_id"]) == calibration
    trained_on = per_prompt.filter("trained_on")
    assert trained_on["calibration"].all()
    held = calibration - set(trained_on["prompt_id"])
    assert 0.1 < len(held) / len(calibration) < 0.3  # holdout 0.2 of the slice


def test_top_k_routing_keeps_the_slice_and_the_router_teachers_elsewhere(trained):
    frame, table, model, ranks = trained
    for k in (1, 2, 3):
        kept = R.routed(table, ranks, k)
        calibration = ranks.filter(pl.col("calibration"))["prompt_id"].unique()
        inside = kept.filter(pl.col("prompt_id").is_in(calibration.implode()))
        outside = kept.filter(~pl.col("prompt_id").is_in(calibration.implode()))
        assert inside.height == calibration.len() * 3 * 2  # every teacher, both samples
        assert outside.group_by("prompt_id").agg(pl.col("teacher").n_unique())["teacher"].unique().to_list() == [k]
    # learned routing then picks the best of what was generated: here, every prompt's winner.
    chosen = routing.route(R.routed(table, ranks, 1), "learned")
    assert chosen.height == frame.height and (chosen["score"] == 1.0).all()


def test_assignments_plan_shards_only_for_each_teachers_prompts(trained):
    frame, table, model, ranks = trained
    rest = ranks.filter(~pl.col("calibration"))
    only = R.assignments(rest, 1)
    assert sum(len(v) for v in only.values()) == rest["prompt_id"].n_unique()
    shards = plan_shards(frame.rename({"prompt": "text"}), TEACHERS, 16, only)
    planned = {(s.teacher, p) for s in shards for p in s.prompt_ids}
    assert planned == {(t, p) for t, ids in only.items() for p in ids}


def test_accuracy_beats_fixed_routing_where_the_text_decides(trained):
    frame, table, model, ranks = trained
    acc = R.accuracy(ranks, table, [1, 2], resamples=200)
    overall = {r["routing"]: r for r in acc.filter(pl.col("language") == "all").iter_rows(named=True)}
    ja = {r["routing"]: r["accuracy"] for r in acc.filter(pl.col("language") == "ja").iter_rows(named=True)}
    # Held out: every prompt the router did not train on (all of them have every teacher's verdict here).
    assert overall["learned_1"]["prompts"] == ranks.filter(~pl.col("trained_on"))["prompt_id"].n_unique()
    assert overall["learned_1"]["accuracy"] == 1.0 and overall["learned_2"]["accuracy"] == 1.0
    # fixed says b everywhere in ja, wrong on its Kanji prompts (teacher c's).
    held_ja = frame.join(ranks.filter(~pl.col("trained_on") & (pl.col("rank") == 1)), on=["prompt_id", "language"]
                         ).filter(pl.col("language") == "ja")
    assert ja["fixed"] == pytest.approx(1 - held_ja["prompt"].str.starts_with("Kanji").mean()) and ja["fixed"] < 0.8
    assert overall["learned_1"]["ci_low"] <= overall["learned_1"]["accuracy"] <= overall["learned_1"]["ci_high"]


def test_teachers_tied_for_the_top_all_count_as_winners():
    """Where teachers agree (the same right answer, the same score), any of them is as good a pick: the router must not
    learn a tie-break by name, and accuracy counts any tied teacher as a hit."""
    frame = prompts(200)
    # In de, a and b tie everywhere; in ja, b alone wins. A label broken by name would say "a" for every de prompt.
    table = scores(frame).with_columns(score=pl.when(pl.col("language") == "de")
                                       .then((pl.col("teacher") != "c").cast(pl.Float64))
                                       .otherwise((pl.col("teacher") == "b").cast(pl.Float64)))
    _, ranks = R.train_router(table, frame, TEACHERS, 0.5)
    top = ranks.filter(pl.col("rank") == 1)
    assert set(top.filter(pl.col("language") == "ja")["teacher"]) == {"b"}
    assert set(top.filter(pl.col("language") == "de")["teacher"]) <= {"a", "b"}
    # b is among the best everywhere: the router ranks it first in de too, above a (best only in de).
    assert set(top["teacher"]) == {"b"}
    acc = R.accuracy(ranks, table, [1], resamples=100)
    assert acc.filter(pl.col("language") == "all")["accuracy"].to_list() == [1.0, 1.0]  # fixed, learned_1


def test_a_router_with_one_winner_everywhere_is_constant():
    frame = prompts(20)
    table = scores(frame).with_columns(score=(pl.col("teacher") == "b").cast(pl.Float64))
    _, ranks = R.train_router(table, frame, TEACHERS, 1.0)
    assert set(ranks.filter(pl.col("rank") == 1)["teacher"]) == {"b"}
    assert ranks.filter(pl.col("rank") == 2)["teacher"].unique().to_list() == ["a"]  # the rest by name


def test_no_calibration_prompt_is_a_clear_error():
    frame = prompts(4)
    with pytest.raises(ValueError, match="calibration_fraction"):
        R.train_router(scores(frame), frame, TEACHERS, 1e-9)


def test_costs_per_routing(trained):
    frame, table, model, ranks = trained
    cost = {r["routing"]: r for r in R.costs(table, ranks, [1, 2], 0.5, 0, table).iter_rows(named=True)}
    n, calibration = frame.height, ranks.filter("calibration")["prompt_id"].n_unique()
    assert cost["reward"]["completions"] == n * 3 * 2 and cost["reward"]["share_of_reward"] == 1.0
    assert cost["reward"]["teacher_seconds"] == pytest.approx(n * 3 * 2 * 0.5)
    assert cost["learned_1"]["completions"] == calibration * 6 + (n - calibration) * 2
    assert cost["learned_2"]["completions"] == calibration * 6 + (n - calibration) * 4
    assert cost["fixed"]["completions"] == cost["learned_1"]["completions"]
    assert cost["random"]["completions"] == n * 2 and cost["single_a"]["completions"] == n * 2
    assert cost["learned_1"]["share_of_reward"] <= 1 / 3 + calibration / n


def test_the_profile_refuses_learned_routing_with_baselines_and_too_large_k(write_profile):
    with pytest.raises(ValueError, match="training.baselines: false"):
        load_profile(write_profile(arbitrage={"routing": "learned"}))
    with pytest.raises(ValueError, match="learned_topk: 5 is more teachers than the pool has"):
        load_profile(write_profile(arbitrage={"routing": "learned", "learned_topk": 5}, training={"baselines": False}))
    # compare_topk at or past the pool's size is reward routing itself: left out of the baselines.
    assert load_profile(write_profile(arbitrage={"router": {"compare_topk": [2, 1, 4, 9]}})).compared_topk == [1, 2]
    profile = load_profile(write_profile(arbitrage={"routing": "learned", "learned_topk": 2}, training={"baselines": False}))
    assert profile.arbitrage.learned_topk == 2
