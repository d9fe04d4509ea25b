"""Merge assets: one factory makes every merge stage of the recipe (sft_merged, dpo_offline_merged, each online round's)."""

import dagster as dg
import polars as pl

from aya_assets.artifacts.store import ArtifactStore
from aya_assets.artifacts.tables import markdown_table
from aya_assets.checkpoints.build import Card, build_record, materialize_checkpoint
from aya_assets.checkpoints.io import CHECKPOINT_IO, Checkpoint, located
from aya_assets.merge.merging import MergeError, merge_checkpoints, merge_weights, sanity_check
from aya_assets.profile import Profile
from aya_assets.stages import Recipe, Stage

CODE_VERSION = "1"
MERGE_SANITY = "merge_sanity"


def merged_asset(stage: Stage, recipe: Recipe, profile: Profile, description: str):
    """The merge of every cluster partition of `stage.starts_from`; its base (for TIES / DARE-TIES) is what they started from."""
    clusters = list(profile.clusters)
    cfg = profile.merge

    @dg.asset(
        name=stage.asset,
        ins={"models": dg.AssetIn(stage.starts_from, partition_mapping=dg.AllPartitionMapping()),
             "base": dg.AssetIn(recipe.merge_base(stage))},
        group_name=stage.group,
        kinds={"mergekit", "safetensors"},
        code_version=CODE_VERSION,
        pool="gpu",
        io_manager_key=CHECKPOINT_IO,
        description=description,
        check_specs=[dg.AssetCheckSpec(MERGE_SANITY, asset=stage.asset, blocking=True,
                                       description="merged weights finite, same shapes as the inputs")],
    )
    def _merged(context: dg.AssetExecutionContext, models: dict[str, Checkpoint], base: Checkpoint, store: ArtifactStore):
        records = {c: build_record(models[c].local) for c in clusters}
        sizes = {c: int(r.get("examples") or r.get("pairs") or 0) for c, r in records.items()}
        skipped = {c for c, r in records.items() if r.get("skipped")}
        weights = merge_weights(cfg.weights, sizes, skipped)
        if skipped == set(clusters):
            context.log.warning(f"{stage.asset}: every cluster of {stage.starts_from} was skipped (no pairs) and is its "
                                f"input unchanged, so the merge is that input")
        out = located(store, stage.asset)

        def build(tmp):
            recipe_ = merge_checkpoints(
                [models[c].path for c in clusters], [weights[c] for c in clusters], tmp, cfg.method,
                base_model=base.path if cfg.method in ("ties", "dare_ties") else None,
                density=cfg.density, slerp_t=cfg.slerp_t, seed=profile.seed,
            )
            return {"method": cfg.method, "examples": sum(sizes.values()), "recipe": recipe_}

        card = Card(stage.asset, f"{cfg.method} merge of {stage.starts_from} over clusters {', '.join(clusters)}",
                    {"method": cfg.method, "weights": weights}, settings_from_build=("recipe",))
        inputs = [cfg.method, weights, cfg.model_dump(), [models[c].identity() for c in clusters]]
        table = pl.DataFrame({"cluster": clusters, "rows": [sizes[c] for c in clusters], "weight": [weights[c] for c in clusters]})
        yield materialize_checkpoint(context, out, inputs, build, card, lambda info: {
            "weights": dg.MetadataValue.md(markdown_table(table, rows=len(clusters))),
            "recipe": dg.MetadataValue.path(str(out.local / "merge_recipe.yaml"))})
        try:
            sanity_check([out.local, models[clusters[0]].local])
            passed, problem = True, "none"
        except MergeError as exc:
            passed, problem = False, str(exc)
        yield dg.AssetCheckResult(check_name=MERGE_SANITY, passed=passed, metadata={"problem": problem})

    return _merged
