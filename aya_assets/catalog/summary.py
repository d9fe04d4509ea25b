"""The short summary `make demo` prints: what was built, in numbers, ending with the step-by-step win rates."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from aya_assets.catalog.sql import run_query

QUERIES = {
    "prompts per language (train / eval)": (
        "SELECT count(*) AS languages, sum(train) AS train, sum(eval) AS eval, min(train) AS fewest_train, "
        "min(eval) AS fewest_eval FROM ("
        "SELECT language, count(*) FILTER (split = 'train') AS train, count(*) FILTER (split = 'eval') AS eval "
        "FROM prompts GROUP BY 1)"
    ),
    "teacher with the highest win share per language (reward routing)": (
        "SELECT teacher AS winner, string_agg(language || '=' || round(win_share, 2), ' ' ORDER BY language) AS languages "
        "FROM (SELECT language, arg_max(teacher, win_share) AS teacher, max(win_share) AS win_share "
        "FROM teacher_wins GROUP BY 1) GROUP BY 1 ORDER BY 1"
    ),
    "DPO reward margin and accuracy at the last step, per cluster": (
        "SELECT asset, partition, round((metadata->>'$.last_reward_margins')::DOUBLE, 3) AS reward_margin, "
        "round((metadata->>'$.last_reward_accuracies')::DOUBLE, 3) AS accuracy FROM materializations "
        "WHERE asset LIKE '%dpo%' AND asset NOT LIKE '%merged' "
        "QUALIFY row_number() OVER (PARTITION BY asset, partition ORDER BY timestamp DESC) = 1 ORDER BY asset, partition"
    ),
    "routing: completions generated against the SFT student's quality (learned_k: the router's top k teachers)": (
        "SELECT routing, completions, round(share_of_reward, 3) AS share, "
        "round(win_rate_vs_best_single, 3) AS vs_best_single, round(win_rate_vs_reward, 3) AS vs_reward, "
        "round(exact_match, 3) AS exact FROM routing_comparison"
    ),
    "within-run averaging: each cluster SFT's final checkpoint against the average of its last kept ones": (
        "SELECT cluster, round(final_exact_match, 3) AS final_exact, round(averaged_exact_match, 3) AS averaged_exact, "
        "round(final_win_rate, 3) AS final_vs_student, round(averaged_win_rate, 3) AS averaged_vs_student, "
        "round(averaged_vs_final, 3) AS averaged_vs_final FROM within_run_comparison"
    ),
    "safety: harmful rate per stage (held-out red-team prompts, bootstrap 95% CI)": (
        "SELECT stage, n, round(harmful_rate, 3) AS harmful_rate, round(ci_low, 3) AS ci_low, round(ci_high, 3) AS ci_high "
        "FROM harm_rates WHERE language = 'all'"
    ),
    "safety merge sweep: harmful rate against general win rate vs student_base": (
        "SELECT weight, round(harmful_rate, 3) AS harmful_rate, round(harm_ci_high, 3) AS harm_ci_high, "
        "round(win_rate, 3) AS win_rate, round(win_ci_low, 3) AS win_ci_low, configured, pareto FROM safety_tradeoff "
        "ORDER BY weight"
    ),
    "step by step: overall win rate per stage (ties = 1/2, bootstrap 95% CI)": (
        "SELECT baseline, stage, wins, ties, losses, round(win_rate, 3) AS win_rate, round(ci_low, 3) AS ci_low, "
        "round(ci_high, 3) AS ci_high FROM win_rates WHERE language = 'all'"
    ),
}


def summary(db: Path, warehouse: Path, stages: list[str]) -> str:
    parts = []
    for title, query in QUERIES.items():
        try:
            frame = run_query(db, warehouse, query)
        except Exception as exc:  # a stage not materialized yet has no view; say so instead of failing the demo
            parts.append(f"{title}: not available ({type(exc).__name__})")
            continue
        if "stage" in frame.columns:  # recipe order, not alphabetical
            order = pl.col("stage").replace_strict({s: i for i, s in enumerate(stages)}, default=99)
            frame = frame.sort(["baseline", order] if "baseline" in frame.columns else [order])
        with pl.Config(tbl_rows=200, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True, fmt_str_lengths=200,
                       tbl_width_chars=200):
            parts.append(f"{title}:\n{frame}")
    return "\n\n".join(parts)
