"""What `aya materialize` shows on the console: one line per step, with what it trained folded in.

transformers prints every logged dict (PrinterCallback, its default with `disable_tqdm`); `show_progress` replaces it
with a `ProgressLine`. On a terminal the step's line is rewritten in place as training goes; in a log file each step
is one line once it is done. Outside `aya materialize` (a test, a script) a trained model prints one summary line.
The losses still land in `trainer.state.log_history`, which the training reports and the metadata read.
"""

from __future__ import annotations

import sys
import time

from transformers import PrinterCallback, ProgressCallback, TrainerCallback


class StepLine:
    """The current step's console line: begun by the runner, extended by what trains inside the step."""

    def __init__(self, stream=None):
        self._stream = stream
        self.prefix: str | None = None
        self.trained: list[str] = []

    @property
    def stream(self):
        """The given stream, else whatever sys.stdout is now (not the one at import: a test's capture closes it)."""
        return self._stream or sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        self._stream = value

    @property
    def tty(self) -> bool:
        return self.stream.isatty()

    def begin(self, prefix: str) -> None:
        self.prefix, self.trained = prefix, []
        if self.tty:
            self._show(prefix + " …")

    def progress(self, text: str) -> None:
        if self.tty:
            self._show(f"{self.prefix} · {text}" if self.prefix else text)

    def trained_model(self, text: str) -> None:
        if self.prefix is None:  # not inside `aya materialize`: the summary is its own line
            self.stream.write(("\r\033[K" if self.tty else "") + f"    {text}\n")
        else:
            self.trained.append(text)

    def end(self, timing: str) -> None:
        trained = "".join(f"; {text}" for text in self.trained)
        self.stream.write(("\r\033[K" if self.tty else "") + f"{self.prefix} — {timing}{trained}\n")
        self.stream.flush()
        self.prefix, self.trained = None, []

    def _show(self, text: str) -> None:
        self.stream.write("\r" + text[:200] + "\033[K")
        self.stream.flush()


STEP = StepLine()


class ProgressLine(TrainerCallback):
    def __init__(self, label: str, line: StepLine = STEP):
        self.label, self.line = label, line
        self.first_loss = self.last_loss = None
        self.started = time.perf_counter()

    def _text(self, state) -> str:
        losses = "" if self.last_loss is None else f", loss {self.first_loss:.3g} → {self.last_loss:.3g}"
        return f"{self.label} step {state.global_step}/{state.max_steps}{losses}, {time.perf_counter() - self.started:.0f} s"

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.first_loss = logs["loss"] if self.first_loss is None else self.first_loss
            self.last_loss = logs["loss"]
        self.line.progress(self._text(state))

    def on_train_end(self, args, state, control, **kwargs):
        self.line.trained_model(self._text(state))


def _model_label() -> str:
    """The model being trained, by the asset that trains it, when called inside a single-asset Dagster step."""
    import dagster as dg

    try:
        return dg.AssetExecutionContext.get().asset_key.to_user_string() + ":"
    except Exception:  # a multi-asset step, a test, a script
        return "trained"


def show_progress(trainer):
    """The trainer with one progress line instead of transformers' printed dicts and bars."""
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(ProgressLine(_model_label()))
    return trainer


def quiet_libraries() -> None:
    """For `aya materialize` without --verbose: no library progress bars or info logs on the console (the step
    lines and the training lines say how far it is); errors still print."""
    import os

    import datasets
    from transformers.utils import logging as hf_logging

    os.environ.setdefault("TQDM_DISABLE", "1")  # tqdm's own switch, which TRL's reference pass also reads
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
