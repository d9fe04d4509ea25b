"""Pairwise win rates: both orders judged, ties count half, bootstrap 95% intervals over prompts.

Verdicts are cached in shards (comparison × language × chunk) by the generation pool's shard mechanism, so a
re-run judges only the pairs whose answers or judge changed. Besides the rates: which single teacher is the best one
(chosen on a slice of prompts the rates are not reported on), how verdicts relate to answer length, and the paired
regression test of the final merge against the arbitrage SFT.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import polars as pl

from aya_assets.arbitrage.pool import plan_shards, run_shards
from aya_assets.checkpoints.build import fingerprint
from aya_assets.evaluation.bootstrap import grouped_intervals
from aya_assets.evaluation.judge import Judge
from aya_assets.evaluation.quality import normalize_answer

# A baseline name: the single-teacher SFT that rates highest vs student_base on the selection slice.
BEST_SINGLE = "best_single_teacher"
SELECTION_FRACTION = 1 / 3  # evaluation.selection_fraction's default: eval prompts that choose BEST_SINGLE

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


def in_selection(prompt_id: str, seed: int, fraction: float) -> bool:
    """Whether an eval prompt is in the slice that chooses best_single_teacher: a seeded hash of its id alone, so
    every stage has the same slice and a prompt keeps its side as the eval set grows."""
    digest = hashlib.sha256(f"best_single:{seed}:{prompt_id}".encode()).hexdigest()
    return int(digest[:15], 16) / 16**15 < fraction


def split_selection(generations: pl.DataFrame, seed: int, fraction: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(selection slice, held-out rest) of eval_generations, by in_selection of each prompt_id."""
    chosen = [p for p in generations["prompt_id"].unique().to_list() if in_selection(p, seed, fraction)]
    mask = pl.col("prompt_id").is_in(chosen)
    return generations.filter(mask), generations.filter(~mask)


def pair_frame(generations: pl.DataFrame, stage: str, baseline: str) -> pl.DataFrame:
    """prompt_id, language, prompt, reference, candidate (the stage's answer), baseline (the baseline's answer) and
    both answers' finish reasons.

    The reference is eval_generations' reference_at_budget: cut to what an answer can reach in max_new_tokens.
    Every evaluated stage has the student's tokenizer, so both sides' cuts agree; where they would not, the longer
    (less cut) one is kept.
    """
    def side(name: str, role: str, *extra: str) -> pl.DataFrame:
        return generations.filter(pl.col("stage") == name).select(
            "prompt_id", *extra, "reference_at_budget", pl.col("completion").alias(role),
            pl.col("finish_reason").alias(f"{role}_finish"))

    mine, theirs = pl.col("reference_at_budget"), pl.col("reference_at_budget_right")
    pairs = side(stage, "candidate", "language", "prompt").join(side(baseline, "baseline"), on="prompt_id")
    return pairs.sort("language", "prompt_id").select(
        "prompt_id", "language", "prompt",
        reference=pl.when(theirs.str.len_chars() > mine.str.len_chars()).then(theirs).otherwise(mine),
        candidate="candidate", baseline="baseline", candidate_finish="candidate_finish", baseline_finish="baseline_finish",
    )


def answer_lengths(pairs: pl.DataFrame) -> pl.DataFrame:
    """prompt_id, candidate_chars, baseline_chars (each answer's length in characters once normalised) and
    at_budget (both answers stopped at max_new_tokens, so neither chose its length)."""
    return pairs.select(
        "prompt_id",
        *(pl.Series(f"{side}_chars", [len(normalize_answer(t)) for t in pairs[side]], dtype=pl.Int64)
          for side in ("candidate", "baseline")),
        at_budget=(pl.col("candidate_finish") == "length") & (pl.col("baseline_finish") == "length"),
    )


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


def summarize(verdicts: pl.DataFrame, resamples: int = 1000, seed: int = 0) -> pl.DataFrame:
    """Per language and overall ("all"): W/T/L over the decided prompts, win rate (ties half) with a bootstrap
    interval, and how many of the judgements (two per prompt) had no verdict. No decided prompt: win rate null.

    `all` resamples every decided prompt, a language only its own (bootstrap.grouped_intervals, one call for all)."""
    verdicts = verdicts.sort("language", "prompt_id")
    decided = verdicts.filter(pl.col("verdict").is_not_null())
    per_language = verdicts.group_by("language", maintain_order=True).agg(
        prompts=pl.col("verdict").is_not_null().sum().cast(pl.Int64),
        wins=(pl.col("verdict") > 0.5).sum().cast(pl.Int64),
        ties=(pl.col("verdict") == 0.5).sum().cast(pl.Int64),
        losses=(pl.col("verdict") < 0.5).sum().cast(pl.Int64),
        win_rate=pl.col("verdict").mean(),
        judgements=(2 * pl.len()).cast(pl.Int64),
        unparsed=(pl.col("as_first").null_count() + pl.col("as_second").null_count()).cast(pl.Int64),
    )
    overall = per_language.select(pl.lit("all").alias("language"), pl.exclude("language", "win_rate").sum(),
                                  win_rate=decided["verdict"].mean() if decided.height else None)
    table = pl.concat([overall, per_language], how="diagonal_relaxed")
    # The `all` group is every decided verdict, then each language's (sorted by language, so each is contiguous).
    scores = decided["verdict"].to_numpy()
    has = table["prompts"].to_numpy() > 0
    ci = np.full((table.height, 2), np.nan)
    ci[has] = grouped_intervals(np.concatenate([scores, scores]), table["prompts"].to_numpy()[has], resamples, seed)
    return table.with_columns(ci_low=pl.Series(ci[:, 0]).fill_nan(None), ci_high=pl.Series(ci[:, 1]).fill_nan(None)
                              ).select(*SUMMARY_SCHEMA).cast(SUMMARY_SCHEMA)


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


class BestSingle(NamedTuple):
    """The single-teacher SFT that best_single_teacher stands for, and how firmly the selection slice chose it."""

    stage: str
    prompts: int  # selection-slice prompts with a verdict on it vs student_base
    rates: dict[str, float | None]  # every single_* stage's win rate vs student_base on the slice (None: no verdict)
    margin: float | None  # its rate minus the runner-up's; None when it is the only rated one
    stability: float  # share of bootstrap resamples of the slice in which it still rates highest


def choose_best_single(verdicts: dict[str, pl.DataFrame], resamples: int = 1000, seed: int = 0) -> BestSingle | None:
    """The single_* stage with the highest win rate vs student_base over `verdicts` (the selection slice's, per stage);
    equal rates go to the name that sorts last. None when there is no single-teacher stage."""
    if not verdicts:
        return None
    rates = {s: v["verdict"].mean() for s, v in verdicts.items()}
    rated = sorted((s for s in rates if rates[s] is not None), key=lambda s: (rates[s], s), reverse=True)
    if not rated:
        prompts = max(v.height for v in verdicts.values())
        raise ValueError(f"evaluation.baselines: {BEST_SINGLE} cannot be chosen: the judge gave no verdict on any pair "
                         f"of {', '.join(sorted(verdicts))} against student_base on the selection slice ({prompts} "
                         "prompts; see win_rates' `unparsed`, or raise evaluation.selection_fraction)")
    best = rated[0]
    # Resampling the slice's prompts (multinomial weights, all stages on the same draw): how often `best` stays first.
    # Columns by name descending: argmax keeps the first of equal means, the name that sorts last, as the choice does.
    names = sorted(rated, reverse=True)
    wide = pl.concat([verdicts[s].select("prompt_id", "verdict", stage=pl.lit(s)) for s in names]).pivot(
        on="stage", index="prompt_id", values="verdict")
    matrix = wide.select(names).to_numpy().astype(float)  # NaN where a stage has no verdict
    weights = np.random.default_rng(seed).multinomial(len(matrix), np.full(len(matrix), 1 / len(matrix)), size=resamples)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (weights @ np.nan_to_num(matrix)) / (weights @ ~np.isnan(matrix))
    stability = float(np.mean(np.argmax(np.nan_to_num(means, nan=-1.0), axis=1) == names.index(best)))
    margin = rates[best] - rates[rated[1]] if len(rated) > 1 else None
    return BestSingle(best, int(verdicts[best]["verdict"].is_not_null().sum()), rates, margin, stability)


def resolve_baselines(configured: list[str], best_single: BestSingle | None, stages: list[str]) -> list[str]:
    """Configured baselines with best_single_teacher replaced by the chosen stage (dropped when there is none),
    each once; a baseline that is not an evaluated stage is an error that names it."""
    out = [b for b in configured if b != BEST_SINGLE or best_single]
    out = list(dict.fromkeys(best_single.stage if b == BEST_SINGLE else b for b in out))
    unknown = [b for b in out if b not in stages]
    if unknown:
        raise ValueError(f"evaluation.baselines: {', '.join(unknown)} is not an evaluated stage; "
                         f"one of {', '.join(stages)} or {BEST_SINGLE}")
    return out


class LengthRelation(NamedTuple):
    """How verdicts relate to answer length, over pairs with a winner; a length-neutral judge has 0.5 and about 0."""

    decisive: int  # pairs with a winner (verdict not 0.5)
    unequal: int  # of those, pairs whose answers differ in length
    longer_wins: float | None  # share of `unequal` won by the longer answer
    correlation: float | None  # point-biserial r: length difference (candidate - baseline) vs the candidate winning


def length_relation(verdicts: list[pl.DataFrame]) -> LengthRelation:
    """LengthRelation over the verdicts of several comparisons, each carrying answer_lengths' columns."""
    columns = {"verdict": pl.Float64, "candidate_chars": pl.Int64, "baseline_chars": pl.Int64}
    decisive = pl.concat([v.select(*columns) for v in verdicts]) if verdicts else pl.DataFrame(schema=columns)
    decisive = decisive.filter(pl.col("verdict").is_not_null() & (pl.col("verdict") != 0.5))
    diff = (decisive["candidate_chars"] - decisive["baseline_chars"]).to_numpy().astype(float)
    won = (decisive["verdict"] > 0.5).to_numpy().astype(float)
    unequal = diff != 0
    longer_wins = float(np.mean(won[unequal] == (diff[unequal] > 0))) if unequal.any() else None
    correlation = float(np.corrcoef(diff, won)[0, 1]) if diff.size and diff.std() > 0 and won.std() > 0 else None
    return LengthRelation(decisive.height, int(unequal.sum()), longer_wins, correlation)


class ZeroWidth(NamedTuple):
    count: int  # per-language intervals with ci_low == ci_high
    intervals: int  # per-language intervals (languages with a verdict)
    all_ties: int  # of `count`, languages where every verdict was a tie


def zero_width_intervals(result: pl.DataFrame) -> ZeroWidth:
    """Per-language rows of win_rates whose percentile interval has no width: every verdict there was the same."""
    rows = result.filter((pl.col("language") != "all") & pl.col("ci_low").is_not_null())
    zero = rows.filter(pl.col("ci_low") == pl.col("ci_high"))
    return ZeroWidth(zero.height, rows.height, zero.filter(pl.col("ties") == pl.col("prompts")).height)


class Regression(NamedTuple):
    """The final merge against the arbitrage SFT, judged directly: fails when even the interval's top is below floor."""

    stage: str
    baseline: str
    prompts: int
    win_rate: float | None
    ci_low: float | None
    ci_high: float | None
    tolerance: float  # evaluation.regression_tolerance

    @property
    def floor(self) -> float:
        return 0.5 - self.tolerance

    @property
    def passed(self) -> bool:
        return self.ci_high is None or self.ci_high >= self.floor  # no verdict: nothing shows a regression


def paired_regression(summary: pl.DataFrame, stage: str, baseline: str, tolerance: float) -> Regression:
    """Regression of `stage` vs `baseline` from their comparison's summary (its `all` row: both orders, ties 1/2,
    bootstrap over prompts)."""
    row = summary.filter(pl.col("language") == "all").row(0, named=True)
    return Regression(stage, baseline, row["prompts"], row["win_rate"], row["ci_low"], row["ci_high"], tolerance)


class Findings(NamedTuple):
    """What win_rates reports besides the rates: how they were measured and what could bias them."""

    best_single: BestSingle | None
    selection_prompts: int  # eval prompts in the selection slice (0 when no choice was made)
    held_out_prompts: int  # eval prompts the rates are reported on
    selection_fraction: float
    lengths: LengthRelation
    lengths_at_budget: LengthRelation  # pairs whose answers both ran to max_new_tokens: a relation there is the judge's
    zero_width: ZeroWidth
    regression: Regression | None  # None when the final stage is the arbitrage SFT itself
