"""The stages evaluation compares, in recipe order, and where each stage's model lives."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from aya_assets.models.assets import checkpoint_path
from aya_assets.profile import Profile
from aya_assets.sft.assets import ROUTING_BASELINES, baseline_keys

def stage_keys(profile: Profile) -> list[str]:
    """student base → baselines → cluster SFT → SFT merge → offline DPO merge → online merges (chart order)."""
    keys = ["student_base"]
    if profile.training.baselines:
        keys += baseline_keys(profile)
    keys += [f"sft_{c}" for c in profile.clusters] + ["sft_merged", "dpo_offline_merged"]
    keys += [f"online_{r}_merged" for r in range(1, profile.online.rounds + 1)]
    return keys


def final_stage(profile: Profile) -> str:
    return stage_keys(profile)[-1]


def stage_model(profile: Profile, models_root: Path, key: str) -> str:
    if key == "student_base":
        return checkpoint_path(profile, models_root, "student_base")
    if key.startswith("single_") or key in ROUTING_BASELINES:
        return checkpoint_path(profile, models_root, "baseline_sft", key)
    if key.startswith("sft_") and key != "sft_merged":
        return checkpoint_path(profile, models_root, "sft_checkpoints", key.removeprefix("sft_"))
    return checkpoint_path(profile, models_root, key)


def stage_deps(profile: Profile) -> list[dg.AssetDep]:
    """Lineage from each stage partition to the model asset (and partition) it evaluates."""
    deps = [dg.AssetDep("student_base")]
    if profile.training.baselines:
        keys = baseline_keys(profile)
        deps.append(dg.AssetDep("baseline_sft", partition_mapping=dg.StaticPartitionMapping({k: k for k in keys})))
    deps.append(dg.AssetDep("sft_checkpoints", partition_mapping=dg.StaticPartitionMapping(
        {c: f"sft_{c}" for c in profile.clusters})))
    deps += [dg.AssetDep(k) for k in stage_keys(profile) if k in ("sft_merged", "dpo_offline_merged") or k.startswith("online_")]
    return deps
