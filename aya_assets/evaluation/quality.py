"""Each stage's answers against the references: exact match with a bootstrap interval, and chrF, per language."""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import polars as pl

from aya_assets.evaluation.winrates import bootstrap_interval

QUALITY_SCHEMA = {
    "stage": pl.String, "language": pl.String, "n": pl.Int64, "exact_match": pl.Float64, "chrf": pl.Float64,
    "ci_low": pl.Float64, "ci_high": pl.Float64,
}
WHITESPACE = re.compile(r"\s+")


def normalize_answer(text: str | None) -> str:
    """NFC, every run of whitespace one space, no leading or trailing space; a missing answer is empty."""
    return WHITESPACE.sub(" ", unicodedata.normalize("NFC", text or "")).strip()


def item_scores(generations: pl.DataFrame) -> pl.DataFrame:
    """stage, language, exact (1.0 / 0.0) and chrf (0-100) per answer to an item that has a reference."""
    from sacrebleu.metrics import CHRF

    chrf = CHRF()
    rows = generations.filter(pl.col("reference").is_not_null())
    answers = [normalize_answer(t) for t in rows["completion"].to_list()]
    references = [normalize_answer(r) for r in rows["reference"].to_list()]
    return rows.select("stage", "language").with_columns(
        exact=pl.Series([float(a == r) for a, r in zip(answers, references)], dtype=pl.Float64),
        chrf=pl.Series([chrf.sentence_score(a, [r]).score for a, r in zip(answers, references)], dtype=pl.Float64),
    )


def stage_quality(generations: pl.DataFrame, stages: list[str], resamples: int = 1000, seed: int = 0) -> pl.DataFrame:
    """Per stage (in `stages` order) an `all` row, then one per language, over the answers to items with a reference.

    n: items; exact_match: share of answers equal to the reference once both are NFC-normalised with whitespace runs
    collapsed to one space and stripped; chrf: sacrebleu's sentence chrF of the normalised answer, mean over items
    (0-100); ci_low/ci_high: bootstrap 95% interval of exact_match over items. No item: n 0, the rest null.
    """
    scores = item_scores(generations)
    rows = []
    for stage in stages:
        mine = scores.filter(pl.col("stage") == stage).sort("language")
        groups = [("all", mine)] + [(lang, g) for (lang,), g in mine.group_by("language", maintain_order=True)]
        for language, group in groups:
            exact = group["exact"].to_numpy()
            low, high = bootstrap_interval(exact, resamples, seed) if exact.size else (None, None)
            rows.append({
                "stage": stage, "language": language, "n": int(exact.size),
                "exact_match": float(np.mean(exact)) if exact.size else None,
                "chrf": float(group["chrf"].mean()) if exact.size else None,
                "ci_low": low, "ci_high": high,
            })
    return pl.DataFrame(rows, schema=QUALITY_SCHEMA)
