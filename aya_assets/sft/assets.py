"""Stage 3: SFT of the student per language cluster on arbitrage data, the baselines, and the merge."""

from dataclasses import replace
from pathlib import Path

import dagster as dg
import polars as pl

from aya_assets.arbitrage import routing
from aya_assets.checkpoints.build import build_or_reuse, fingerprint, report_metadata, train_info
from aya_assets.checkpoints.lineage import upstream_runs
from aya_assets.merge.assets import merged_asset
from aya_assets.models.assets import checkpoint_path
from aya_assets.checkpoints.files import model_identity, write_model_card
from aya_assets.partitions import cluster_partitions, language_to_cluster_mapping
from aya_assets.profile import Profile
from aya_assets.artifacts.store import ArtifactStore, ProfileResource

GROUP = "sft"
STUDENT = dg.AssetKey("student_base")
CHAT_TEMPLATE = "sft_chat_template"


# Besides each single teacher: random routing, and reward routing in one all-language student (no clusters, no
# merge), so that evaluation separates what routing buys from what cluster SFT + merge adds or costs.
ROUTING_BASELINES = ("random", "reward")


def baseline_keys(profile: Profile) -> list[str]:
    """Evaluation's comparison points, each one student SFT'd on all languages with one routing."""
    return [f"single_{t}" for t in profile.pool_teachers] + list(ROUTING_BASELINES)


def baseline_routing(key: str) -> str:
    return key if key in ROUTING_BASELINES else "single:" + key.removeprefix("single_")


def sft_conversations(rows: pl.DataFrame) -> list[list[dict]]:
    return [list(messages) for messages in rows["messages"].to_list()]


def cluster_rows(arbitrage: pl.DataFrame, languages: list[str], replay: float, seed: int) -> pl.DataFrame:
    """One cluster's SFT rows: every row of its languages, plus a seeded `replay` share of every other language's."""
    own = arbitrage.filter(pl.col("language").is_in(languages))
    others = arbitrage.filter(~pl.col("language").is_in(languages)).sort("language", "prompt_id")
    return pl.concat([own, others.sample(fraction=replay, seed=seed)])


def train_student(context, rows: pl.DataFrame, cfg: Profile, store: ArtifactStore, asset: str, partition: str,
                  upstream: list[dg.AssetKey], description: str) -> dg.MaterializeResult:
    """SFT the student base on `rows` (arbitrage-style rows with `messages`) into data/models/<asset>/<partition>."""
    from aya_assets.training.sft import train_sft

    base = checkpoint_path(cfg, store.models, "student_base")
    out = Path(checkpoint_path(cfg, store.models, asset, partition))
    settings = replace(cfg.training.sft, seed=cfg.training.sft.seed + cfg.seed)
    rows = rows.sort("language", "prompt_id")
    inputs = upstream_runs(context, [*upstream, STUDENT])

    def build(tmp: Path) -> dict:
        report = train_sft(Path(base), sft_conversations(rows), tmp, settings)
        rows.select("prompt_id", "language", "teacher").write_parquet(tmp / "training_data.parquet")
        write_model_card(tmp, name=f"{asset}/{partition}", description=description, inputs=inputs,
                         settings={"training": settings, "languages": sorted(set(rows["language"]))})
        return {**train_info(report), "languages": ",".join(sorted(set(rows["language"])))}

    base_hash = model_identity(base)
    print_ = fingerprint("1", base_hash, rows.select("prompt_id", "teacher", "sample", "completion").rows(), settings)
    reused, info = build_or_reuse(out, print_, build)
    context.log.info(f"{asset}/{partition}: {'reused' if reused else 'trained'} on {rows.height} rows")
    return dg.MaterializeResult(metadata=report_metadata(out, reused, info, f"{asset}/{partition}"))


@dg.asset_check(asset=STUDENT, name=CHAT_TEMPLATE, blocking=True,
                description="SFT can mask the prompt with the student's chat template (checked before any generation)")
def student_chat_template(profile: ProfileResource, store: ArtifactStore) -> dg.AssetCheckResult:
    """Which loss the student's chat template allows; a template SFT cannot use raises ChatTemplateError, which stops
    the run with the message that names the checkpoint (as a broken configured checkpoint does)."""
    from transformers import AutoTokenizer

    from aya_assets.training.sft import loss_mode

    path = checkpoint_path(profile.profile, store.models, "student_base")
    return dg.AssetCheckResult(passed=True, metadata={"loss": loss_mode(AutoTokenizer.from_pretrained(path), path)})


def build_sft_assets(profile: Profile) -> list:
    clusters = cluster_partitions(profile.clusters)
    replay = profile.training.cluster_replay
    # With replay every language feeds every cluster, and the lineage says so.
    languages_in = dg.AllPartitionMapping() if replay else language_to_cluster_mapping(profile.clusters)

    @dg.asset(
        partitions_def=clusters,
        ins={"arbitrage_sft": dg.AssetIn(partition_mapping=languages_in)},
        deps=[STUDENT],
        group_name=GROUP,
        kinds={"trl", "pytorch"},
        code_version="1",
        pool="gpu",
    )
    def sft_checkpoints(context: dg.AssetExecutionContext, arbitrage_sft: pl.DataFrame, profile: ProfileResource,
                        store: ArtifactStore) -> dg.MaterializeResult:
        """The student, SFT'd with TRL on the arbitrage data of one cluster's languages (plus the replay share)."""
        cfg = profile.profile
        rows = cluster_rows(arbitrage_sft, cfg.clusters[context.partition_key], replay, cfg.seed)
        return train_student(context, rows, cfg, store, "sft_checkpoints", context.partition_key,
                             [dg.AssetKey("arbitrage_sft")],
                             f"student SFT on arbitrage data of one language cluster, replay {replay} of the others")

    assets = [
        student_chat_template,
        sft_checkpoints,
        merged_asset("sft_merged", "sft_checkpoints", "student_base", GROUP, profile,
                     "The cluster SFT checkpoints merged into one model."),
    ]
    if profile.training.baselines:

        @dg.asset(
            partitions_def=dg.StaticPartitionsDefinition(baseline_keys(profile)),
            ins={"reward_scores": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())},
            deps=[STUDENT],
            group_name=GROUP,
            kinds={"trl", "pytorch"},
            code_version="1",
            pool="gpu",
        )
        def baseline_sft(context: dg.AssetExecutionContext, reward_scores: pl.DataFrame, profile: ProfileResource,
                         store: ArtifactStore) -> dg.MaterializeResult:
            """The student SFT'd on all languages with one routing (a single teacher, random or reward): the baselines."""
            cfg = profile.profile
            rule = baseline_routing(context.partition_key)
            chosen = routing.route(reward_scores, rule, seed=cfg.seed, calibration_fraction=cfg.arbitrage.calibration_fraction)
            rows = routing.selection_table(reward_scores, chosen)
            return train_student(context, rows, cfg, store, "baseline_sft", context.partition_key,
                                 [dg.AssetKey("reward_scores")], f"student SFT on all languages, routing {rule}")

        assets.append(baseline_sft)
    return assets
