"""Stage 2: the teacher pool answers, the arbiter scores, routing picks the SFT data, and who won."""


import dagster as dg
import polars as pl

from aya_assets.arbitrage import routing
from aya_assets.arbitrage.arbiter import Arbiter
from aya_assets.arbitrage.pool import degenerate_rate, generate_pool
from aya_assets.arbitrage.router import accuracy, assignments, costs, fingerprint, train_router
from aya_assets.artifacts.atomic import write_bytes
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
# What every generating pool asset reads: its language's prompts and every teacher checkpoint.
TEACHER_POOL_INS = {"prompts": dg.AssetIn(),
                    "teachers": dg.AssetIn("teacher_models", partition_mapping=dg.AllPartitionMapping())}


def reward_length_correlation(scores: pl.DataFrame) -> float:
    """Spearman correlation of reward with completion length: high means the arbiter may be rewarding length."""
    if scores.height < 3:
        return 0.0
    value = scores.select(
        pl.corr(pl.col("reward"), pl.col("completion").str.len_chars(), method="spearman")
    ).item()
    return 0.0 if value is None or value != value else float(value)


def train_prompts(prompts: pl.DataFrame) -> pl.DataFrame:
    return prompts.filter(pl.col("split") == "train")


def calibration_ids(prompts: pl.DataFrame, fraction: float) -> list[str]:
    """The calibration slice of these train prompts: every pool teacher answers it whatever the routing."""
    return routing.calibration_prompts(prompts.lazy(), fraction).collect()["prompt_id"].to_list()


def cost_metadata(table: pl.DataFrame, prompts: int, teachers: int, samples: int) -> dict:
    """What a pool table cost to generate, and its share of every teacher answering every prompt (reward routing)."""
    full = max(prompts * teachers * samples, 1)
    return {"completions": table.height, "teacher_seconds": float(table["seconds"].sum()),
            "share_of_every_teacher": table.height / full}


def build_arbitrage_assets(profile: Profile) -> list:
    pool_teachers = profile.pool_teachers
    cfg = profile.arbitrage
    learned = cfg.routing == "learned"

    def generate(context, prompts: pl.DataFrame, teachers: dict[str, Checkpoint], store: ArtifactStore,
                 generator: GenerationBackend, shards: str,
                 only: dict[str, set[str]] | None = None) -> tuple[pl.DataFrame, dict]:
        """The pool's table for `prompts` from resumable shards under shards/<shards>, and its metadata."""
        models = {name: teachers[name].path for name in pool_teachers}
        hashes = {name: teachers[name].identity() for name in pool_teachers}
        table, counts = generate_pool(
            prompts, models, hashes, generator, sampling_settings(profile.generation, profile.seed),
            store.shards / shards, profile.generation.shard_size, log=context.log.info, profile=profile.name, only=only,
        )
        context.log.info(f"shards: {counts['generated']} generated, {counts['reused']} reused")
        return table, {"shards_generated": counts["generated"], "shards_reused": counts["reused"],
                       "teachers": ", ".join(pool_teachers), "samples_per_prompt": profile.generation.samples}

    def score(context, completions: pl.DataFrame, reward_model: Checkpoint, arbiter: Arbiter,
              store: ArtifactStore) -> pl.DataFrame:
        # Each asset its own cache directory: a language's cache keeps only its latest entry.
        return arbiter.score(
            completions.drop("seconds"), reward_model,
            progress=lambda done, total: context.log.debug(f"scored {done}/{total}"),
            cache=store.shards / context.asset_key.to_user_string(),
        )

    pool_ins = dict(TEACHER_POOL_INS)
    scores_ins = {"pool_completions": dg.AssetIn(), "reward_model": dg.AssetIn()}
    if learned:
        pool_ins |= {"calibration_completions": dg.AssetIn(), "router": dg.AssetIn()}
        scores_ins |= {"calibration_scores": dg.AssetIn()}

    @dg.asset(
        **PER_LANGUAGE,
        ins=pool_ins,
        kinds={"transformers", "parquet"},
        code_version=CODE_VERSION,
        pool="gpu",
        check_specs=[dg.AssetCheckSpec(DEGENERATE, asset="pool_completions", description="empty or collapsed completions")],
    )
    def pool_completions(
        context: dg.AssetExecutionContext, prompts: pl.DataFrame, teachers: dict[str, Checkpoint],
        store: ArtifactStore, generator: GenerationBackend, **learned_inputs: pl.DataFrame,
    ):
        """Every pool teacher × every train prompt × n samples, generated in resumable shards; under learned routing,
        the calibration slice's completions and, elsewhere, only the router's top-k teachers'."""
        train = train_prompts(prompts)
        if learned:
            calibration_completions, router = learned_inputs["calibration_completions"], learned_inputs["router"]
            rest = train.filter(~pl.col("prompt_id").is_in(calibration_ids(train, cfg.calibration_fraction)))
            only = assignments(router.join(rest.select("prompt_id"), on="prompt_id", how="semi"), cfg.learned_topk)
            generated, meta = generate(context, rest, teachers, store, generator, "pool_completions", only)
            table = pl.concat([calibration_completions, generated]).sort("language", "prompt_id", "teacher", "sample")
            meta |= {"routing": f"learned, top {cfg.learned_topk}",
                     "calibration_completions": calibration_completions.height}
        else:
            table, meta = generate(context, train, teachers, store, generator, "pool_completions")
        yield dg.Output(table, metadata={**meta,
            **cost_metadata(table, train.height, len(pool_teachers), profile.generation.samples),
            "mean_tokens": float(table["tokens"].mean() or 0.0),
            "stopped_at_eos": float((table["finish_reason"] == "stop").mean() or 0.0),
        })
        rate = degenerate_rate(table)
        yield dg.AssetCheckResult(
            check_name=DEGENERATE, passed=rate <= cfg.max_degenerate_rate,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"degenerate_rate": rate, "threshold": cfg.max_degenerate_rate},
        )

    @dg.asset(
        **PER_LANGUAGE,
        ins=scores_ins,
        kinds={"transformers", "parquet"},
        code_version=CODE_VERSION,
        pool="gpu",
        check_specs=[dg.AssetCheckSpec(LENGTH_CORRELATION, asset="reward_scores", description="reward hacking by length")],
    )
    def reward_scores(context: dg.AssetExecutionContext, pool_completions: pl.DataFrame, reward_model: Checkpoint,
                      arbiter: Arbiter, store: ArtifactStore, **learned_inputs: pl.DataFrame):
        """The arbiter's score for every pool completion: reward, language confidence, and their combination (read
        back from the score cache when the same completions were scored by the same model and settings)."""
        if learned:  # the calibration slice is scored already
            calibration_scores = learned_inputs["calibration_scores"]
            rest = pool_completions.join(calibration_scores.select("prompt_id").unique(), on="prompt_id", how="anti")
            scored = pl.concat([calibration_scores, score(context, rest, reward_model, arbiter, store)
                                .select(calibration_scores.columns)]).sort("language", "prompt_id", "teacher", "sample")
        else:
            scored = score(context, pool_completions, reward_model, arbiter, store)
        yield dg.Output(scored, metadata={
            "mean_reward": float(scored["reward"].mean() or 0.0),
            "mean_language_confidence": float(scored["language_confidence"].mean() or 0.0),
            "language_weight": arbiter.language_weight,
        })
        corr = reward_length_correlation(scored)
        limit = cfg.max_reward_length_correlation
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

    assets = [pool_completions, reward_scores, arbitrage_sft, teacher_wins, build_router(profile)]
    if learned:
        assets += calibration_assets(profile, generate, score)
    else:
        assets.append(routing_costs_asset(profile))
    return assets


def calibration_assets(profile: Profile, generate, score) -> list:
    """Learned routing's first step: every pool teacher answers the calibration slice and the arbiter scores it."""
    fraction = profile.arbitrage.calibration_fraction

    @dg.asset(
        **PER_LANGUAGE,
        ins=TEACHER_POOL_INS,
        kinds={"transformers", "parquet"},
        code_version=CODE_VERSION,
        pool="gpu",
    )
    def calibration_completions(context: dg.AssetExecutionContext, prompts: pl.DataFrame, teachers: dict[str, Checkpoint],
                                store: ArtifactStore, generator: GenerationBackend) -> dg.Output[pl.DataFrame]:
        """Every pool teacher × the calibration slice of the train prompts × n samples: what the router learns from."""
        train = train_prompts(prompts)
        calibration = train.filter(pl.col("prompt_id").is_in(calibration_ids(train, fraction)))
        table, meta = generate(context, calibration, teachers, store, generator, "calibration_completions")
        return dg.Output(table, metadata={**meta, **cost_metadata(table, train.height, len(profile.pool_teachers),
                                                          profile.generation.samples),
                                          "calibration_prompts": calibration.height})

    @dg.asset(
        **PER_LANGUAGE,
        ins={"calibration_completions": dg.AssetIn(), "reward_model": dg.AssetIn()},
        kinds={"transformers", "parquet"},
        code_version=CODE_VERSION,
        pool="gpu",
    )
    def calibration_scores(context: dg.AssetExecutionContext, calibration_completions: pl.DataFrame,
                           reward_model: Checkpoint, arbiter: Arbiter, store: ArtifactStore) -> dg.Output[pl.DataFrame]:
        """The arbiter's scores of the calibration slice: which teacher won each of its prompts."""
        scored = score(context, calibration_completions, reward_model, arbiter, store)
        return dg.Output(scored, metadata={"mean_reward": float(scored["reward"].mean() or 0.0)})

    return [calibration_completions, calibration_scores]


def build_router(profile: Profile):
    cfg = profile.arbitrage
    # Under learned routing the pool waits for the router, so the router learns from the calibration slice's own
    # scores; otherwise from the same slice of reward_scores (every teacher answered every prompt anyway).
    source = "calibration_scores" if cfg.routing == "learned" else "reward_scores"
    ks = sorted({cfg.learned_topk, *profile.compared_topk})

    @dg.multi_asset(
        outs={"router": dg.AssetOut(group_name=GROUP, kinds={"scikit-learn", "parquet"}, code_version=CODE_VERSION,
                                    description="Every pool teacher ranked for every train prompt by the learned "
                                                "router (rank 1: the likeliest to be the arbiter's best), and which "
                                                "prompts it learned from."),
              "router_accuracy": dg.AssetOut(group_name=GROUP, kinds={"polars", "parquet"}, code_version=CODE_VERSION,
                                             description="Per language: how often the router's top k include a "
                                                         "teacher the arbiter scores best, next to fixed routing, on "
                                                         "prompts it did not train on.")},
        ins={"scores": dg.AssetIn(source, partition_mapping=dg.AllPartitionMapping()),
             "prompts": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())},
    )
    def router(context: dg.AssetExecutionContext, scores: pl.DataFrame, prompts: pl.DataFrame, store: ArtifactStore):
        """Fit the router on the arbiter's best teachers of each calibration prompt, rank every train prompt's teachers,
        and save the fitted model (joblib) with its card under models/router/."""
        train = train_prompts(prompts).select("prompt_id", "language", prompt="text")
        model, ranks = train_router(scores, train, profile.pool_teachers, cfg.calibration_fraction, cfg.router)
        table = accuracy(ranks, scores, ks, profile.evaluation.bootstrap_resamples, profile.seed)
        out = store.models / "router"
        write_bytes(out / "router.joblib", model.dumps())
        overall = table.filter(pl.col("language") == "all").select("routing", "prompts", "accuracy", "ci_low", "ci_high")
        per_language = table.filter(pl.col("language") != "all").pivot("routing", index="language", values="accuracy")
        shown = {"overall": markdown_table(overall.with_columns(pl.exclude("routing", "prompts").round(3)),
                                           rows=overall.height),
                 "per_language": markdown_table(per_language.with_columns(pl.exclude("language").round(3)),
                                                rows=per_language.height)}
        facts = {"calibration_prompts": int(ranks.filter("calibration")["prompt_id"].n_unique()),
                 "trained_on_prompts": int(ranks.filter("trained_on")["prompt_id"].n_unique()),
                 "ranked_prompts": int(ranks["prompt_id"].n_unique()), "decisions": fingerprint(ranks)}
        write_bytes(out / "README.md", router_card(profile, source, facts, shown).encode())
        summary = {r["routing"]: r["accuracy"] for r in overall.iter_rows(named=True)}
        yield dg.Output(ranks, output_name="router", metadata={
            "teachers": ", ".join(model.teachers), **facts, "learned_from": source,
            **{f"held_out_accuracy_{k}": v for k, v in summary.items()},
            "model": dg.MetadataValue.path(str(out / "router.joblib")),
            "card": dg.MetadataValue.path(str(out / "README.md")),
        })
        yield dg.Output(table, output_name="router_accuracy",
                        metadata={name: dg.MetadataValue.md(text) for name, text in shown.items()})

    return router


def router_card(profile: Profile, source: str, facts: dict, accuracy_tables: dict[str, str]) -> str:
    """The router's model card: what it learned from, how, and how well it picks on prompts it did not see."""
    settings = profile.arbitrage.router
    return "\n".join([
        "# router", "",
        "Predicts from the prompt alone (language code and text) which pool teacher the arbiter will score best, so "
        "that under `arbitrage.routing: learned` only its top-k teachers answer prompts outside the calibration slice.", "",
        f"- profile: {profile.name}; teachers: {', '.join(profile.pool_teachers)}",
        f"- learned from: `{source}`, the teachers the arbiter scores best (ties included) on each calibration prompt "
        f"(calibration_fraction {profile.arbitrage.calibration_fraction}), less a held-out share of {settings.holdout}",
        f"- prompts: {facts['calibration_prompts']} in the slice, {facts['trained_on_prompts']} trained on, "
        f"{facts['ranked_prompts']} ranked",
        f"- model: scikit-learn TF-IDF character n-grams {list(settings.ngram_range)} + one logistic regression per "
        f"teacher (one-vs-rest, C={settings.regularization}); with aya_assets installed, "
        "`joblib.load('router.joblib').rank(frame)` ranks the teachers of a frame of prompt_id, language, prompt",
        f"- decisions: {facts['decisions']}", "",
        "## Held-out accuracy (a picked teacher is among the arbiter's best, ties counting)", "",
        accuracy_tables["overall"], "", accuracy_tables["per_language"], "",
    ])


def routing_costs_asset(profile: Profile):
    cfg = profile.arbitrage

    @dg.asset(
        ins={"pool_completions": dg.AssetIn(partition_mapping=dg.AllPartitionMapping()),
             "reward_scores": dg.AssetIn(partition_mapping=dg.AllPartitionMapping()), "router": dg.AssetIn()},
        group_name=GROUP,
        kinds={"polars", "parquet"},
        code_version=CODE_VERSION,
    )
    def routing_costs(pool_completions: pl.DataFrame, reward_scores: pl.DataFrame,
                      router: pl.DataFrame) -> dg.Output[pl.DataFrame]:
        """What each routing would have generated of this pool (reward: all of it; learned_k: the calibration slice
        plus the router's top k; fixed, random, single teachers): completions and teacher-seconds, measured."""
        table = costs(pool_completions, router, profile.compared_topk, cfg.calibration_fraction, profile.seed,
                      reward_scores)
        shown = table.with_columns(pl.col("teacher_seconds").round(1), pl.selectors.contains("share").round(3))
        return dg.Output(table, metadata={"costs": dg.MetadataValue.md(markdown_table(shown, rows=shown.height))})

    return routing_costs
