"""Generation on CPU: the project's TransformersBackend in batches of 64 against one prompt at a time.

Same tiny random Llama, same seed prompts, same sampling. Run as a module, it is one contender's worker:
`python -m bench.generation MODEL_DIR BATCH_SIZE PROMPTS [DEVICE]` (cpu by default; bench/gpu.py passes cuda).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bench import fixtures
from bench.measure import measure, python_worker, report
from bench.table import Row, run_summary

BATCHED, LOOP = 64, 1


def prompts(count: int) -> list[str]:
    """`count` seed prompts spread evenly over the languages."""
    rows = fixtures.seed_rows()
    return [row["text"] for row in rows[:: len(rows) // count]][:count]


def worker(model_dir: str, batch_size: str, count: str, device: str = "cpu") -> None:
    """Load the model with one warm-up prompt, then time generating for every prompt; on CPU with one torch thread
    (see run.py), on cuda in the backend's auto dtype (bfloat16)."""
    import torch

    from aya_assets.generation import SamplingSettings, TransformersBackend

    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if not cuda:
        torch.set_num_threads(1)
    backend = TransformersBackend(batch_size=int(batch_size), device=device)
    sampling = SamplingSettings(n=1, max_new_tokens=32, temperature=0.8, seed=0)
    texts = prompts(int(count))
    backend.generate(model_dir, texts[:1], sampling)
    sync()
    started = time.perf_counter()
    completions = backend.generate(model_dir, texts, sampling)
    sync()
    seconds = time.perf_counter() - started
    tokens = sum(c.tokens for per_prompt in completions for c in per_prompt)
    report(seconds=seconds, tokens=tokens, tokens_per_s=tokens / seconds,
           device=torch.cuda.get_device_name() if cuda else "cpu")


def run(quick: bool, work: Path) -> tuple[list[Row], dict]:
    model = fixtures.tiny_model(work / "generation_model")
    count = 64 if quick else 128
    batched, loop = (measure(python_worker("bench.generation", model, size, count), log=work / "generation.log")
                     for size in (BATCHED, LOOP))
    ratio = batched["tokens_per_s"] / loop["tokens_per_s"]
    row = Row("batched_vs_loop_tokens_per_s", f"generation tokens/s, batch {BATCHED} / one at a time ({count} prompts)",
              f"{batched['tokens_per_s']:.0f} tok/s ({run_summary(batched)})",
              f"{loop['tokens_per_s']:.0f} tok/s ({run_summary(loop)})", ratio, "≥ 5×", ratio >= 5)
    return [row], {"prompts": count, "batched": batched, "loop": loop}


if __name__ == "__main__":
    worker(*sys.argv[1:])
