"""Train the tiny profile's Llama-architecture models on CPU with TRL: causal LMs (SFT) and a reward model.

Conversations use TRL's conversational formats: SFT takes `{"messages": [user, assistant]}` rows with
`assistant_only_loss` (the chat template marks the assistant turn with `{% generation %}`), the reward model
takes explicit-prompt preference rows `{"prompt": [user], "chosen": [assistant], "rejected": [assistant]}`.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from transformers import LlamaConfig, PreTrainedTokenizerBase, Trainer

# TRL 1.16 reads transformers' deprecated `is_gradient_checkpointing` on every trainer: a warning that is not ours to act on.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)

# torch, transformers and trl are imported inside the training functions: the profile imports the
# dataclasses below, and loading the trainers would add seconds to every Dagster definitions load.


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


DEFAULT_MAX_NEW_TOKENS = 192  # the longest seed reference answer is ~180 tokens


def _llama_config(arch: TinyArchitecture, tokenizer: PreTrainedTokenizerBase, **extra) -> LlamaConfig:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=arch.hidden_size,
        num_hidden_layers=arch.num_layers,
        num_attention_heads=arch.num_heads,
        num_key_value_heads=arch.num_heads,
        intermediate_size=arch.intermediate_size,
        max_position_embeddings=arch.max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )


def _trainer_args(settings: TrainSettings, out_dir: Path) -> dict:
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


def _train(trainer: Trainer) -> TrainReport:
    from aya_assets.console import show_progress

    start = time.perf_counter()
    show_progress(trainer).train()
    return TrainReport(
        losses=[entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
        seconds=time.perf_counter() - start,
        examples=len(trainer.train_dataset),
        parameters=trainer.model.num_parameters(),
    )


def _sft_trainer_class():
    from transformers import Trainer
    from trl import SFTTrainer

    class TinySFTTrainer(SFTTrainer):
        """SFTTrainer with the model's own loss: TRL's fused LM head saves GPU memory but doubles a CPU step."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    return TinySFTTrainer


def train_causal_lm(
    tokenizer_dir: Path,
    conversations: list[list[dict]],
    out_dir: Path,
    arch: TinyArchitecture,
    settings: TrainSettings,
) -> TrainReport:
    """Train a fresh tiny Llama on user/assistant conversations; save it in `out_dir` (SFT of an existing checkpoint:
    training/sft.py)."""
    from datasets import Dataset
    from transformers import AutoTokenizer, GenerationConfig, LlamaForCausalLM, set_seed
    from trl import SFTConfig

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    set_seed(settings.seed)  # the fresh model's initial weights depend on it
    model = LlamaForCausalLM(_llama_config(arch, tokenizer))
    args = SFTConfig(**_trainer_args(settings, out_dir), assistant_only_loss=True)
    trainer = _sft_trainer_class()(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict({"messages": conversations}),
        processing_class=tokenizer,
    )
    report = _train(trainer)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_new_tokens=DEFAULT_MAX_NEW_TOKENS,
        do_sample=True,
    )
    # save_pretrained rather than trainer.save_model: the latter adds training_args.bin, which pickles the
    # (temporary) output path and would make identical runs hash differently.
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return report


def train_reward_model(
    tokenizer_dir: Path, pairs: list[dict], out_dir: Path, arch: TinyArchitecture, settings: TrainSettings
) -> TrainReport:
    """Train a tiny Llama sequence classifier with TRL's RewardTrainer on explicit-prompt preference rows.

    It scores what it was trained on: the chat template applied to [user, assistant] (no generation prompt).
    """
    from datasets import Dataset
    from transformers import AutoTokenizer, LlamaForSequenceClassification, set_seed
    from trl import RewardConfig, RewardTrainer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    set_seed(settings.seed)
    model = LlamaForSequenceClassification(_llama_config(arch, tokenizer, num_labels=1))
    # RewardTrainer drops (rather than truncates) pairs longer than max_length; TrainReport.examples counts the rest.
    args = RewardConfig(**_trainer_args(settings, out_dir))
    trainer = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(pairs), processing_class=tokenizer)
    report = _train(trainer)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return report


def mixture(rows: pl.DataFrame, focus: list[str], share: float, n: int, seed: int) -> pl.DataFrame:
    """`n` rows, about `share` of them from languages in `focus` and the rest from the others, shuffled by `seed`."""
    in_focus = rows.filter(pl.col("language").is_in(focus))
    others = rows.filter(~pl.col("language").is_in(focus))
    take_focus = round(share * n) if in_focus.height and others.height else (n if in_focus.height else 0)
    parts = [_draw(in_focus, take_focus, seed), _draw(others, n - take_focus, seed + 1)]
    return pl.concat(parts).sample(fraction=1.0, shuffle=True, seed=seed)


def _draw(rows: pl.DataFrame, k: int, seed: int) -> pl.DataFrame:
    # Whole copies first, then a sample of the remainder: every row is seen about equally often.
    copies, remainder = divmod(k, rows.height) if rows.height else (0, 0)
    return pl.concat([rows] * copies + [rows.sample(remainder, seed=seed)])
