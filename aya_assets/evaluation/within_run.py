"""What within-run averaging changes: each cluster's SFT run at its final checkpoint against the average of its kept
checkpoints (held-out exact match, win rate vs the student, and the two judged head to head), as a table and a
section of the report."""

from __future__ import annotations

import polars as pl

from aya_assets.artifacts.tables import markdown_table

COMPARISON_SCHEMA = {
    "cluster": pl.String, "final_stage": pl.String, "averaged_stage": pl.String,
    "final_exact_match": pl.Float64, "averaged_exact_match": pl.Float64, "exact_match_change": pl.Float64,
    "final_win_rate": pl.Float64, "averaged_win_rate": pl.Float64, "win_rate_change": pl.Float64,
    "averaged_vs_final": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64, "prompts": pl.Int64,
}


def comparison_table(pairs: dict[str, tuple[str, str]], quality: pl.DataFrame, win_rates: pl.DataFrame, baseline: str,
                     head_to_head: pl.DataFrame) -> pl.DataFrame:
    """One row per cluster: `pairs` maps it to (final checkpoint's stage, averaged stage).

    quality: stage_quality rows; win_rates: win_rates rows (the `baseline` comparisons are read); head_to_head:
    summaries (stage, baseline, language, win_rate, ci_low, ci_high, prompts) of each averaged stage against its final
    checkpoint's.
    """
    exact = {r["stage"]: r["exact_match"] for r in quality.filter(pl.col("language") == "all").iter_rows(named=True)}
    wins = {r["stage"]: r["win_rate"] for r in win_rates.filter((pl.col("language") == "all")
                                                                & (pl.col("baseline") == baseline)).iter_rows(named=True)}
    head = {r["stage"]: r for r in head_to_head.filter(pl.col("language") == "all").iter_rows(named=True)}

    def change(a, b):
        return None if a is None or b is None else b - a

    rows = []
    for cluster, (final, averaged) in pairs.items():
        h = head.get(averaged, {})
        rows.append({"cluster": cluster, "final_stage": final, "averaged_stage": averaged,
                     "final_exact_match": exact.get(final), "averaged_exact_match": exact.get(averaged),
                     "exact_match_change": change(exact.get(final), exact.get(averaged)),
                     "final_win_rate": wins.get(final), "averaged_win_rate": wins.get(averaged),
                     "win_rate_change": change(wins.get(final), wins.get(averaged)),
                     "averaged_vs_final": h.get("win_rate"), "ci_low": h.get("ci_low"), "ci_high": h.get("ci_high"),
                     "prompts": h.get("prompts")})
    return pl.DataFrame(rows, schema=COMPARISON_SCHEMA)


def section(table: pl.DataFrame, baseline: str, steps: str) -> str:
    """The report's within-run section."""
    shown = table.drop("final_stage", "averaged_stage").with_columns(pl.col(pl.Float64).round(3))
    return "\n".join([
        "## Within-run averaging: the final checkpoint against the average of the last kept ones", "",
        f"Each cluster's SFT run keeps its last checkpoints ({steps}); sft_avg_<cluster> is their linear average "
        "(mergekit), which the across-cluster merge then takes in place of the final checkpoint. exact_match is over "
        f"held-out items with a reference; win rates are vs {baseline}; averaged_vs_final judges the two head to head "
        "(both orders, ties 1/2, bootstrap 95% CI).", "",
        markdown_table(shown, rows=shown.height), "",
    ])
