"""Stage 7: red-team prompts, the harm judge, safety SFT and DPO from the general model, the safety merge swept over its
weight, and harm rates for every evaluated stage with the harm-vs-win-rate trade-off."""

from dataclasses import replace
from pathlib import Path

import dagster as dg
import polars as pl

from aya_assets.artifacts import plots
from aya_assets.artifacts.atomic import write_bytes
from aya_assets.artifacts.store import ArtifactStore
from aya_assets.artifacts.tables import markdown_table
from aya_assets.checkpoints.build import Card, materialize_checkpoint
from aya_assets.checkpoints.io import CHECKPOINT_IO, Checkpoint, located
from aya_assets.evaluation import report
from aya_assets.evaluation.assets import generations_asset, verdict_shards
from aya_assets.merge.assets import merge_asset_args, sanity_result
from aya_assets.merge.merging import RECIPE_FILE, merge_checkpoints
from aya_assets.models.assets import train_rows
from aya_assets.preference.assets import dpo_info
from aya_assets.preference.pairs import safety_contrast, trl_rows
from aya_assets.profile import Profile
from aya_assets.prompts.assets import prompt_table_args, stored_checks
from aya_assets.safety.harm import (HarmJudge, cached_harm_verdicts, harm_rate_table, pareto_front, tradeoff_chart,
                                    train_harm_classifier)
from aya_assets.safety.redteam import read_redteam
from aya_assets.sft.assets import train_student
from aya_assets.stages import Recipe, weight_key

GROUP = "safety"
EVALUATION = "evaluation"
CODE_VERSION = "1"
CLASSIFIER_FILE = "classifier.joblib"
SAFE_TEACHER = "safe_reference"  # the `teacher` of a safety SFT row: the red-team set's own safe answer
TRADEOFF_SCHEMA = {
    "weight": pl.Float64, "stage": pl.String, "harmful_rate": pl.Float64, "harm_ci_low": pl.Float64,
    "harm_ci_high": pl.Float64, "red_team_prompts": pl.Int64, "win_rate": pl.Float64, "win_ci_low": pl.Float64,
    "win_ci_high": pl.Float64, "configured": pl.Boolean, "pareto": pl.Boolean,
}


def classifier_path(store: ArtifactStore) -> Path:
    """Where the harm_classifier asset saves the tiny harm judge (and ClassifierHarmJudge reads it)."""
    return store.models / "harm_classifier" / CLASSIFIER_FILE


def safety_rows(redteam: pl.DataFrame, general: pl.DataFrame, mix: float, seed: int) -> pl.DataFrame:
    """The safety SFT's rows: every red-team train prompt with a safe reference (its answer), plus a seeded sample of
    `mix` general (arbitrage SFT) rows per safety row, so that the general skills are trained alongside."""
    safe = (redteam.filter((pl.col("split") == "train") & pl.col("reference").is_not_null())
            .select("prompt_id", "language", prompt="text", completion="reference")
            .with_columns(teacher=pl.lit(SAFE_TEACHER), sample=pl.lit(0, pl.Int64)))
    if safe.is_empty():
        raise ValueError("no red-team train prompt has a safe reference: add a source with safe_reference (the bundled "
                         "set, data/seed/redteam) to safety.sources")
    safe = safe.with_columns(messages=pl.concat_list(
        pl.struct(role=pl.lit("user"), content=pl.col("prompt")),
        pl.struct(role=pl.lit("assistant"), content=pl.col("completion"))))
    n = min(general.height, round(mix * safe.height))
    kept = general.sort("language", "prompt_id").sample(n=n, seed=seed).select(*safe.columns)
    return pl.concat([safe, kept.cast(safe.schema)])


def tradeoff_table(weights: list[float], configured: float, harm: pl.DataFrame, win_rates: pl.DataFrame,
                   baseline: str) -> pl.DataFrame:
    """One row per safety-merge weight: its overall harmful rate (95% CI) and general win rate vs `baseline` (95% CI),
    whether it is the configured merge, and whether it is on the Pareto front (no weight both less harmful and better)."""
    overall_harm = harm.filter(pl.col("language") == "all")
    wins = win_rates.filter((pl.col("language") == "all") & (pl.col("baseline") == baseline))
    rows = (pl.DataFrame({"weight": weights, "stage": [f"safety_{weight_key(w)}" for w in weights]})
            .join(overall_harm.select("stage", "harmful_rate", harm_ci_low="ci_low", harm_ci_high="ci_high",
                                      red_team_prompts="n"), on="stage", how="left")
            .join(wins.select("stage", "win_rate", win_ci_low="ci_low", win_ci_high="ci_high"), on="stage", how="left")
            .with_columns(configured=pl.col("weight") == configured))
    measured = rows.filter(pl.col("harmful_rate").is_not_null() & pl.col("win_rate").is_not_null())
    front = dict(zip(measured["stage"], pareto_front(measured["harmful_rate"].to_list(), measured["win_rate"].to_list())))
    return rows.with_columns(pareto=pl.col("stage").replace_strict(front, default=None, return_dtype=pl.Boolean)
                             ).select(*TRADEOFF_SCHEMA).cast(TRADEOFF_SCHEMA)


def section(harm: pl.DataFrame, tradeoff: pl.DataFrame, stages: list[str], general: str, final: str, baseline: str,
            judge: str, accuracy: pl.DataFrame | None) -> str:
    """The report's safety section: harmful rate per stage, the sweep's trade-off and the general-vs-final finding."""
    overall = harm.filter((pl.col("language") == "all") & pl.col("stage").is_in(stages)).select(
        "stage", "n", "harmful", "harmful_rate", "ci_low", "ci_high", "unjudged").with_columns(
        pl.col("harmful_rate", "ci_low", "ci_high").round(3))
    by_stage = {r["stage"]: r for r in overall.iter_rows(named=True)}
    g, f = by_stage.get(general), by_stage.get(final)
    cost = tradeoff.filter(pl.col("configured"))
    lines = ["## Safety: harmful rate per stage and the safety merge's trade-off", "",
             f"Harm judge: {judge}. Harmful rate: the share of held-out red-team prompts whose answer the judge calls "
             "harmful (in the miniature: not a refusal), bootstrap 95% CI over prompts.", ""]
    if g and f and g["harmful_rate"] is not None and f["harmful_rate"] is not None:
        lower = f["ci_high"] < g["harmful_rate"]
        win = cost.row(0, named=True) if cost.height else None
        lines += [f"**{final}** (the configured safety merge) vs **{general}** (the general model): harmful rate "
                  f"{f['harmful_rate']:.3f} [{f['ci_low']:.3f}, {f['ci_high']:.3f}] against {g['harmful_rate']:.3f} "
                  f"[{g['ci_low']:.3f}, {g['ci_high']:.3f}]; the interval's high end is "
                  f"{'below' if lower else 'not below'} the general model's rate."
                  + (f" Its general win rate vs {baseline}: {win['win_rate']:.3f} [{win['win_ci_low']:.3f}, "
                     f"{win['win_ci_high']:.3f}]." if win and win["win_rate"] is not None else ""), ""]
    shown = tradeoff.with_columns(pl.col(pl.Float64).exclude("weight").round(3))
    lines += ["![safety trade-off](safety_tradeoff.png)", "",
              f"Safety-merge weight sweep (weight of the safety-tuned model; 0 is the general model, 1 the safety-tuned "
              f"one); win rate vs {baseline} on the general held-out prompts:", "",
              markdown_table(shown, rows=shown.height), "", "Harmful rate per stage (all languages):", "",
              markdown_table(overall, rows=overall.height), ""]
    if accuracy is not None:
        a = accuracy.filter(pl.col("language") == "all").row(0, named=True)
        lines += [f"The harm classifier's held-out accuracy (refusal vs not): {a['accuracy']:.3f} "
                  f"[{a['ci_low']:.3f}, {a['ci_high']:.3f}] over {a['n']} answers.", ""]
    return "\n".join(lines)


def build_safety_assets(profile: Profile, recipe: Recipe) -> list:
    cfg = profile.safety
    if not cfg.enabled:
        return []

    @dg.asset(**prompt_table_args("redteam_prompts", CODE_VERSION))
    def redteam_prompts(context: dg.AssetExecutionContext, store: ArtifactStore):
        """Red-team prompts (Aya Red-teaming layout) with harm categories, safe and unsafe references, split train/eval."""
        languages = list(context.partition_keys)
        loaded = read_redteam(cfg.sources, languages, cfg.eval_fraction, profile.prompts.max_chars)
        for language in languages:
            rows = loaded.frame.filter(pl.col("language") == language)
            context.add_asset_metadata({"rows": rows.height, "eval": int((rows["split"] == "eval").sum()),
                                        "categories": ", ".join(sorted({c for cs in rows["category"].drop_nulls()
                                                                        for c in cs.split("; ")})) or "none"},
                                       partition_key=language)
        if loaded.skipped.height:
            context.log.info(f"red-team rows outside the Aya languages, left out:\n{markdown_table(loaded.skipped)}")
        yield dg.Output(loaded.frame)
        # A red-team source need not cover every language (the published set has six).
        yield from stored_checks(context, loaded.frame, store, languages, profile.prompts.max_language_mismatch,
                                 every_language=False)

    everything = dg.AllPartitionMapping()
    assets = [redteam_prompts]

    if cfg.harm_judge == "classifier":

        @dg.asset(ins={"redteam_prompts": dg.AssetIn(partition_mapping=everything),
                       "prompts": dg.AssetIn(partition_mapping=everything)},
                  group_name=GROUP, kinds={"scikit-learn", "parquet"}, code_version=CODE_VERSION)
        def harm_classifier(context: dg.AssetExecutionContext, redteam_prompts: pl.DataFrame, prompts: pl.DataFrame,
                            store: ArtifactStore) -> dg.Output[pl.DataFrame]:
            """The tiny harm judge: refusal vs anything else, trained on the red-team set's safe (refusal) and unsafe
            (compliance) references and the general prompts' train answers; held-out accuracy per language."""
            general = train_rows(prompts).select("language", "prompt_id", text="reference")
            classifier, accuracy = train_harm_classifier(redteam_prompts, general, cfg.classifier, cfg.classifier_holdout,
                                                         profile.seed, profile.evaluation.bootstrap_resamples)
            path = write_bytes(classifier_path(store), classifier.dumps())
            overall = accuracy.filter(pl.col("language") == "all").row(0, named=True)
            return dg.Output(accuracy, metadata={
                "accuracy": overall["accuracy"], "ci_low": overall["ci_low"], "ci_high": overall["ci_high"],
                "held_out": overall["n"], "model": dg.MetadataValue.path(str(path)),
                "by_language": dg.MetadataValue.md(markdown_table(accuracy.with_columns(pl.col(pl.Float64).round(3)),
                                                                  rows=accuracy.height))})

        assets.append(harm_classifier)

    @dg.asset(ins={"redteam_prompts": dg.AssetIn(partition_mapping=everything)}, group_name=GROUP,
              kinds={"polars", "parquet"}, code_version=CODE_VERSION)
    def safety_pairs(redteam_prompts: pl.DataFrame) -> dg.Output[pl.DataFrame]:
        """Safe over unsafe (TRL conversational pairs): each red-team train prompt's safe reference (chosen) against
        its unsafe one (rejected)."""
        pairs = safety_contrast(redteam_prompts)
        if pairs.is_empty():
            raise ValueError("no red-team train prompt has both a safe and an unsafe reference, so safety DPO has no "
                             "pairs: add such a source (the bundled set, data/seed/redteam) or set safety.dpo: null")
        per_language = pairs.group_by("language").len("pairs").sort("language")
        return dg.Output(pairs, metadata={"pairs": pairs.height,
                                          "per_language": dg.MetadataValue.md(markdown_table(per_language,
                                                                                             rows=per_language.height))})

    sft_stage = recipe["safety_sft"]
    settings = replace(cfg.sft, seed=cfg.sft.seed + profile.seed)

    @dg.asset(name=sft_stage.asset, ins={"general": dg.AssetIn(sft_stage.starts_from),
                                         "redteam_prompts": dg.AssetIn(partition_mapping=everything),
                                         "arbitrage_sft": dg.AssetIn(partition_mapping=everything)},
              group_name=GROUP, kinds={"trl", "pytorch"}, code_version=CODE_VERSION, pool="gpu",
              io_manager_key=CHECKPOINT_IO)
    def safety_sft(context: dg.AssetExecutionContext, general: Checkpoint, redteam_prompts: pl.DataFrame,
                   arbitrage_sft: pl.DataFrame, store: ArtifactStore) -> dg.Output[Checkpoint]:
        """The general model SFT'd on the red-team train prompts' safe answers mixed with general arbitrage rows."""
        rows = safety_rows(redteam_prompts, arbitrage_sft, cfg.general_mix, profile.seed)
        return train_student(context, rows, general, located(store, sft_stage.asset), settings,
                             f"safety SFT of {sft_stage.starts_from}: red-team safe answers, {cfg.general_mix} general "
                             f"rows per safety row")

    assets += [safety_pairs, safety_sft]
    tuned = sft_stage.asset
    if "safety_dpo" in recipe:
        dpo_stage = recipe["safety_dpo"]
        dpo_settings = replace(cfg.dpo, seed=cfg.dpo.seed + profile.seed)

        @dg.asset(name=dpo_stage.asset, ins={"init": dg.AssetIn(dpo_stage.starts_from), "pairs": dg.AssetIn("safety_pairs")},
                  group_name=GROUP, kinds={"trl", "pytorch"}, code_version=CODE_VERSION, pool="gpu",
                  io_manager_key=CHECKPOINT_IO)
        def safety_dpo(context: dg.AssetExecutionContext, init: Checkpoint, pairs: pl.DataFrame,
                       store: ArtifactStore) -> dg.Output[Checkpoint]:
            """DPO of the safety SFT (also its reference) on safe-over-unsafe pairs."""
            from aya_assets.training.dpo import train_dpo

            pairs = pairs.sort("language", "prompt_id")
            card = Card(dpo_stage.asset, "DPO of the safety SFT on safe-over-unsafe red-team pairs",
                        {"dpo": dpo_settings, "reference": init.path}, pairs.select("prompt_id", "language", "kind"),
                        lineage=[dg.AssetKey("student_base")])
            return materialize_checkpoint(context, located(store, dpo_stage.asset), [init.identity(), trl_rows(pairs),
                                          dpo_settings], lambda tmp: dpo_info(train_dpo(init.local, trl_rows(pairs), tmp,
                                                                                        dpo_settings)), card)

        assets.append(safety_dpo)
        tuned = dpo_stage.asset

    if "safety_merged" in recipe:
        assets.append(safety_merge_asset(recipe, tuned))
    evaluated = {e.key: e for e in recipe.evaluated()}

    def red_team(out: pl.DataFrame, evals: pl.DataFrame, model: Checkpoint):
        """Each stage's model answers the held-out red-team prompts (for harm_rates)."""
        out = out.join(evals.select("prompt_id", prompt="text", category="category"), on="prompt_id")
        return out, {"red_team_prompts": evals.height}

    assets.append(generations_asset("redteam_generations", "redteam_prompts", evaluated, profile, red_team, EVALUATION))
    assets += harm_assets(profile, recipe, list(evaluated))
    return assets


def safety_merge_asset(recipe: Recipe, tuned: str):
    """safety_merged: the safety-tuned model ⊕ the general model by weighted linear merge (mergekit), one partition per
    safety-merge weight (safety.weights): the sweep the trade-off chart plots."""
    profile, stage = recipe.profile, recipe["safety_merged"]
    keys = recipe.partitions(stage)

    @dg.asset(partitions_def=dg.StaticPartitionsDefinition(keys),
              ins={"tuned": dg.AssetIn(tuned), "general": dg.AssetIn(recipe.general)},
              **merge_asset_args(stage, "The safety merge at each weight of safety.sweep: w x the safety-tuned model + "
                                        "(1 - w) x the general model."))
    def safety_merged(context: dg.AssetExecutionContext, tuned: Checkpoint, general: Checkpoint, store: ArtifactStore):
        """The safety merge at this partition's weight w: w x the safety-tuned model + (1 - w) x the general model."""
        w = float(context.partition_key)
        out = located(store, stage.asset, context.partition_key)

        def build(tmp: Path) -> dict:
            # The general model first: its tokenizer, chat template and generation config are the result's.
            return {"weight": w, "recipe": merge_checkpoints([general.path, tuned.path], [1.0 - w, w], tmp, "linear",
                                                             seed=profile.seed)}

        card = Card(f"{stage.asset}/{context.partition_key}",
                    f"linear safety merge: {w} x {tuned} + {1 - w:g} x {recipe.general}",
                    {"method": "linear", "weights": {tuned: w, recipe.general: 1.0 - w}}, settings_from_build=("recipe",))
        yield materialize_checkpoint(context, out, [w, general.identity(), tuned.identity()], build, card,
                                     lambda info: {"weight": w, "recipe": dg.MetadataValue.path(str(out.local / RECIPE_FILE))})
        yield sanity_result(out.local, general.local)

    return safety_merged


def harm_assets(profile: Profile, recipe: Recipe, stages: list[str]) -> list:
    cfg, ev = profile.safety, profile.evaluation
    final, general, baseline = recipe.final(), recipe.general, "student_base"
    classifier = cfg.harm_judge == "classifier"

    @dg.asset(ins={"redteam_generations": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())},
              deps=["harm_classifier"] if classifier else [], group_name=EVALUATION, kinds={"polars", "parquet"},
              code_version=CODE_VERSION)
    def harm_rates(context: dg.AssetExecutionContext, redteam_generations: pl.DataFrame, harm_judge: HarmJudge,
                   store: ArtifactStore) -> dg.Output[pl.DataFrame]:
        """Per evaluated stage and language: the share of held-out red-team prompts answered harmfully, as the harm
        judge (not the arbiter) rules, with a bootstrap 95% interval."""
        verdicts, counts = cached_harm_verdicts(harm_judge, redteam_generations,
                                                verdict_shards(context, store, profile, harm_judge.name, "harm_rates"))
        table = harm_rate_table(verdicts, stages, ev.bootstrap_resamples, profile.seed)
        overall = table.filter(pl.col("language") == "all").with_columns(pl.col(pl.Float64).round(3))
        return dg.Output(table, metadata={"judge": harm_judge.name, "verdict_shards_judged": counts["generated"],
                                          "verdict_shards_reused": counts["reused"],
                                          "overall": dg.MetadataValue.md(markdown_table(overall, rows=overall.height))})

    ins = {"harm_rates": dg.AssetIn(), "win_rates": dg.AssetIn()}
    if classifier:
        ins["harm_classifier"] = dg.AssetIn()
    if "safety_merged" not in recipe:
        return [harm_rates]

    @dg.asset(ins=ins, group_name=EVALUATION, kinds={"polars", "parquet", "matplotlib"}, code_version=CODE_VERSION)
    def safety_tradeoff(harm_rates: pl.DataFrame, win_rates: pl.DataFrame, store: ArtifactStore, harm_judge: HarmJudge,
                        **accuracy: pl.DataFrame) -> dg.Output[pl.DataFrame]:
        """The safety-merge weight sweep: harmful rate against general win rate vs the student base, one point per
        weight (Pareto front marked), as a chart, a table and the report's safety section."""
        table = tradeoff_table(cfg.weights, cfg.merge_weight, harm_rates, win_rates, baseline)
        png = tradeoff_chart(table)
        path = plots.save_png(png, store.reports / "safety_tradeoff.png")
        shown = [s for s in recipe.charted() if s in stages] + [s for s in table["stage"] if s not in recipe.charted()]
        report.publish(store.reports, "3_safety", section(harm_rates, table, shown, general, final, baseline,
                                                          harm_judge.name, accuracy.get("harm_classifier")))
        return dg.Output(table, metadata={
            "tradeoff": dg.MetadataValue.md(markdown_table(table.with_columns(pl.col(pl.Float64).round(3)), rows=table.height)),
            **plots.chart_metadata("safety_tradeoff", png, path, "safety merge: harm vs general win rate"),
            "report": dg.MetadataValue.path(str(store.reports / "latest.md")),
        })

    return [harm_rates, safety_tradeoff]
