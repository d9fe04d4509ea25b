"""The arbiter: a reward model's score per completion, plus an optional language-fidelity term.

Two kinds of reward model, told apart by the checkpoint's `config.json` architecture:
- a sequence classifier (`...ForSequenceClassification`, one label): its scalar, as published reward models give it;
- a causal LM (`...ForCausalLM`): a generative reward, the mean log-probability per token of the answer turn
  (the answer and the chat template's end-of-turn tokens, so a cut-off or run-on answer pays for it) given the prompt.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import dagster as dg
import polars as pl
from pydantic import PrivateAttr

from aya_assets.artifacts.tables import atomic_write_parquet
from aya_assets.checkpoints.build import fingerprint
from aya_assets.checkpoints.files import REWARD_KIND_PROBLEM, reward_kind_of
from aya_assets.languages import langid

if TYPE_CHECKING:
    from aya_assets.checkpoints.io import Checkpoint


def _device(choice: str) -> str:
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if choice == "auto" else choice


SCORE_SCHEMA = {"reward": pl.Float64, "language_confidence": pl.Float64}


class RewardModelError(ValueError):
    """A reward-model checkpoint the arbiter cannot score with; the message names it and what to change."""


def reward_kind(checkpoint: Checkpoint) -> str:
    """"classifier" or "likelihood", from the checkpoint's architectures; RewardModelError for anything else."""
    from transformers import AutoConfig

    architectures = AutoConfig.from_pretrained(checkpoint.path, revision=checkpoint.revision).architectures
    kind = reward_kind_of(architectures)
    if kind is None:
        raise RewardModelError(f"{checkpoint.path}: {REWARD_KIND_PROBLEM.format(architectures=architectures or [])}")
    return kind


class Arbiter(dg.ConfigurableResource):
    """Scores (prompt, completion) pairs with the reward model (the `reward_model` asset's checkpoint, passed in by
    the scoring asset): a sequence classifier's scalar, or a causal LM's mean log-probability of the answer.

    score = reward + language_weight * P(completion is in the prompt's language), the second term from lingua.
    """

    language_weight: float = 1.0
    batch_size: int = 32
    device: str = "auto"
    max_length: int = 1024

    _loaded: dict = PrivateAttr(default_factory=dict)  # checkpoint -> (tokenizer, model, device), loaded once

    def _load(self, checkpoint: Checkpoint):
        if checkpoint not in self._loaded:
            import torch
            from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

            kind, device = reward_kind(checkpoint), _device(self.device)
            tokenizer = AutoTokenizer.from_pretrained(checkpoint.path, revision=checkpoint.revision)
            tokenizer.padding_side = "left"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
            auto = AutoModelForSequenceClassification if kind == "classifier" else AutoModelForCausalLM
            model = auto.from_pretrained(checkpoint.path, revision=checkpoint.revision, dtype=dtype).to(device).eval()
            if model.config.pad_token_id is None:
                model.config.pad_token_id = tokenizer.pad_token_id
            self._loaded[checkpoint] = (kind, tokenizer, model, device)
        return self._loaded[checkpoint]

    def rewards(self, checkpoint: Checkpoint, prompts: list[str], completions: list[str],
                progress: Callable[[int, int], None] | None = None) -> list[float]:
        """The reward model's scalar for each (prompt, completion), in batches."""
        kind, tokenizer, model, device = self._load(checkpoint)
        if kind == "likelihood":
            return self._likelihoods(tokenizer, model, device, prompts, completions, progress)
        import torch

        texts = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": p}, {"role": "assistant", "content": c}], tokenize=False
            )
            for p, c in zip(prompts, completions)
        ]
        out: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            batch = tokenizer(
                texts[start : start + self.batch_size], return_tensors="pt", padding=True, truncation=True,
                max_length=self.max_length, add_special_tokens=False,
            ).to(device)
            with torch.inference_mode():
                out += model(**batch).logits[:, 0].float().tolist()
            if progress:
                progress(min(start + self.batch_size, len(texts)), len(texts))
        return out

    def _likelihoods(self, tokenizer, model, device, prompts: list[str], completions: list[str],
                     progress: Callable[[int, int], None] | None) -> list[float]:
        """Mean log-probability per token of each answer turn given its prompt. The answer turn is what the whole
        conversation renders beyond the prompt with its generation prompt (TRL's rule for completion-only loss);
        a conversation longer than max_length loses prompt tokens from the left, never answer tokens up to it."""
        import torch
        from trl.data_utils import common_prefix_length

        rows = []
        for p, c in zip(prompts, completions):
            head = tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=True, return_dict=True,
                                                 add_generation_prompt=True)["input_ids"]
            ids = tokenizer.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant", "content": c}],
                                                tokenize=True, return_dict=True)["input_ids"]
            start = common_prefix_length(head, ids)
            cut = max(0, len(ids) - self.max_length)
            ids = ids[cut:]
            rows.append((ids, max(1, start - cut)))  # the first answer token is predicted from the one before it
        order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))  # like lengths together: less padding
        out = [0.0] * len(rows)
        pad = tokenizer.pad_token_id
        for done in range(0, len(order), self.batch_size):
            batch = [rows[i] for i in order[done : done + self.batch_size]]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in batch], device=device)
            mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch], device=device)
            with torch.inference_mode():
                logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            token_logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0]
            positions = torch.arange(width - 1, device=device)[None, :]
            starts = torch.tensor([s for _, s in batch], device=device)[:, None]
            answer = (positions >= starts - 1) & (mask[:, 1:] == 1)
            means = (token_logp * answer).sum(1) / answer.sum(1).clamp(min=1)
            for i, value in zip(order[done : done + self.batch_size], means.tolist()):
                out[i] = value
            if progress:
                progress(min(done + self.batch_size, len(rows)), len(rows))
        return out

    def score(self, frame: pl.DataFrame, checkpoint: Checkpoint, progress: Callable[[int, int], None] | None = None,
              cache: Path | None = None) -> pl.DataFrame:
        """Add reward, language_confidence and score to a frame with prompt, completion and language columns.

        With `cache` (a directory): each language's scores are kept under it, keyed on its rows, the model and the
        settings, and read back instead of recomputed when those are the same (a second identical run scores
        nothing, whichever partition ranges its runs cover); that language's older entries are dropped."""
        if frame.is_empty():
            return frame.with_columns(
                reward=pl.lit(None, pl.Float64), language_confidence=pl.lit(None, pl.Float64), score=pl.lit(None, pl.Float64)
            )
        if cache is None:
            return frame.with_columns(self._scores(frame, checkpoint, progress))
        parts, model = [], checkpoint.identity()
        for (language,), rows in frame.with_row_index("_row").group_by("language", maintain_order=True):
            digest = hashlib.sha256()
            for column in ("prompt", "completion"):
                digest.update("\x00".join(rows[column].to_list()).encode())
            key = fingerprint(model, self.language_weight, self.max_length, digest.hexdigest())
            path = cache / language / f"{key}.parquet"
            if path.exists():
                scores = pl.read_parquet(path)
            else:
                scores = self._scores(rows, checkpoint, progress)
                atomic_write_parquet(scores, path)
                for stale in set(path.parent.glob("*.parquet")) - {path}:
                    stale.unlink(missing_ok=True)
            parts.append(rows.select("_row").with_columns(scores))
        return frame.with_columns(pl.concat(parts).sort("_row").drop("_row"))

    def _scores(self, frame: pl.DataFrame, checkpoint: Checkpoint, progress) -> pl.DataFrame:
        rewards = self.rewards(checkpoint, frame["prompt"].to_list(), frame["completion"].to_list(), progress)
        fidelity = langid.confidence(frame["completion"].to_list(), frame["language"].to_list())
        return pl.DataFrame({"reward": rewards, "language_confidence": fidelity}, schema=SCORE_SCHEMA).with_columns(
            score=pl.col("reward") + self.language_weight * pl.col("language_confidence"))
