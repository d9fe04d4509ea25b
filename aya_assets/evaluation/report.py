"""Win-rate charts (step by step, per language) and data/reports/latest.md."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from aya_assets.artifacts import plots
from aya_assets.artifacts.atomic import write_bytes
from aya_assets.artifacts.tables import markdown_table


NO_VERDICT = "no parsed verdicts"


def rate_text(rate: float | None) -> str:
    return NO_VERDICT if rate is None else f"{rate:.3f}"


def step_table(result: pl.DataFrame, stages: list[str]) -> pl.DataFrame:
    """Overall win rate of every stage against every baseline, in recipe order."""
    order = {s: i for i, s in enumerate(stages)}
    return (
        result.filter(pl.col("language") == "all")
        .with_columns(_order=pl.col("stage").replace_strict(order, default=len(order)))
        .sort("baseline", "_order")
        .select("baseline", "stage", "wins", "ties", "losses", "win_rate", "ci_low", "ci_high", "prompts", "unparsed")
    )


def shown(table: pl.DataFrame) -> pl.DataFrame:
    """A win-rate table as the report prints it: rates to 3 decimals, a stage the judge never decided said so."""
    return table.with_columns(
        pl.col("win_rate").round(3).cast(pl.String).fill_null(NO_VERDICT),
        *(pl.col(c).round(3).cast(pl.String).fill_null("") for c in ("ci_low", "ci_high")),
    ).drop("prompts")


def grouped_bar_chart(rows: pl.DataFrame, category: str, categories: list[str], baselines: list[str], title: str) -> bytes:
    """Win rate with its 95% interval per category (stage or language), one bar per baseline."""
    fig, ax = plt.subplots(figsize=(max(6.5, 0.5 * len(categories)), 3.6))
    width = 0.8 / max(len(baselines), 1)
    for i, b in enumerate(baselines):
        decided = rows.filter((pl.col("baseline") == b) & pl.col("win_rate").is_not_null())  # nothing to draw otherwise
        by = {r[category]: r for r in decided.iter_rows(named=True)}
        present = [c for c in categories if c in by]
        x = np.array([categories.index(c) for c in present]) + (i - (len(baselines) - 1) / 2) * width
        vals = np.array([by[c]["win_rate"] for c in present], dtype=float)
        low = np.array([by[c]["ci_low"] for c in present], dtype=float)
        high = np.array([by[c]["ci_high"] for c in present], dtype=float)
        ax.bar(x, vals, width, yerr=[vals - low, high - vals], capsize=2, label=f"vs {b}")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(range(len(categories)), categories, rotation=35 if category == "stage" else 0,
                  ha="right" if category == "stage" else "center", fontsize=8)
    ax.set(ylim=(0, 1), ylabel="win rate (ties = 1/2)", title=title)
    ax.legend(fontsize=7)
    return plots.to_png(fig)


def write(result: pl.DataFrame, stages: list[str], baselines: list[str], final: str, reports: Path, judge: str) -> dict[str, bytes]:
    """Both charts as PNGs under `reports`, and latest.md with the tables; returns the PNGs for the UI."""
    table = step_table(result, stages)
    final_rows = result.filter((pl.col("stage") == final) & (pl.col("language") != "all"))
    charts = {
        "step_by_step": grouped_bar_chart(table, "stage", stages, baselines,
                                          "Step by step: overall win rate per stage (95% CI)"),
        "per_language": grouped_bar_chart(final_rows, "language", sorted(set(final_rows["language"])), baselines,
                                          f"{final}: win rate per language (95% CI)"),
    }
    for name, png in charts.items():
        plots.save_png(png, reports / f"{name}.png")
    per_language = final_rows.select("baseline", "language", "wins", "ties", "losses", "win_rate", "ci_low", "ci_high",
                                     "prompts", "unparsed").sort("baseline", "language")
    text = "\n".join([
        "# aya_assets — win rates",
        "",
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}. Judge: {judge}. Baselines: {', '.join(baselines)}.",
        "Win rate counts ties as half; intervals are bootstrap 95% over prompts; each pair is judged in both orders;",
        "`unparsed` counts judgements that gave no verdict (a prompt counts when either order gave one).",
        "",
        "## Step by step (overall)",
        "",
        "![step by step](step_by_step.png)",
        "",
        markdown_table(shown(table), rows=table.height),
        "",
        f"## Per language: {final}",
        "",
        "![per language](per_language.png)",
        "",
        markdown_table(shown(per_language), rows=per_language.height),
        "",
    ])
    write_bytes(reports / "latest.md", text.encode("utf-8"))
    return charts
