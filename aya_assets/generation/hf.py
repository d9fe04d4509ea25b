"""Batched, seeded generation with Hugging Face transformers (the tiny profile's backend, CPU or one GPU)."""

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from pydantic import Field, PrivateAttr
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from aya_assets.generation.base import Completion, GenerationBackend, Progress, SamplingSettings, check_shape

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str) -> str:
    """"auto" means the GPU when there is one."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """"auto" means bfloat16 on a GPU and float32 on a CPU (bfloat16 matmuls are slow there)."""
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be auto or one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


@contextmanager
def no_progress_bars() -> Iterator[None]:
    """Silence transformers' loading bars (the caller reports progress), then restore the caller's choice."""
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def load(model: str, device: str, dtype: torch.dtype) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """Tokenizer (left-padded, so every prompt ends where generation starts) and model in eval mode."""
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    with no_progress_bars():
        loaded = AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(device).eval()
    return tokenizer, loaded


def eos_ids(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> list[int]:
    """Every token that ends an answer: the generation config's (chat models often list several) and the tokenizer's."""
    configured = model.generation_config.eos_token_id
    ids = configured if isinstance(configured, list) else [configured]
    return sorted({i for i in [*ids, tokenizer.eos_token_id] if i is not None})


def trim_at_eos(generated: list[int], eos: set[int]) -> tuple[list[int], bool]:
    """The generated ids up to and including the first EOS, and whether there was one."""
    for position, token in enumerate(generated):
        if token in eos:
            return generated[: position + 1], True
    return generated, False


class TransformersBackend(GenerationBackend):
    """`model.generate` over batches of prompts; the last model loaded stays cached on the instance."""

    batch_size: int = Field(default=32, ge=1, description="Prompts per forward batch; each is expanded n times.")
    device: str = Field(default="auto", description="auto -> cuda if available, else cpu.")
    dtype: str = Field(default="auto", description="auto -> bfloat16 on cuda, float32 on cpu.")

    _loaded: tuple[str, PreTrainedTokenizerBase, PreTrainedModel] | None = PrivateAttr(default=None)

    def _model(self, model: str) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
        if self._loaded is not None and self._loaded[0] == model:
            return self._loaded[1], self._loaded[2]
        device = resolve_device(self.device)
        # Free the previous model before loading the next, so two are never in memory at once.
        self._loaded = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        tokenizer, loaded = load(model, device, resolve_dtype(self.dtype, device))
        self._loaded = (model, tokenizer, loaded)
        return tokenizer, loaded

    def generate(
        self,
        model: str,
        prompts: list[str],
        sampling: SamplingSettings,
        progress: Progress | None = None,
    ) -> list[list[Completion]]:
        """For each user prompt (plain text; the chat template is applied here), `sampling.n` completions."""
        if not prompts:
            return []
        tokenizer, lm = self._model(model)
        eos = eos_ids(tokenizer, lm)
        options = {
            "max_new_tokens": sampling.max_new_tokens,
            "num_return_sequences": sampling.n,
            "eos_token_id": eos,
            "pad_token_id": tokenizer.pad_token_id,
        }
        if sampling.temperature > 0:
            # top_k: the model's own default or none; transformers' global top_k=50 would make these
            # samples differ from what vLLM and endpoints draw for the same settings.
            top_k = lm.generation_config.top_k or 0
            options |= {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": top_k}
        else:
            options["do_sample"] = False
        chats = [
            tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
            for p in prompts
        ]
        # Batches of prompts of similar length, longest first: a batch stops when its last answer ends, so a short
        # task's batch is not held to the budget by one long open-ended prompt (and the first batch shows the peak
        # memory). The answers are returned in the prompts' order.
        order = sorted(range(len(chats)), key=lambda i: -len(chats[i]))
        results: list[list[Completion] | None] = [None] * len(chats)
        done = 0
        # fork_rng: seeding must not disturb the caller's random state (e.g. a training loop in the same process).
        with torch.random.fork_rng(devices=[lm.device] if lm.device.type == "cuda" else []):
            for batch_index, start in enumerate(range(0, len(chats), self.batch_size)):
                picked = order[start : start + self.batch_size]
                # Seeding per batch keeps each batch's samples independent of what earlier batches drew.
                torch.manual_seed(sampling.seed + batch_index)
                answers = self._generate_batch(tokenizer, lm, [chats[i] for i in picked], set(eos), sampling.n, options)
                for i, answer in zip(picked, answers):
                    results[i] = answer
                done += len(picked)
                if progress is not None:
                    progress(done, len(prompts))
        return check_shape(results, prompts, sampling.n)

    @staticmethod
    def _generate_batch(
        tokenizer: PreTrainedTokenizerBase,
        lm: PreTrainedModel,
        chats: list[str],
        eos: set[int],
        n: int,
        options: dict,
    ) -> list[list[Completion]]:
        started = time.perf_counter()
        # The chat template already carries any BOS token.
        inputs = tokenizer(chats, return_tensors="pt", padding=True, add_special_tokens=False).to(lm.device)
        with torch.inference_mode():
            output = lm.generate(**inputs, **options)
        generated = output[:, inputs["input_ids"].shape[1] :].tolist()
        seconds = (time.perf_counter() - started) / len(generated)
        completions = []
        for ids in generated:
            answer, stopped = trim_at_eos(ids, eos)
            text = tokenizer.decode(answer, skip_special_tokens=True).strip()
            completions.append(Completion(text, len(answer), "stop" if stopped else "length", seconds))
        # generate returns the n sequences of each prompt next to each other.
        return [completions[i : i + n] for i in range(0, len(completions), n)]
