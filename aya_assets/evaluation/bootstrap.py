"""Percentile bootstrap 95% intervals of a mean, for many groups at once (languages, stages)."""

from __future__ import annotations

import numpy as np
import polars as pl


def grouped_intervals(scores: np.ndarray, sizes: np.ndarray, resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """(low, high) per group of the mean of `scores`, laid out group after group with `sizes` (each > 0).

    Resampling a group's n items with replacement only decides how often each distinct score is drawn: a multinomial
    over the group's distinct values, with their shares as probabilities. Drawing those counts is the same bootstrap
    exactly, and verdicts (0, 1/4, 1/2, 3/4, 1) or exact match (0, 1) cost resamples x 5 per group, not resamples x n.
    """
    rng = np.random.default_rng(seed)
    scores, ends = np.asarray(scores, dtype=float), np.cumsum(sizes, dtype=np.int64)
    out = np.empty((len(ends), 2))
    for i, (start, end) in enumerate(zip(ends - sizes, ends)):
        group = scores[start:end]
        values, counts = np.unique(group, return_counts=True)
        means = rng.multinomial(group.size, counts / group.size, size=resamples) @ values / group.size
        out[i] = np.percentile(means, [2.5, 97.5])
    return out


def bootstrap_interval(scores: np.ndarray, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean of non-empty `scores`, resampling items with replacement."""
    low, high = grouped_intervals(scores, np.array([len(scores)]), resamples, seed)[0]
    return float(low), float(high)


def with_intervals(table: pl.DataFrame, items: pl.DataFrame, keys: list[str], value: str, resamples: int,
                   seed: int) -> pl.DataFrame:
    """`table` (one row per key, n items each) with ci_low/ci_high: the bootstrap 95% interval of the mean of
    `items`' `value` in each row, all rows in one grouped_intervals call; null where n is 0."""
    keyed = items.join(table.select(*keys).with_row_index("row"), on=keys).sort("row")
    ci = np.full((table.height, 2), np.nan)
    if keyed.height:
        sizes = keyed["row"].value_counts(sort=False).sort("row")
        ci[sizes["row"].to_numpy()] = grouped_intervals(keyed[value].to_numpy(), sizes["count"].to_numpy(),
                                                        resamples, seed)
    return table.with_columns(ci_low=pl.Series(ci[:, 0]).fill_nan(None), ci_high=pl.Series(ci[:, 1]).fill_nan(None))
