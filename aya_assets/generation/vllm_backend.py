"""Offline vLLM generation for the gpu profile; vllm is imported only when a run asks for it."""

import gc
import time
from collections.abc import Sequence
from typing import Any

import torch
from pydantic import Field

from aya_assets.generation.base import (
    Completion,
    GenerationBackend,
    Progress,
    SamplingSettings,
    check_shape,
    finish_reason,
)

MISSING_VLLM = "the vllm backend needs `pip install 'aya_assets[vllm]'` and a GPU"


def completions_from_vllm(outputs: Sequence[Any], seconds: float) -> list[list[Completion]]:
    """Map vLLM `RequestOutput`s (one per prompt, `.outputs` one per sample) to completions."""
    total = sum(len(request.outputs) for request in outputs)
    share = seconds / total if total else 0.0
    return [
        [Completion(o.text.strip(), len(o.token_ids), finish_reason(o.finish_reason), share) for o in request.outputs]
        for request in outputs
    ]


def release_gpu_memory() -> None:
    """Tear down what a vLLM engine leaves behind so the next model can take the GPU."""
    try:
        from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel
    except ImportError:
        # These helpers have moved between vLLM releases; losing them only costs memory, never the answers.
        pass
    else:
        destroy_model_parallel()
        destroy_distributed_environment()
    gc.collect()
    torch.cuda.empty_cache()


class VLLMBackend(GenerationBackend):
    """`vllm.LLM.chat` with `SamplingParams(n=...)`; the engine lives for one call, so teachers can follow each other."""

    tensor_parallel_size: int = Field(default=1, ge=1)
    gpu_memory_utilization: float = Field(default=0.85, gt=0, le=1)
    max_model_len: int | None = Field(default=None, description="None: the model's own context length.")
    dtype: str = "auto"

    def generate(
        self,
        model: str,
        prompts: list[str],
        sampling: SamplingSettings,
        progress: Progress | None = None,
    ) -> list[list[Completion]]:
        """For each user prompt (plain text; vLLM applies the chat template), `sampling.n` completions."""
        if not prompts:
            return []
        try:
            import vllm
        except ImportError as error:
            raise RuntimeError(MISSING_VLLM) from error
        llm = vllm.LLM(
            model=model,
            tensor_parallel_size=self.tensor_parallel_size,
            gpu_memory_utilization=self.gpu_memory_utilization,
            max_model_len=self.max_model_len,
            dtype=self.dtype,
            seed=sampling.seed,
        )
        params = vllm.SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            seed=sampling.seed,
        )
        try:
            started = time.perf_counter()
            outputs = llm.chat([[{"role": "user", "content": p}] for p in prompts], params, use_tqdm=False)
            seconds = time.perf_counter() - started
        finally:
            del llm
            release_gpu_memory()
        if progress is not None:
            progress(len(prompts), len(prompts))
        return check_shape(completions_from_vllm(outputs, seconds), prompts, sampling.n)
