"""Direct preference optimisation of a causal-LM checkpoint with TRL's `DPOTrainer` (pure, no Dagster).

Pairs are TRL's explicit-prompt conversational preference rows:
`{"prompt": [user], "chosen": [assistant], "rejected": [assistant]}`. The reference policy is a checkpoint
directory too: the offline stage uses the SFT merge, each online round the previous round's merge.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from aya_assets.models.checkpoint import save_trained
from aya_assets.models.tiny import TrainSettings, _trainer_args

# torch, transformers and trl are imported inside train_dpo, as in models/tiny.py: asset modules import this
# one, and loading the trainers would add seconds to every Dagster definitions load.


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


@dataclass
class DPOReport:
    losses: list[float]  # DPO loss at each logging step
    reward_margins: list[float]  # TRL's rewards/margins: beta * (chosen - rejected log-ratio vs the reference)
    reward_accuracies: list[float]  # TRL's rewards/accuracies: share of pairs whose chosen reward is higher
    seconds: float  # loading, tokenisation, reference pass and training (not saving)
    pairs: int  # pairs trained on, after TRL drops those whose prompt alone fills max_length
    final_margin: float  # the last logging step's values
    final_accuracy: float


def preference_rows(frame: pl.DataFrame) -> list[dict]:
    """Plain-text `prompt`/`chosen`/`rejected` columns as TRL conversational preference rows."""
    return [
        {
            "prompt": [{"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
        }
        for prompt, chosen, rejected in frame.select("prompt", "chosen", "rejected").iter_rows()
    ]


def train_dpo(
    model_dir: Path, pairs: list[dict], out_dir: Path, settings: DPOSettings, ref_dir: Path | None = None
) -> DPOReport:
    """DPO from the checkpoint `model_dir` against `ref_dir` (default: `model_dir`); save the policy in `out_dir`."""
    if not pairs:
        raise ValueError("train_dpo needs at least one preference pair, got none")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from aya_assets.console import show_progress

    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    # DPOTrainer rewrites the generation config's pad token; the saved policy samples like its input (save_trained).
    generation_config = copy.deepcopy(model.generation_config)
    # With no ref_dir TRL takes the reference from the policy itself: its untrained weights in the precompute pass,
    # or a fresh load of model_dir when log-probs are computed at every step.
    ref_model = AutoModelForCausalLM.from_pretrained(ref_dir) if ref_dir is not None else None
    train_settings = TrainSettings(
        steps=settings.steps,
        learning_rate=settings.learning_rate,
        batch_size=settings.batch_size,
        seed=settings.seed,
        max_length=settings.max_length,
    )
    args = DPOConfig(
        **_trainer_args(train_settings, out_dir),
        beta=settings.beta,
        loss_type=settings.loss_type,
        precompute_ref_log_probs=settings.precompute_ref_log_probs,
    )
    # The reference pass runs inside the constructor when precompute_ref_log_probs is set.
    trainer = DPOTrainer(
        model=model,
        ref_model=ref_model,
        args=args,
        train_dataset=Dataset.from_list(pairs),
        processing_class=tokenizer,
    )
    if settings.precompute_ref_log_probs and ref_model is not None:
        # TRL keeps an explicit ref_model for the whole run although the precomputed log-probs leave it unused, and
        # accelerate lists it among its prepared models (not under DeepSpeed or FSDP, which wrap it themselves): let go
        # of every handle so its memory is freed before training.
        if trainer.ref_model in trainer.accelerator._models:
            trainer.accelerator._models.remove(trainer.ref_model)
        trainer.ref_model = ref_model = None
    show_progress(trainer).train()
    seconds = time.perf_counter() - start

    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    save_trained(model, tokenizer, out_dir, generation_config)
    return DPOReport(
        losses=[entry["loss"] for entry in logged],
        reward_margins=[entry["rewards/margins"] for entry in logged],
        reward_accuracies=[entry["rewards/accuracies"] for entry in logged],
        seconds=seconds,
        pairs=len(trainer.train_dataset),
        final_margin=logged[-1]["rewards/margins"],
        final_accuracy=logged[-1]["rewards/accuracies"],
    )
