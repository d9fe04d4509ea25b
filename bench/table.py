"""The rows every benchmark returns and the Markdown table they make."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    key: str | None  # the results.json key this row's ratio is, if any
    benchmark: str
    ours: str
    baseline: str
    ratio: float | None
    goal: str
    met: bool | None  # None where there is no goal to meet


def mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def run_summary(result: dict) -> str:
    """"1.23 s, 456 MiB": a measured run's time and peak RSS."""
    return f"{result['seconds']:.2f} s, {mib(result['peak_rss_bytes'])}"


def markdown(rows: list[Row]) -> str:
    lines = ["| benchmark | ours | baseline | ratio | goal | met? |", "|---|---|---|---|---|---|"]
    for row in rows:
        ratio = "—" if row.ratio is None else f"{row.ratio:.2f}"
        met = {True: "yes", False: "**no**", None: "—"}[row.met]
        lines.append(f"| {row.benchmark} | {row.ours} | {row.baseline} | {ratio} | {row.goal} | {met} |")
    return "\n".join(lines) + "\n"
