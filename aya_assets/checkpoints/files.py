"""Hugging Face checkpoint directories: written atomically, described by a model card, hashed, checked."""

from __future__ import annotations

import hashlib
import os
import shutil
import json
from functools import lru_cache
from pathlib import Path

import torch
import yaml
from pydantic_core import to_jsonable_python
from safetensors import safe_open

from aya_assets.artifacts.atomic import atomic_dir  # noqa: F401 - the way every checkpoint is written

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")


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


def save_trained(model, tokenizer, out_dir: Path, generation_config) -> None:
    """Save a trained model and its tokenizer with `generation_config`, the one it was loaded with: TRL's trainers
    rewrite its pad (and eos) token ids, and the student's eos ids and sampling settings must reach every merge."""
    model.generation_config = generation_config
    # save_pretrained rather than trainer.save_model: the latter adds training_args.bin, which pickles the (temporary)
    # output path and would make identical runs hash differently.
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


# Written beside the weights to describe a run (timings, run ids, charts): not part of what the model is.
NOT_CONTENT = {"README.md", "aya_build.json", "aya_fingerprint.txt"}


@lru_cache(maxsize=256)
def _file_digest(path: str, size: int, mtime_ns: int) -> bytes:
    """sha256 of a file's bytes; cached per (path, size, mtime) so one process hashes a checkpoint once."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").digest()


def content_hash(path: Path) -> str:
    """sha256 over a checkpoint's files (names and bytes), leaving out run records, model cards and charts.

    Every byte counts: a retrained model of the same shapes must not pass for the old one, or every generation
    shard and merge keyed on it would be reused stale. sha256 reads ~1-2 GB/s, so an 8B bf16 checkpoint costs
    ~10 s, once per process.
    """
    files = (
        sorted(p for p in path.rglob("*") if p.is_file() and p.name not in NOT_CONTENT and p.suffix != ".png")
        if path.is_dir() else [path]
    )
    digest = hashlib.sha256()
    for file in files:
        relative = file.relative_to(path).as_posix() if path.is_dir() else file.name
        stat = file.stat()
        digest.update(f"{relative}\0".encode())
        digest.update(_file_digest(str(file.resolve()), stat.st_size, stat.st_mtime_ns))
    return digest.hexdigest()


class CheckpointError(ValueError):
    """A checkpoint that must not be used; the message names the directory and the file or tensor."""


REWARD_KIND_PROBLEM = ("config.json's architectures {architectures} name neither a sequence classifier (a reward model "
                       "with one label) nor a causal LM (scored by likelihood); point models.reward_model.path at one of them")


def reward_kind_of(architectures: list[str] | None) -> str | None:
    """How the arbiter scores with a checkpoint of these config.json architectures: "classifier" (a sequence
    classifier's scalar), "likelihood" (a causal LM's mean log-probability of the answer), or None (neither)."""
    names = architectures or []
    if any(name.endswith("ForSequenceClassification") for name in names):
        return "classifier"
    if any(name.endswith("ForCausalLM") for name in names):
        return "likelihood"
    return None


def model_identity(path: str | Path, revision: str | None = None) -> str:
    """What a model is for cache keys: the content hash of a local checkpoint, else its hub id and revision."""
    local = Path(path)
    return content_hash(local) if local.exists() else f"{path}@{revision or 'main'}"


def weight_files(path: Path) -> list[Path]:
    """The safetensors files of a checkpoint: the shards its index names, else model.safetensors."""
    index = path / "model.safetensors.index.json"
    if index.is_file():
        return [path / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    return [path / "model.safetensors"]


def missing_files(path: Path) -> list[str]:
    """Names of the files a usable checkpoint needs that `path` lacks: config, every weight shard, a tokenizer."""
    missing = [] if (path / "config.json").is_file() else ["config.json"]
    missing += [f.name for f in weight_files(path) if not f.is_file()]
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        missing.append(" or ".join(TOKENIZER_FILES))
    return missing


def tensor_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape, from the safetensors headers only."""
    shapes = {}
    for file in weight_files(path):
        with safe_open(file, framework="pt") as st:
            shapes |= {name: list(st.get_slice(name).get_shape()) for name in st.keys()}
    return shapes


def config_shapes(config) -> dict[str, list[int]]:
    """Tensor name -> shape that a loaded config implies, from the model class built on the meta device (no memory)."""
    import transformers

    cls = next((getattr(transformers, a) for a in config.architectures or [] if hasattr(transformers, a)), None)
    if cls is None:
        return {}  # an architecture this transformers does not know: vLLM may still; nothing to compare against
    with torch.device("meta"):
        model = cls(config)
    return {name: list(t.shape) for name, t in model.state_dict().items()}


def non_finite(path: Path, names: set[str] | None = None) -> tuple[str, str] | None:
    """(tensor name, "NaN" or "Inf") of the first non-finite tensor of `path` (only `names`, if given), else None.

    One tensor at a time, so memory stays at the largest tensor.
    """
    for file in weight_files(path):
        with safe_open(file, framework="pt") as st:
            for name in st.keys():
                if names is not None and name not in names:
                    continue
                tensor = st.get_tensor(name)
                # One float32 reduction instead of a boolean mask: any NaN/Inf element makes the sum non-finite.
                if tensor.is_floating_point() and not torch.isfinite(tensor.sum(dtype=torch.float32)):
                    return name, "NaN" if torch.isnan(tensor).any() else "Inf"
    return None


def check_finite(path: Path) -> None:
    """Raise CheckpointError naming the first NaN/Inf tensor of `path`."""
    found = non_finite(path)
    if found:
        raise CheckpointError(f"{found[1]} in tensor {found[0]} of {path}")


def check_checkpoint(path: Path) -> None:
    """Raise CheckpointError naming `path` and the file or tensor unless it is a complete, consistent checkpoint.

    Complete: config, every weight shard, a tokenizer. Consistent: each tensor has the shape config.json implies,
    the embeddings hold every token id the tokenizer can produce, and no weight is NaN or Inf.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a checkpoint directory")
    missing = missing_files(path)
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint, missing {', '.join(missing)}")
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(path)
    shapes, expected = tensor_shapes(path), config_shapes(config)
    for name in sorted(shapes.keys() & expected.keys()):
        if shapes[name] != expected[name]:
            raise CheckpointError(f"{path}: tensor {name} has shape {shapes[name]}, config.json implies {expected[name]}")
    vocab_size = config.get_text_config().vocab_size
    tokens = len(AutoTokenizer.from_pretrained(path))
    if vocab_size is not None and tokens > vocab_size:
        raise CheckpointError(f"{path}: the tokenizer has {tokens} tokens but the embeddings hold {vocab_size} (vocabulary mismatch)")
    check_finite(path)


def keep_input_model(init: Path, out: Path) -> None:
    """`out` = the checkpoint `init` (hard links where the filesystem allows), without its run records and card."""
    for file in sorted(p for p in init.rglob("*") if p.is_file() and p.name not in NOT_CONTENT and p.suffix != ".png"):
        target = out / file.relative_to(init)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(file, target)  # an 8B checkpoint is 16 GB: no copy when nothing changed
        except OSError:
            shutil.copy2(file, target)
