"""Run one contender in its own process and return its wall time, peak RSS and whatever it reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPORT_ENV = "AYA_BENCH_REPORT"  # where a Python worker writes its JSON report


def measure(argv: list[str], stdout: int | None = None) -> dict:
    """Wall seconds and peak RSS (bytes) of `argv` alone, plus the JSON it reported through `report`."""
    with tempfile.TemporaryDirectory(prefix="aya-bench-report-") as tmp:
        path = Path(tmp) / "report.json"
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=stdout, env={**os.environ, REPORT_ENV: str(path)})
        # wait4 gives this child's own rusage, so contenders never share a peak.
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, argv)
        reported = json.loads(path.read_text()) if path.exists() else {}
    return {"wall_s": wall, "peak_rss_bytes": usage.ru_maxrss * 1024, **reported}  # Linux counts ru_maxrss in KiB


def python_worker(module: str, *args: str | Path) -> list[str]:
    """The command line that runs `module`'s worker in this interpreter."""
    return [sys.executable, "-m", module, *map(str, args)]


def report(**values) -> None:
    """From inside a worker: hand `values` back to `measure`."""
    Path(os.environ[REPORT_ENV]).write_text(json.dumps(values))
