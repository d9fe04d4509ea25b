"""Direct preference optimisation of a causal-LM checkpoint with TRL's `DPOTrainer` (pure, no Dagster).

Pairs are TRL's explicit-prompt conversational preference rows:
`{"prompt": [user], "chosen": [assistant], "rejected": [assistant]}`. The reference policy is a checkpoint
directory too: the offline stage uses the SFT merge, each online round the previous round's merge.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from aya_assets.training.settings import DPOSettings, KeepCheckpoints, TrainSettings
from aya_assets.training.trainer import save_callbacks, save_run, trainer_args

# torch, transformers and trl are imported inside train_dpo, as in training/trainer.py: asset modules import this
# one, and loading the trainers would add seconds to every Dagster definitions load.


@dataclass
class DPOReport:
    losses: list[float]  # DPO loss at each logging step
    reward_margins: list[float]  # TRL's rewards/margins: beta * (chosen - rejected log-ratio vs the reference)
    reward_accuracies: list[float]  # TRL's rewards/accuracies: share of pairs whose chosen reward is higher
    seconds: float  # loading, tokenisation, reference pass and training (not saving)
    pairs: int  # pairs given: the cluster's data, which a data-proportional merge weighs it by
    # Of those, the ones training drew from: at most steps x batch, sampled, after TRL drops those whose prompt alone
    # fills max_length.
    trained_pairs: int
    final_margin: float  # the last logging step's values
    final_accuracy: float
    kept_steps: list[int] = field(default_factory=list)  # steps of the checkpoints kept under kept/, newest first


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


def train_dpo(model_dir: Path, pairs: list[dict], out_dir: Path, settings: DPOSettings,
              keep: KeepCheckpoints | None = None) -> DPOReport:
    """DPO from the checkpoint `model_dir`, which is also the reference (TRL's default); save the policy in `out_dir`,
    and the checkpoints `keep` asks for in out_dir/kept/ (training/trainer.py::save_run)."""
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
    train_settings = TrainSettings(
        steps=settings.steps,
        learning_rate=settings.learning_rate,
        batch_size=settings.batch_size,
        seed=settings.seed,
        max_length=settings.max_length,
    )
    args = DPOConfig(
        **trainer_args(train_settings, out_dir, keep),
        beta=settings.beta,
        loss_type=settings.loss_type,
        precompute_ref_log_probs=settings.precompute_ref_log_probs,
    )
    # Training sees max_steps x the total batch pairs; TRL would tokenise every pair and precompute the reference's
    # log-probs for all of them (a tiny demo cluster's 5,000 pairs for 192 trained on). A seeded sample of that many
    # is what the shuffled loader would draw, without the work on the rest.
    seen = args.max_steps * args.train_batch_size * args.gradient_accumulation_steps * args.world_size
    given = len(pairs)
    if given > seen:
        pairs = random.Random(settings.seed).sample(pairs, seen)
    # No ref_model: TRL takes the reference from the policy itself (its untrained weights in the precompute pass, which
    # runs inside the constructor, or a fresh load of model_dir at every step), so the recipe's reference is its input.
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(pairs),
        processing_class=tokenizer,
        callbacks=save_callbacks(keep, settings.steps),
    )
    show_progress(trainer).train()
    seconds = time.perf_counter() - start

    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    kept_steps = save_run(model, tokenizer, out_dir, generation_config)
    return DPOReport(
        losses=[entry["loss"] for entry in logged],
        reward_margins=[entry["rewards/margins"] for entry in logged],
        reward_accuracies=[entry["rewards/accuracies"] for entry in logged],
        seconds=seconds,
        pairs=given,
        trained_pairs=len(trainer.train_dataset),
        final_margin=logged[-1]["rewards/margins"],
        final_accuracy=logged[-1]["rewards/accuracies"],
        kept_steps=kept_steps,
    )
