"""The model benchmarks on one CUDA GPU: generation batched against one prompt at a time, DPO precomputed against
per-step reference. Not part of `make bench` (which is CPU); run by hand on a GPU machine:

    python -m bench.gpu [--quick] [--json OUT.json]

Same contenders, sizes, tiny model and workers as bench/generation.py (with device cuda) and bench/dpo.py (train_dpo
trains on the GPU wherever there is one), each in its own process.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from bench import fixtures
from bench.dpo import step_summary
from bench.generation import BATCHED, LOOP
from bench.measure import measure, python_worker, report
from bench.table import Row, markdown, run_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="bench.run's quick sizes")
    parser.add_argument("--json", type=Path, help="also write the details here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aya-bench-gpu-"))
    try:
        model = fixtures.tiny_model(work / "model")
        count = 64 if args.quick else 128
        batched, loop = (measure(python_worker("bench.generation", model, size, count, "cuda"), log=work / "generation.log")
                         for size in (BATCHED, LOOP))
        steps = 10 if args.quick else 40
        with_, without = (measure(python_worker("bench.dpo", model, work / f"dpo_out_{flag}", steps, flag),
                                  log=work / "dpo.log") for flag in "10")
    except RuntimeError as failed:
        for log in work.glob("*.log"):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}")
        raise failed
    finally:
        shutil.rmtree(work, ignore_errors=True)
    generation_ratio = batched["tokens_per_s"] / loop["tokens_per_s"]
    dpo_ratio = with_["seconds_per_step"] / without["seconds_per_step"]
    rows = [
        Row("gpu_batched_vs_loop_tokens_per_s", f"cuda generation tokens/s, batch {BATCHED} / one at a time ({count} prompts)",
            f"{batched['tokens_per_s']:.0f} tok/s ({run_summary(batched)})",
            f"{loop['tokens_per_s']:.0f} tok/s ({run_summary(loop)})", generation_ratio, "≥ 5×", generation_ratio >= 5),
        Row("gpu_dpo_precompute_step_ratio", f"cuda DPO s/step, precomputed / per-step reference ({steps} steps)",
            step_summary(with_), step_summary(without), dpo_ratio, "≤ 1×", dpo_ratio <= 1),
    ]
    print(f"device: {batched['device']}")
    print(markdown(rows))
    details = {"device": batched["device"], "prompts": count, "steps": steps, "batched": batched, "loop": loop,
               "dpo_precomputed": with_, "dpo_per_step_reference": without}
    if args.json:
        args.json.write_text(json.dumps(details, indent=2))


if __name__ == "__main__":
    main()
