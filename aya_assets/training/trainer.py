"""What every trainer here shares: seeded, CPU-friendly TrainingArguments, a run that reports its losses, and the SFT
trainer class (pure, no Dagster; torch, transformers and trl are imported inside, so importing this module is cheap)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from aya_assets.training.settings import TrainReport, TrainSettings

if TYPE_CHECKING:
    from transformers import Trainer

# TRL 1.16 reads transformers' deprecated `is_gradient_checkpointing` on every trainer: a warning that is not ours to act on.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def trainer_args(settings: TrainSettings, out_dir: Path) -> dict:
    """TrainingArguments shared by both trainers: seeded, CPU-friendly, nothing saved or reported mid-run."""
    import torch

    return dict(
        output_dir=str(out_dir),
        max_steps=settings.steps,
        learning_rate=settings.learning_rate,
        per_device_train_batch_size=settings.batch_size,
        warmup_steps=settings.warmup_ratio,  # a float below 1 is a ratio of max_steps
        max_length=settings.max_length,
        seed=settings.seed,
        data_seed=settings.seed,
        logging_steps=max(1, settings.steps // 20),
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        activation_checkpointing=False,  # activations of a 1M-parameter model are small; recomputing them costs time
    )


def run(trainer: Trainer) -> TrainReport:
    from aya_assets.console import show_progress

    start = time.perf_counter()
    show_progress(trainer).train()
    return TrainReport(
        losses=[entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
        seconds=time.perf_counter() - start,
        examples=len(trainer.train_dataset),
        parameters=trainer.model.num_parameters(),
    )


def sft_trainer_class():
    from transformers import Trainer
    from trl import SFTTrainer

    class TinySFTTrainer(SFTTrainer):
        """SFTTrainer with the model's own loss: TRL's fused LM head saves GPU memory but doubles a CPU step."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    return TinySFTTrainer
