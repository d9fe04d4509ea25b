"""Stages 4–5: preference pairs, DPO per cluster and merges — offline once, then online rounds from one factory."""

import os
import shutil
from dataclasses import replace
from pathlib import Path

import dagster as dg
import polars as pl

from aya_assets.arbitrage.arbiter import Arbiter
from aya_assets.arbitrage.assets import PER_LANGUAGE, sampling_settings
from aya_assets.arbitrage.pool import generate_pool
from aya_assets.checkpoints.build import build_or_reuse, fingerprint, report_metadata
from aya_assets.generation import GenerationBackend
from aya_assets.languages import LANGUAGE_CODES
from aya_assets.checkpoints.lineage import upstream_runs
from aya_assets.merge.assets import merged_asset
from aya_assets.models.assets import checkpoint_path
from aya_assets.checkpoints.files import NOT_CONTENT, content_hash, write_model_card
from aya_assets.partitions import cluster_partitions, language_to_cluster_mapping
from aya_assets.preference.pairs import best_vs_worst, cluster_pairs, failing_clusters, translation_contrast, trl_rows
from aya_assets.preference.translate import Translator
from aya_assets.profile import Profile
from aya_assets.artifacts.store import ArtifactStore, ProfileResource
from aya_assets.artifacts.tables import markdown_table

PAIRS_MARGIN = "pairs_positive_margin"
SKIPPED = "no pairs"
STUDENT = dg.AssetKey("student_base")


def pairs_check(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(PAIRS_MARGIN, asset=asset,
                             description="every cluster has pairs and, on average, chosen outscores rejected")


def pairs_outputs(context: dg.AssetExecutionContext, pairs: pl.DataFrame, asset: str, clusters: dict[str, list[str]]):
    """The pairs table plus its margin check, per cluster (WARN: a cluster without pairs is skipped, not a crash).

    Per cluster because each cluster's DPO trains on its own languages only: pairs in 20 languages must not hide a
    cluster with none. Only clusters whose languages were all materialized in this run are judged.
    """
    done = set(context.partition_keys)
    judged = {c: langs for c, langs in clusters.items() if set(langs) <= done}
    per_cluster = cluster_pairs(pairs, judged)
    scored = pairs["margin"].drop_nulls()
    mean_margin = float(scored.mean()) if scored.len() else 0.0
    yield dg.Output(pairs, metadata={"pairs": pairs.height, "mean_margin": mean_margin,
                                     "pairs_per_cluster": dg.MetadataValue.md(markdown_table(per_cluster, rows=len(clusters)))})
    failing = failing_clusters(per_cluster)
    yield dg.AssetCheckResult(
        check_name=PAIRS_MARGIN, asset_key=asset, passed=not failing, severity=dg.AssetCheckSeverity.WARN,
        description=f"no pairs or no positive margin in cluster(s) {', '.join(failing)}" if failing else None,
        metadata={"pairs": pairs.height, "mean_margin": mean_margin, "failing_clusters": ", ".join(failing) or "none",
                  "judged_clusters": ", ".join(judged) or "none (no cluster's languages all in this run)",
                  **{f"pairs_{row['cluster']}": row["pairs"] for row in per_cluster.iter_rows(named=True)}},
    )


def keep_input_model(init: Path, out: Path) -> None:
    """`out` = the checkpoint `init` (hard links where the filesystem allows), without its run records and card."""
    for file in sorted(p for p in init.rglob("*") if p.is_file() and p.name not in NOT_CONTENT and p.suffix != ".png"):
        target = out / file.relative_to(init)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(file, target)  # an 8B checkpoint is 16 GB: no copy when nothing changed
        except OSError:
            shutil.copy2(file, target)


def dpo_asset(name: str, pair_assets: list[str], init_asset: str, group: str, profile: Profile, description: str):
    """DPO per cluster from `init_asset` (also the reference) on the pairs of the cluster's languages."""
    mapping = language_to_cluster_mapping(profile.clusters)

    @dg.asset(
        name=name,
        partitions_def=cluster_partitions(profile.clusters),
        ins={p: dg.AssetIn(dg.AssetKey(p), partition_mapping=mapping) for p in pair_assets},
        deps=[init_asset],
        group_name=group,
        kinds={"trl", "pytorch"},
        code_version="1",
        pool="gpu",
        description=description,
    )
    def _dpo(context: dg.AssetExecutionContext, profile: ProfileResource, store: ArtifactStore, **pairs: pl.DataFrame):
        from aya_assets.training.dpo import train_dpo

        cfg = profile.profile
        base_settings = dpo_settings(cfg, name)
        settings = replace(base_settings, seed=base_settings.seed + cfg.seed)
        table = pl.concat(list(pairs.values()), how="diagonal_relaxed").sort("kind", "language", "prompt_id")
        init = Path(checkpoint_path(cfg, store.models, init_asset))
        title = f"{name}/{context.partition_key}"
        out = store.models / name / context.partition_key
        # The student checkpoint is named too: the card says which configured base the whole chain started from.
        lineage = upstream_runs(context, [dg.AssetKey(a) for a in [*pair_assets, init_asset]] + [STUDENT])

        def build(tmp: Path) -> dict:
            report = train_dpo(init, trl_rows(table), tmp, settings)
            table.select("prompt_id", "language", "kind").write_parquet(tmp / "training_data.parquet")
            write_model_card(tmp, name=title, description=description, inputs=lineage,
                             settings={"dpo": settings, "reference": str(init)})
            return {"losses": report.losses, "reward_margins": report.reward_margins,
                    "reward_accuracies": report.reward_accuracies, "seconds": round(report.seconds, 1),
                    "pairs": report.pairs, "final_margin": report.final_margin, "final_accuracy": report.final_accuracy}

        def skip(tmp: Path) -> dict:
            # No pairs in this cluster's languages (all margins under min_margin, say): one empty cluster must not
            # stop the other clusters or the rounds after. Its output is its input, recorded as such; with 0 pairs it
            # gets weight 0 in a data-proportional merge.
            keep_input_model(init, tmp)
            table.select("prompt_id", "language", "kind").write_parquet(tmp / "training_data.parquet")
            write_model_card(tmp, name=title, description=f"{description} Skipped: no pairs; this is {init_asset} unchanged.",
                             inputs=lineage, settings={"dpo": settings, "reference": str(init), "skipped": SKIPPED})
            return {"skipped": SKIPPED, "pairs": 0, "copied_from": str(init)}

        if table.is_empty():
            context.log.warning(f"{title}: no preference pairs in {', '.join(pair_assets)}; keeping {init_asset} as its output")
        print_ = fingerprint("1", content_hash(init), trl_rows(table), settings)
        reused, info = build_or_reuse(out, print_, skip if table.is_empty() else build)
        meta = report_metadata(out, reused, info, title)
        meta["skipped"] = info.get("skipped", "no")
        kinds = table.group_by("kind").len().sort("kind")
        meta["pairs_by_kind"] = dg.MetadataValue.md(markdown_table(kinds))
        context.log.info(f"{title}: final reward margin {info.get('final_margin')}")
        return dg.MaterializeResult(metadata=meta)

    return _dpo


def dpo_settings(profile: Profile, asset: str):
    online = profile.online.dpo if asset.startswith("online_") else None
    return online or profile.training.dpo


def build_offline_assets(profile: Profile) -> list:
    group = "offline_dpo"

    @dg.asset(**PER_LANGUAGE | {"group_name": group}, kinds={"polars", "parquet"}, code_version="1",
              check_specs=[pairs_check("offline_pairs")])
    def offline_pairs(context: dg.AssetExecutionContext, reward_scores: pl.DataFrame, profile: ProfileResource):
        """Best- vs worst-scored arbitrage completion per prompt (TRL conversational prompt/chosen/rejected)."""
        cfg = profile.profile
        yield from pairs_outputs(context, best_vs_worst(reward_scores, cfg.training.min_margin, "best_vs_worst"),
                                 "offline_pairs", cfg.clusters)

    source = profile.models.translation_source
    assets = [offline_pairs]
    pair_assets = ["offline_pairs"]
    if source is not None:
        source_ref = next(t for t in profile.models.teachers if t.name == source)

        @dg.asset(**PER_LANGUAGE | {"group_name": group}, kinds={"transformers", "parquet"}, code_version="1",
                  ins={"arbitrage_sft": dg.AssetIn(), "prompts": dg.AssetIn()},
                  deps=[dg.AssetDep("teacher_models", partition_mapping=dg.StaticPartitionMapping({source: LANGUAGE_CODES}))],
                  pool="gpu", check_specs=[pairs_check("translation_pairs")])
        def translation_pairs(context: dg.AssetExecutionContext, arbitrage_sft: pl.DataFrame, prompts: pl.DataFrame,
                              profile: ProfileResource, store: ArtifactStore, generator: GenerationBackend,
                              translator: Translator):
            """Native answer (chosen) vs the weak English model's answer translated into the language (rejected)."""
            cfg = profile.profile
            train = prompts.filter((pl.col("split") == "train") & (pl.col("language") != "en"))
            model = checkpoint_path(cfg, store.models, "teacher_models", source)
            model_hash = content_hash(Path(model)) if Path(model).exists() else f"{model}@{source_ref.revision}"
            weak, _ = generate_pool(train, {source: model}, {source: model_hash}, generator,
                                    sampling_settings(cfg).model_copy(update={"n": 1}),
                                    store.data / "shards" / "translation_source", cfg.generation.shard_size,
                                    log=context.log.info, profile=cfg.name)
            translated = pl.concat(
                [
                    group.select("prompt_id").with_columns(
                        translation=pl.Series(translator.translate(group["completion"].to_list(), language), dtype=pl.String),
                        source_model=pl.lit(f"{source} via {translator.name}"),
                    )
                    for (language,), group in weak.group_by("language", maintain_order=True)
                ]
            ) if weak.height else pl.DataFrame(schema={"prompt_id": pl.String, "translation": pl.String, "source_model": pl.String})
            yield from pairs_outputs(context, translation_contrast(arbitrage_sft, translated), "translation_pairs",
                                     cfg.clusters)

        assets.append(translation_pairs)
        pair_assets.append("translation_pairs")

    assets += [
        dpo_asset("dpo_offline", pair_assets, "sft_merged", group, profile,
                  "DPO per cluster from the SFT merge on best-vs-worst and translation-contrast pairs."),
        merged_asset("dpo_offline_merged", "dpo_offline", "sft_merged", group, profile,
                     "The offline DPO checkpoints merged."),
    ]
    return assets


def build_online_round(profile: Profile, r: int, previous: str) -> list:
    """One online round: sample from `previous`, score, pair best vs worst, DPO per cluster against it, merge."""
    group = f"online_{r}"
    completions, scores, pairs, dpo = (f"online_{r}_{s}" for s in ("completions", "scores", "pairs", "dpo"))

    @dg.asset(name=completions, **PER_LANGUAGE | {"group_name": group}, ins={"prompts": dg.AssetIn()},
              deps=[previous], kinds={"transformers", "parquet"}, code_version="1", pool="gpu",
              description=f"Round {r}: {profile.online.samples} samples per train prompt from {previous}.")
    def _completions(context: dg.AssetExecutionContext, prompts: pl.DataFrame, profile: ProfileResource,
                     store: ArtifactStore, generator: GenerationBackend) -> pl.DataFrame:
        cfg = profile.profile
        model = checkpoint_path(cfg, store.models, previous)
        sampling = sampling_settings(cfg).model_copy(update={"n": cfg.online.samples, "temperature": cfg.online.temperature,
                                                             "seed": cfg.seed + r})
        table, counts = generate_pool(prompts.filter(pl.col("split") == "train"), {previous: model},
                                      {previous: content_hash(Path(model))}, generator, sampling,
                                      store.data / "shards" / completions, cfg.generation.shard_size, log=context.log.info,
                                      profile=cfg.name)
        context.add_output_metadata({"shards_generated": counts["generated"], "shards_reused": counts["reused"],
                                     "model": previous})
        return table

    @dg.asset(name=scores, **PER_LANGUAGE | {"group_name": group}, ins={"completions": dg.AssetIn(completions)},
              deps=["reward_model"], kinds={"transformers", "parquet"}, code_version="1", pool="gpu",
              description=f"Round {r}: the arbiter's scores for {completions}.")
    def _scores(completions: pl.DataFrame, arbiter: Arbiter) -> pl.DataFrame:
        return arbiter.score(completions.drop("seconds"))

    @dg.asset(name=pairs, **PER_LANGUAGE | {"group_name": group}, ins={"scores": dg.AssetIn(scores)},
              kinds={"polars", "parquet"}, code_version="1", check_specs=[pairs_check(pairs)],
              description=f"Round {r}: best vs worst of {completions} (TRL conversational pairs).")
    def _pairs(context: dg.AssetExecutionContext, scores: pl.DataFrame, profile: ProfileResource):
        cfg = profile.profile
        yield from pairs_outputs(context, best_vs_worst(scores, cfg.training.min_margin, f"online_{r}"), pairs, cfg.clusters)

    return [
        _completions, _scores, _pairs,
        dpo_asset(dpo, [pairs], previous, group, profile, f"Round {r}: DPO per cluster against {previous}."),
        merged_asset(f"online_{r}_merged", dpo, previous, group, profile, f"Round {r}: the DPO checkpoints merged."),
    ]


def build_online_assets(profile: Profile) -> list:
    assets, previous = [], "dpo_offline_merged"
    for r in range(1, profile.online.rounds + 1):
        assets += build_online_round(profile, r, previous)
        previous = f"online_{r}_merged"
    return assets
