"""Win-rate arithmetic as pure functions over small tables: the bootstrap intervals (one group and many), the
per-language summary, the selection slice and the best single teacher chosen on it, the baselines it resolves to,
the length-verdict relation, zero-width intervals, the paired regression test, unparsed shares, the pair frame, and
bench/seeds.py's aggregation over seeds."""

import time

import numpy as np
import polars as pl
import pytest

from aya_assets.evaluation.bootstrap import bootstrap_interval, grouped_intervals
from aya_assets.evaluation.winrates import (BEST_SINGLE, BestSingle, LengthRelation, ZeroWidth, choose_best_single,
                                            in_selection, length_relation, pair_frame, paired_regression,
                                            resolve_baselines, split_selection, summarize, unparsed_shares,
                                            zero_width_intervals)
from bench.seeds import aggregate, headlines, markdown

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
    # Another seed, other draws (20 discrete scores put the ends on a 1/40 grid, so two seeds can still agree).
    assert len({bootstrap_interval(SPREAD, resamples=500, seed=s) for s in range(3, 8)}) > 1


@pytest.mark.parametrize("scores", [SPREAD, np.array([1.0, 0.0]), np.array([0.0, 0.0, 0.0, 1.0]), np.array([0.5, 1.0])])
def test_bootstrap_interval_contains_the_mean(scores):
    low, high = bootstrap_interval(scores, resamples=500)
    assert 0.0 <= low <= scores.mean() <= high <= 1.0


def test_bootstrap_interval_narrows_as_prompts_grow():
    # Half wins, half losses: the mean's standard error is 0.5 / sqrt(n), so 20x the prompts is ~4.5x narrower.
    widths = [np.diff(bootstrap_interval(np.array([1.0, 0.0] * n), resamples=1000)).item() for n in (5, 20, 100)]
    assert widths == sorted(widths, reverse=True) and widths[-1] < widths[0] / 3


def test_grouped_intervals_resample_each_group_on_its_own():
    # Three groups laid out one after another: constant wins (no width), constant ties, and 100 half wins / half losses.
    scores = np.concatenate([np.ones(4), np.full(3, 0.5), np.tile([1.0, 0.0], 50)])
    intervals = grouped_intervals(scores, np.array([4, 3, 100]), resamples=2000, seed=1)
    assert intervals.shape == (3, 2)
    assert intervals[0].tolist() == [1.0, 1.0] and intervals[1].tolist() == [0.5, 0.5]  # never mixed with a neighbour
    low, high = intervals[2]
    # The mean of 100 fair coin flips: standard error 0.05, so the 95% interval is about 0.5 +- 0.098.
    assert low < 0.5 < high and 0.17 < high - low < 0.23 and abs((low + high) / 2 - 0.5) < 0.02
    assert grouped_intervals(scores, np.array([4, 3, 100]), resamples=2000, seed=1).tolist() == intervals.tolist()
    assert grouped_intervals(np.array([]), np.array([], dtype=int)).shape == (0, 2)


def test_grouped_intervals_agree_with_a_loop_per_group():
    rng = np.random.default_rng(7)
    sizes = np.array([5, 40, 100, 12])
    scores = rng.choice([0.0, 0.5, 1.0], sizes.sum())
    together = grouped_intervals(scores, sizes, resamples=4000, seed=3)
    starts = np.cumsum(sizes) - sizes
    for (low, high), start, size in zip(together, starts, sizes):
        alone = bootstrap_interval(scores[start:start + size], resamples=4000, seed=11)
        assert abs(low - alone[0]) < 0.06 and abs(high - alone[1]) < 0.06  # same distribution, other draws


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


def test_summarize_at_100_prompts_per_language_is_right_and_quick():
    # 23 languages x 100 prompts: each language's interval is its own (a language of all wins has none), and 36
    # summaries (12 stages x 3 baselines) take well under a few seconds.
    rng = np.random.default_rng(0)
    languages = [f"l{i:02d}" for i in range(23)]
    first = rng.choice([0.0, 0.5, 1.0], 2300)
    first[:100] = 1.0
    verdicts = pl.DataFrame({"prompt_id": [f"p{i:04d}" for i in range(2300)], "language": np.repeat(languages, 100),
                             "as_first": first, "as_second": first}).with_columns(verdict=pl.col("as_first"))
    started = time.perf_counter()
    for _ in range(36):
        summary = summarize(verdicts)
    assert time.perf_counter() - started < 10
    rows = {r["language"]: r for r in summary.iter_rows(named=True)}
    assert len(rows) == 24 and rows["all"]["prompts"] == 2300
    assert (rows["l00"]["ci_low"], rows["l00"]["win_rate"], rows["l00"]["ci_high"]) == (1.0, 1.0, 1.0)
    for language in languages[1:]:
        row = rows[language]
        assert row["prompts"] == 100 and row["ci_low"] < row["win_rate"] < row["ci_high"]
        assert 0.1 < row["ci_high"] - row["ci_low"] < 0.3  # 100 verdicts of 0 / 0.5 / 1: about +- 0.08
    assert rows["all"]["ci_high"] - rows["all"]["ci_low"] < 0.05
    assert zero_width_intervals(summary.with_columns(stage=pl.lit("x"))) == ZeroWidth(1, 23, 0)


def test_summarize_of_no_verdicts_is_the_all_row_alone():
    summary = summarize(verdict_rows([]), resamples=10)
    assert summary.rows(named=True) == [{"language": "all", "prompts": 0, "wins": 0, "ties": 0, "losses": 0,
                                         "win_rate": None, "ci_low": None, "ci_high": None, "judgements": 0, "unparsed": 0}]


# --- the selection slice and the best single teacher ------------------------------------------------------------------


def test_the_selection_slice_is_a_seeded_hash_of_the_prompt_id():
    ids = [f"prompt{i}" for i in range(3000)]
    third = {p for p in ids if in_selection(p, seed=5, fraction=1 / 3)}
    assert 0.3 < len(third) / len(ids) < 0.37
    assert third == {p for p in ids if in_selection(p, seed=5, fraction=1 / 3)}  # deterministic
    assert third != {p for p in ids if in_selection(p, seed=6, fraction=1 / 3)}  # another seed, another slice
    assert {p for p in ids if in_selection(p, seed=5, fraction=0.2)} < third  # a smaller fraction, a subset


def test_split_selection_gives_every_stage_the_same_slice():
    generations = pl.DataFrame({"stage": ["a"] * 60 + ["b"] * 60, "prompt_id": [f"p{i}" for i in range(60)] * 2})
    selection, held_out = split_selection(generations, seed=0, fraction=1 / 3)
    assert selection.height + held_out.height == 120 and 0 < selection.height < 60
    for part in (selection, held_out):
        ids = part.group_by("stage").agg(pl.col("prompt_id").sort()).sort("stage")["prompt_id"].to_list()
        assert ids[0] == ids[1]
    assert not set(selection["prompt_id"]) & set(held_out["prompt_id"])


def verdicts(*values) -> pl.DataFrame:
    return pl.DataFrame({"prompt_id": [f"p{i}" for i in range(len(values))], "verdict": list(values)},
                        schema_overrides={"verdict": pl.Float64})


def test_choose_best_single_reports_the_pick_its_margin_and_how_firm_it_is():
    clear = choose_best_single({"single_a": verdicts(*[1.0] * 9, 0.5), "single_b": verdicts(*[0.0] * 9, 0.5)})
    assert clear == BestSingle("single_a", 10, {"single_a": 0.95, "single_b": 0.05}, pytest.approx(0.9), 1.0)
    # 6/10 vs 5/10, won on different prompts: a pick that resamples often overturn.
    close = choose_best_single({"single_a": verdicts(*[1.0] * 6, *[0.0] * 4), "single_b": verdicts(*[0.0] * 5, *[1.0] * 5),
                                "single_c": verdicts(None, None, 0.0)}, resamples=2000, seed=1)
    assert (close.stage, close.prompts, close.rates["single_c"]) == ("single_a", 10, 0.0)
    assert close.margin == pytest.approx(0.1) and 0.3 < close.stability < 0.95
    # Equal rates go to the name that sorts last, in the choice and in every resample alike.
    tied = choose_best_single({"single_a": verdicts(1.0, 0.0), "single_b": verdicts(1.0, 0.0)})
    assert (tied.stage, tied.margin, tied.stability) == ("single_b", 0.0, 1.0)
    dominant = choose_best_single({"single_b": verdicts(1.0, 0.0, 0.0, 0.0), "single_a": verdicts(1.0, 0.0, 0.0, 1.0)})
    # a beats b on prompt 3 alone: a resample without it is a tie, which goes to single_b (1 - (3/4)^4 = 68% keep a).
    assert dominant.stage == "single_a" and 0.6 < dominant.stability < 0.76
    alone = choose_best_single({"single_a": verdicts(0.5, None)})
    assert (alone.stage, alone.prompts, alone.margin) == ("single_a", 1, None)
    assert choose_best_single({}) is None  # no single-teacher stage


def test_choose_best_single_refuses_a_slice_without_verdicts():
    with pytest.raises(ValueError, match=r"no verdict on any pair of single_a, single_z against student_base on the "
                                         r"selection slice \(0 prompts"):
        choose_best_single({"single_z": verdicts(), "single_a": verdicts()})


BEST_B = BestSingle("single_b", 10, {"single_a": 0.4, "single_b": 0.6}, 0.2, 0.9)
STAGES = ["student_base", "single_a", "single_b", "sft_merged", "final"]


@pytest.mark.parametrize("configured, best, resolved", [
    (["student_base", BEST_SINGLE], BEST_B, ["student_base", "single_b"]),
    (["student_base", BEST_SINGLE, "sft_merged"], BEST_B, ["student_base", "single_b", "sft_merged"]),
    (["student_base", "student_base", "single_b", BEST_SINGLE], BEST_B, ["student_base", "single_b"]),  # each once
    (["student_base", BEST_SINGLE], None, ["student_base"]),  # no single-teacher stage at all: dropped
    ([], BEST_B, []),
])
def test_resolve_baselines(configured, best, resolved):
    assert resolve_baselines(configured, best, STAGES) == resolved


def test_resolve_baselines_names_a_baseline_that_is_not_an_evaluated_stage():
    with pytest.raises(ValueError, match=r"evaluation.baselines: sft_merge is not an evaluated stage"):
        resolve_baselines(["student_base", "sft_merge"], None, STAGES)


# --- length and verdicts, zero-width intervals, the paired regression test ---------------------------------------------


def lengths(rows: list[tuple[float | None, int, int]]) -> pl.DataFrame:
    """(verdict, candidate_chars, baseline_chars) per pair, as compare() joins answer_lengths to the verdicts."""
    return pl.DataFrame(rows, schema={"verdict": pl.Float64, "candidate_chars": pl.Int64, "baseline_chars": pl.Int64},
                        orient="row")


@pytest.mark.parametrize("rows, decisive, unequal, longer_wins, sign", [
    ([(1.0, 9, 3), (0.0, 2, 8), (1.0, 5, 4), (0.5, 1, 9), (None, 9, 1)], 3, 3, 1.0, 1),  # ties and unparsed left out
    ([(0.0, 9, 3), (1.0, 2, 8), (0.25, 7, 4), (0.75, 3, 5)], 4, 4, 0.0, -1),  # one-sided verdicts count by their side
    ([(1.0, 4, 4), (0.0, 4, 4), (1.0, 6, 2), (0.0, 6, 2)], 4, 2, 0.5, 0),  # equal lengths: decisive, not unequal
])
def test_length_relation(rows, decisive, unequal, longer_wins, sign):
    half = len(rows) // 2
    out = length_relation([lengths(rows[:half]), lengths(rows[half:])])  # several comparisons pool
    assert (out.decisive, out.unequal, out.longer_wins) == (decisive, unequal, longer_wins)
    assert np.sign(round(out.correlation, 9)) == sign


def test_length_relation_without_a_decisive_pair_says_nothing():
    assert length_relation([]) == LengthRelation(0, 0, None, None)
    assert length_relation([lengths([(0.5, 3, 9), (None, 1, 2)])]) == LengthRelation(0, 0, None, None)
    assert length_relation([lengths([(1.0, 3, 3), (1.0, 5, 2)])]).correlation is None  # every pair won: no spread


def test_zero_width_intervals_count_per_language_rows_only():
    result = pl.DataFrame(
        [("all", 10, 10, 0.5, 0.5), ("en", 4, 4, 0.5, 0.5), ("fr", 3, 0, 1.0, 1.0), ("de", 3, 1, 0.2, 0.9),
         ("ja", 0, 0, None, None)],
        schema=["language", "prompts", "ties", "ci_low", "ci_high"], orient="row")
    assert zero_width_intervals(result) == ZeroWidth(count=2, intervals=3, all_ties=1)


@pytest.mark.parametrize("ci, tolerance, passed", [
    ((0.30, 0.49), 0.0, False),  # the whole interval below 0.5: a regression
    ((0.30, 0.49), 0.02, True),  # within the tolerance
    ((0.35, 0.55), 0.0, True),  # trailing on the point estimate is not enough
    ((0.50, 0.50), 0.0, True),
    ((None, None), 0.0, True),  # no verdict: nothing shows a regression
])
def test_paired_regression_fails_only_when_the_interval_is_below_the_floor(ci, tolerance, passed):
    rate = None if ci[0] is None else sum(ci) / 2
    summary = pl.DataFrame({"language": ["all", "en"], "prompts": [40, 20], "win_rate": [rate, 0.1],
                            "ci_low": [ci[0], 0.0], "ci_high": [ci[1], 0.2]},
                           schema_overrides={"win_rate": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64})
    r = paired_regression(summary, "final", "sft_merged", tolerance)
    assert (r.stage, r.baseline, r.prompts, r.ci_low, r.ci_high) == ("final", "sft_merged", 40, *ci)
    assert r.floor == pytest.approx(0.5 - tolerance) and r.passed is passed


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
        [("x", "p2", "fr", "q2", "r2", "x2", "stop"), ("x", "p1", "en", "q1", "r1", "x1", "length"),
         ("x", "p3", "en", "q3", "r3", "x3", "stop"), ("y", "p1", "en", "q1", "r1", "y1", "stop"),
         ("y", "p2", "fr", "q2", "r2 longer", "y2", "length"), ("z", "p3", "en", "q3", "r3", "z3", "stop")],
        schema=["stage", "prompt_id", "language", "prompt", "reference_at_budget", "completion", "finish_reason"],
        orient="row",
    ).with_columns(reference=pl.lit("the whole reference"))
    frame = pair_frame(generations, "x", "y")
    assert frame.columns == ["prompt_id", "language", "prompt", "reference", "candidate", "baseline", "candidate_finish",
                             "baseline_finish"]
    # p3 has no answer from y: no pair. Sorted by language, then prompt. The reference is the one cut to the budget;
    # where the two stages' cuts differ (p2: another tokenizer), the longer.
    assert frame.rows() == [("p1", "en", "q1", "r1", "x1", "y1", "length", "stop"),
                            ("p2", "fr", "q2", "r2 longer", "x2", "y2", "stop", "length")]
    assert pair_frame(generations, "x", "missing").height == 0


# --- bench/seeds.py: the headline rates over seeds ---------------------------------------------------------------------


def test_seeds_aggregate_mean_spread_and_half_width():
    # Two seeds' win_rates `all` rows (final is online_1_merged, best single single_a then single_b).
    def rows(rates: dict[tuple[str, str], tuple[float, float, float]]) -> pl.DataFrame:
        return pl.DataFrame([(s, b, "all", r, lo, hi) for (s, b), (r, lo, hi) in rates.items()],
                            schema=["stage", "baseline", "language", "win_rate", "ci_low", "ci_high"], orient="row")

    seeds = {
        1: (rows({("online_1_merged", "student_base"): (0.70, 0.60, 0.80), ("online_1_merged", "single_a"): (0.55, 0.45, 0.65),
                  ("online_1_merged", "sft_merged"): (0.52, 0.42, 0.62), ("sft_merged", "single_a"): (0.50, 0.44, 0.56),
                  ("sft_merged", "student_base"): (0.9, 0.8, 1.0)}), "single_a", "online_1_merged"),
        2: (rows({("online_1_merged", "student_base"): (0.60, 0.54, 0.66), ("online_1_merged", "single_b"): (0.45, 0.35, 0.55),
                  ("online_1_merged", "sft_merged"): (0.48, 0.40, 0.56), ("sft_merged", "single_b"): (0.40, 0.30, 0.50)}),
            "single_b", "online_1_merged"),
    }
    table = aggregate({seed: headlines(result, best, final) for seed, (result, best, final) in seeds.items()})
    assert table.columns == ["headline", "seed 1", "seed 2", "mean", "min", "max", "spread", "mean_ci_half_width"]
    got = {r["headline"]: r for r in table.iter_rows(named=True)}
    assert list(got) == ["final vs student_base", "final vs best single", "final vs sft_merged", "sft_merged vs best single"]
    vs_base = got["final vs student_base"]
    assert (vs_base["seed 1"], vs_base["seed 2"]) == (0.70, 0.60)
    assert (vs_base["mean"], vs_base["min"], vs_base["max"]) == (pytest.approx(0.65), 0.60, 0.70)
    assert vs_base["spread"] == pytest.approx(0.10) and vs_base["mean_ci_half_width"] == pytest.approx((0.10 + 0.06) / 2)
    best = got["final vs best single"]  # each seed against its own best single teacher
    assert best["mean"] == pytest.approx(0.50) and best["spread"] == pytest.approx(0.10)
    assert got["sft_merged vs best single"]["mean_ci_half_width"] == pytest.approx((0.06 + 0.10) / 2)
    text = markdown(table, {1: "single_a", 2: "single_b"})
    assert "| final vs student_base | 0.700 | 0.600 | 0.650 | 0.600 | 0.700 | 0.100 | 0.080 |" in text
    assert "best single teacher per seed: 1 single_a, 2 single_b" in text


def test_seeds_aggregate_says_when_a_seed_lacks_a_headline():
    result = pl.DataFrame([("final", "student_base", "all", None, None, None)],
                          schema={"stage": pl.String, "baseline": pl.String, "language": pl.String, "win_rate": pl.Float64,
                                  "ci_low": pl.Float64, "ci_high": pl.Float64}, orient="row")
    table = aggregate({3: headlines(result, None, "final")})
    row = table.row(0, named=True)
    assert row["seed 3"] is None and row["mean"] is None and row["mean_ci_half_width"] is None
