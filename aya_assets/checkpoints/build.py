"""One build-or-reuse step for every checkpoint asset: reuse one built from the same inputs (the asset's code version
among them), otherwise build it atomically with its model card and training rows, then describe it and return its
content hash as the Dagster data version, so Dagster's own staleness shows what changed."""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import dagster as dg
import polars as pl

from aya_assets.artifacts import plots
from aya_assets.checkpoints.files import atomic_dir, check_checkpoint, content_hash, write_model_card
from aya_assets.checkpoints.io import Checkpoint
from aya_assets.checkpoints.lineage import upstream_runs

# dagster 1.13 marks Output(data_version=...) beta; it is the documented way for an asset to report its data version.
warnings.filterwarnings("ignore", message="Parameter `data_version`", category=dg.BetaWarning)

FINGERPRINT_FILE = "aya_fingerprint.txt"
BUILD_FILE = "aya_build.json"
TRAINING_DATA = "training_data.parquet"


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
            meta |= plots.chart_metadata(f"{key}_curve", png, out / f"{key}.png", f"{title} {label}")
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


@dataclass
class Card:
    """What the model card of a built checkpoint says, and the rows it learned from (ids and languages)."""

    name: str
    description: str
    settings: dict
    training_data: pl.DataFrame | None = None
    settings_from_build: tuple[str, ...] = ()  # keys of the build's info that the card's settings repeat (a merge recipe)
    lineage: list[dg.AssetKey] = field(default_factory=list)  # named on the card besides the asset's own upstreams


def materialize_checkpoint(context: dg.AssetExecutionContext, out: Checkpoint, inputs: list, build: Callable[[Path], dict],
                           card: Card, extra: Callable[[dict], dict] = lambda info: {}) -> dg.Output:
    """Reuse `out` if it was built from the same `inputs` and code version, else `build(tmp)` it with its card; the
    Output's metadata: path, hash, the build's scalars and curves, plus `extra(info)`."""
    key = context.asset_key
    deps = sorted(context.assets_def.asset_deps[key], key=lambda k: k.to_user_string())
    made_from = upstream_runs(context, list(dict.fromkeys([*deps, *card.lineage])))

    def build_with_card(tmp: Path) -> dict:
        info = build(tmp)
        if card.training_data is not None:
            card.training_data.write_parquet(tmp / TRAINING_DATA)
        settings = {**card.settings, **{k: info.pop(k) for k in card.settings_from_build}}
        write_model_card(tmp, name=card.name, description=card.description, inputs=made_from, settings=settings)
        return info

    print_ = fingerprint(context.assets_def.code_versions_by_key[key], *inputs)
    reused, info = build_or_reuse(out.local, print_, build_with_card)
    context.log.info(f"{card.name}: {'reused' if reused else 'built'} at {out.path}")
    meta = report_metadata(out.local, reused, info, card.name)
    meta |= extra(info)
    return dg.Output(out, metadata=meta, data_version=dg.DataVersion(meta["content_hash"]))


def configured_checkpoint(out: Checkpoint) -> dg.Output:
    """A configured checkpoint (models.build: false): local dirs are checked and hashed, hub ids recorded with revision."""
    meta = {"path": out.path, "revision": out.revision or "default branch"}
    if out.local.exists():
        check_checkpoint(out.local)
        meta["content_hash"] = content_hash(out.local)
    else:
        meta["content_hash"] = "hub checkpoint: not hashed until downloaded"
    return dg.Output(out, metadata=meta, data_version=dg.DataVersion(out.identity()))
