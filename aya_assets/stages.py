"""The recipe's stages, declared once: which model asset each makes, how it is partitioned, what it starts from, and
whether evaluation compares it. The model factories, the online chain, evaluation and the report read this list;
adding a stage is one entry here plus its folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aya_assets.profile import Profile
from aya_assets.training.settings import KeepCheckpoints

Partitioning = Literal["none", "teacher", "baseline", "cluster", "weight"]
Role = Literal["model", "train", "merge"]  # built or configured at the start; trained from `starts_from`; merged

# Besides each single teacher: random and fixed routing, learned top-k routing (the full pool's scores restricted to
# what the router's teachers would have generated), and reward routing, each in one all-language student (no clusters,
# no merge), so that evaluation separates what routing buys, and at what generation cost, from what cluster SFT + merge
# adds or costs.
ROUTING_BASELINES = ("random", "fixed", "reward")


@dataclass(frozen=True)
class Stage:
    asset: str  # the model asset this stage materializes (one checkpoint per partition)
    group: str  # Dagster group, one per recipe step
    partitioning: Partitioning
    role: Role
    starts_from: str | None = None  # the model asset it trains from (train) or merges (merge)
    evaluated: bool = False
    chart: str = "{asset}"  # its name on the charts, per partition: "sft_{partition}" for the cluster SFTs


@dataclass(frozen=True)
class Evaluated:
    """One point of the step-by-step chart: a stage's key there and the checkpoint (asset, partition) it evaluates."""

    key: str
    asset: str
    partition: str | None


def weight_key(weight: float) -> str:
    """A safety-merge weight as its safety_merged partition key: 0.5 -> "0.50"."""
    return f"{weight:.2f}"


def routing_keys(profile: Profile) -> list[str]:
    """The routing baselines in chart order: random, fixed, learned_<k> for each compared k, reward."""
    return ["random", "fixed", *(f"learned_{k}" for k in profile.compared_topk), "reward"]


def baseline_keys(profile: Profile) -> list[str]:
    """The single-routing SFT baselines: one per pool teacher, then the routing baselines."""
    return [f"single_{t}" for t in profile.pool_teachers] + routing_keys(profile)


def baseline_routing(key: str) -> tuple[str, int | None]:
    """The routing rule a baseline partition trains with (`single_x` -> `single:x`), and learned routing's k."""
    if key.startswith("learned_"):
        return "learned", int(key.removeprefix("learned_"))
    return (key if key in ROUTING_BASELINES else "single:" + key.removeprefix("single_")), None


class Recipe:
    """The profile's stages in recipe order (also the order of the charts)."""

    def __init__(self, profile: Profile):
        self.profile = profile
        stages = [
            Stage("teacher_models", "models", "teacher", "model"),
            Stage("reward_model", "models", "none", "model"),
            Stage("student_base", "models", "none", "model", evaluated=True),
        ]
        if profile.training.baselines:
            stages.append(Stage("baseline_sft", "sft", "baseline", "train", "student_base", True, "{partition}"))
        within = "within_run" in profile.merge.plan

        def run_then_merge(train: Stage, averaged: str, merged: str, average_chart: str | None = None) -> list[Stage]:
            """A cluster training stage, its within-run average per cluster (if planned; evaluated where it has a
            chart name), then the merge across clusters."""
            out = [train]
            if within:
                out.append(Stage(averaged, train.group, "cluster", "merge", train.asset, average_chart is not None,
                                 average_chart or "{asset}"))
            out.append(Stage(merged, train.group, "none", "merge", out[-1].asset, True))
            return out

        # The cluster SFTs are evaluated before and after their within-run average: what averaging changes.
        stages += run_then_merge(Stage("sft_checkpoints", "sft", "cluster", "train", "student_base", True, "sft_{partition}"),
                                 "sft_averaged", "sft_merged", "sft_avg_{partition}")
        stages += run_then_merge(Stage("dpo_offline", "offline_dpo", "cluster", "train", "sft_merged"),
                                 "dpo_offline_averaged", "dpo_offline_merged")
        previous = "dpo_offline_merged"
        for r in range(1, profile.online.rounds + 1):
            stages += run_then_merge(Stage(f"online_{r}_dpo", f"online_{r}", "cluster", "train", previous),
                                     f"online_{r}_averaged", f"online_{r}_merged")
            previous = f"online_{r}_merged"
        self.general = previous  # the general model: what safety tuning starts from and the safety merge mixes in
        safety = profile.safety
        if safety.enabled:
            merged = "safety" in profile.merge.plan
            stages.append(Stage("safety_sft", "safety", "none", "train", previous, not merged and safety.dpo is None))
            if safety.dpo is not None:
                stages.append(Stage("safety_dpo", "safety", "none", "train", "safety_sft", not merged))
            if merged:
                stages.append(Stage("safety_merged", "safety", "weight", "merge", stages[-1].asset, True, "safety_{partition}"))
        self.stages = stages
        self._by_asset = {s.asset: s for s in stages}

    def __getitem__(self, asset: str) -> Stage:
        return self._by_asset[asset]

    def __contains__(self, asset: str) -> bool:
        return asset in self._by_asset

    def partitions(self, stage: Stage) -> list[str | None]:
        return {
            "none": [None],
            "teacher": [t.name for t in self.profile.models.teachers],
            "baseline": baseline_keys(self.profile),
            "cluster": list(self.profile.clusters),
            "weight": [weight_key(w) for w in self.profile.safety.weights],
        }[stage.partitioning]

    def online_rounds(self) -> list[tuple[int, Stage, Stage]]:
        """(round, its DPO stage, its merge stage) for every online round."""
        return [(r, self[f"online_{r}_dpo"], self[f"online_{r}_merged"]) for r in range(1, self.profile.online.rounds + 1)]

    def trained(self, merge: Stage) -> Stage:
        """The training stage a merge's inputs come from, past any merge stage between (a within-run average)."""
        stage = self[merge.starts_from]
        while stage.role == "merge":
            stage = self[stage.starts_from]
        return stage

    def averaged(self, train: Stage) -> Stage | None:
        """The within-run merge stage that averages `train`'s kept checkpoints, if the plan has one."""
        return next((s for s in self.stages if s.role == "merge" and s.partitioning == train.partitioning == "cluster"
                     and s.starts_from == train.asset), None)

    def keeps(self, train: Stage, steps: int) -> KeepCheckpoints | None:
        """The checkpoints a cluster run of `steps` keeps for its within-run merge (merge.within_run), if one follows."""
        if self.averaged(train) is None:
            return None
        cfg = self.profile.merge.within_run
        return KeepCheckpoints.for_steps(steps, cfg.keep, cfg.every)

    def merge_base(self, merge: Stage) -> str:
        """A merge's common ancestor (the base of TIES / DARE-TIES): what its cluster models were trained from."""
        return self.trained(merge).starts_from

    def evaluated(self) -> list[Evaluated]:
        """Every evaluated checkpoint in chart order: student base, baselines, cluster SFTs, then each merge."""
        return [Evaluated(s.chart.format(asset=s.asset, partition=p), s.asset, p)
                for s in self.stages if s.evaluated for p in self.partitions(s)]

    def evaluated_keys(self) -> list[str]:
        return [e.key for e in self.evaluated()]

    def charted(self) -> list[str]:
        """The stages the step-by-step chart shows: every evaluated one but the safety sweep's other weights."""
        final = self.final()
        return [k for k in self.evaluated_keys() if not k.startswith("safety_") or k == final]

    def final(self) -> str:
        """The recipe's final model: the safety merge at safety.merge_weight, else the last evaluated stage."""
        if "safety_merged" in self:
            return self["safety_merged"].chart.format(partition=weight_key(self.profile.safety.merge_weight))
        return self.evaluated()[-1].key
