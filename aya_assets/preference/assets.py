"""Stages 4–5: preference pairs, DPO per cluster and merges — offline once, then online rounds from one factory."""

from dataclasses import replace
from pathlib import Path

import dagster as dg
import polars as pl

from aya_assets.arbitrage.arbiter import Arbiter
from aya_assets.arbitrage.pool import generate_pool
from aya_assets.artifacts.store import ArtifactStore
from aya_assets.artifacts.tables import markdown_table
from aya_assets.checkpoints.build import Card, materialize_checkpoint
from aya_assets.checkpoints.files import keep_input_model
from aya_assets.checkpoints.io import CHECKPOINT_IO, Checkpoint, located
from aya_assets.generation import GenerationBackend, sampling_settings
from aya_assets.languages import LANGUAGE_CODES
from aya_assets.merge.assets import merged_asset, within_run_assets
from aya_assets.partitions import cluster_partitions, language_to_cluster_mapping, per_language
from aya_assets.preference.pairs import best_vs_worst, cluster_pairs, failing_clusters, translation_contrast, trl_rows
from aya_assets.preference.translate import Translator, translate_answers, translation_report
from aya_assets.profile import Profile
from aya_assets.stages import Recipe, Stage

PAIRS_MARGIN = "pairs_positive_margin"
SKIPPED = "no pairs"
CODE_VERSION = "1"


def pairs_check(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(PAIRS_MARGIN, asset=asset,
                             description="every cluster has pairs and, on average, chosen outscores rejected")


def pairs_outputs(context: dg.AssetExecutionContext, pairs: pl.DataFrame, asset: str, clusters: dict[str, list[str]],
                  metadata: dict | None = None):
    """The pairs table (with `metadata` added to its own) plus its margin check, per cluster (WARN: a cluster without
    pairs is skipped, not a crash).

    Per cluster because each cluster's DPO trains on its own languages only: pairs in 20 languages must not hide a
    cluster with none. Only clusters whose languages were all materialized in this run are judged.
    """
    done = set(context.partition_keys)
    judged = {c: langs for c, langs in clusters.items() if set(langs) <= done}
    per_cluster = cluster_pairs(pairs, judged)
    scored = pairs["margin"].drop_nulls()
    mean_margin = float(scored.mean()) if scored.len() else 0.0
    yield dg.Output(pairs, metadata={"pairs": pairs.height, "mean_margin": mean_margin,
                                     "pairs_per_cluster": dg.MetadataValue.md(markdown_table(per_cluster, rows=len(clusters))),
                                     **(metadata or {})})
    failing = failing_clusters(per_cluster)
    yield dg.AssetCheckResult(
        check_name=PAIRS_MARGIN, asset_key=asset, passed=not failing, severity=dg.AssetCheckSeverity.WARN,
        description=f"no pairs or no positive margin in cluster(s) {', '.join(failing)}" if failing else None,
        metadata={"pairs": pairs.height, "mean_margin": mean_margin, "failing_clusters": ", ".join(failing) or "none",
                  "judged_clusters": ", ".join(judged) or "none (no cluster's languages all in this run)",
                  **{f"pairs_{row['cluster']}": row["pairs"] for row in per_cluster.iter_rows(named=True)}},
    )


def translation_metadata(rows: pl.DataFrame, translator: Translator) -> dict:
    """What the translator did to the rejected side (rows: language, english, translation, native), per language and
    overall, with a sample (english -> translated -> native) from up to 3 languages."""
    report = translation_report(rows, translator)

    def overall(column: str, weight: str) -> float | None:
        known = report.filter(pl.col(column).is_not_null() & (pl.col(weight) > 0))
        return float((known[column] * known[weight]).sum() / known[weight].sum()) if known.height else None

    samples = (rows.with_columns(rank=pl.int_range(pl.len()).over("language")).sort("rank", "language").head(3)
               .select("language", pl.col("english", "translation", "native").str.slice(0, 80)))
    return {"translator": translator.name, "words_translated": overall("words_translated", "words"),
            "target_language_before": overall("target_before", "rows"),
            "target_language_after": overall("target_after", "rows"),
            "translation_by_language": dg.MetadataValue.md(markdown_table(report, rows=report.height)),
            "translation_samples": dg.MetadataValue.md(markdown_table(samples, rows=3))}


def dpo_asset(stage: Stage, pair_assets: list[str], settings, recipe: Recipe, description: str):
    """DPO per cluster from `stage.starts_from` (also the reference) on the pairs of the cluster's languages."""
    profile = recipe.profile
    mapping = language_to_cluster_mapping(profile.clusters)
    init_asset = stage.starts_from
    settings = replace(settings, seed=settings.seed + profile.seed)
    keep = recipe.keeps(stage, settings.steps)

    @dg.asset(
        name=stage.asset,
        partitions_def=cluster_partitions(profile.clusters),
        ins={"init": dg.AssetIn(init_asset)} | {p: dg.AssetIn(p, partition_mapping=mapping) for p in pair_assets},
        group_name=stage.group,
        kinds={"trl", "pytorch"},
        code_version=CODE_VERSION,
        pool="gpu",
        io_manager_key=CHECKPOINT_IO,
        description=description,
    )
    def _dpo(context: dg.AssetExecutionContext, init: Checkpoint, store: ArtifactStore, **pairs: pl.DataFrame):
        from aya_assets.training.dpo import train_dpo

        table = pl.concat(list(pairs.values()), how="diagonal_relaxed").sort("kind", "language", "prompt_id")
        title = f"{stage.asset}/{context.partition_key}"
        kept = table.select("prompt_id", "language", "kind")
        # The student checkpoint is named too: the card says which configured base the whole chain started from.
        lineage = [dg.AssetKey("student_base")]

        def build(tmp: Path) -> dict:
            return dpo_info(train_dpo(init.local, trl_rows(table), tmp, settings, keep=keep))

        def skip(tmp: Path) -> dict:
            # No pairs in this cluster's languages (all margins under min_margin, say): one empty cluster must not
            # stop the other clusters or the rounds after. Its output is its input, recorded as such; with 0 pairs it
            # gets weight 0 in a data-proportional merge.
            keep_input_model(init.local, tmp)
            return {"skipped": SKIPPED, "pairs": 0, "copied_from": init.path}

        if table.is_empty():
            context.log.warning(f"{title}: no preference pairs in {', '.join(pair_assets)}; keeping {init_asset} as its output")
            card = Card(title, f"{description} Skipped: no pairs; this is {init_asset} unchanged.",
                        {"dpo": settings, "reference": init.path, "skipped": SKIPPED}, kept, lineage=lineage)
        else:
            card = Card(title, description, {"dpo": settings, "reference": init.path}, kept, lineage=lineage)
        out = located(store, stage.asset, context.partition_key)
        kinds = markdown_table(table.group_by("kind").len().sort("kind"))
        return materialize_checkpoint(context, out, [init.identity(), trl_rows(table), settings, *([keep] if keep else [])],
                                      skip if table.is_empty() else build, card,
                                      lambda info: {"skipped": info.get("skipped", "no"), "pairs_by_kind": dg.MetadataValue.md(kinds)})

    return _dpo


def dpo_info(report) -> dict:
    """What a DPOReport says, for aya_build.json and the asset's metadata."""
    return {"losses": report.losses, "reward_margins": report.reward_margins,
            "reward_accuracies": report.reward_accuracies, "seconds": round(report.seconds, 1),
            "pairs": report.pairs, "trained_pairs": report.trained_pairs, "final_margin": report.final_margin,
            "final_accuracy": report.final_accuracy, "kept_steps": report.kept_steps}


def english_version(prompts: pl.DataFrame, english: pl.DataFrame) -> pl.DataFrame:
    """`prompts` with each text replaced by the English prompt of the same item (source and source_id), where one exists."""
    same_item = (english.filter(pl.col("source_id").is_not_null()).unique(["source", "source_id"], keep="first")
                 .select("source", "source_id", english_text="text"))
    return (prompts.join(same_item, on=["source", "source_id"], how="left")
            .with_columns(text=pl.coalesce("english_text", "text")).drop("english_text"))


def build_offline_assets(profile: Profile, recipe: Recipe) -> list:
    dpo, merged = recipe["dpo_offline"], recipe["dpo_offline_merged"]
    per_lang = per_language(dpo.group)

    @dg.asset(**per_lang, kinds={"polars", "parquet"}, code_version=CODE_VERSION, check_specs=[pairs_check("offline_pairs")])
    def offline_pairs(context: dg.AssetExecutionContext, reward_scores: pl.DataFrame):
        """Best- vs worst-scored arbitrage completion per prompt (TRL conversational prompt/chosen/rejected)."""
        yield from pairs_outputs(context, best_vs_worst(reward_scores, profile.training.min_margin, "best_vs_worst"),
                                 "offline_pairs", profile.clusters)

    source = profile.models.translation_source
    assets = [offline_pairs]
    pair_assets = ["offline_pairs"]
    if source is not None:

        @dg.asset(**per_lang, kinds={"transformers", "parquet"}, code_version=CODE_VERSION,
                  # Each language's prompts and the English ones (the same items' English prompts, see below).
                  ins={"arbitrage_sft": dg.AssetIn(), "prompts": dg.AssetIn(partition_mapping=dg.StaticPartitionMapping(
                      {"en": LANGUAGE_CODES, **{code: [code] for code in LANGUAGE_CODES if code != "en"}})),
                       "weak": dg.AssetIn("teacher_models", partition_mapping=dg.StaticPartitionMapping({source: LANGUAGE_CODES}))},
                  pool="gpu", check_specs=[pairs_check("translation_pairs")])
        def translation_pairs(context: dg.AssetExecutionContext, arbitrage_sft: pl.DataFrame, prompts: pl.DataFrame,
                              weak: Checkpoint, store: ArtifactStore, generator: GenerationBackend, translator: Translator):
            """Native answer (chosen) vs the weak English model's answer translated into the language (rejected).

            The weak model is asked the item's English prompt where the source has one (the same source and item id
            in `en`, as generated tasks do), so it answers in English and the translator has English to translate;
            other prompts it gets as they are."""
            train = english_version(prompts.filter((pl.col("split") == "train") & (pl.col("language") != "en")),
                                    prompts.filter(pl.col("language") == "en"))
            answers, _ = generate_pool(train, {source: weak.path}, {source: weak.identity()}, generator,
                                       sampling_settings(profile.generation, profile.seed).model_copy(update={"n": 1}),
                                       store.shards / "translation_source", profile.generation.shard_size,
                                       log=context.log.info, profile=profile.name)
            translated = translate_answers(answers, translator, f"{source} via {translator.name}")
            rows = translated.join(arbitrage_sft.select("prompt_id", native="completion"), on="prompt_id")
            # A literal translation can equal the native answer (三百四十七 in ja and zh): such a pair teaches nothing.
            pairs = translation_contrast(arbitrage_sft, translated).filter(pl.col("chosen") != pl.col("rejected"))
            yield from pairs_outputs(context, pairs, "translation_pairs", profile.clusters,
                                     translation_metadata(rows, translator))

        assets.append(translation_pairs)
        pair_assets.append("translation_pairs")

    assets += [
        dpo_asset(dpo, pair_assets, profile.training.dpo, recipe,
                  "DPO per cluster from the SFT merge on best-vs-worst and translation-contrast pairs."),
        *within_run_assets(recipe, dpo),
        merged_asset(merged, recipe, profile, "The offline DPO checkpoints merged."),
    ]
    return assets


def build_online_round(profile: Profile, recipe: Recipe, r: int, dpo: Stage, merged: Stage) -> list:
    """One online round: sample from the previous merge, score, pair best vs worst, DPO per cluster against it, merge."""
    previous = dpo.starts_from
    per_lang = per_language(dpo.group)
    completions, scores, pairs = (f"online_{r}_{s}" for s in ("completions", "scores", "pairs"))

    @dg.asset(name=completions, **per_lang, ins={"prompts": dg.AssetIn(), "model": dg.AssetIn(previous)},
              kinds={"transformers", "parquet"}, code_version=CODE_VERSION, pool="gpu",
              description=f"Round {r}: {profile.online.samples} samples per train prompt from {previous}.")
    def _completions(context: dg.AssetExecutionContext, prompts: pl.DataFrame, model: Checkpoint, store: ArtifactStore,
                     generator: GenerationBackend) -> pl.DataFrame:
        sampling = sampling_settings(profile.generation, profile.seed).model_copy(
            update={"n": profile.online.samples, "temperature": profile.online.temperature, "seed": profile.seed + r})
        table, counts = generate_pool(prompts.filter(pl.col("split") == "train"), {previous: model.path},
                                      {previous: model.identity()}, generator, sampling, store.shards / completions,
                                      profile.generation.shard_size, log=context.log.info, profile=profile.name)
        context.add_output_metadata({"shards_generated": counts["generated"], "shards_reused": counts["reused"],
                                     "model": previous})
        return table

    @dg.asset(name=scores, **per_lang, ins={"completions": dg.AssetIn(completions), "reward_model": dg.AssetIn()},
              kinds={"transformers", "parquet"}, code_version=CODE_VERSION, pool="gpu",
              description=f"Round {r}: the arbiter's scores for {completions}.")
    def _scores(completions: pl.DataFrame, reward_model: Checkpoint, arbiter: Arbiter, store: ArtifactStore) -> pl.DataFrame:
        return arbiter.score(completions.drop("seconds"), reward_model, cache=store.shards / scores)

    @dg.asset(name=pairs, **per_lang, ins={"scores": dg.AssetIn(scores)},
              kinds={"polars", "parquet"}, code_version=CODE_VERSION, check_specs=[pairs_check(pairs)],
              description=f"Round {r}: best vs worst of {completions} (TRL conversational pairs).")
    def _pairs(context: dg.AssetExecutionContext, scores: pl.DataFrame):
        yield from pairs_outputs(context, best_vs_worst(scores, profile.training.min_margin, f"online_{r}"), pairs,
                                 profile.clusters)

    return [
        _completions, _scores, _pairs,
        dpo_asset(dpo, [pairs], profile.online.dpo or profile.training.dpo, recipe,
                  f"Round {r}: DPO per cluster against {previous}."),
        *within_run_assets(recipe, dpo),
        merged_asset(merged, recipe, profile, f"Round {r}: the DPO checkpoints merged."),
    ]


def build_online_assets(profile: Profile, recipe: Recipe) -> list:
    return [a for r, dpo, merged in recipe.online_rounds() for a in build_online_round(profile, recipe, r, dpo, merged)]
