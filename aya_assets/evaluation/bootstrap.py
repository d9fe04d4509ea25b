"""Percentile bootstrap 95% intervals of a mean, for many groups at once (languages, stages)."""

from __future__ import annotations

import numpy as np


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
