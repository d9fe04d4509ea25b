"""Train the tiny profile's Llama-architecture models from scratch on CPU with TRL: causal LMs and a reward model.

Conversations use TRL's conversational formats: SFT takes `{"messages": [user, assistant]}` rows with
`assistant_only_loss` (the chat template marks the assistant turn with `{% generation %}`), the reward model
takes explicit-prompt preference rows `{"prompt": [user], "chosen": [assistant], "rejected": [assistant]}`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aya_assets.training.settings import TinyArchitecture, TrainReport, TrainSettings
from aya_assets.training.trainer import run, sft_trainer_class, trainer_args

if TYPE_CHECKING:
    from transformers import LlamaConfig, PreTrainedTokenizerBase

DEFAULT_MAX_NEW_TOKENS = 192  # the longest seed reference answer is ~180 tokens


def llama_config(arch: TinyArchitecture, tokenizer: PreTrainedTokenizerBase, **extra) -> LlamaConfig:
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
    model = LlamaForCausalLM(llama_config(arch, tokenizer))
    args = SFTConfig(**trainer_args(settings, out_dir), assistant_only_loss=True)
    trainer = sft_trainer_class()(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict({"messages": conversations}),
        processing_class=tokenizer,
    )
    report = run(trainer)
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
    tokenizer_dir: Path, pairs: list[dict], out_dir: Path, arch: TinyArchitecture, settings: TrainSettings,
    start: Path | None = None,
) -> TrainReport:
    """Train a tiny Llama sequence classifier with TRL's RewardTrainer on explicit-prompt preference rows: from scratch,
    or from the causal LM at `start` (its body, a new score head), as reward models are usually started from an SFT
    model: it already reads the prompts it will judge.

    It scores what it was trained on: the chat template applied to [user, assistant] (no generation prompt).
    """
    from datasets import Dataset
    from transformers import AutoTokenizer, LlamaForSequenceClassification, set_seed
    from trl import RewardConfig, RewardTrainer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    set_seed(settings.seed)  # also the new score head's initial weights
    if start is None:
        model = LlamaForSequenceClassification(llama_config(arch, tokenizer, num_labels=1))
    else:
        model = LlamaForSequenceClassification.from_pretrained(start, num_labels=1, pad_token_id=tokenizer.pad_token_id)
    # RewardTrainer drops (rather than truncates) pairs longer than max_length; TrainReport.examples counts the rest.
    args = RewardConfig(**trainer_args(settings, out_dir))
    trainer = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(pairs), processing_class=tokenizer)
    report = run(trainer)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return report
