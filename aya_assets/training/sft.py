"""Supervised fine-tuning of a causal-LM checkpoint with TRL's `SFTTrainer` (pure, no Dagster): the student per cluster.

The loss covers the assistant's answer only. Where the chat template marks the assistant turn with `{% generation %}`
(the tiny profile's does), rows are TRL's `{"messages": [user, assistant]}` with `assistant_only_loss`. Real chat
templates (Aya Expanse, Aya 23, Llama, Qwen2, Gemma2) have no markers, and TRL 1.16 then swaps in a training template
only for the exact template strings it ships, else fails; so those rows become `{"prompt": [user], "completion":
[assistant]}` with `completion_only_loss`, which masks what the model's own template renders for the prompt and its
generation prompt, and trains on the answer and its end-of-turn token.
"""

from __future__ import annotations

import copy
from pathlib import Path

from aya_assets.checkpoints.files import CheckpointError
from aya_assets.training.settings import KeepCheckpoints, TrainReport, TrainSettings
from aya_assets.training.trainer import run, save_callbacks, save_run, sft_trainer_class, trainer_args

# torch, transformers and trl are imported inside the functions, as in training/trainer.py: asset modules import this one.

ASSISTANT_ONLY, COMPLETION_ONLY = "assistant_only", "completion_only"
PROBE = [{"role": "user", "content": "Hello, how are you?"}, {"role": "assistant", "content": "Fine, thank you."}]


class ChatTemplateError(CheckpointError):
    """A student whose chat template SFT cannot train the answers with; the message names it and what to change."""


def loss_mode(tokenizer, where: str | Path) -> str:
    """ASSISTANT_ONLY where the chat template has `{% generation %}` markers, else COMPLETION_ONLY; ChatTemplateError
    naming `where` when the template cannot render a user/assistant conversation with the answer in the loss."""
    from jinja2 import TemplateError
    from trl.chat_template_utils import has_generation_markers
    from trl.data_utils import common_prefix_length

    if not tokenizer.chat_template:
        raise ChatTemplateError(f"{where}: the tokenizer has no chat template (chat_template.jinja or the chat_template "
                                f"key of tokenizer_config.json); SFT renders conversations with it, so add the model's own")
    try:
        if has_generation_markers(tokenizer.chat_template):
            masks = tokenizer.apply_chat_template(PROBE, tokenize=True, return_dict=True,
                                                  return_assistant_tokens_mask=True)["assistant_masks"]
            if 1 not in masks:
                raise ChatTemplateError(f"{where}: the chat template's {{% generation %}} markers enclose no token of the "
                                        f"assistant turn; put its content and end-of-turn token inside them")
            return ASSISTANT_ONLY
        prompt = tokenizer.apply_chat_template(PROBE[:1], tokenize=True, return_dict=True, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(PROBE, tokenize=True, return_dict=True)
    except TemplateError as e:
        raise ChatTemplateError(f"{where}: the chat template fails on a user/assistant conversation: {e}") from e
    # TRL's own rule: the completion starts where the prompt alone and the whole conversation diverge.
    if common_prefix_length(prompt["input_ids"], full["input_ids"]) >= len(full["input_ids"]):
        raise ChatTemplateError(f"{where}: the chat template renders the assistant turn as nothing beyond the generation "
                                f"prompt, so completion-only loss would train on no token; render message['content']")
    return COMPLETION_ONLY


def sft_rows(conversations: list[list[dict]], mode: str) -> list[dict]:
    """TRL dataset rows: whole conversations (assistant-only loss), else every turn before the last as the prompt and
    the final assistant turn as the completion."""
    if mode == ASSISTANT_ONLY:
        return [{"messages": conversation} for conversation in conversations]
    rows = []
    for i, conversation in enumerate(conversations):
        if not conversation or conversation[-1]["role"] != "assistant":
            raise ValueError(f"conversation {i} does not end with an assistant turn: roles {[m['role'] for m in conversation]}")
        rows.append({"prompt": conversation[:-1], "completion": conversation[-1:]})
    return rows


def sft_trainer(model, tokenizer, conversations: list[list[dict]], out_dir: Path, settings: TrainSettings, mode: str,
                keep: KeepCheckpoints | None = None):
    """TRL's SFTTrainer (the model's own loss, see training/trainer.py) over `conversations`, masked as `mode` says,
    saving the checkpoints `keep` asks for."""
    from datasets import Dataset
    from trl import SFTConfig

    args = SFTConfig(**trainer_args(settings, out_dir, keep), assistant_only_loss=mode == ASSISTANT_ONLY,
                     completion_only_loss=mode == COMPLETION_ONLY)
    return sft_trainer_class()(model=model, args=args, train_dataset=Dataset.from_list(sft_rows(conversations, mode)),
                                processing_class=tokenizer, callbacks=save_callbacks(keep, settings.steps))


def train_sft(model_dir: Path, conversations: list[list[dict]], out_dir: Path, settings: TrainSettings,
              keep: KeepCheckpoints | None = None) -> TrainReport:
    """SFT the checkpoint `model_dir` on conversations, loss on the answers; save it in `out_dir` with the generation
    config it came with (eos ids, sampling settings), which TRL rewrites, and the checkpoints `keep` asks for in
    out_dir/kept/ (training/trainer.py::save_run)."""
    if not conversations:
        raise ValueError("train_sft needs at least one conversation, got none")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    mode = loss_mode(tokenizer, model_dir)  # before the weights load: a template SFT cannot use fails in seconds
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    generation_config = copy.deepcopy(model.generation_config)
    report = run(sft_trainer(model, tokenizer, conversations, out_dir, settings, mode, keep))
    report.kept_steps = save_run(model, tokenizer, out_dir, generation_config)
    return report
