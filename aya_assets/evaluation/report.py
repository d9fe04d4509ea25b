"""Win-rate charts (step by step, per language) and data/reports/latest.md."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from aya_assets.artifacts import plots
from aya_assets.artifacts.atomic import write_bytes
from aya_assets.artifacts.tables import markdown_table
from aya_assets.evaluation.winrates import BEST_SINGLE, BestSingle, Findings, LengthRelation, Regression


NO_VERDICT = "no parsed verdicts"


def rate_text(rate: float | None) -> str:
    return NO_VERDICT if rate is None else f"{rate:.3f}"


def interval_text(low: float | None, high: float | None) -> str:
    return "" if low is None else f"[{low:.3f}, {high:.3f}]"


def best_single_table(best: BestSingle) -> pl.DataFrame:
    """Every single-teacher SFT's win rate vs student_base on the selection slice, highest first."""
    return pl.DataFrame({"stage": list(best.rates), "win_rate_vs_student_base": list(best.rates.values())},
                        schema_overrides={"win_rate_vs_student_base": pl.Float64}).sort(
        "win_rate_vs_student_base", "stage", descending=True, nulls_last=True).with_columns(
        pl.col("win_rate_vs_student_base").round(3).cast(pl.String).fill_null(NO_VERDICT))


def regression_text(r: Regression | None) -> str:
    if r is None:
        return "the final stage is the arbitrage SFT itself: nothing to compare."
    if r.win_rate is None:
        return f"{r.stage} vs {r.baseline}: {NO_VERDICT}, so the check passes without evidence."
    return (f"{r.stage} vs {r.baseline}, judged directly (both orders, ties 1/2): {r.win_rate:.3f}, 95% CI "
            f"{interval_text(r.ci_low, r.ci_high)} over {r.prompts} prompts. The check fails only when the interval's high "
            f"end is below 0.5 - tolerance = {r.floor:.3f} (tolerance {r.tolerance}): {'passed' if r.passed else 'FAILED'}.")


def length_text(every: LengthRelation, at_budget: LengthRelation) -> str:
    def share(n: LengthRelation) -> str:
        r = "n/a" if n.correlation is None else f"{n.correlation:+.3f}"
        return f"the longer answer won {'n/a' if n.longer_wins is None else f'{n.longer_wins:.1%}'} (point-biserial r {r})"

    return (f"Of {every.decisive} decisive pairs (every comparison below; ties left out), {every.unequal} have answers "
            f"of different length (characters): {share(every)}. Where both answers ran to max_new_tokens "
            f"({at_budget.unequal} such pairs), so neither chose its length: {share(at_budget)}. A length-neutral judge "
            "is near 50% and 0 there; elsewhere a shorter answer stopped early, which can be a real loss.")


def findings_lines(f: Findings) -> list[str]:
    """The report's "How these rates were measured" section."""
    lines = ["## How these rates were measured", ""]
    if f.best_single is None:
        lines += [f"Every rate is over all {f.held_out_prompts} eval prompts (no {BEST_SINGLE} to choose).", ""]
    else:
        b = f.best_single
        runner = (f", {b.margin:+.3f} ahead of the runner-up" if b.margin is not None else ", the only single teacher rated")
        lines += [
            f"**Best single teacher.** {BEST_SINGLE} is **{b.stage}**: the highest win rate vs student_base on the "
            f"selection slice, {f.selection_prompts} eval prompts (a seeded hash of prompt_id, fraction "
            f"{f.selection_fraction:.3f}, the same for every stage), {b.rates[b.stage]:.3f} over {b.prompts} prompts with a "
            f"verdict{runner}; it stays first in {b.stability:.0%} of bootstrap resamples of the slice. Every rate in "
            f"this report is over the other {f.held_out_prompts} prompts, so the choice does not inflate its own rates.",
            "",
            markdown_table(best_single_table(b), rows=len(b.rates)),
            "",
        ]
    lines += [
        f"**Length and verdicts.** {length_text(f.lengths, f.lengths_at_budget)}",
        "",
        f"**Regression check.** {regression_text(f.regression)}",
        "",
        f"**Per-language intervals.** {f.zero_width.count} of {f.zero_width.intervals} have zero width "
        f"({f.zero_width.all_ties} of them all ties): every verdict in that language was the same. A percentile "
        "bootstrap cannot show uncertainty there; with few prompts per language such an interval is not certainty.",
        "",
    ]
    return lines


def findings_metadata(f: Findings) -> dict:
    """win_rates' metadata for the same findings (plain values; None where there is nothing to say)."""
    b = f.best_single
    meta = {
        "selection_prompts": f.selection_prompts,
        "held_out_prompts": f.held_out_prompts,
        "length_decisive_pairs": f.lengths.decisive,
        "length_unequal_pairs": f.lengths.unequal,
        "longer_answer_win_share": f.lengths.longer_wins,
        "length_verdict_point_biserial": f.lengths.correlation,
        "length_unequal_pairs_at_budget": f.lengths_at_budget.unequal,
        "longer_answer_win_share_at_budget": f.lengths_at_budget.longer_wins,
        "length_verdict_point_biserial_at_budget": f.lengths_at_budget.correlation,
        "per_language_zero_width_intervals": f"{f.zero_width.count} of {f.zero_width.intervals} ({f.zero_width.all_ties} all ties)",
    }
    if b is not None:
        meta |= {
            "best_single_teacher": b.stage,
            "best_single_selection_prompts": b.prompts,
            "best_single_win_rate_on_selection": b.rates[b.stage],
            "best_single_margin": b.margin,
            "best_single_pick_stability": b.stability,
            "best_single_selection": dg.MetadataValue.md(markdown_table(best_single_table(b), rows=len(b.rates))),
        }
    return meta


def regression_metadata(r: Regression | None) -> dict:
    """The regression check's metadata: the paired comparison's rate, interval, n, and the floor it is held to."""
    if r is None:
        return {"note": regression_text(r)}
    return {"comparison": f"{r.stage} vs {r.baseline}", "win_rate": rate_text(r.win_rate),
            "ci": interval_text(r.ci_low, r.ci_high) or NO_VERDICT, "prompts": r.prompts, "fails_below": r.floor,
            "tolerance": r.tolerance, "summary": regression_text(r)}


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


def write(result: pl.DataFrame, stages: list[str], baselines: list[str], final: str, reports: Path, judge: str,
          findings: Findings) -> dict[str, bytes]:
    """Both charts as PNGs under `reports`, and latest.md with the tables and findings; returns the PNGs for the UI."""
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
        *findings_lines(findings),
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
    publish(reports, "1_win_rates", text)
    return charts


def publish(reports: Path, name: str, text: str) -> Path:
    """Write one section of the report (reports/sections/<name>.md, written by the asset that measures it) and rebuild
    latest.md from every section in name order, so each asset refreshes its own part of the one report."""
    write_bytes(reports / "sections" / f"{name}.md", text.encode("utf-8"))
    parts = [p.read_text(encoding="utf-8").rstrip("\n") + "\n" for p in sorted((reports / "sections").glob("*.md"))]
    return write_bytes(reports / "latest.md", "\n".join(parts).encode("utf-8"))
