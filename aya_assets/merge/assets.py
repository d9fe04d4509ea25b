"""Merge assets, one factory per merge stage of the plan: within a run (each cluster run's kept checkpoints averaged)
and across clusters (sft_merged, dpo_offline_merged, each online round's). The safety merge is in safety/assets.py."""

from pathlib import Path

import dagster as dg
import polars as pl

from aya_assets.artifacts.store import ArtifactStore
from aya_assets.artifacts.tables import markdown_table
from aya_assets.checkpoints.build import Card, build_record, materialize_checkpoint
from aya_assets.checkpoints.files import keep_input_model
from aya_assets.checkpoints.io import CHECKPOINT_IO, Checkpoint, located
from aya_assets.merge.merging import RECIPE_FILE, MergeError, merge_checkpoints, merge_weights, sanity_check
from aya_assets.partitions import cluster_partitions
from aya_assets.profile import Profile
from aya_assets.stages import Recipe, Stage
from aya_assets.training.trainer import kept_checkpoints

CODE_VERSION = "1"
MERGE_SANITY = "merge_sanity"
# What a merge carries over from its inputs' build records: the training rows or pairs the across-cluster weights are
# proportional to, and whether the run was skipped (no pairs).
CARRIED_RECORD = ("examples", "pairs", "skipped")


def merge_asset_args(stage: Stage, description: str) -> dict:
    """What every merge asset declares: its stage's name and group, mergekit, the gpu pool, the checkpoint IO
    manager and the blocking merge_sanity check."""
    return dict(name=stage.asset, group_name=stage.group, kinds={"mergekit", "safetensors"}, code_version=CODE_VERSION,
                pool="gpu", io_manager_key=CHECKPOINT_IO, description=description,
                check_specs=[dg.AssetCheckSpec(MERGE_SANITY, asset=stage.asset, blocking=True,
                                               description="merged weights finite, same shapes as the inputs")])


def sanity_result(merged: Path, reference: Path) -> dg.AssetCheckResult:
    """The merge_sanity check: the result has the input's tensors and shapes, all finite."""
    try:
        sanity_check([merged, reference])
        passed, problem = True, "none"
    except MergeError as exc:
        passed, problem = False, str(exc)
    return dg.AssetCheckResult(check_name=MERGE_SANITY, passed=passed, metadata={"problem": problem})


def within_run_asset(stage: Stage, profile: Profile, description: str):
    """Per cluster: the linear average (equal weights) of the checkpoints its run of `stage.starts_from` kept
    (merge.within_run), carrying the run's build record on, so the across-cluster merge weighs it as it would the run."""

    @dg.asset(partitions_def=cluster_partitions(profile.clusters), ins={"run": dg.AssetIn(stage.starts_from)},
              **merge_asset_args(stage, description))
    def _averaged(context: dg.AssetExecutionContext, run: Checkpoint, store: ArtifactStore):
        kept = kept_checkpoints(run.local)
        carried = {k: v for k, v in build_record(run.local).items() if k in CARRIED_RECORD}
        steps = [int(p.name.removeprefix("step-")) for p in kept]
        title = f"{stage.asset}/{context.partition_key}"

        def build(tmp: Path) -> dict:
            if len(kept) < 2:  # keep: 1, or a run that trained nothing (no pairs): its checkpoint is the average
                keep_input_model(run.local, tmp)
                return {**carried, "averaged_steps": steps, "copied_from": run.path}
            recipe_ = merge_checkpoints(kept, [1.0] * len(kept), tmp, "linear", seed=profile.seed)
            return {**carried, "averaged_steps": steps, "recipe": recipe_}

        card = Card(title, f"{description} Steps averaged: {', '.join(map(str, steps)) or 'none kept (its run as is)'}.",
                    {"method": "linear", "kept": profile.merge.within_run.model_dump(), "steps": steps},
                    settings_from_build=("recipe",) if len(kept) >= 2 else ())
        out = located(store, stage.asset, context.partition_key)
        yield materialize_checkpoint(context, out, [run.identity(), steps], build, card, lambda info: {
            "averaged_steps": ", ".join(map(str, steps)) or "none",
            **({"recipe": dg.MetadataValue.path(str(out.local / RECIPE_FILE))} if len(kept) >= 2 else {})})
        yield sanity_result(out.local, run.local)

    return _averaged


def within_run_assets(recipe: Recipe, train: Stage) -> list:
    """The within-run merge of `train`'s cluster runs, where the merge plan has one."""
    averaged = recipe.averaged(train)
    return [] if averaged is None else [within_run_asset(averaged, recipe.profile,
                                                         f"Each {train.asset} run's kept checkpoints averaged.")]


def merged_asset(stage: Stage, recipe: Recipe, profile: Profile, description: str):
    """The merge of every cluster partition of `stage.starts_from`; its base (for TIES / DARE-TIES) is what they started from."""
    clusters = list(profile.clusters)
    cfg = profile.merge

    @dg.asset(ins={"models": dg.AssetIn(stage.starts_from, partition_mapping=dg.AllPartitionMapping()),
                   "base": dg.AssetIn(recipe.merge_base(stage))},
              **merge_asset_args(stage, description))
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
            "recipe": dg.MetadataValue.path(str(out.local / RECIPE_FILE))})
        yield sanity_result(out.local, models[clusters[0]].local)

    return _merged
