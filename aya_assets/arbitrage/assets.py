"""Stage 2: the teacher pool answers, the arbiter scores, routing picks the SFT data, and who won."""


import dagster as dg
import polars as pl

from aya_assets.arbitrage import routing
from aya_assets.arbitrage.arbiter import Arbiter
from aya_assets.arbitrage.pool import degenerate_rate, generate_pool
from aya_assets.artifacts import plots
from aya_assets.artifacts.store import ArtifactStore
from aya_assets.artifacts.tables import markdown_table
from aya_assets.checkpoints.io import Checkpoint
from aya_assets.generation import GenerationBackend, sampling_settings
from aya_assets.partitions import per_language
from aya_assets.profile import Profile

GROUP = "arbitrage"
DEGENERATE = "pool_degenerate_rate"
LENGTH_CORRELATION = "reward_length_correlation"
EVERY_PROMPT_SELECTED = "every_train_prompt_selected"
CODE_VERSION = "1"
PER_LANGUAGE = per_language(GROUP)


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

    @dg.asset(
        **PER_LANGUAGE,
        ins={"prompts": dg.AssetIn(), "teachers": dg.AssetIn("teacher_models", partition_mapping=dg.AllPartitionMapping())},
        kinds={"transformers", "parquet"},
        code_version=CODE_VERSION,
        pool="gpu",
        check_specs=[dg.AssetCheckSpec(DEGENERATE, asset="pool_completions", description="empty or collapsed completions")],
    )
    def pool_completions(
        context: dg.AssetExecutionContext, prompts: pl.DataFrame, teachers: dict[str, Checkpoint],
        store: ArtifactStore, generator: GenerationBackend,
    ):
        """Every pool teacher × every train prompt × n samples, generated in resumable shards."""
        train = prompts.filter(pl.col("split") == "train")
        models = {name: teachers[name].path for name in pool_teachers}
        hashes = {name: teachers[name].identity() for name in pool_teachers}
        table, counts = generate_pool(
            train, models, hashes, generator, sampling_settings(profile.generation, profile.seed),
            store.shards / "pool_completions", profile.generation.shard_size, log=context.log.info, profile=profile.name,
        )
        context.log.info(f"shards: {counts['generated']} generated, {counts['reused']} reused")
        yield dg.Output(table, metadata={
            "shards_generated": counts["generated"], "shards_reused": counts["reused"],
            "teachers": ", ".join(pool_teachers), "samples_per_prompt": profile.generation.samples,
            "mean_tokens": float(table["tokens"].mean() or 0.0),
            "stopped_at_eos": float((table["finish_reason"] == "stop").mean() or 0.0),
        })
        rate = degenerate_rate(table)
        yield dg.AssetCheckResult(
            check_name=DEGENERATE, passed=rate <= profile.arbitrage.max_degenerate_rate,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"degenerate_rate": rate, "threshold": profile.arbitrage.max_degenerate_rate},
        )

    @dg.asset(
        **PER_LANGUAGE,
        ins={"pool_completions": dg.AssetIn(), "reward_model": dg.AssetIn()},
        kinds={"transformers", "parquet"},
        code_version=CODE_VERSION,
        pool="gpu",
        check_specs=[dg.AssetCheckSpec(LENGTH_CORRELATION, asset="reward_scores", description="reward hacking by length")],
    )
    def reward_scores(context: dg.AssetExecutionContext, pool_completions: pl.DataFrame, reward_model: Checkpoint,
                      arbiter: Arbiter, store: ArtifactStore):
        """The arbiter's score for every pool completion: reward, language confidence, and their combination (read
        back from the score cache when the same completions were scored by the same model and settings)."""
        scored = arbiter.score(
            pool_completions.drop("seconds"), reward_model,
            progress=lambda done, total: context.log.debug(f"scored {done}/{total}"),
            cache=store.shards / "reward_scores",
        )
        yield dg.Output(scored, metadata={
            "mean_reward": float(scored["reward"].mean() or 0.0),
            "mean_language_confidence": float(scored["language_confidence"].mean() or 0.0),
            "language_weight": arbiter.language_weight,
        })
        corr = reward_length_correlation(scored)
        limit = profile.arbitrage.max_reward_length_correlation
        yield dg.AssetCheckResult(
            check_name=LENGTH_CORRELATION, passed=corr <= limit, severity=dg.AssetCheckSeverity.WARN,
            metadata={"spearman_reward_vs_length": corr, "threshold": limit},
        )

    @dg.asset(
        **PER_LANGUAGE,
        ins={"prompts": dg.AssetIn(), "reward_scores": dg.AssetIn()},
        kinds={"polars", "parquet"},
        code_version=CODE_VERSION,
        check_specs=[dg.AssetCheckSpec(EVERY_PROMPT_SELECTED, asset="arbitrage_sft", blocking=True)],
    )
    def arbitrage_sft(context: dg.AssetExecutionContext, prompts: pl.DataFrame, reward_scores: pl.DataFrame):
        """The SFT target per train prompt, chosen by the configured routing (reward, fixed, random, single:<t>)."""
        cfg = profile.arbitrage
        chosen = routing.route(reward_scores, cfg.routing, seed=profile.seed,
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
        ins={"reward_scores": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())},
        group_name=GROUP,
        kinds={"polars", "parquet", "matplotlib"},
        code_version=CODE_VERSION,
    )
    def teacher_wins(context: dg.AssetExecutionContext, reward_scores: pl.DataFrame, store: ArtifactStore):
        """Win share per language × teacher under reward routing, as a table and a heatmap."""
        wins = routing.teacher_wins(reward_scores)
        png = plots.heatmap(wins, "language", "teacher", "win_share", "teacher win share per language")
        path = plots.save_png(png, store.reports / "teacher_wins.png")
        leaders = wins.sort("win_share", descending=True).group_by("language", maintain_order=True).first().sort("language")
        return dg.Output(wins, metadata={
            **plots.chart_metadata("heatmap", png, path, "teacher wins"),
            "winner_per_language": dg.MetadataValue.md(markdown_table(leaders.select("language", "teacher", "win_share"), rows=30)),
        })

    return [pool_completions, reward_scores, arbitrage_sft, teacher_wins]
