"""Checkpoints as assets: reuse one built from the same inputs, otherwise build it atomically, then describe it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dagster as dg

from aya_assets.artifacts import plots
from aya_assets.checkpoints.files import atomic_dir, content_hash

FINGERPRINT_FILE = "aya_fingerprint.txt"
BUILD_FILE = "aya_build.json"


def fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_or_reuse(out: Path, print_: str, build) -> tuple[bool, dict]:
    """Reuse a finished checkpoint made from the same inputs; otherwise build it atomically."""
    marker = out / FINGERPRINT_FILE
    if marker.exists() and marker.read_text().strip() == print_:
        info_file = out / BUILD_FILE
        return True, json.loads(info_file.read_text()) if info_file.exists() else {}
    with atomic_dir(out) as tmp:
        info = build(tmp)
        (tmp / BUILD_FILE).write_text(json.dumps(info, default=str))
        (tmp / FINGERPRINT_FILE).write_text(print_)
    return False, info


CURVES = {"losses": "loss", "reward_margins": "reward margin", "reward_accuracies": "reward accuracy"}


def report_metadata(out: Path, reused: bool, info: dict, title: str) -> dict:
    """Path, hash, the build's scalars, and a PNG per training curve (saved beside the weights, shown in the UI)."""
    meta = {
        "path": dg.MetadataValue.path(str(out)),
        "reused": reused,
        **{k: v for k, v in info.items() if isinstance(v, (int, float, str))},
    }
    for key, label in CURVES.items():
        if info.get(key):
            png = plots.line_chart({title: info[key]}, f"{title}: {label}", ylabel=label)
            if not (out / f"{key}.png").exists():
                plots.save_png(png, out / f"{key}.png")
            meta[f"{key}_curve"] = dg.MetadataValue.md(plots.markdown_image(png, f"{title} {label}"))
            meta[f"last_{key}"] = float(info[key][-1])
    meta["content_hash"] = content_hash(out)
    return meta


def train_info(report) -> dict:
    """What a TrainReport says, for aya_build.json and the asset's metadata."""
    return {"losses": report.losses, "seconds": round(report.seconds, 1), "examples": report.examples,
            "parameters": report.parameters}


def build_record(path: Path) -> dict:
    """The aya_build.json a built checkpoint carries (empty for configured checkpoints)."""
    record = Path(path) / BUILD_FILE
    return json.loads(record.read_text()) if record.exists() else {}
