"""What every trainer here shares: seeded, CPU-friendly TrainingArguments, a run that reports its losses, the kept
checkpoints it saves, and the SFT trainer class (pure, no Dagster; torch, transformers and trl are imported inside, so
importing this module is cheap)."""

from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from aya_assets.training.settings import KeepCheckpoints, TrainReport, TrainSettings

if TYPE_CHECKING:
    from transformers import Trainer

# TRL 1.16 reads transformers' deprecated `is_gradient_checkpointing` on every trainer: a warning that is not ours to act on.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


# The run's kept checkpoints, <out_dir>/kept/step-<N>/, for the within-run merge.
KEPT_DIR, KEPT_PREFIX = "kept", "step-"


def trainer_args(settings: TrainSettings, out_dir: Path, keep: KeepCheckpoints | None = None) -> dict:
    """TrainingArguments shared by both trainers: seeded, CPU-friendly, nothing reported mid-run, and nothing saved
    unless `keep` asks for model-only checkpoints every `keep.every` steps, the last `keep.keep` of them kept."""
    import torch

    # The Trainer saves when a callback sets control.should_save; save_callbacks sets it at keep.steps only. After each
    # save, save_total_limit deletes the oldest checkpoints of output_dir (transformers 5.24 rotate_checkpoints). output_dir
    # is kept/, so the Trainer's checkpoint-<N> dirs and the model card TRL drafts beside them stay out of the model's own
    # files; save_run turns them into kept/step-<N>.
    saving = dict(save_strategy="no") if keep is None else dict(
        save_strategy="steps", save_steps=keep.every, save_total_limit=keep.keep, save_only_model=True)
    return dict(
        output_dir=str(out_dir if keep is None else out_dir / KEPT_DIR),
        max_steps=settings.steps,
        learning_rate=settings.learning_rate,
        per_device_train_batch_size=settings.batch_size,
        warmup_steps=settings.warmup_ratio,  # a float below 1 is a ratio of max_steps
        max_length=settings.max_length,
        seed=settings.seed,
        data_seed=settings.seed,
        logging_steps=max(1, settings.steps // 20),
        **saving,
        report_to="none",
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        activation_checkpointing=False,  # activations of a 1M-parameter model are small; recomputing them costs time
    )


def save_callbacks(keep: KeepCheckpoints | None, steps: int) -> list:
    """The callback that saves exactly the steps `keep` asks for (none without it)."""
    if keep is None:
        return []
    from transformers import TrainerCallback

    wanted = set(keep.steps(steps))

    class SaveKept(TrainerCallback):
        """Save at the kept steps only, evenly spaced back from the last: the Trainer's own "steps" strategy saves every
        multiple of `every` (an 8B run would write ten checkpoints to keep three) and the final step off that grid."""

        def on_step_end(self, args, state, control, **kwargs):
            control.should_save = state.global_step in wanted  # runs after DefaultFlowCallback, which set it
            return control

    return [SaveKept()]


def run(trainer: Trainer) -> TrainReport:
    """Train, and report the losses, time, examples and parameters (the kept steps are save_run's)."""
    from aya_assets.console import show_progress

    start = time.perf_counter()
    show_progress(trainer).train()
    return TrainReport(
        losses=[entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
        seconds=time.perf_counter() - start,
        examples=len(trainer.train_dataset),
        parameters=trainer.model.num_parameters(),
    )


def save_run(model, tokenizer, out_dir: Path, generation_config) -> list[int]:
    """Save the trained model in `out_dir` (save_trained) and make each checkpoint the Trainer kept a complete model-only
    checkpoint, kept/step-<N>/: its weights, and every other file as the final model has it; returns the kept steps,
    newest first ([] when the run kept none)."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    from aya_assets.checkpoints.files import NOT_CONTENT, save_trained, weight_files

    def weights(path: Path) -> list[Path]:  # the shards and their index, else model.safetensors
        index = path / "model.safetensors.index.json"
        return [*weight_files(path), *([index] if index.is_file() else [])]

    save_trained(model, tokenizer, out_dir, generation_config)
    kept = out_dir / KEPT_DIR
    if not kept.is_dir():
        return []
    # The final model's config, tokenizer, chat template and generation config: the Trainer's copies carry TRL's
    # rewritten generation config, and a within-run merge takes these files from its first input.
    final_weights = weights(out_dir)
    shared = [p for p in out_dir.iterdir() if p.is_file() and p.name not in NOT_CONTENT and p not in final_weights]
    for checkpoint in kept.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        step_dir = kept / f"{KEPT_PREFIX}{checkpoint.name.removeprefix(f'{PREFIX_CHECKPOINT_DIR}-')}"
        step_dir.mkdir()
        for file in weights(checkpoint):
            file.rename(step_dir / file.name)
        for file in shared:
            shutil.copy2(file, step_dir / file.name)
    # What is left: each checkpoint's trainer_state.json, training_args.bin and Trainer copies; TRL's draft model card.
    for entry in kept.iterdir():
        if entry.is_dir() and not entry.name.startswith(KEPT_PREFIX):
            shutil.rmtree(entry)
        elif entry.is_file():
            entry.unlink()
    return [_step(path) for path in kept_checkpoints(out_dir)]


def kept_checkpoints(run_dir: Path) -> list[Path]:
    """The checkpoints a run kept (kept/step-<N>/), newest step first; [] when it kept none."""
    kept = Path(run_dir) / KEPT_DIR
    steps = [p for p in kept.glob(f"{KEPT_PREFIX}*") if p.is_dir()] if kept.is_dir() else []
    return sorted(steps, key=_step, reverse=True)


def _step(path: Path) -> int:
    return int(path.name.removeprefix(KEPT_PREFIX))


def sft_trainer_class():
    from transformers import Trainer
    from trl import SFTTrainer

    class TinySFTTrainer(SFTTrainer):
        """SFTTrainer with the model's own loss: TRL's fused LM head saves GPU memory but doubles a CPU step."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    return TinySFTTrainer
