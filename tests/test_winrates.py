"""Win-rate arithmetic as pure functions over small tables: the bootstrap interval, the per-language summary,
the baselines best_single_teacher resolves to, unparsed shares and the candidate-vs-baseline pair frame."""

import numpy as np
import polars as pl
import pytest

from aya_assets.evaluation.winrates import (BEST_SINGLE, bootstrap_interval, pair_frame, resolve_baselines, summarize,
                                            unparsed_shares)

# --- bootstrap_interval ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scores, interval", [
    ([1.0] * 5, (1.0, 1.0)),  # every resample of all wins has mean 1
    ([0.5] * 5, (0.5, 0.5)),  # all ties
    ([0.0] * 3, (0.0, 0.0)),
    ([0.7], (0.7, 0.7)),  # one prompt: every resample is that prompt
])
def test_bootstrap_interval_of_constant_scores_is_the_constant(scores, interval):
    assert bootstrap_interval(np.array(scores), resamples=200) == pytest.approx(interval)


SPREAD = np.array([1.0, 0.0, 0.5, 1.0, 0.0, 1.0, 1.0, 0.5, 0.0, 1.0] * 2)


def test_bootstrap_interval_is_deterministic_per_seed():
    first = bootstrap_interval(SPREAD, resamples=500, seed=3)
    assert bootstrap_interval(SPREAD, resamples=500, seed=3) == first
    assert bootstrap_interval(SPREAD, resamples=500, seed=4) != first


@pytest.mark.parametrize("scores", [SPREAD, np.array([1.0, 0.0]), np.array([0.0, 0.0, 0.0, 1.0]), np.array([0.5, 1.0])])
def test_bootstrap_interval_contains_the_mean(scores):
    low, high = bootstrap_interval(scores, resamples=500)
    assert 0.0 <= low <= scores.mean() <= high <= 1.0


def test_bootstrap_interval_narrows_as_prompts_grow():
    # Half wins, half losses: the mean's standard error is 0.5 / sqrt(n), so 20x the prompts is ~4.5x narrower.
    widths = [np.diff(bootstrap_interval(np.array([1.0, 0.0] * n), resamples=1000)).item() for n in (5, 20, 100)]
    assert widths == sorted(widths, reverse=True) and widths[-1] < widths[0] / 3


# --- summarize -------------------------------------------------------------------------------------------------------


def verdict_rows(rows: list[tuple[str, float | None, float | None]]) -> pl.DataFrame:
    """Verdicts of (language, as_first, as_second) per prompt, the verdict their mean, as judge_both_orders writes."""
    frame = pl.DataFrame({"prompt_id": [f"p{i}" for i in range(len(rows))], "language": [r[0] for r in rows],
                          "as_first": [r[1] for r in rows], "as_second": [r[2] for r in rows]},
                         schema_overrides={"as_first": pl.Float64, "as_second": pl.Float64})
    return frame.with_columns(verdict=pl.mean_horizontal("as_first", "as_second"))


# Columns: language, prompts, wins, ties, losses, win_rate, judgements, unparsed.
SUMMARY_TABLES = [
    pytest.param(
        [("fr", 0.0, 0.0), ("en", 1.0, 1.0), ("en", 1.0, 0.0), ("fr", None, None)],
        # en: a win (1.0) and a tie (position bias 1.0 / 0.0 averages 0.5) -> 1.5 / 2; fr: a loss, one prompt unparsed.
        [("all", 3, 1, 1, 1, 0.5, 8, 2), ("en", 2, 1, 1, 0, 0.75, 4, 0), ("fr", 1, 0, 0, 1, 0.0, 4, 2)],
        id="languages-sorted-after-all",
    ),
    pytest.param(
        [("de", 1.0, 0.5), ("de", 0.5, 0.0), ("de", None, 1.0)],
        # means 0.75 (a win), 0.25 (a loss), 1.0 (one order unparsed: the other decides) -> 2.0 / 3
        [("all", 3, 2, 0, 1, 2 / 3, 6, 1), ("de", 3, 2, 0, 1, 2 / 3, 6, 1)],
        id="half-verdicts-and-one-sided",
    ),
    pytest.param(
        [("en", 0.5, 0.5), ("ja", None, None), ("ja", None, None)],
        [("all", 1, 0, 1, 0, 0.5, 6, 4), ("en", 1, 0, 1, 0, 0.5, 2, 0), ("ja", 0, 0, 0, 0, None, 4, 4)],
        id="a-language-without-verdicts",
    ),
]


@pytest.mark.parametrize("rows, expected", SUMMARY_TABLES)
def test_summarize_per_language_and_all(rows, expected):
    summary = summarize(verdict_rows(rows), resamples=200)
    got = summary.select("language", "prompts", "wins", "ties", "losses", "win_rate", "judgements", "unparsed").rows()
    assert got == [tuple(pytest.approx(v) if isinstance(v, float) else v for v in row) for row in expected]
    for row in summary.iter_rows(named=True):
        if row["win_rate"] is None:
            assert row["ci_low"] is row["ci_high"] is None
        else:
            assert row["ci_low"] <= row["win_rate"] <= row["ci_high"]


def test_summarize_of_no_verdicts_is_the_all_row_alone():
    summary = summarize(verdict_rows([]), resamples=10)
    assert summary.rows(named=True) == [{"language": "all", "prompts": 0, "wins": 0, "ties": 0, "losses": 0,
                                         "win_rate": None, "ci_low": None, "ci_high": None, "judgements": 0, "unparsed": 0}]


# --- resolve_baselines -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("configured, overall_vs_base, resolved", [
    (["student_base", BEST_SINGLE], {"single_a": 0.4, "single_b": 0.6}, ["student_base", "single_b"]),
    # A tie on the rate goes to the name that sorts last (max over (rate, name)).
    ([BEST_SINGLE], {"single_a": 0.5, "single_b": 0.5, "single_c": 0.2}, ["single_b"]),
    # Only single_* stages compete: a stronger merged stage is not a single teacher.
    ([BEST_SINGLE, "sft_merged"], {"sft_merged": 0.9, "single_a": 0.1}, ["single_a", "sft_merged"]),
    (["student_base", "student_base", "single_a", BEST_SINGLE], {"single_a": 0.7, "single_b": 0.3},
     ["student_base", "single_a"]),  # duplicates go, the first place kept
    (["student_base"], {"single_a": None}, ["student_base"]),  # unrated singles only matter when best_single is asked for
    (["student_base", BEST_SINGLE], {"sft_merged": 0.9}, ["student_base"]),  # no single-teacher stage at all: dropped
    ([], {"single_a": 0.5}, []),
])
def test_resolve_baselines(configured, overall_vs_base, resolved):
    assert resolve_baselines(configured, overall_vs_base) == resolved


def test_resolve_baselines_refuses_when_no_single_teacher_has_a_verdict():
    with pytest.raises(ValueError, match=r"no verdict on any pair of single_a, single_z against student_base"):
        resolve_baselines(["student_base", BEST_SINGLE], {"single_z": None, "sft_merged": 0.9, "single_a": None})


# --- unparsed_shares -------------------------------------------------------------------------------------------------


def test_unparsed_shares_are_overall_worst_first():
    result = pl.DataFrame(
        [("sft", "student_base", "all", 10, 2), ("dpo", "student_base", "all", 10, 5), ("base", "single_a", "all", 0, 0),
         ("dpo", "student_base", "en", 4, 4), ("online", "student_base", "all", 8, 4)],
        schema=["stage", "baseline", "language", "judgements", "unparsed"], orient="row",
    )
    # 5/10 and 4/8 tie at 0.5 (stage name decides), then 2/10; no judgements is a share of 0, not a division by zero.
    assert unparsed_shares(result).rows() == [
        ("dpo", "student_base", 10, 5, 0.5), ("online", "student_base", 8, 4, 0.5), ("sft", "student_base", 10, 2, 0.2),
        ("base", "single_a", 0, 0, 0.0),
    ]


# --- pair_frame ------------------------------------------------------------------------------------------------------


def test_pair_frame_joins_the_stage_and_the_baseline_answers_per_prompt():
    generations = pl.DataFrame(
        [("x", "p2", "fr", "q2", "r2", "x2"), ("x", "p1", "en", "q1", "r1", "x1"), ("x", "p3", "en", "q3", "r3", "x3"),
         ("y", "p1", "en", "q1", "r1", "y1"), ("y", "p2", "fr", "q2", "r2", "y2"), ("z", "p3", "en", "q3", "r3", "z3")],
        schema=["stage", "prompt_id", "language", "prompt", "reference", "completion"], orient="row",
    )
    frame = pair_frame(generations, "x", "y")
    assert frame.columns == ["prompt_id", "language", "prompt", "reference", "candidate", "baseline"]
    # p3 has no answer from y: no pair. Sorted by language, then prompt.
    assert frame.rows() == [("p1", "en", "q1", "r1", "x1", "y1"), ("p2", "fr", "q2", "r2", "x2", "y2")]
    assert pair_frame(generations, "x", "missing").height == 0
