"""Stage 2: the teacher pool answers, the arbiter scores, routing picks the SFT data, and who won."""


import dagster as dg
import polars as pl

from aya_assets.artifacts import plots
from aya_assets.arbitrage import routing
from aya_assets.arbitrage.arbiter import Arbiter
from aya_assets.arbitrage.pool import degenerate_rate, generate_pool
from aya_assets.generation import GenerationBackend, SamplingSettings
from aya_assets.models.assets import model_location
from aya_assets.checkpoints.files import model_identity
from aya_assets.partitions import language_partitions
from aya_assets.profile import Profile
from aya_assets.artifacts.store import ArtifactStore, ProfileResource
from aya_assets.artifacts.tables import PARTITION_COLUMN, markdown_table

GROUP = "arbitrage"
DEGENERATE = "pool_degenerate_rate"
LENGTH_CORRELATION = "reward_length_correlation"
EVERY_PROMPT_SELECTED = "every_train_prompt_selected"
PER_LANGUAGE = dict(
    partitions_def=language_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    metadata={PARTITION_COLUMN: "language"},
    group_name=GROUP,
)


def sampling_settings(profile: Profile) -> SamplingSettings:
    gen = profile.generation
    return SamplingSettings(n=gen.samples, max_new_tokens=gen.max_new_tokens, temperature=gen.temperature,
                            top_p=gen.top_p, seed=profile.seed)


def reward_length_correlation(scores: pl.DataFrame) -> float:
    """Spearman correlation of reward with completion length: high means the arbiter may be rewarding length."""
    if scores.height < 3:
        return 0.0
    value = scores.select(
        pl.corr(pl.col("reward"), pl.col("completion").str.len_chars(), method="spearman")
    ).item()
    return 0.0 if value is None or value != value else float(value)


def build_arbitrage_assets(profile: Profile) -> list:
    pool_teachers = profile.pool_teachers
    teachers = {t.name: t for t in profile.models.teachers}

    @dg.asset(
        **PER_LANGUAGE,
        ins={"prompts": dg.AssetIn(dg.AssetKey("prompts"))},
        deps=[dg.AssetDep("teacher_models", partition_mapping=dg.AllPartitionMapping())],
        kinds={"transformers", "parquet"},
        code_version="1",
        pool="gpu",
        check_specs=[dg.AssetCheckSpec(DEGENERATE, asset="pool_completions", description="empty or collapsed completions")],
    )
    def pool_completions(
        context: dg.AssetExecutionContext, prompts: pl.DataFrame, profile: ProfileResource,
        store: ArtifactStore, generator: GenerationBackend,
    ):
        """Every pool teacher × every train prompt × n samples, generated in resumable shards."""
        cfg = profile.profile
        train = prompts.filter(pl.col("split") == "train")
        models = {name: model_location(cfg, store.models, "teacher_models", teachers[name]) for name in pool_teachers}
        hashes = {name: model_identity(path, teachers[name].revision) for name, path in models.items()}
        table, counts = generate_pool(
            train, models, hashes, generator, sampling_settings(cfg), store.data / "shards" / "pool_completions",
            cfg.generation.shard_size, log=context.log.info, profile=cfg.name,
        )
        context.log.info(f"shards: {counts['generated']} generated, {counts['reused']} reused")
        yield dg.Output(table, metadata={
            "shards_generated": counts["generated"], "shards_reused": counts["reused"],
            "teachers": ", ".join(pool_teachers), "samples_per_prompt": cfg.generation.samples,
            "mean_tokens": float(table["tokens"].mean() or 0.0),
            "stopped_at_eos": float((table["finish_reason"] == "stop").mean() or 0.0),
        })
        rate = degenerate_rate(table)
        yield dg.AssetCheckResult(
            check_name=DEGENERATE, passed=rate <= cfg.arbitrage.max_degenerate_rate,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"degenerate_rate": rate, "threshold": cfg.arbitrage.max_degenerate_rate},
        )

    @dg.asset(
        **PER_LANGUAGE,
        kinds={"transformers", "parquet"},
        code_version="1",
        pool="gpu",
        deps=["reward_model"],
        check_specs=[dg.AssetCheckSpec(LENGTH_CORRELATION, asset="reward_scores", description="reward hacking by length")],
    )
    def reward_scores(context: dg.AssetExecutionContext, pool_completions: pl.DataFrame, arbiter: Arbiter,
                      profile: ProfileResource):
        """The arbiter's score for every pool completion: reward, language confidence, and their combination."""
        scored = arbiter.score(
            pool_completions.drop("seconds"),
            progress=lambda done, total: context.log.debug(f"scored {done}/{total}"),
        )
        yield dg.Output(scored, metadata={
            "mean_reward": float(scored["reward"].mean() or 0.0),
            "mean_language_confidence": float(scored["language_confidence"].mean() or 0.0),
            "language_weight": arbiter.language_weight,
        })
        corr = reward_length_correlation(scored)
        limit = profile.profile.arbitrage.max_reward_length_correlation
        yield dg.AssetCheckResult(
            check_name=LENGTH_CORRELATION, passed=corr <= limit, severity=dg.AssetCheckSeverity.WARN,
            metadata={"spearman_reward_vs_length": corr, "threshold": limit},
        )

    @dg.asset(
        **PER_LANGUAGE,
        ins={"prompts": dg.AssetIn(dg.AssetKey("prompts")), "reward_scores": dg.AssetIn(dg.AssetKey("reward_scores"))},
        kinds={"polars", "parquet"},
        code_version="1",
        check_specs=[dg.AssetCheckSpec(EVERY_PROMPT_SELECTED, asset="arbitrage_sft", blocking=True)],
    )
    def arbitrage_sft(context: dg.AssetExecutionContext, prompts: pl.DataFrame, reward_scores: pl.DataFrame,
                      profile: ProfileResource):
        """The SFT target per train prompt, chosen by the configured routing (reward, fixed, random, single:<t>)."""
        cfg = profile.profile.arbitrage
        chosen = routing.route(reward_scores, cfg.routing, seed=profile.profile.seed,
                               calibration_fraction=cfg.calibration_fraction)
        table = routing.selection_table(reward_scores, chosen)
        shares = table.group_by("teacher").len().sort("len", descending=True)
        yield dg.Output(table, metadata={"routing": cfg.routing, "chosen_teachers": dg.MetadataValue.md(markdown_table(shares, rows=20))})
        train_ids = set(prompts.filter(pl.col("split") == "train")["prompt_id"].to_list())
        missing = sorted(train_ids - set(table["prompt_id"].to_list()))
        yield dg.AssetCheckResult(
            check_name=EVERY_PROMPT_SELECTED, passed=not missing,
            metadata={"train_prompts": len(train_ids), "missing": len(missing), "missing_ids": ", ".join(missing[:20]) or "none"},
        )

    @dg.asset(
        ins={"reward_scores": dg.AssetIn(dg.AssetKey("reward_scores"), partition_mapping=dg.AllPartitionMapping())},
        group_name=GROUP,
        kinds={"polars", "parquet", "matplotlib"},
        code_version="1",
    )
    def teacher_wins(context: dg.AssetExecutionContext, reward_scores: pl.DataFrame, store: ArtifactStore):
        """Win share per language × teacher under reward routing, as a table and a heatmap."""
        wins = routing.teacher_wins(reward_scores)
        png = plots.heatmap(wins, "language", "teacher", "win_share", "teacher win share per language")
        path = plots.save_png(png, store.reports / "teacher_wins.png")
        leaders = wins.sort("win_share", descending=True).group_by("language", maintain_order=True).first().sort("language")
        return dg.Output(wins, metadata={
            "heatmap": dg.MetadataValue.md(plots.markdown_image(png, "teacher wins")),
            "heatmap_path": dg.MetadataValue.path(str(path)),
            "winner_per_language": dg.MetadataValue.md(markdown_table(leaders.select("language", "teacher", "win_share"), rows=30)),
        })

    return [pool_completions, reward_scores, arbitrage_sft, teacher_wins]
