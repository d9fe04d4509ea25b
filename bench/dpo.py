"""DPO step cost with the reference log-probs precomputed once against computed at every step (TRL's two modes).

Seconds per step is the whole train_dpo call (loading, tokenising, any reference pass, training) over its steps:
what a pipeline step pays. TRL's own train_runtime (the training loop alone) is kept in the details.
Run as a module, it is one mode's worker: `python -m bench.dpo MODEL_DIR OUT_DIR STEPS PRECOMPUTE(1|0)`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench import fixtures
from bench.measure import measure, python_worker, report
from bench.table import Row, run_summary

PAIRS = 128  # about one cluster's offline pairs on the tiny profile: 8 languages x 16 train prompts


def pairs() -> list[dict]:
    """Seed prompts with their reference chosen and a neighbouring prompt's reference rejected, as TRL rows."""
    import polars as pl

    from aya_assets.training.dpo import preference_rows

    rows = [row for row in fixtures.seed_rows() if row["split"] == "train"]
    stride = len(rows) // PAIRS
    chosen, rejected = rows[::stride][:PAIRS], rows[stride // 2 :: stride][:PAIRS]
    return preference_rows(pl.DataFrame({"prompt": [r["text"] for r in chosen], "chosen": [r["reference"] for r in chosen],
                                         "rejected": [r["reference"] for r in rejected]}))


def worker(model_dir: str, out_dir: str, steps: str, precompute: str) -> None:
    """The tiny profile's DPO settings on one torch thread (see run.py)."""
    import torch
    from trl import DPOTrainer

    from aya_assets.training.dpo import DPOSettings, train_dpo

    torch.set_num_threads(1)
    train, runtime = DPOTrainer.train, {}

    def timed_train(self, *args, **kwargs):  # train_dpo keeps its trainer; this is how its train_runtime gets out
        output = train(self, *args, **kwargs)
        runtime["train_runtime_s"] = output.metrics["train_runtime"]
        return output

    DPOTrainer.train = timed_train
    settings = DPOSettings(steps=int(steps), learning_rate=1e-3, batch_size=8, beta=0.1,
                           precompute_ref_log_probs=precompute == "1")
    result = train_dpo(Path(model_dir), pairs(), Path(out_dir), settings)
    report(seconds=result.seconds, seconds_per_step=result.seconds / settings.steps, pairs=result.pairs,
           train_loop_seconds_per_step=runtime["train_runtime_s"] / settings.steps, **runtime)


def step_summary(result: dict) -> str:
    """Seconds per step over the whole call and in TRL's training loop alone, then time and peak RSS."""
    return (f"{result['seconds_per_step']:.2f} s/step (training loop {result['train_loop_seconds_per_step']:.2f}); "
            f"{run_summary(result)}")


def run(quick: bool, work: Path) -> tuple[list[Row], dict]:
    model = fixtures.tiny_model(work / "dpo_model")
    steps = 10 if quick else 40  # the tiny profile trains 40 steps
    with_, without = (measure(python_worker("bench.dpo", model, work / f"dpo_out_{flag}", steps, flag), log=work / "dpo.log")
                      for flag in "10")
    ratio = with_["seconds_per_step"] / without["seconds_per_step"]
    row = Row("dpo_precompute_step_ratio", f"DPO s/step, precomputed / per-step reference ({PAIRS} pairs, {steps} steps)",
              step_summary(with_), step_summary(without), ratio, "≤ 1×", ratio <= 1)
    return [row], {"steps": steps, "precomputed": with_, "per_step_reference": without}


if __name__ == "__main__":
    worker(*sys.argv[1:])
