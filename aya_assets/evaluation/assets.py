"""Stage 6: every stage answers the held-out prompts; a judge (not the arbiter) compares them pairwise."""

from functools import partial
from typing import NamedTuple

import dagster as dg
import polars as pl

from aya_assets.arbitrage.pool import generate_pool, owner_key
from aya_assets.artifacts import plots
from aya_assets.artifacts.store import ArtifactStore
from aya_assets.artifacts.tables import PARTITION_COLUMN, markdown_table
from aya_assets.checkpoints.io import BY_PARTITION, Checkpoint
from aya_assets.evaluation import report
from aya_assets.evaluation.judge import Judge
from aya_assets.evaluation.quality import stage_quality as quality_table
from aya_assets.evaluation.winrates import (VerdictShards, cached_verdicts, pair_frame, resolve_baselines, summarize,
                                            unparsed_example, unparsed_shares)
from aya_assets.generation import GenerationBackend, sampling_settings
from aya_assets.profile import EvaluationConfig, Profile
from aya_assets.stages import Recipe

GROUP = "evaluation"
CODE_VERSION = "1"
NO_REGRESSION = "final_not_below_arbitrage_sft"
VERDICTS_PARSED = "judge_verdicts_parsed"
SUMMARY_COLUMNS = ["stage", "baseline", "language", "prompts", "wins", "ties", "losses", "win_rate", "ci_low", "ci_high",
                   "judgements", "unparsed"]


class Comparison(NamedTuple):
    summary: pl.DataFrame  # winrates.summarize, with stage and baseline
    verdicts: pl.DataFrame
    counts: dict[str, int]  # verdict shards judged / reused


def compare(judge: Judge, generations: pl.DataFrame, stage: str, baseline: str, shards: VerdictShards,
            resamples: int, seed: int) -> Comparison:
    verdicts, counts = cached_verdicts(judge, pair_frame(generations, stage, baseline), f"{stage}_vs_{baseline}", shards)
    summary = summarize(verdicts, resamples, seed).with_columns(stage=pl.lit(stage), baseline=pl.lit(baseline))
    return Comparison(summary, verdicts, counts)


def judge_stages(judge: Judge, generations: pl.DataFrame, stages: list[str], ev: EvaluationConfig, seed: int,
                 shards: VerdictShards) -> tuple[list[str], list[Comparison], dict[str, float | None]]:
    """Every stage against student_base (which decides best_single_teacher), then against each other baseline.

    Returns the resolved baselines, the comparisons against them, and each stage's overall rate vs student_base.
    """
    run = partial(compare, judge, generations, shards=shards, resamples=ev.bootstrap_resamples, seed=seed)
    vs_base = [run(s, "student_base") for s in stages if s != "student_base"]
    overall = {c.summary["stage"][0]: c.summary.filter(pl.col("language") == "all")["win_rate"][0] for c in vs_base}
    baselines = resolve_baselines(ev.baselines, overall)
    done = list(vs_base) if "student_base" in baselines else []
    done += [run(s, b) for b in baselines if b != "student_base" for s in stages if s != b]
    return baselines, done, overall


def verdicts_parsed(result: pl.DataFrame, comparisons: list[Comparison], limit: float) -> dg.AssetCheckResult:
    """Fails when any stage's share of judgements without a verdict passes `limit` (its win rate means little)."""
    shares = unparsed_shares(result)
    worst = shares.row(0, named=True)
    return dg.AssetCheckResult(
        check_name=VERDICTS_PARSED, passed=worst["share"] <= limit,
        metadata={"worst": f"{worst['stage']} vs {worst['baseline']}", "worst_unparsed_share": worst["share"],
                  "max_unparsed_share": limit, "unparsed_by_stage": dg.MetadataValue.md(markdown_table(shares, rows=shares.height)),
                  "example": next((e for c in comparisons if (e := unparsed_example(c.verdicts))), "none")},
    )


def build_evaluation_assets(profile: Profile, recipe: Recipe) -> list:
    evaluated = {e.key: e for e in recipe.evaluated()}
    stages, final = list(evaluated), recipe.final()
    # One input per evaluated model asset; a partitioned one maps each of its partitions to its stage's key, so a
    # stage partition reads exactly the checkpoint it evaluates (and the others map to nothing).
    models = {}
    for e in evaluated.values():
        if e.partition is None:
            models[e.asset] = dg.AssetIn(e.asset)
        else:
            mapping = {x.partition: x.key for x in evaluated.values() if x.asset == e.asset}
            models[e.asset] = dg.AssetIn(e.asset, partition_mapping=dg.StaticPartitionMapping(mapping), metadata=BY_PARTITION)

    @dg.asset(
        partitions_def=dg.StaticPartitionsDefinition(stages),
        ins={"prompts": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())} | models,
        metadata={PARTITION_COLUMN: "stage"},
        group_name=GROUP,
        kinds={"transformers", "parquet"},
        code_version=CODE_VERSION,
        pool="gpu",
    )
    def eval_generations(context: dg.AssetExecutionContext, prompts: pl.DataFrame, store: ArtifactStore,
                         generator: GenerationBackend, **checkpoints: Checkpoint | dict[str, Checkpoint]) -> pl.DataFrame:
        """Each stage's model answers the held-out eval prompts of all 23 languages."""
        stage = evaluated[context.partition_key]
        model = checkpoints[stage.asset] if stage.partition is None else checkpoints[stage.asset][stage.partition]
        evals = prompts.filter(pl.col("split") == "eval")
        sampling = sampling_settings(profile.generation, profile.seed).model_copy(
            update={"n": 1, "temperature": profile.evaluation.temperature})
        table, _ = generate_pool(evals, {stage.key: model.path}, {stage.key: model.identity()}, generator, sampling,
                                 store.shards / "eval_generations", profile.generation.shard_size, log=context.log.info,
                                 profile=profile.name)
        out = table.rename({"teacher": "stage"}).drop("sample").join(evals.select("prompt_id", "reference"), on="prompt_id")
        context.add_output_metadata({"model": model.path, "eval_prompts": evals.height})
        return out

    @dg.asset(
        ins={"eval_generations": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())},
        group_name=GROUP,
        kinds={"polars", "parquet", "matplotlib"},
        code_version=CODE_VERSION,
        check_specs=[dg.AssetCheckSpec(NO_REGRESSION, asset="win_rates",
                                       description="the final merge does not fall below the arbitrage SFT merge"),
                     dg.AssetCheckSpec(VERDICTS_PARSED, asset="win_rates", blocking=True,
                                       description="no stage's share of judgements without a verdict passes "
                                                   "evaluation.max_unparsed_share")],
    )
    def win_rates(context: dg.AssetExecutionContext, eval_generations: pl.DataFrame, store: ArtifactStore, judge: Judge):
        """Each stage against each baseline, per language and overall: W/T/L, win rate (ties half), bootstrap 95% CI."""
        ev = profile.evaluation
        shards = VerdictShards(store.shards / "win_rates", owner_key(profile.name, judge.name),
                               profile.generation.shard_size, context.log.info)
        baselines, done, overall = judge_stages(judge, eval_generations, stages, ev, profile.seed, shards)
        result = pl.concat([c.summary for c in done]).select(*SUMMARY_COLUMNS)
        overall_rows = result.filter(pl.col("language") == "all")
        unparsed = int(overall_rows["unparsed"].sum())
        if unparsed:
            context.log.warning(f"{judge.name} gave no verdict in {unparsed} of {int(overall_rows['judgements'].sum())} judgements")
        charts = report.write(result, stages, baselines, final, store.reports, judge.name)
        step_table = report.step_table(result, stages)
        yield dg.Output(result, metadata={
            "baselines": ", ".join(baselines),
            "judge": judge.name,
            "unparsed": unparsed,
            "verdict_shards_judged": sum(c.counts["generated"] for c in done),
            "verdict_shards_reused": sum(c.counts["reused"] for c in done),
            # The table under its own key: the chart of the same name used to overwrite it.
            "step_by_step_table": dg.MetadataValue.md(markdown_table(report.shown(step_table), rows=step_table.height)),
            **{k: v for name, png in charts.items()
               for k, v in plots.chart_metadata(name, png, store.reports / f"{name}.png").items()},
            "report": dg.MetadataValue.path(str(store.reports / "latest.md")),
        })
        yield verdicts_parsed(result, done, ev.max_unparsed_share)
        sft = "sft_merged"
        rate = {s: overall.get(s) for s in (final, sft)}
        passed = None in rate.values() or rate[final] >= rate[sft] - ev.regression_tolerance
        yield dg.AssetCheckResult(
            check_name=NO_REGRESSION, passed=bool(passed), severity=dg.AssetCheckSeverity.WARN,
            metadata={f"{final}_vs_student_base": report.rate_text(rate[final]),
                      "sft_merged_vs_student_base": report.rate_text(rate[sft]), "tolerance": ev.regression_tolerance},
        )

    @dg.asset(
        ins={"eval_generations": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())},
        group_name=GROUP,
        kinds={"polars", "parquet", "sacrebleu"},
        code_version=CODE_VERSION,
    )
    def stage_quality(eval_generations: pl.DataFrame) -> dg.Output[pl.DataFrame]:
        """Each stage against the references, per language and overall: exact match (bootstrap 95% CI) and chrF."""
        result = quality_table(eval_generations, stages, profile.evaluation.bootstrap_resamples, profile.seed)
        overall = result.filter(pl.col("language") == "all").drop("language").with_columns(
            pl.col("exact_match", "ci_low", "ci_high").round(3), pl.col("chrf").round(1))
        return dg.Output(result, metadata={"overall": dg.MetadataValue.md(markdown_table(overall, rows=overall.height))})

    return [eval_generations, win_rates, stage_quality]
