"""Training settings and reports: plain dataclasses the profile validates, with no torch import (the definitions load fast)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TinyArchitecture:
    # ~1M parameters (half in the tied embedding): on 2 cores, 450 steps x 16 at max_length 80 (~70 s) memorise the
    # opening of every focus-language answer. Measured: 4 layers learned less per step, 256 wide cost 2.3x per step.
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 384
    max_positions: int = 256


@dataclass
class TrainSettings:
    steps: int
    learning_rate: float
    batch_size: int
    seed: int = 0
    max_length: int = 256  # tokens; fits every seed prompt with its whole reference (longest ~210, Hindi and Greek)
    warmup_ratio: float = 0.05


@dataclass
class TrainReport:
    losses: list[float]  # training loss at each logging step
    seconds: float
    examples: int
    parameters: int
    kept_steps: list[int] = field(default_factory=list)  # steps of the checkpoints kept under kept/, newest first


@dataclass
class KeepCheckpoints:
    """Checkpoints a run keeps for the within-run merge: the last `keep`, `every` steps apart, ending at its last step."""

    keep: int
    every: int  # steps between saved checkpoints

    def __post_init__(self):
        if self.keep < 1 or self.every < 1:
            raise ValueError(f"KeepCheckpoints needs keep >= 1 and every >= 1 step, got keep={self.keep}, every={self.every}")

    def steps(self, total: int) -> list[int]:
        """The steps saved in a `total`-step run: the last one and those `every` before it, `keep` in all (or fewer)."""
        return sorted({total - i * self.every for i in range(self.keep) if total - i * self.every >= 1})

    @classmethod
    def for_steps(cls, steps: int, keep: int, share: float) -> KeepCheckpoints:
        """The last `keep` checkpoints of a `steps`-step run, `share` of its steps apart (merge.within_run)."""
        return cls(keep=keep, every=max(1, round(steps * share)))


@dataclass
class DPOSettings:
    steps: int
    learning_rate: float
    batch_size: int
    beta: float = 0.1  # strength of the pull towards the reference; TRL's and the DPO paper's default
    seed: int = 0
    max_length: int = 256  # tokens of prompt + completion; TRL keeps the start and drops pairs whose prompt fills it
    # Reference log-probs computed once up front, so the reference model is not held during training.
    precompute_ref_log_probs: bool = True
    loss_type: str = "sigmoid"  # any of TRL's DPOConfig.loss_type values; sigmoid is the DPO paper's loss
