"""Pairwise win rates: both orders judged, ties count half, bootstrap 95% intervals over prompts (pure)."""

from __future__ import annotations

import numpy as np
import polars as pl

from aya_assets.evaluation.judge import Judge


def judge_both_orders(judge: Judge, frame: pl.DataFrame) -> pl.DataFrame:
    """Per prompt: the candidate's score with it shown first, shown second, and their mean (position bias cancels).

    `frame`: prompt_id, language, prompt, reference, candidate, baseline.
    """
    args = (frame["prompt"].to_list(), frame["reference"].to_list(), frame["language"].to_list())
    first = judge.compare(args[0], frame["candidate"].to_list(), frame["baseline"].to_list(), args[1], args[2])
    swapped = judge.compare(args[0], frame["baseline"].to_list(), frame["candidate"].to_list(), args[1], args[2])
    return frame.select("prompt_id", "language").with_columns(
        as_first=pl.Series(first, dtype=pl.Float64),
        as_second=pl.Series([None if s is None else 1.0 - s for s in swapped], dtype=pl.Float64),
    ).with_columns(verdict=pl.mean_horizontal("as_first", "as_second"))


def bootstrap_interval(scores: np.ndarray, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean, resampling prompts with replacement."""
    if scores.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = scores[rng.integers(0, scores.size, size=(resamples, scores.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def summarize(verdicts: pl.DataFrame, resamples: int = 1000, seed: int = 0) -> pl.DataFrame:
    """Win/tie/loss counts and win rate (ties half) with a bootstrap interval, per language and overall ("all")."""
    decided = verdicts.filter(pl.col("verdict").is_not_null())
    groups = [("all", decided)] + [(lang, g) for (lang,), g in decided.sort("language").group_by("language", maintain_order=True)]
    rows = []
    for language, group in groups:
        scores = group["verdict"].to_numpy()
        low, high = bootstrap_interval(scores, resamples, seed)
        rows.append({
            "language": language,
            "prompts": group.height,
            "wins": int((scores > 0.5).sum()),
            "ties": int((scores == 0.5).sum()),
            "losses": int((scores < 0.5).sum()),
            "win_rate": float(scores.mean()) if scores.size else float("nan"),
            "ci_low": low,
            "ci_high": high,
        })
    return pl.DataFrame(rows)
