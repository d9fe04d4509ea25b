"""Percentile bootstrap 95% intervals of a mean, for many groups at once (languages, stages) in one numpy pass."""

from __future__ import annotations

import numpy as np

CHUNK = 4_000_000  # resampled scores held in memory at once (two float64/int64 arrays of this many)


def grouped_intervals(scores: np.ndarray, sizes: np.ndarray, resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """(low, high) per group of the mean of `scores`, laid out group after group with `sizes` (each > 0).

    Each resample draws every group's items with replacement from that group alone, so one draw serves every group.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.size == 0:
        return np.empty((0, 2))
    starts = np.cumsum(sizes) - sizes
    offset, width = np.repeat(starts, sizes), np.repeat(sizes, sizes)  # per item: its group's first index and size
    rng = np.random.default_rng(seed)
    step = max(1, CHUNK // max(scores.size, 1))
    means = []
    for done in range(0, resamples, step):
        # floor(u * size) in [0, size); the minimum guards the one float rounding that could reach size itself
        draw = offset + np.minimum((rng.random((min(step, resamples - done), scores.size)) * width).astype(np.int64), width - 1)
        means.append(np.add.reduceat(scores[draw], starts, axis=1) / sizes)
    return np.percentile(np.concatenate(means), [2.5, 97.5], axis=0).T


def bootstrap_interval(scores: np.ndarray, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean of non-empty `scores`, resampling items with replacement."""
    low, high = grouped_intervals(np.asarray(scores, dtype=float), np.array([len(scores)]), resamples, seed)[0]
    return float(low), float(high)
