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
from aya_assets.evaluation import routing as routing_report
from aya_assets.evaluation import within_run as within_run_report
from aya_assets.evaluation.judge import Judge, references_at_budget
from aya_assets.evaluation.quality import stage_quality as quality_table
from aya_assets.evaluation.winrates import (BEST_SINGLE, BestSingle, Findings, VerdictShards,
                                            answer_lengths, cached_verdicts, choose_best_single, length_relation,
                                            pair_frame, paired_regression, resolve_baselines, split_selection, summarize,
                                            unparsed_example, unparsed_shares, zero_width_intervals)
from aya_assets.generation import GenerationBackend, sampling_settings
from aya_assets.profile import EvaluationConfig, Profile
from aya_assets.stages import Evaluated, Recipe, routing_keys

GROUP = "evaluation"
CODE_VERSION = "2"  # 2: references cut to the generation budget; best single chosen on its own slice
NO_REGRESSION = "final_not_below_arbitrage_sft"
ARBITRAGE_SFT = "sft_merged"  # what the final merge must not trail
VERDICTS_PARSED = "judge_verdicts_parsed"
SUMMARY_COLUMNS = ["stage", "baseline", "language", "prompts", "wins", "ties", "losses", "win_rate", "ci_low", "ci_high",
                   "judgements", "unparsed"]


class Comparison(NamedTuple):
    summary: pl.DataFrame  # winrates.summarize, with stage and baseline
    verdicts: pl.DataFrame  # with answer_lengths' columns
    counts: dict[str, int]  # verdict shards judged / reused


class Judged(NamedTuple):
    baselines: list[str]  # resolved: best_single_teacher replaced by the chosen stage
    comparisons: list[Comparison]  # every stage against every baseline, on the held-out prompts
    selection: list[Comparison]  # single_* vs student_base on the selection slice (they choose best_single_teacher)
    best_single: BestSingle | None
    regression: Comparison | None  # final vs the arbitrage SFT (a reported comparison where sft_merged is a baseline)
    selection_prompts: int
    held_out_prompts: int
    selection_fraction: float


def compare(judge: Judge, generations: pl.DataFrame, stage: str, baseline: str, shards: VerdictShards,
            resamples: int, seed: int, cache_as: str = "") -> Comparison:
    pairs = pair_frame(generations, stage, baseline)
    verdicts, counts = cached_verdicts(judge, pairs, cache_as or f"{stage}_vs_{baseline}", shards)
    verdicts = verdicts.join(answer_lengths(pairs), on="prompt_id", how="left")
    summary = summarize(verdicts, resamples, seed).with_columns(stage=pl.lit(stage), baseline=pl.lit(baseline))
    return Comparison(summary, verdicts, counts)


def verdict_shards(context: dg.AssetExecutionContext, store: ArtifactStore, profile: Profile, judge: str,
                   directory: str = "win_rates") -> VerdictShards:
    """Where a judge's cached verdicts live: shards/<directory>, owned by this profile's judge."""
    return VerdictShards(store.shards / directory, owner_key(profile.name, judge), profile.generation.shard_size,
                         context.log.info)


def chooses_best_single(stages: list[str], ev: EvaluationConfig) -> bool:
    """Whether a selection slice of the eval prompts chooses best_single_teacher (then every rate is on the rest)."""
    return BEST_SINGLE in ev.baselines and any(s.startswith("single_") for s in stages)


def judge_stages(judge: Judge, generations: pl.DataFrame, stages: list[str], final: str, ev: EvaluationConfig,
                 seed: int, shards: VerdictShards) -> Judged:
    """Every stage against every baseline on the held-out prompts.

    When best_single_teacher is asked for, the single_* stages are first compared with student_base on the selection
    slice, which chooses it; every reported rate is then on the rest, so the choice does not inflate its own rates.
    The final stage is also compared with the arbitrage SFT there, for the regression check, if no baseline did it.
    """
    run = partial(compare, judge, shards=shards, resamples=ev.bootstrap_resamples, seed=seed)
    singles = [s for s in stages if s.startswith("single_")]
    fraction = ev.selection_fraction
    choosing = chooses_best_single(stages, ev)
    selection, held_out = split_selection(generations, seed, fraction) if choosing else (generations.clear(), generations)
    chosen = [run(selection, s, "student_base", cache_as=f"{s}_vs_student_base_selection")
              for s in singles] if choosing else []
    best = choose_best_single({s: c.verdicts for s, c in zip(singles, chosen)}, ev.bootstrap_resamples, seed)
    baselines = resolve_baselines(ev.baselines, best, stages)
    done = [run(held_out, s, b) for b in baselines for s in stages if s != b]  # a baseline is never compared with itself
    reported = {(c.summary["stage"][0], c.summary["baseline"][0]): c for c in done}
    regression = None if final == ARBITRAGE_SFT else (reported.get((final, ARBITRAGE_SFT))
                                                       or run(held_out, final, ARBITRAGE_SFT))
    return Judged(baselines, done, chosen, best, regression, selection["prompt_id"].n_unique(),
                  held_out["prompt_id"].n_unique(), fraction if choosing else 0.0)


def findings(judged: Judged, result: pl.DataFrame, final: str, tolerance: float) -> Findings:
    """What the report and the metadata say beside the rates (see winrates.Findings)."""
    regression = (None if judged.regression is None
                  else paired_regression(judged.regression.summary, final, ARBITRAGE_SFT, tolerance))
    return Findings(judged.best_single, judged.selection_prompts, judged.held_out_prompts, judged.selection_fraction,
                    length_relation([c.verdicts for c in judged.comparisons]),
                    length_relation([c.verdicts.filter(pl.col("at_budget")) for c in judged.comparisons]),
                    zero_width_intervals(result), regression)


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


def stage_model_ins(evaluated: dict[str, Evaluated]) -> dict[str, dg.AssetIn]:
    """One input per evaluated model asset; a partitioned one maps each of its partitions to its stage's key, so a
    stage partition reads exactly the checkpoint it evaluates (and the others map to nothing)."""
    models = {}
    for e in evaluated.values():
        if e.partition is None:
            models[e.asset] = dg.AssetIn(e.asset)
        else:
            mapping = {x.partition: x.key for x in evaluated.values() if x.asset == e.asset}
            models[e.asset] = dg.AssetIn(e.asset, partition_mapping=dg.StaticPartitionMapping(mapping), metadata=BY_PARTITION)
    return models


def stage_answers(context: dg.AssetExecutionContext, stage: Evaluated, model: Checkpoint, evals: pl.DataFrame,
                  store: ArtifactStore, generator: GenerationBackend, profile: Profile, shards: str) -> pl.DataFrame:
    """One stage's model answers `evals` (one sample each, at evaluation.temperature): prompt_id, language, stage,
    completion, seconds; generated in cached shards under shards/<shards>."""
    sampling = sampling_settings(profile.generation, profile.seed).model_copy(
        update={"n": 1, "temperature": profile.evaluation.temperature})
    table, _ = generate_pool(evals, {stage.key: model.path}, {stage.key: model.identity()}, generator, sampling,
                             store.shards / shards, profile.generation.shard_size, log=context.log.info,
                             profile=profile.name)
    return table.rename({"teacher": "stage"}).drop("sample")


def generations_asset(name: str, prompts_asset: str, evaluated: dict[str, Evaluated], profile: Profile, describe,
                      group: str = GROUP):
    """An asset partitioned by evaluated stage: each stage's model answers the eval split of `prompts_asset`, and
    `describe(out, evals, tokenizer_path)` returns (the table to store, its metadata)."""

    @dg.asset(
        name=name,
        partitions_def=dg.StaticPartitionsDefinition(list(evaluated)),
        ins={"prompts": dg.AssetIn(prompts_asset, partition_mapping=dg.AllPartitionMapping())} | stage_model_ins(evaluated),
        metadata={PARTITION_COLUMN: "stage"},
        group_name=group,
        kinds={"transformers", "parquet"},
        code_version=CODE_VERSION,
        pool="gpu",
        description=describe.__doc__,
    )
    def _generations(context: dg.AssetExecutionContext, prompts: pl.DataFrame, store: ArtifactStore,
                     generator: GenerationBackend, **checkpoints: Checkpoint | dict[str, Checkpoint]) -> pl.DataFrame:
        stage = evaluated[context.partition_key]
        model = checkpoints[stage.asset] if stage.partition is None else checkpoints[stage.asset][stage.partition]
        evals = prompts.filter(pl.col("split") == "eval")
        out, meta = describe(stage_answers(context, stage, model, evals, store, generator, profile, name), evals, model)
        context.add_output_metadata({"model": model.path, "eval_prompts": evals.height, **meta})
        return out

    return _generations


def build_evaluation_assets(profile: Profile, recipe: Recipe) -> list:
    evaluated = {e.key: e for e in recipe.evaluated()}
    stages, final = list(evaluated), recipe.final()
    charted = recipe.charted()

    def with_references(out: pl.DataFrame, evals: pl.DataFrame, model: Checkpoint):
        """Each stage's model answers the held-out eval prompts of all 23 languages; each reference is also kept cut
        to the generation budget with the stage's tokenizer (reference_at_budget: what an answer can reach)."""
        from transformers import AutoTokenizer

        out = out.join(evals.select("prompt_id", "reference"), on="prompt_id")
        tokenizer = AutoTokenizer.from_pretrained(model.path, revision=model.revision)
        budget = references_at_budget(out["reference"].to_list(), tokenizer, profile.generation.max_new_tokens)
        out = out.with_columns(reference_at_budget=pl.Series(budget, dtype=pl.String))
        cut = int((out["reference_at_budget"] != out["reference"]).sum())
        return out, {"references_over_budget": cut, "max_new_tokens": profile.generation.max_new_tokens}

    eval_generations = generations_asset("eval_generations", "prompts", evaluated, profile, with_references)

    @dg.asset(
        ins={"eval_generations": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())},
        group_name=GROUP,
        kinds={"polars", "parquet", "matplotlib"},
        code_version=CODE_VERSION,
        check_specs=[dg.AssetCheckSpec(NO_REGRESSION, asset="win_rates",
                                       description="the final merge does not fall below the arbitrage SFT merge: judged "
                                                   "directly, its win rate's 95% interval reaches 0.5 - "
                                                   "evaluation.regression_tolerance"),
                     dg.AssetCheckSpec(VERDICTS_PARSED, asset="win_rates", blocking=True,
                                       description="no stage's share of judgements without a verdict passes "
                                                   "evaluation.max_unparsed_share")],
    )
    def win_rates(context: dg.AssetExecutionContext, eval_generations: pl.DataFrame, store: ArtifactStore, judge: Judge):
        """Each stage against each baseline, per language and overall: W/T/L, win rate (ties half), bootstrap 95% CI,
        on the eval prompts outside the slice that chose best_single_teacher."""
        ev = profile.evaluation
        shards = verdict_shards(context, store, profile, judge.name)
        judged = judge_stages(judge, eval_generations, stages, final, ev, profile.seed, shards)
        result = pl.concat([c.summary for c in judged.comparisons]).select(*SUMMARY_COLUMNS)
        overall_rows = result.filter(pl.col("language") == "all")
        unparsed = int(overall_rows["unparsed"].sum())
        if unparsed:
            context.log.warning(f"{judge.name} gave no verdict in {unparsed} of {int(overall_rows['judgements'].sum())} judgements")
        found = findings(judged, result, final, ev.regression_tolerance)
        charts = report.write(result, charted, judged.baselines, final, store.reports, judge.name, found)
        step_table = report.step_table(result, stages)
        # Every comparison judged, once each (the regression one is often also a reported one).
        every = {id(c): c for c in [*judged.selection, *judged.comparisons, judged.regression] if c is not None}.values()
        yield dg.Output(result, metadata={
            "baselines": ", ".join(judged.baselines),
            "judge": judge.name,
            "unparsed": unparsed,
            "verdict_shards_judged": sum(c.counts["generated"] for c in every),
            "verdict_shards_reused": sum(c.counts["reused"] for c in every),
            # The table under its own key: the chart of the same name used to overwrite it.
            "step_by_step_table": dg.MetadataValue.md(markdown_table(report.shown(step_table), rows=step_table.height)),
            **report.findings_metadata(found),
            **{k: v for name, png in charts.items()
               for k, v in plots.chart_metadata(name, png, store.reports / f"{name}.png").items()},
            "report": dg.MetadataValue.path(str(store.reports / "latest.md")),
        })
        yield verdicts_parsed(result, judged.comparisons, ev.max_unparsed_share)
        regression = found.regression
        yield dg.AssetCheckResult(
            check_name=NO_REGRESSION, passed=regression is None or regression.passed, severity=dg.AssetCheckSeverity.WARN,
            metadata=report.regression_metadata(regression),
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

    assets = [eval_generations, win_rates, stage_quality]
    if profile.training.baselines and profile.arbitrage.routing != "learned":
        assets.append(routing_comparison_asset(profile, stages))
    if "sft_averaged" in recipe:
        assets.append(within_run_comparison_asset(profile, recipe))
    return assets


def held_out_generations(generations: pl.DataFrame, stages: list[str], profile: Profile) -> pl.DataFrame:
    """The eval prompts win_rates reports on: outside the slice that chose the best single teacher, if one did."""
    ev = profile.evaluation
    return (split_selection(generations, profile.seed, ev.selection_fraction)[1]
            if chooses_best_single(stages, ev) else generations)


def within_run_comparison_asset(profile: Profile, recipe: Recipe):
    keys = {(e.asset, e.partition): e.key for e in recipe.evaluated()}
    pairs = {c: (keys[("sft_checkpoints", c)], keys[("sft_averaged", c)]) for c in profile.clusters}
    stages = recipe.evaluated_keys()
    baseline = "student_base"
    kept = profile.merge.within_run
    steps = f"{kept.keep} kept, {kept.every:.0%} of the run's steps apart"

    @dg.asset(
        ins={"eval_generations": dg.AssetIn(partition_mapping=dg.AllPartitionMapping()), "win_rates": dg.AssetIn(),
             "stage_quality": dg.AssetIn()},
        group_name=GROUP,
        kinds={"polars", "parquet"},
        code_version=CODE_VERSION,
    )
    def within_run_comparison(context: dg.AssetExecutionContext, eval_generations: pl.DataFrame, win_rates: pl.DataFrame,
                              stage_quality: pl.DataFrame, store: ArtifactStore, judge: Judge):
        """Each cluster's SFT at its final checkpoint against its within-run average: held-out exact match, win rate
        vs the student base, and the two judged head to head; the report's within-run section."""
        ev = profile.evaluation
        shards = verdict_shards(context, store, profile, judge.name)
        held_out = held_out_generations(eval_generations, stages, profile)
        head = pl.concat([compare(judge, held_out, averaged, final, shards, ev.bootstrap_resamples, profile.seed).summary
                          for final, averaged in pairs.values()])
        table = within_run_report.comparison_table(pairs, stage_quality, win_rates, baseline, head)
        report.publish(store.reports, "4_within_run", within_run_report.section(table, baseline, steps))
        return dg.Output(table, metadata={
            "comparison": dg.MetadataValue.md(markdown_table(table.with_columns(pl.col(pl.Float64).round(3)),
                                                             rows=table.height)),
            "report": dg.MetadataValue.path(str(store.reports / "latest.md")),
        })

    return within_run_comparison


def routing_comparison_asset(profile: Profile, stages: list[str]):
    routings = [r for r in routing_keys(profile) if r in stages]

    @dg.asset(
        ins={"eval_generations": dg.AssetIn(partition_mapping=dg.AllPartitionMapping()), "win_rates": dg.AssetIn(),
             "stage_quality": dg.AssetIn(), "routing_costs": dg.AssetIn(), "router_accuracy": dg.AssetIn()},
        group_name=GROUP,
        kinds={"polars", "parquet", "matplotlib"},
        code_version=CODE_VERSION,
    )
    def routing_comparison(context: dg.AssetExecutionContext, eval_generations: pl.DataFrame, win_rates: pl.DataFrame,
                           stage_quality: pl.DataFrame, routing_costs: pl.DataFrame, router_accuracy: pl.DataFrame,
                           store: ArtifactStore, judge: Judge):
        """Reward, learned top-k, fixed and random routing side by side: completions and teacher-seconds generated,
        the resulting SFT student's win rate vs the best single teacher and vs reward routing's student (95% CI), and
        its held-out exact match; a chart of quality against cost, and the report's routing section."""
        ev = profile.evaluation
        shards = verdict_shards(context, store, profile, judge.name)
        held_out = held_out_generations(eval_generations, stages, profile)  # the same prompts as win_rates' rates
        against = [compare(judge, held_out, r, "reward", shards, ev.bootstrap_resamples, profile.seed).summary
                   for r in routings if r != "reward"]
        vs_reward = pl.concat(against) if against else pl.DataFrame(schema={"stage": pl.String, "language": pl.String,
                                                                            "win_rate": pl.Float64, "ci_low": pl.Float64,
                                                                            "ci_high": pl.Float64})
        table = routing_report.comparison_table(routings, routing_costs, win_rates, vs_reward, stage_quality)
        png = routing_report.chart(table)
        path = plots.save_png(png, store.reports / "routing_comparison.png")
        report.publish(store.reports, "2_routing", routing_report.section(table, router_accuracy))
        return dg.Output(table, metadata={
            "comparison": dg.MetadataValue.md(markdown_table(routing_report.shown(table), rows=table.height)),
            **plots.chart_metadata("routing_comparison", png, path, "routing: quality against cost"),
            "report": dg.MetadataValue.path(str(store.reports / "latest.md")),
        })

    return routing_comparison
