"""Pairwise win rates: both orders judged, ties count half, bootstrap 95% intervals over prompts.

Verdicts are cached in shards (comparison × language × chunk) by the generation pool's shard mechanism, so a
re-run judges only the pairs whose answers or judge changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from aya_assets.arbitrage.pool import plan_shards, run_shards
from aya_assets.checkpoints.build import fingerprint
from aya_assets.evaluation.judge import Judge

BEST_SINGLE = "best_single_teacher"  # a baseline name: the single-teacher SFT that rates highest vs student_base

VERDICT_SCHEMA = {
    "prompt_id": pl.String, "language": pl.String, "as_first": pl.Float64, "as_second": pl.Float64,
    "first_judgement": pl.String, "second_judgement": pl.String, "verdict": pl.Float64,
}
SUMMARY_SCHEMA = {
    "language": pl.String, "prompts": pl.Int64, "wins": pl.Int64, "ties": pl.Int64, "losses": pl.Int64,
    "win_rate": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64, "judgements": pl.Int64, "unparsed": pl.Int64,
}


@dataclass(frozen=True)
class VerdictShards:
    """Where verdicts are cached: a directory, the owner of its shards (pool.owner_key), prompts per shard."""

    directory: Path
    owner: str
    size: int
    log: Callable[[str], None] = print


def pair_frame(generations: pl.DataFrame, stage: str, baseline: str) -> pl.DataFrame:
    """prompt_id, language, prompt, reference, candidate (the stage's answer) and baseline (the baseline's answer)."""
    cand = generations.filter(pl.col("stage") == stage).select("prompt_id", "language", "prompt", "reference",
                                                               candidate="completion")
    base = generations.filter(pl.col("stage") == baseline).select("prompt_id", baseline="completion")
    return cand.join(base, on="prompt_id").sort("language", "prompt_id")


def judge_both_orders(judge: Judge, frame: pl.DataFrame) -> pl.DataFrame:
    """Per prompt: the candidate's score with it shown first, shown second, and their mean (position bias cancels).

    Both orders go to the judge in one call, so a model-backed judge is loaded once per shard.
    """
    n = frame.height
    prompts, references, languages = (frame[c].to_list() for c in ("prompt", "reference", "language"))
    candidate, baseline = frame["candidate"].to_list(), frame["baseline"].to_list()
    out = judge.compare(prompts * 2, candidate + baseline, baseline + candidate, references * 2, languages * 2)
    first, swapped = out[:n], out[n:]
    return frame.select("prompt_id", "language").with_columns(
        as_first=pl.Series([j.score for j in first], dtype=pl.Float64),
        as_second=pl.Series([None if j.score is None else 1.0 - j.score for j in swapped], dtype=pl.Float64),
        first_judgement=pl.Series([j.text for j in first], dtype=pl.String),
        second_judgement=pl.Series([j.text for j in swapped], dtype=pl.String),
    ).with_columns(verdict=pl.mean_horizontal("as_first", "as_second"))  # one order unparsed: the other decides


def cached_verdicts(judge: Judge, pairs: pl.DataFrame, comparison: str, shards: VerdictShards) -> tuple[pl.DataFrame, dict[str, int]]:
    """judge_both_orders over `pairs` in shards; a shard is reused while its judge and both its answers are unchanged."""
    planned = plan_shards(pairs.rename({"prompt": "text"}), [comparison], shards.size)
    rows = {s: pairs.filter(pl.col("prompt_id").is_in(s.prompt_ids)) for s in planned}
    identity = judge.identity()
    frames, counts = run_shards(planned, shards.directory, {comparison: shards.owner},
                                lambda s: fingerprint(identity, rows[s].rows()), lambda s: judge_both_orders(judge, rows[s]),
                                shards.log)
    verdicts = pl.concat(frames) if frames else pl.DataFrame(schema=VERDICT_SCHEMA)
    return verdicts.sort("language", "prompt_id"), counts


def bootstrap_interval(scores: np.ndarray, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean of non-empty `scores`, resampling prompts with replacement."""
    rng = np.random.default_rng(seed)
    means = scores[rng.integers(0, scores.size, size=(resamples, scores.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def summarize(verdicts: pl.DataFrame, resamples: int = 1000, seed: int = 0) -> pl.DataFrame:
    """Per language and overall ("all"): W/T/L over the decided prompts, win rate (ties half) with a bootstrap
    interval, and how many of the judgements (two per prompt) had no verdict. No decided prompt: win rate null."""
    groups = [("all", verdicts)] + [(lang, g) for (lang,), g in verdicts.sort("language").group_by("language", maintain_order=True)]
    rows = []
    for language, group in groups:
        scores = group["verdict"].drop_nulls().to_numpy()
        low, high = bootstrap_interval(scores, resamples, seed) if scores.size else (None, None)
        rows.append({
            "language": language,
            "prompts": int(scores.size),
            "wins": int((scores > 0.5).sum()),
            "ties": int((scores == 0.5).sum()),
            "losses": int((scores < 0.5).sum()),
            "win_rate": float(scores.mean()) if scores.size else None,
            "ci_low": low,
            "ci_high": high,
            "judgements": 2 * group.height,
            "unparsed": group["as_first"].null_count() + group["as_second"].null_count(),
        })
    return pl.DataFrame(rows, schema=SUMMARY_SCHEMA)


def unparsed_shares(result: pl.DataFrame) -> pl.DataFrame:
    """Per stage and baseline, overall: judgements, those without a verdict, and their share (worst first)."""
    return (
        result.filter(pl.col("language") == "all")
        .select("stage", "baseline", "judgements", "unparsed",
                share=pl.when(pl.col("judgements") > 0).then(pl.col("unparsed") / pl.col("judgements")).otherwise(0.0))
        .sort("share", "stage", descending=[True, False])
    )


def unparsed_example(verdicts: pl.DataFrame, width: int = 400) -> str | None:
    """The end of one judgement that gave no verdict (where a label should have been), for the check's metadata."""
    missing = pl.concat([verdicts.filter(pl.col("as_first").is_null())["first_judgement"],
                         verdicts.filter(pl.col("as_second").is_null())["second_judgement"]])
    return missing[0][-width:] if missing.len() else None


def resolve_baselines(configured: list[str], overall_vs_base: dict[str, float | None]) -> list[str]:
    """Configured baselines with best_single_teacher replaced by the strongest single-teacher SFT."""
    singles = {k: v for k, v in overall_vs_base.items() if k.startswith("single_")}
    rated = {k: v for k, v in singles.items() if v is not None}  # a stage with no verdict has no rate to rank
    out = []
    for b in configured:
        if b != BEST_SINGLE:
            out.append(b)
        elif rated:
            out.append(max(rated, key=lambda k: (rated[k], k)))
        elif singles:
            raise ValueError(f"evaluation.baselines: {BEST_SINGLE} cannot be chosen: the judge gave no verdict on any pair "
                             f"of {', '.join(sorted(singles))} against student_base (see win_rates' `unparsed`)")
    return list(dict.fromkeys(out))
