"""The arbiter: a reward model's score per completion, plus an optional language-fidelity term."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import dagster as dg
import polars as pl
from pydantic import PrivateAttr

from aya_assets.languages import langid

if TYPE_CHECKING:
    from aya_assets.checkpoints.io import Checkpoint


def _device(choice: str) -> str:
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if choice == "auto" else choice


class Arbiter(dg.ConfigurableResource):
    """Scores (prompt, completion) pairs with a sequence-classification reward model (the `reward_model` asset's
    checkpoint, passed in by the scoring asset).

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
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            device = _device(self.device)
            tokenizer = AutoTokenizer.from_pretrained(checkpoint.path, revision=checkpoint.revision)
            tokenizer.padding_side = "left"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
            model = AutoModelForSequenceClassification.from_pretrained(checkpoint.path, revision=checkpoint.revision,
                                                                       dtype=dtype).to(device).eval()
            if model.config.pad_token_id is None:
                model.config.pad_token_id = tokenizer.pad_token_id
            self._loaded[checkpoint] = (tokenizer, model, device)
        return self._loaded[checkpoint]

    def rewards(self, checkpoint: Checkpoint, prompts: list[str], completions: list[str],
                progress: Callable[[int, int], None] | None = None) -> list[float]:
        """The reward model's scalar for each (prompt, completion), in batches."""
        import torch

        tokenizer, model, device = self._load(checkpoint)
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

    def score(self, frame: pl.DataFrame, checkpoint: Checkpoint, progress: Callable[[int, int], None] | None = None) -> pl.DataFrame:
        """Add reward, language_confidence and score to a frame with prompt, completion and language columns."""
        if frame.is_empty():
            return frame.with_columns(
                reward=pl.lit(None, pl.Float64), language_confidence=pl.lit(None, pl.Float64), score=pl.lit(None, pl.Float64)
            )
        rewards = self.rewards(checkpoint, frame["prompt"].to_list(), frame["completion"].to_list(), progress)
        fidelity = langid.confidence(frame["completion"].to_list(), frame["language"].to_list())
        return frame.with_columns(
            reward=pl.Series(rewards, dtype=pl.Float64),
            language_confidence=pl.Series(fidelity, dtype=pl.Float64),
        ).with_columns(score=pl.col("reward") + self.language_weight * pl.col("language_confidence"))
