"""Stage 3: SFT of the student per language cluster on arbitrage data, the baselines, and the merge."""

from dataclasses import replace

import dagster as dg
import polars as pl

from aya_assets.arbitrage import routing
from aya_assets.arbitrage.router import routed
from aya_assets.artifacts.store import ArtifactStore
from aya_assets.checkpoints.build import Card, materialize_checkpoint, train_info
from aya_assets.checkpoints.io import CHECKPOINT_IO, Checkpoint, located
from aya_assets.merge.assets import merged_asset, within_run_assets
from aya_assets.partitions import cluster_partitions, language_to_cluster_mapping
from aya_assets.profile import Profile
from aya_assets.stages import Recipe, Stage, baseline_routing
from aya_assets.training.settings import KeepCheckpoints, TrainSettings

CODE_VERSION = "1"
CHAT_TEMPLATE = "sft_chat_template"


def sft_conversations(rows: pl.DataFrame) -> list[list[dict]]:
    return [list(messages) for messages in rows["messages"].to_list()]


def cluster_rows(arbitrage: pl.DataFrame, languages: list[str], replay: float, seed: int) -> pl.DataFrame:
    """One cluster's SFT rows: every row of its languages, plus a seeded `replay` share of every other language's."""
    own = arbitrage.filter(pl.col("language").is_in(languages))
    others = arbitrage.filter(~pl.col("language").is_in(languages)).sort("language", "prompt_id")
    return pl.concat([own, others.sample(fraction=replay, seed=seed)])


def train_student(context: dg.AssetExecutionContext, rows: pl.DataFrame, base: Checkpoint, out: Checkpoint,
                  settings: TrainSettings, description: str, keep: KeepCheckpoints | None = None) -> dg.Output:
    """SFT `base` on `rows` (arbitrage-style rows with `messages`) into `out`, keeping the last checkpoints if `keep`."""
    from aya_assets.training.sft import train_sft

    rows = rows.sort("language", "prompt_id")
    languages = sorted(set(rows["language"]))

    def build(tmp):
        report = train_sft(base.local, sft_conversations(rows), tmp, settings, keep=keep)
        return {**train_info(report), "languages": ",".join(languages), "kept_steps": report.kept_steps}

    name = context.asset_key.to_user_string() + (f"/{context.partition_key}" if context.has_partition_key else "")
    card = Card(name, description, {"training": settings, "languages": languages, "kept": keep},
                rows.select("prompt_id", "language", "teacher"))
    inputs = [base.identity(), rows.select("prompt_id", "teacher", "sample", "completion").rows(), settings]
    return materialize_checkpoint(context, out, inputs + ([keep] if keep else []), build, card)



@dg.asset_check(asset="student_base", name=CHAT_TEMPLATE, blocking=True,
                description="SFT can mask the prompt with the student's chat template (checked before any generation)")
def student_chat_template(student_base: Checkpoint) -> dg.AssetCheckResult:
    """Which loss the student's chat template allows; a template SFT cannot use raises ChatTemplateError, which stops
    the run with the message that names the checkpoint (as a broken configured checkpoint does)."""
    from transformers import AutoTokenizer

    from aya_assets.training.sft import loss_mode

    tokenizer = AutoTokenizer.from_pretrained(student_base.path, revision=student_base.revision)
    return dg.AssetCheckResult(passed=True, metadata={"loss": loss_mode(tokenizer, student_base.path)})


def sft_settings(profile: Profile) -> TrainSettings:
    """training.sft, seeded by the profile's seed too."""
    return replace(profile.training.sft, seed=profile.training.sft.seed + profile.seed)


def build_sft_assets(profile: Profile, recipe: Recipe) -> list:
    stage = recipe["sft_checkpoints"]
    replay = profile.training.cluster_replay
    # With replay every language feeds every cluster, and the lineage says so.
    languages_in = dg.AllPartitionMapping() if replay else language_to_cluster_mapping(profile.clusters)
    trained = dict(group_name=stage.group, kinds={"trl", "pytorch"}, code_version=CODE_VERSION, pool="gpu",
                   io_manager_key=CHECKPOINT_IO)

    @dg.asset(name=stage.asset, partitions_def=cluster_partitions(profile.clusters),
              ins={"arbitrage_sft": dg.AssetIn(partition_mapping=languages_in), "base": dg.AssetIn(stage.starts_from)},
              **trained)
    def sft_checkpoints(context: dg.AssetExecutionContext, arbitrage_sft: pl.DataFrame, base: Checkpoint,
                        store: ArtifactStore) -> dg.Output[Checkpoint]:
        """The student, SFT'd with TRL on the arbitrage data of one cluster's languages (plus the replay share)."""
        cluster = context.partition_key
        rows = cluster_rows(arbitrage_sft, profile.clusters[cluster], replay, profile.seed)
        settings = sft_settings(profile)
        return train_student(context, rows, base, located(store, stage.asset, cluster), settings,
                             f"student SFT on arbitrage data of one language cluster, replay {replay} of the others",
                             recipe.keeps(stage, settings.steps))

    assets = [student_chat_template, sft_checkpoints, *within_run_assets(recipe, stage),
              merged_asset(recipe["sft_merged"], recipe, profile, "The cluster SFT checkpoints merged into one model.")]
    if profile.training.baselines:
        assets.append(baseline_asset(recipe["baseline_sft"], recipe, profile, trained))
    return assets


def baseline_asset(stage: Stage, recipe: Recipe, profile: Profile, trained: dict):
    ins = {"reward_scores": dg.AssetIn(partition_mapping=dg.AllPartitionMapping()), "base": dg.AssetIn(stage.starts_from)}
    if profile.compared_topk:
        ins["router"] = dg.AssetIn()

    @dg.asset(name=stage.asset, partitions_def=dg.StaticPartitionsDefinition(recipe.partitions(stage)), ins=ins, **trained)
    def baseline_sft(context: dg.AssetExecutionContext, reward_scores: pl.DataFrame, base: Checkpoint,
                     store: ArtifactStore, **router: pl.DataFrame) -> dg.Output[Checkpoint]:
        """The student SFT'd on all languages with one routing (a single teacher, random, fixed, learned top-k or
        reward): the baselines. learned_<k> routes the full pool's scores restricted to what its teachers generate."""
        key = context.partition_key
        rule, k = baseline_routing(key)
        scores = reward_scores if k is None else routed(reward_scores, router["router"], k)
        chosen = routing.route(scores, rule, seed=profile.seed, calibration_fraction=profile.arbitrage.calibration_fraction)
        rows = routing.selection_table(scores, chosen).with_columns(routing=pl.lit(key))
        return train_student(context, rows, base, located(store, stage.asset, key), sft_settings(profile),
                             f"student SFT on all languages, routing {key}")

    return baseline_sft
