"""What a training run shows on the console: one line per model, updated in place on a terminal, else printed once.

transformers prints every logged dict (PrinterCallback, its default with `disable_tqdm`); this replaces it. The
losses still land in `trainer.state.log_history`, which the training reports and the materialization metadata read.
"""

from __future__ import annotations

import sys
import time

from transformers import PrinterCallback, ProgressCallback, TrainerCallback


class ProgressLine(TrainerCallback):
    def __init__(self, label: str, stream=None):
        self.label, self.stream = label, stream or sys.stdout
        self.first_loss = self.last_loss = None
        self.started = time.perf_counter()

    def _write(self, state, final: bool) -> None:
        tty = self.stream.isatty()
        if not (tty or final):
            return  # a log file gets the summary line only
        losses = "" if self.last_loss is None else f", loss {self.first_loss:.3g} → {self.last_loss:.3g}"
        line = f"    {self.label}: step {state.global_step}/{state.max_steps}{losses}, {time.perf_counter() - self.started:.0f} s"
        self.stream.write(("\r" + line + "\033[K" if tty else line) + ("\n" if final else ""))
        self.stream.flush()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.first_loss = logs["loss"] if self.first_loss is None else self.first_loss
            self.last_loss = logs["loss"]
        self._write(state, final=False)

    def on_train_end(self, args, state, control, **kwargs):
        self._write(state, final=True)


def _step_label() -> str:
    """The asset and partition being materialized, when called inside a Dagster step."""
    import dagster as dg

    try:
        context = dg.AssetExecutionContext.get()
        partition = f" [{context.partition_key}]" if context.has_partition_key else ""
        return f"{context.asset_key.to_user_string()}{partition}"
    except Exception:  # not inside a single-asset Dagster step (a test, a script)
        return "training"


def show_progress(trainer):
    """The trainer with one progress line instead of transformers' printed dicts and bars."""
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(ProgressLine(_step_label()))
    return trainer


def quiet_libraries() -> None:
    """For `aya materialize` without --verbose: no library progress bars or info logs on the console (the step
    lines and the training lines say how far it is); errors still print."""
    import datasets
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
