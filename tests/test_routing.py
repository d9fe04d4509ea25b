"""Routing and teacher wins on small hand-made score tables."""

import hashlib

import polars as pl
import pytest

from aya_assets.arbitrage import routing


def pid(lang: str, i: int) -> str:
    return hashlib.sha256(f"{lang}|{i}".encode()).hexdigest()[:16]


def table(spec: dict[str, dict[str, list[float]]], prompts: int = 8) -> pl.DataFrame:
    """spec[language][teacher] = per-sample scores, the same for every prompt of that language."""
    rows = [
        {"prompt_id": pid(lang, i), "language": lang, "teacher": teacher, "sample": s, "score": score}
        for lang, teachers in spec.items()
        for i in range(prompts)
        for teacher, scores in teachers.items()
        for s, score in enumerate(scores)
    ]
    return pl.DataFrame(rows)


SCORES = table({"de": {"a": [1.0, 1.5], "b": [0.2, 0.1]}, "ja": {"a": [0.0, 0.3], "b": [2.0, 0.5]}})


@pytest.mark.parametrize(
    "rule, expected",
    [
        ("reward", {("de", "a", 1): 8, ("ja", "b", 0): 8}),
        ("fixed", {("de", "a", 0): 8, ("ja", "b", 0): 8}),
        ("single:b", {("de", "b", 0): 8, ("ja", "b", 0): 8}),
    ],
)
def test_routing_picks(rule, expected):
    chosen = routing.route(SCORES, rule)
    counts = {(l, t, s): n for l, t, s, n in chosen.group_by("language", "teacher", "sample").len().iter_rows()}
    assert counts == expected
    assert chosen["prompt_id"].is_unique().all() and chosen.height == 16
    assert set(chosen["routing"]) == {rule}


def test_random_routing_is_stable_and_spread():
    first = routing.route(SCORES, "random", seed=3)
    assert first.equals(routing.route(SCORES, "random", seed=3))
    assert first["teacher"].n_unique() == 2 and first.height == 16
    assert not first.equals(routing.route(SCORES, "random", seed=4))


def test_reward_ties_break_by_teacher_then_sample():
    tied = table({"en": {"b": [1.0, 1.0], "a": [1.0, 0.0]}}, prompts=2)
    chosen = routing.route(tied, "reward")
    assert chosen.select("teacher", "sample").unique().rows() == [("a", 0)]


def test_fixed_routing_uses_only_the_calibration_slice():
    # Teacher a is better on the calibration prompts, b on the rest: fixed routing must follow calibration.
    base = table({"fr": {"a": [0.0], "b": [0.0]}}, prompts=40)
    calib = set(routing.calibration_prompts(base.lazy(), 0.25).collect()["prompt_id"])
    assert 0 < len(calib) < 40
    scored = base.with_columns(
        score=pl.when(pl.col("prompt_id").is_in(list(calib)) == (pl.col("teacher") == "a")).then(1.0).otherwise(0.0)
    )
    assert set(routing.route(scored, "fixed", calibration_fraction=0.25)["teacher"]) == {"a"}


def test_unknown_routing_and_unknown_single_teacher():
    with pytest.raises(ValueError, match="unknown routing 'best'"):
        routing.route(SCORES, "best")
    with pytest.raises(ValueError, match=r"teacher 'zz' is not in the pool \['a', 'b'\]"):
        routing.route(SCORES, "single:zz")


def test_teacher_wins_lists_every_teacher_per_language():
    wins = routing.teacher_wins(SCORES)
    assert wins.select("language", "teacher", "wins", "win_share").rows() == [
        ("de", "a", 8, 1.0), ("de", "b", 0, 0.0), ("ja", "a", 0, 0.0), ("ja", "b", 8, 1.0),
    ]
