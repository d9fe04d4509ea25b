"""Hugging Face checkpoint directories: written atomically, described by a model card, hashed, checked."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml
from pydantic_core import to_jsonable_python

from aya_assets.atomic import atomic_dir  # noqa: F401 - the way every checkpoint is written

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def write_model_card(out_dir: Path, *, name: str, description: str, inputs: dict[str, str], settings: dict) -> Path:
    """Write a Hugging Face model card (README.md) naming the inputs the checkpoint was made from."""
    front_matter = yaml.safe_dump({"library_name": "transformers", "tags": ["aya_assets"]}, sort_keys=False)
    made_from = "\n".join(f"- {key}: {value}" for key, value in inputs.items())
    # Settings may hold dataclasses, pydantic models and paths; plain JSON types are what YAML can write.
    settings_yaml = yaml.safe_dump(to_jsonable_python(settings), sort_keys=False, allow_unicode=True)
    path = out_dir / "README.md"
    path.write_text(
        f"---\n{front_matter}---\n\n# {name}\n\n{description}\n\n"
        f"## Made from\n\n{made_from}\n\n## Settings\n\n```yaml\n{settings_yaml}```\n",
        encoding="utf-8",
    )
    return path


def _safetensors_header(path: Path) -> bytes:
    with path.open("rb") as f:
        length = int.from_bytes(f.read(8), "little")
        return f.read(length)


# Written beside the weights to describe a run (timings, run ids, charts): not part of what the model is.
NOT_CONTENT = {"README.md", "aya_build.json", "aya_fingerprint.txt"}


def content_hash(path: Path) -> str:
    """sha256 over a checkpoint; a `*.safetensors` file counts by name, size and header (dtypes, shapes, offsets)."""
    files = (
        sorted(p for p in path.rglob("*") if p.is_file() and p.name not in NOT_CONTENT and p.suffix != ".png")
        if path.is_dir() else [path]
    )
    digest = hashlib.sha256()
    for file in files:
        relative = file.relative_to(path).as_posix() if path.is_dir() else file.name
        digest.update(f"{relative}\0".encode())
        if file.suffix == ".safetensors":
            # Reading gigabytes of weights per materialization is too slow; the header changes with any reshape or retype.
            digest.update(f"{file.stat().st_size}\0".encode())
            digest.update(_safetensors_header(file))
        else:
            digest.update(hashlib.file_digest(file.open("rb"), "sha256").digest())
    return digest.hexdigest()


def check_checkpoint(path: Path) -> None:
    """Raise ValueError naming `path` and what it lacks unless it holds a config, weights and a tokenizer."""
    if not path.is_dir():
        raise ValueError(f"{path}: not a checkpoint directory")
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any(path.glob("*.safetensors")):
        missing.append("*.safetensors weights")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        missing.append(" or ".join(TOKENIZER_FILES))
    if missing:
        raise ValueError(f"{path}: incomplete checkpoint, missing {', '.join(missing)}")
