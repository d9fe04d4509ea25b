"""The generation interface every backend implements: sampling settings in, completions out."""

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import dagster as dg
import pydantic

FinishReason = Literal["stop", "length"]
Progress = Callable[[int, int], None]  # progress(done, total), counted in prompts


@dataclass(frozen=True)
class Completion:
    """One sampled answer to one prompt."""

    text: str  # the assistant's answer only, special tokens stripped, whitespace-stripped
    tokens: int  # generated tokens, EOS included when produced
    finish_reason: FinishReason  # "stop" (EOS / stop sequence) or "length" (hit max_new_tokens)
    seconds: float  # wall time attributed to this completion: batch time / completions in the batch


class SamplingSettings(pydantic.BaseModel):
    """How to sample: `n` completions per prompt, nucleus sampling, seeded; temperature 0 is greedy."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    n: int = pydantic.Field(default=1, ge=1)
    max_new_tokens: int = pydantic.Field(default=48, ge=1)
    temperature: float = pydantic.Field(default=0.8, ge=0)
    top_p: float = pydantic.Field(default=0.95, gt=0, le=1)
    seed: int = 0


def sampling_settings(generation, seed: int) -> SamplingSettings:
    """The profile's `generation` section as sampling settings: generation.samples completions per prompt."""
    return SamplingSettings(n=generation.samples, max_new_tokens=generation.max_new_tokens,
                            temperature=generation.temperature, top_p=generation.top_p, seed=seed)


class GenerationBackend(dg.ConfigurableResource, ABC):
    """Answers user prompts with a chat model; transformers, vLLM or an OpenAI-compatible endpoint."""

    @abstractmethod
    def generate(
        self,
        model: str,
        prompts: list[str],
        sampling: SamplingSettings,
        progress: Progress | None = None,
    ) -> list[list[Completion]]:
        """For each user prompt (plain text; the backend applies the model's chat template with add_generation_prompt), `sampling.n` completions."""


def finish_reason(raw: str | None) -> FinishReason:
    """Map an engine's finish reason onto ours: only running out of tokens counts as "length"."""
    # Engines also report "eos_token", "stop_sequence", "content_filter" or nothing: all ended on their own.
    return "length" if raw == "length" else "stop"


def check_shape(results: list[list[Completion]], prompts: list[str], n: int) -> list[list[Completion]]:
    """Fail loudly unless there are exactly `n` completions for each prompt."""
    counts = [len(r) for r in results]
    if len(results) != len(prompts) or any(c != n for c in counts):
        raise RuntimeError(f"expected {len(prompts)} prompts x {n} completions, got completion counts {counts}")
    return results
