"""The cost-quality comparison of routings: what each generated (routing_costs) against what its SFT student is worth
(win rate vs the best single teacher and vs reward routing's student, held-out exact match), as a table, a chart and
a section of the report."""

from __future__ import annotations

import matplotlib.pyplot as plt
import polars as pl

from aya_assets.artifacts import plots
from aya_assets.artifacts.tables import markdown_table

COMPARISON_SCHEMA = {
    "routing": pl.String, "completions": pl.Int64, "share_of_reward": pl.Float64, "teacher_seconds": pl.Float64,
    "best_single": pl.String, "win_rate_vs_best_single": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
    "win_rate_vs_reward": pl.Float64, "reward_ci_low": pl.Float64, "reward_ci_high": pl.Float64,
    "exact_match": pl.Float64, "exact_ci_low": pl.Float64, "exact_ci_high": pl.Float64,
}


def best_single_of(win_rates: pl.DataFrame) -> str | None:
    """The single-teacher stage evaluation compared against (best_single_teacher, resolved), if any."""
    singles = sorted(b for b in win_rates["baseline"].unique() if b.startswith("single_"))
    return singles[0] if singles else None


def comparison_table(routings: list[str], costs: pl.DataFrame, win_rates: pl.DataFrame, vs_reward: pl.DataFrame,
                     quality: pl.DataFrame) -> pl.DataFrame:
    """One row per routing (in `routings` order): its generation cost and its student's overall rates.

    `vs_reward`: summaries (stage, language, win_rate, ci_low, ci_high) of each routing's student judged against
    reward routing's; reward routing's own row there is empty (it is the reference, 0.5 by definition).
    """
    best = best_single_of(win_rates)
    overall = win_rates.filter((pl.col("language") == "all") & (pl.col("baseline") == (best or "")))
    rows = (pl.DataFrame({"routing": routings})
            .join(costs.select("routing", "completions", "share_of_reward", "teacher_seconds"), on="routing", how="left")
            .join(overall.select(routing="stage", win_rate_vs_best_single="win_rate", ci_low="ci_low", ci_high="ci_high"),
                  on="routing", how="left")
            .join(vs_reward.filter(pl.col("language") == "all").select(
                routing="stage", win_rate_vs_reward="win_rate", reward_ci_low="ci_low", reward_ci_high="ci_high"),
                on="routing", how="left")
            .join(quality.filter(pl.col("language") == "all").select(
                routing="stage", exact_match="exact_match", exact_ci_low="ci_low", exact_ci_high="ci_high"),
                on="routing", how="left")
            .with_columns(best_single=pl.lit(best, dtype=pl.String)))
    return rows.select(*COMPARISON_SCHEMA).cast(COMPARISON_SCHEMA)


def chart(table: pl.DataFrame) -> bytes:
    """Quality against cost, one point per routing: win rate vs the best single teacher, and held-out exact match,
    against the share of reward routing's completions generated (95% intervals as error bars)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    panels = [("win_rate_vs_best_single", "ci_low", "ci_high", f"win rate vs {table['best_single'][0] or 'n/a'}"),
              ("exact_match", "exact_ci_low", "exact_ci_high", "held-out exact match")]
    for ax, (value, low, high, label) in zip(axes, panels):
        shown = table.filter(pl.col(value).is_not_null() & pl.col("share_of_reward").is_not_null())
        for i, r in enumerate(shown.iter_rows(named=True)):
            ax.errorbar(r["share_of_reward"], r[value], yerr=[[r[value] - r[low]], [r[high] - r[value]]], fmt="o", capsize=3)
            # Alternate label sides: two routings can generate exactly as much (fixed and learned_1 often do).
            ax.annotate(r["routing"], (r["share_of_reward"], r[value]), textcoords="offset points",
                        xytext=(5, 4) if i % 2 else (-5, -10), ha="left" if i % 2 else "right", fontsize=7)
        ax.set(xlabel="completions generated (share of reward routing's)", ylabel=label, xlim=(0, 1.1))
    axes[0].axhline(0.5, color="grey", lw=0.8, ls="--")
    axes[1].set_ylim(0, 1)
    fig.suptitle("Routing: quality against generation cost", fontsize=10)
    return plots.to_png(fig)


def shown(table: pl.DataFrame) -> pl.DataFrame:
    """The table as the report prints it: rates to 3 decimals, seconds to 1, blank where nothing was measured (reward
    routing against itself)."""
    rounded = table.drop("best_single").with_columns(pl.col(pl.Float64).exclude("teacher_seconds").round(3),
                                                     pl.col("teacher_seconds").round(1))
    return rounded.with_columns(pl.col(pl.Float64).cast(pl.String).fill_null(""))


def section(table: pl.DataFrame, accuracy: pl.DataFrame) -> str:
    """The report's routing section: the comparison table and chart, and the router's held-out accuracy."""
    overall = accuracy.filter(pl.col("language") == "all").select("routing", "prompts", "accuracy", "ci_low", "ci_high")
    return "\n".join([
        "## Routing: quality against generation cost", "",
        "Each routing's all-language SFT student (the baseline_sft partitions), next to what that routing generates of "
        "the teacher pool. learned_<k>: the calibration slice answered by every teacher, then only the router's top k "
        "teachers elsewhere; the student trains on the full pool's scores restricted to those completions. "
        "Seconds are each completion's share of its generation batch's wall time in this run's pool, so a routing's "
        "seconds are what its completions took here, not a separate run's. win_rate_vs_best_single and win_rate_vs_reward are judged pairwise on the held-out eval "
        "prompts (both orders, ties 1/2); exact_match is over the eval items with a reference.", "",
        "![routing cost and quality](routing_comparison.png)", "",
        markdown_table(shown(table), rows=table.height), "",
        "**The router** (held out: prompts it did not train on; accuracy: a picked teacher is among those the arbiter "
        "scores best, ties counting; fixed: the best teacher per language on the prompts the router trained on):", "",
        markdown_table(overall.with_columns(pl.col("accuracy", "ci_low", "ci_high").round(3)), rows=overall.height), "",
    ])
