"""Merge assets: one factory makes sft_merged, dpo_offline_merged and every online round's merge."""

from pathlib import Path

import dagster as dg
import polars as pl

from aya_assets.checkpoints.build import build_or_reuse, build_record, fingerprint, report_metadata
from aya_assets.checkpoints.lineage import upstream_runs
from aya_assets.merge.merging import MergeError, merge_weights, merge_checkpoints, sanity_check
from aya_assets.models.assets import checkpoint_path
from aya_assets.checkpoints.files import content_hash, write_model_card
from aya_assets.profile import Profile
from aya_assets.artifacts.store import ArtifactStore, ProfileResource
from aya_assets.artifacts.tables import markdown_table

MERGE_SANITY = "merge_sanity"


def merged_asset(name: str, upstream: str, base_asset: str, group: str, profile: Profile, description: str):
    """`name` = merge of every cluster partition of `upstream`; `base_asset` is the common ancestor for ties/dare_ties."""
    clusters = list(profile.clusters)

    @dg.asset(
        name=name,
        deps=[dg.AssetDep(upstream, partition_mapping=dg.AllPartitionMapping()), base_asset],
        group_name=group,
        kinds={"mergekit", "safetensors"},
        code_version="1",
        pool="gpu",
        description=description,
        check_specs=[dg.AssetCheckSpec(MERGE_SANITY, asset=name, blocking=True,
                                       description="merged weights finite, same shapes as the inputs")],
    )
    def _merged(context: dg.AssetExecutionContext, profile: ProfileResource, store: ArtifactStore):
        cfg = profile.profile
        inputs = {c: store.models / upstream / c for c in clusters}
        records = {c: build_record(path) for c, path in inputs.items()}
        sizes = {c: int(r.get("examples") or r.get("pairs") or 0) for c, r in records.items()}
        weights = merge_weights(cfg.merge.weights, sizes)
        base = checkpoint_path(cfg, store.models, base_asset)
        out = store.models / name
        method = cfg.merge.method
        lineage = upstream_runs(context, [dg.AssetKey(upstream), dg.AssetKey(base_asset)])

        def build(tmp: Path) -> dict:
            recipe = merge_checkpoints(
                [inputs[c] for c in clusters], [weights[c] for c in clusters], tmp, method,
                base_model=base if method in ("ties", "dare_ties") else None,
                density=cfg.merge.density, slerp_t=cfg.merge.slerp_t, seed=cfg.seed,
            )
            write_model_card(tmp, name=name, description=f"{method} merge of {upstream} over clusters {', '.join(clusters)}",
                             inputs=lineage, settings={"method": method, "weights": weights, "recipe": recipe})
            return {"method": method, "examples": sum(sizes.values())}

        print_ = fingerprint("1", method, weights, cfg.merge.model_dump(), [content_hash(p) for p in inputs.values()])
        reused, info = build_or_reuse(out, print_, build)
        table = pl.DataFrame({"cluster": clusters, "rows": [sizes[c] for c in clusters], "weight": [weights[c] for c in clusters]})
        meta = report_metadata(out, reused, info, name)
        meta["weights"] = dg.MetadataValue.md(markdown_table(table, rows=len(clusters)))
        meta["recipe"] = dg.MetadataValue.path(str(out / "merge_recipe.yaml"))
        yield dg.MaterializeResult(metadata=meta)
        try:
            sanity_check([out, inputs[clusters[0]]])
            passed, problem = True, "none"
        except MergeError as exc:
            passed, problem = False, str(exc)
        yield dg.AssetCheckResult(check_name=MERGE_SANITY, passed=passed, metadata={"problem": problem})

    return _merged
