"""The report's tables as pure functions: the step-by-step table in recipe order, and rates as the report prints them."""

import polars as pl
import pytest

from aya_assets.evaluation.report import NO_VERDICT, rate_text, shown, step_table

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
