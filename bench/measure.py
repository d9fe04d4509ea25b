"""Run one contender in its own process and return its wall time, peak RSS and whatever it reports.

A contender is launched from a small launcher process (this module run as `python -m bench.measure`), not from the
benchmark itself: Linux counts the memory of the process a child was forked from in the child's peak RSS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPORT_ENV = "AYA_BENCH_REPORT"  # where a Python worker writes its JSON report
POLL_S = 0.02


def measure(argv: list[str], log: Path | None = None, env: dict | None = None) -> dict:
    """Wall seconds and peak RSS (bytes) of `argv` alone, plus the JSON it reported through `report`.

    Its output goes to `log` (quoted when it fails), or nowhere; `env` is added to this process's environment.
    """
    with tempfile.TemporaryDirectory(prefix="aya-bench-measure-") as tmp, open(log or os.devnull, "ab") as out:
        usage, reported = Path(tmp) / "usage.json", Path(tmp) / "report.json"
        launcher = [sys.executable, "-m", "bench.measure", str(usage), *argv]
        env = {**os.environ, **(env or {}), REPORT_ENV: str(reported)}
        if subprocess.run(launcher, stdout=out, stderr=subprocess.STDOUT, env=env).returncode:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            raise RuntimeError(f"{' '.join(argv)} failed; the end of its output:\n{tail}")
        return json.loads(usage.read_text()) | (json.loads(reported.read_text()) if reported.exists() else {})


def python_worker(module: str, *args: str | Path) -> list[str]:
    """The command line that runs `module`'s worker in this interpreter."""
    return [sys.executable, "-m", module, *map(str, args)]


def report(**values) -> None:
    """From inside a worker: hand `values` back to `measure`."""
    Path(os.environ[REPORT_ENV]).write_text(json.dumps(values))


def _anonymous_bytes(pid: int) -> int:
    """Resident anonymous memory of `pid` (heap, not mapped files), from /proc; 0 once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("RssAnon:")), 0)


def _launch(usage: str, argv: list[str]) -> int:
    """Run `argv`, write its wall time, peak RSS and sampled peak anonymous RSS to `usage`; return its exit code."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv)
    peak_anon, done = 0, threading.Event()

    def poll() -> None:  # memory-mapped weights count in RSS but are page cache; anonymous memory is what a merge holds
        nonlocal peak_anon
        while not done.wait(POLL_S):
            peak_anon = max(peak_anon, _anonymous_bytes(proc.pid))

    sampler = threading.Thread(target=poll, daemon=True)
    sampler.start()
    # wait4 gives this child's own rusage; Linux counts ru_maxrss in KiB.
    _, status, rusage = os.wait4(proc.pid, 0)
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    Path(usage).write_text(json.dumps({"wall_s": time.perf_counter() - started, "peak_rss_bytes": rusage.ru_maxrss * 1024,
                                       "peak_anon_bytes_sampled": peak_anon}))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(_launch(sys.argv[1], sys.argv[2:]))
