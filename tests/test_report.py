"""The report's tables as pure functions: the step-by-step table in recipe order, rates as the report prints them,
and what it says about how they were measured (best single teacher, length, regression check, zero-width intervals)."""

import re

import dagster as dg
import polars as pl
import pytest

from aya_assets.evaluation.report import (NO_VERDICT, findings_lines, findings_metadata, rate_text, regression_metadata,
                                          shown, step_table)
from aya_assets.evaluation.winrates import BestSingle, Findings, LengthRelation, Regression, ZeroWidth

COLUMNS = ["baseline", "stage", "wins", "ties", "losses", "win_rate", "ci_low", "ci_high", "prompts", "unparsed"]


def result(rows: list[tuple]) -> pl.DataFrame:
    """win_rates rows of (stage, baseline, language, win_rate); counts are filler, the CI is the rate ± 0.1."""
    return pl.DataFrame(
        [{"stage": s, "baseline": b, "language": lang, "prompts": 4, "wins": 2, "ties": 0, "losses": 2, "win_rate": r,
          "ci_low": None if r is None else r - 0.1, "ci_high": None if r is None else r + 0.1, "judgements": 8,
          "unparsed": 0} for s, b, lang, r in rows],
        schema_overrides={"win_rate": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64},
    )


def test_step_table_is_overall_per_baseline_in_recipe_order():
    rows = result([("dpo", "single_a", "all", 0.6), ("sft", "student_base", "all", 0.7), ("dpo", "student_base", "all", 0.8),
                   ("sft", "single_a", "all", 0.4), ("sft", "student_base", "en", 0.9), ("extra", "single_a", "all", 0.5)])
    table = step_table(rows, ["sft", "dpo"])
    assert table.columns == COLUMNS
    # Baselines alphabetically; within one, the recipe's order; a stage outside the recipe last; no per-language row.
    assert table.select("baseline", "stage", "win_rate").rows() == [
        ("single_a", "sft", 0.4), ("single_a", "dpo", 0.6), ("single_a", "extra", 0.5),
        ("student_base", "sft", 0.7), ("student_base", "dpo", 0.8),
    ]


@pytest.mark.parametrize("rate, text", [(None, NO_VERDICT), (0.5, "0.500"), (2 / 3, "0.667"), (1.0, "1.000"), (0.0, "0.000")])
def test_rate_text(rate, text):
    assert rate_text(rate) == text


@pytest.mark.parametrize("rate, win_rate, ci_low, ci_high", [
    (2 / 3, "0.667", "0.567", "0.767"),  # 2/3 - 0.1 = 0.5667, + 0.1 = 0.7667
    (0.5, "0.5", "0.4", "0.6"),  # rounded, not padded: the shortest float text
    (None, NO_VERDICT, "", ""),
])
def test_shown_rounds_rates_and_names_a_stage_without_verdicts(rate, win_rate, ci_low, ci_high):
    table = shown(step_table(result([("sft", "student_base", "all", rate)]), ["sft"]))
    assert "prompts" not in table.columns
    assert table.row(0, named=True) == {"baseline": "student_base", "stage": "sft", "wins": 2, "ties": 0, "losses": 2,
                                        "win_rate": win_rate, "ci_low": ci_low, "ci_high": ci_high, "unparsed": 0}


FINDINGS = Findings(
    best_single=BestSingle("single_teacher_x", 58, {"single_teacher_x": 0.61, "single_teacher_y": 0.57, "single_z": None},
                           0.04, 0.72),
    selection_prompts=60, held_out_prompts=124, selection_fraction=1 / 3,
    lengths=LengthRelation(500, 480, 0.6312, 0.2873), lengths_at_budget=LengthRelation(200, 190, 0.5, -0.01),
    zero_width=ZeroWidth(7, 230, 5),
    regression=Regression("online_3_merged", "sft_merged", 124, 0.46, 0.40, 0.52, 0.0),
)


def test_the_report_says_how_its_rates_were_measured():
    text = "\n".join(findings_lines(FINDINGS))
    for phrase in ("best_single_teacher is **single_teacher_x**", "selection slice, 60 eval prompts",
                   "0.610 over 58 prompts with a verdict, +0.040 ahead of the runner-up", "first in 72% of bootstrap",
                   "over the other 124 prompts",
                   "Of 500 decisive pairs", "480 have answers of different length", "won 63.1% (point-biserial r +0.287)",
                   "(190 such pairs)", "won 50.0% (point-biserial r -0.010)",
                   "online_3_merged vs sft_merged, judged directly", "0.460, 95% CI [0.400, 0.520] over 124 prompts",
                   "0.5 - tolerance = 0.500", "passed",
                   "7 of 230 have zero width (5 of them all ties)"):
        assert phrase in text, phrase
    assert re.search(r"\| single_teacher_x +\| 0.61 +\|", text) and re.search(rf"\| single_z +\| {NO_VERDICT} +\|", text)
    assert text.index("| single_teacher_x") < text.index("| single_teacher_y") < text.index("| single_z")  # best first


def test_the_report_without_a_best_single_or_a_regression_comparison():
    text = "\n".join(findings_lines(FINDINGS._replace(best_single=None, selection_prompts=0, regression=None,
                                                       lengths=LengthRelation(0, 0, None, None))))
    assert "over all 124 eval prompts" in text and "nothing to compare" in text and "won n/a (point-biserial r n/a)" in text


def test_findings_and_the_regression_check_as_metadata():
    meta = findings_metadata(FINDINGS)
    assert (meta["best_single_teacher"], meta["best_single_selection_prompts"], meta["best_single_margin"]) == (
        "single_teacher_x", 58, 0.04)
    assert (meta["selection_prompts"], meta["held_out_prompts"], meta["longer_answer_win_share"]) == (60, 124, 0.6312)
    assert meta["per_language_zero_width_intervals"] == "7 of 230 (5 all ties)"
    assert isinstance(meta["best_single_selection"], dg.MarkdownMetadataValue)
    assert "best_single_teacher" not in findings_metadata(FINDINGS._replace(best_single=None))
    failing = FINDINGS.regression._replace(ci_high=0.49)
    check = regression_metadata(failing)
    assert (check["ci"], check["prompts"], check["fails_below"]) == ("[0.400, 0.490]", 124, 0.5)
    assert "FAILED" in check["summary"] and not failing.passed
