"""Stages 4–5: preference pairs, DPO per cluster and merges — offline once, then online rounds from one factory."""

from dataclasses import replace
from pathlib import Path

import dagster as dg
import polars as pl

from aya_assets.arbitrage.arbiter import Arbiter
from aya_assets.arbitrage.assets import PER_LANGUAGE, sampling_settings
from aya_assets.arbitrage.pool import generate_pool
from aya_assets.checkpoints import build_or_reuse, fingerprint, report_metadata
from aya_assets.generation import GenerationBackend
from aya_assets.languages import LANGUAGE_CODES
from aya_assets.lineage import upstream_runs
from aya_assets.merge.assets import merged_asset
from aya_assets.models.assets import checkpoint_path
from aya_assets.models.checkpoint import content_hash, write_model_card
from aya_assets.partitions import cluster_partitions, language_to_cluster_mapping
from aya_assets.preference.pairs import best_vs_worst, translation_contrast, trl_rows
from aya_assets.preference.translate import Translator
from aya_assets.profile import Profile
from aya_assets.resources import ArtifactStore, ProfileResource
from aya_assets.store import markdown_table

PAIRS_MARGIN = "pairs_positive_margin"


def pairs_check(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(PAIRS_MARGIN, asset=asset, description="pairs exist and chosen outscores rejected")


def pairs_outputs(pairs: pl.DataFrame, asset: str):
    """The pairs table plus its margin check (WARN: few or no pairs is a data problem, not a crash)."""
    scored = pairs.filter(pl.col("margin").is_not_null())
    mean_margin = float(scored["margin"].mean()) if scored.height else None
    yield dg.Output(pairs, metadata={"pairs": pairs.height, "mean_margin": mean_margin or 0.0})
    passed = pairs.height > 0 and (mean_margin is None or mean_margin > 0)
    yield dg.AssetCheckResult(check_name=PAIRS_MARGIN, asset_key=asset, passed=passed,
                              severity=dg.AssetCheckSeverity.WARN,
                              metadata={"pairs": pairs.height, "mean_margin": mean_margin or 0.0})


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
        if table.is_empty():
            raise ValueError(f"{name}/{context.partition_key}: no preference pairs in {', '.join(pair_assets)}")
        init = Path(checkpoint_path(cfg, store.models, init_asset))
        out = store.models / name / context.partition_key
        lineage = upstream_runs(context, [dg.AssetKey(a) for a in [*pair_assets, init_asset]])

        def build(tmp: Path) -> dict:
            report = train_dpo(init, trl_rows(table), tmp, settings)
            table.select("prompt_id", "language", "kind").write_parquet(tmp / "training_data.parquet")
            write_model_card(tmp, name=f"{name}/{context.partition_key}", description=description, inputs=lineage,
                             settings={"dpo": settings, "reference": str(init)})
            return {"losses": report.losses, "reward_margins": report.reward_margins,
                    "reward_accuracies": report.reward_accuracies, "seconds": round(report.seconds, 1),
                    "pairs": report.pairs, "final_margin": report.final_margin, "final_accuracy": report.final_accuracy}

        print_ = fingerprint("1", content_hash(init), trl_rows(table), settings)
        reused, info = build_or_reuse(out, print_, build)
        kinds = table.group_by("kind").len().sort("kind")
        meta = report_metadata(out, reused, info, f"{name}/{context.partition_key}")
        meta["pairs_by_kind"] = dg.MetadataValue.md(markdown_table(kinds))
        context.log.info(f"{name}/{context.partition_key}: final reward margin {info.get('final_margin')}")
        return dg.MaterializeResult(metadata=meta)

    return _dpo


def dpo_settings(profile: Profile, asset: str):
    online = profile.online.dpo if asset.startswith("online_") else None
    return online or profile.training.dpo


def build_offline_assets(profile: Profile) -> list:
    group = "offline_dpo"

    @dg.asset(**PER_LANGUAGE | {"group_name": group}, kinds={"polars", "parquet"}, code_version="1",
              check_specs=[pairs_check("offline_pairs")])
    def offline_pairs(reward_scores: pl.DataFrame, profile: ProfileResource):
        """Best- vs worst-scored arbitrage completion per prompt (TRL conversational prompt/chosen/rejected)."""
        yield from pairs_outputs(best_vs_worst(reward_scores, profile.profile.training.min_margin, "best_vs_worst"),
                                 "offline_pairs")

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
            yield from pairs_outputs(translation_contrast(arbitrage_sft, translated), "translation_pairs")

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
    def _pairs(scores: pl.DataFrame, profile: ProfileResource):
        yield from pairs_outputs(best_vs_worst(scores, profile.profile.training.min_margin, f"online_{r}"), pairs)

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
