"""Stage 6: every stage answers the held-out prompts; a judge (not the arbiter) compares them pairwise."""

from pathlib import Path

import dagster as dg
import polars as pl

from aya_assets import plots
from aya_assets.arbitrage.assets import sampling_settings
from aya_assets.arbitrage.pool import generate_pool
from aya_assets.evaluation import report
from aya_assets.evaluation.judge import Judge
from aya_assets.evaluation.stages import BEST_SINGLE, final_stage, stage_deps, stage_keys, stage_model
from aya_assets.evaluation.winrates import judge_both_orders, summarize
from aya_assets.generation import GenerationBackend
from aya_assets.models.checkpoint import content_hash
from aya_assets.profile import Profile
from aya_assets.resources import ArtifactStore, ProfileResource
from aya_assets.store import PARTITION_COLUMN, markdown_table

GROUP = "evaluation"
NO_REGRESSION = "final_not_below_arbitrage_sft"


def resolve_baselines(profile: Profile, overall_vs_base: dict[str, float]) -> list[str]:
    """Configured baselines with best_single_teacher replaced by the strongest single-teacher SFT."""
    singles = {k: v for k, v in overall_vs_base.items() if k.startswith("single_")}
    out = []
    for b in profile.evaluation.baselines:
        if b == BEST_SINGLE:
            if singles:
                out.append(max(singles, key=lambda k: (singles[k], k)))
        else:
            out.append(b)
    return list(dict.fromkeys(out))


def compare(judge: Judge, generations: pl.DataFrame, stage: str, baseline: str, resamples: int, seed: int) -> pl.DataFrame:
    cand = generations.filter(pl.col("stage") == stage).select("prompt_id", "language", "prompt", "reference", candidate="completion")
    base = generations.filter(pl.col("stage") == baseline).select("prompt_id", baseline="completion")
    verdicts = judge_both_orders(judge, cand.join(base, on="prompt_id").sort("language", "prompt_id"))
    return summarize(verdicts, resamples, seed).with_columns(stage=pl.lit(stage), baseline=pl.lit(baseline))


def build_evaluation_assets(profile: Profile) -> list:
    stages = stage_keys(profile)

    @dg.asset(
        partitions_def=dg.StaticPartitionsDefinition(stages),
        ins={"prompts": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())},
        deps=stage_deps(profile),
        metadata={PARTITION_COLUMN: "stage"},
        group_name=GROUP,
        kinds={"transformers", "parquet"},
        code_version="1",
        pool="gpu",
    )
    def eval_generations(context: dg.AssetExecutionContext, prompts: pl.DataFrame, profile: ProfileResource,
                         store: ArtifactStore, generator: GenerationBackend) -> pl.DataFrame:
        """Each stage's model answers the held-out eval prompts of all 23 languages."""
        cfg = profile.profile
        stage = context.partition_key
        model = stage_model(cfg, store.models, stage)
        evals = prompts.filter(pl.col("split") == "eval")
        sampling = sampling_settings(cfg).model_copy(update={"n": 1, "temperature": cfg.evaluation.temperature})
        model_hash = content_hash(Path(model)) if Path(model).exists() else model
        table, _ = generate_pool(evals, {stage: model}, {stage: model_hash}, generator, sampling,
                                 store.data / "shards" / "eval_generations", cfg.generation.shard_size, log=context.log.info)
        out = table.rename({"teacher": "stage"}).drop("sample").join(evals.select("prompt_id", "reference"), on="prompt_id")
        context.add_output_metadata({"model": model, "eval_prompts": evals.height})
        return out

    @dg.asset(
        ins={"eval_generations": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())},
        group_name=GROUP,
        kinds={"polars", "parquet", "matplotlib"},
        code_version="1",
        check_specs=[dg.AssetCheckSpec(NO_REGRESSION, asset="win_rates",
                                       description="the final merge does not fall below the arbitrage SFT merge")],
    )
    def win_rates(context: dg.AssetExecutionContext, eval_generations: pl.DataFrame, profile: ProfileResource,
                  store: ArtifactStore, judge: Judge):
        """Each stage against each baseline, per language and overall: W/T/L, win rate (ties half), bootstrap 95% CI."""
        cfg = profile.profile
        ev = cfg.evaluation
        vs_base = [compare(judge, eval_generations, s, "student_base", ev.bootstrap_resamples, cfg.seed)
                   for s in stages if s != "student_base"]
        overall = {t["stage"][0]: t.filter(pl.col("language") == "all")["win_rate"][0] for t in vs_base}
        baselines = resolve_baselines(cfg, overall)
        tables = list(vs_base) if "student_base" in baselines else []
        for b in baselines:
            if b != "student_base":
                tables += [compare(judge, eval_generations, s, b, ev.bootstrap_resamples, cfg.seed) for s in stages if s != b]
        result = pl.concat(tables).select("stage", "baseline", "language", "prompts", "wins", "ties", "losses",
                                          "win_rate", "ci_low", "ci_high")
        charts = report.write(result, stages, baselines, final_stage(cfg), store.reports, judge.name)
        step_table = report.step_table(result, stages)
        yield dg.Output(result, metadata={
            "baselines": ", ".join(baselines),
            "judge": judge.name,
            "step_by_step": dg.MetadataValue.md(markdown_table(step_table, rows=len(stages) * 2)),
            **{name: dg.MetadataValue.md(plots.markdown_image(png, name)) for name, png in charts.items()},
            "report": dg.MetadataValue.path(str(store.reports / "latest.md")),
        })
        final, sft = final_stage(cfg), "sft_merged"
        rate = {s: overall.get(s) for s in (final, sft)}
        passed = None in rate.values() or rate[final] >= rate[sft] - ev.regression_tolerance
        yield dg.AssetCheckResult(
            check_name=NO_REGRESSION, passed=bool(passed), severity=dg.AssetCheckSeverity.WARN,
            metadata={f"{final}_vs_student_base": rate[final] or 0.0, "sft_merged_vs_student_base": rate[sft] or 0.0,
                      "tolerance": ev.regression_tolerance},
        )

    return [eval_generations, win_rates]
