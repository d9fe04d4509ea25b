"""Each stage's answers against the references: exact match with a bootstrap interval, and chrF, per language."""

from __future__ import annotations

import re
import unicodedata

import polars as pl

from aya_assets.evaluation.bootstrap import with_intervals

QUALITY_SCHEMA = {
    "stage": pl.String, "language": pl.String, "n": pl.Int64, "exact_match": pl.Float64, "chrf": pl.Float64,
    "ci_low": pl.Float64, "ci_high": pl.Float64, "over_budget": pl.Int64,
}
WHITESPACE = re.compile(r"\s+")


def normalize_answer(text: str | None) -> str:
    """NFC, every run of whitespace one space, no leading or trailing space; a missing answer is empty."""
    return WHITESPACE.sub(" ", unicodedata.normalize("NFC", text or "")).strip()


def item_scores(generations: pl.DataFrame) -> pl.DataFrame:
    """stage, language, exact (1.0 / 0.0), chrf (0-100) and over_budget per answer to an item that has a reference."""
    from sacrebleu.metrics import CHRF

    chrf = CHRF()
    rows = generations.filter(pl.col("reference").is_not_null())
    answers = [normalize_answer(t) for t in rows["completion"].to_list()]
    references = [normalize_answer(r) for r in rows["reference"].to_list()]
    return rows.select("stage", "language").with_columns(
        exact=pl.Series([float(a == r) for a, r in zip(answers, references)], dtype=pl.Float64),
        chrf=pl.Series([chrf.sentence_score(a, [r]).score for a, r in zip(answers, references)], dtype=pl.Float64),
        over_budget=rows["reference_at_budget"] != rows["reference"],
    )


def stage_quality(generations: pl.DataFrame, stages: list[str], resamples: int = 1000, seed: int = 0) -> pl.DataFrame:
    """Per stage (in `stages` order) an `all` row, then one per language, over the answers to items with a reference.

    n: items; exact_match: share of answers equal to the reference once both are NFC-normalised with whitespace runs
    collapsed to one space and stripped; chrf: sacrebleu's sentence chrF of the normalised answer, mean over items
    (0-100); ci_low/ci_high: bootstrap 95% interval of exact_match over items; over_budget: items whose reference is
    longer than generation.max_new_tokens tokens, which no answer can match exactly. No item: n 0, the rest null.
    """
    scores = item_scores(generations).filter(pl.col("stage").is_in(stages))
    per_language = scores.group_by("stage", "language").agg(
        n=pl.len().cast(pl.Int64), exact_match=pl.col("exact").mean(), chrf=pl.col("chrf").mean(),
        over_budget=pl.col("over_budget").sum().cast(pl.Int64))
    overall = scores.group_by("stage").agg(
        language=pl.lit("all"), n=pl.len().cast(pl.Int64), exact_match=pl.col("exact").mean(), chrf=pl.col("chrf").mean(),
        over_budget=pl.col("over_budget").sum().cast(pl.Int64))
    empty = pl.DataFrame({"stage": stages, "language": "all", "n": 0}, schema_overrides={"n": pl.Int64})
    order = {s: i for i, s in enumerate(stages)}
    table = (pl.concat([overall, per_language, empty.join(overall, on="stage", how="anti")], how="diagonal_relaxed")
             .sort(pl.col("stage").replace_strict(order), pl.col("language") != "all", "language"))
    # An item is in its language's row and in `all`.
    items = pl.concat([scores, scores.with_columns(language=pl.lit("all"))])
    return with_intervals(table, items, ["stage", "language"], "exact", resamples, seed).select(
        *QUALITY_SCHEMA).cast(QUALITY_SCHEMA)
