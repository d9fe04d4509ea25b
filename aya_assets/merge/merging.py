"""Checkpoint merging with mergekit: the recipe, the pre-merge sanity check and an atomic merge into a directory."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import yaml
from transformers import AutoConfig

from aya_assets.artifacts.atomic import atomic_dir
from aya_assets.checkpoints.files import CheckpointError, check_finite, missing_files, non_finite, tensor_shapes

METHODS = ("linear", "slerp", "ties", "dare_ties")
DTYPES = ("float32", "bfloat16", "float16")
RECIPE_FILE = "merge_recipe.yaml"
# mergekit holds a whole output shard in memory before writing it (its default is 5 GB): smaller shards, less memory.
OUT_SHARD_BYTES = 512 * 2**20
# mergekit writes weights and config only; these make the result a usable chat checkpoint.
CARRIED_FILES = (
    "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json", "generation_config.json",
)
# The parts of tokenizer.json that decide token ids; padding/truncation settings may differ between saves.
TOKENIZER_KEYS = ("model", "added_tokens", "normalizer", "pre_tokenizer")


class MergeError(ValueError):
    """A merge that must not happen; the message names the checkpoint and tensor."""


def merge_weights(configured: dict[str, float] | None, sizes: dict[str, int], skipped: set[str] = frozenset()) -> dict[str, float]:
    """Configured weights, or each cluster's share of the training rows (the paper's data-proportional default).

    `skipped`: clusters whose step trained nothing (no pairs) and passed its input on. When every cluster was, all
    are that same input, and equal weights merge it back to itself."""
    if configured is not None:
        return dict(configured)
    total = sum(sizes.values())
    if total <= 0 and sizes and set(sizes) <= set(skipped):
        return {cluster: 1 / len(sizes) for cluster in sizes}
    if total <= 0:
        raise ValueError(f"cannot weight a merge by data size: no training rows recorded in {sizes}")
    return {cluster: size / total for cluster, size in sizes.items()}


def merge_recipe(models: list[str | Path], weights: list[float], method: str = "linear", *, base_model: str | Path | None = None,
                 density: float = 0.5, slerp_t: float = 0.5, dtype: str = "float32") -> dict:
    """The mergekit YAML config as a dict, with absolute paths and every method parameter explicit; ValueError on bad arguments.

    linear: weighted average, weights normalised. slerp: exactly 2 models, from models[0] (its base) at t = slerp_t towards
    models[1]; weights unused. ties / dare_ties: task vectors against base_model (required, not among models), each model
    with its weight and `density`; weights are normalised over the models that agree in sign (TIES's disjoint mean).
    """
    if method not in METHODS:
        raise ValueError(f"unknown merge method {method!r}; expected one of {METHODS}")
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {DTYPES}")
    paths = [_model_path(m) for m in models]
    if not paths:
        raise ValueError("no models to merge")
    if len(set(paths)) != len(paths):
        raise ValueError(f"duplicate models in {paths}")
    if len(weights) != len(paths):
        raise ValueError(f"{len(weights)} weights for {len(paths)} models")
    if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights must be finite, non-negative and not all zero: {list(weights)}")
    head = {"merge_method": method, "dtype": dtype}
    if method == "linear":
        if base_model is not None:
            raise ValueError("a linear merge takes no base_model")
        return {**head, "parameters": {"normalize": True},
                "models": [{"model": p, "parameters": {"weight": float(w)}} for p, w in zip(paths, weights)]}
    if method == "slerp":
        if len(paths) != 2:
            raise ValueError(f"slerp merges exactly 2 models, got {len(paths)}")
        if base_model is not None and _model_path(base_model) != paths[0]:
            raise ValueError("slerp interpolates from models[0]; base_model must be None or models[0]")
        if not 0 <= slerp_t <= 1:
            raise ValueError(f"slerp_t must be in [0, 1], got {slerp_t}")
        return {**head, "base_model": paths[0], "parameters": {"t": float(slerp_t)}, "models": [{"model": p} for p in paths]}
    if base_model is None:
        raise ValueError(f"{method} needs base_model, the common ancestor of the models")
    base = _model_path(base_model)
    if base in paths:
        raise ValueError(f"base_model {base} must not also be one of the models")
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")
    # mergekit's normalize/rescale defaults differ by method and have changed across versions; pin them in the recipe.
    parameters = {"normalize": True, "rescale": method == "dare_ties", "lambda": 1.0}
    return {**head, "base_model": base, "parameters": parameters,
            "models": [{"model": p, "parameters": {"weight": float(w), "density": float(density)}}
                       for p, w in zip(paths, weights)]}


def sanity_check(models: list[str | Path], finite: bool = True) -> None:
    """Raise MergeError unless the checkpoints share architecture, tensor names and shapes and tokenizer, hold exactly
    the tensors mergekit reads for their architecture, and (with `finite`) hold no NaN/Inf."""
    paths = [Path(m) for m in models]
    if not paths:
        raise ValueError("no checkpoints to check")
    for path in paths:
        if not path.is_dir():
            raise MergeError(f"checkpoint directory does not exist: {path}")
        missing = missing_files(path)
        if missing:
            raise MergeError(f"missing files: {', '.join(missing)} in {path}")
    ref, ref_arch, ref_tok, ref_shapes = paths[0], _architecture(paths[0]), _tokenizer_digest(paths[0]), tensor_shapes(paths[0])
    for path in paths[1:]:
        arch = _architecture(path)
        if arch != ref_arch:
            raise MergeError(f"architecture differs: {ref_arch} in {ref} vs {arch} in {path}")
        if _tokenizer_digest(path) != ref_tok:
            raise MergeError(f"tokenizer differs: {ref} vs {path} (vocabulary, merges or added tokens)")
        shapes = tensor_shapes(path)
        for name in sorted(ref_shapes.keys() | shapes.keys()):
            if name not in shapes or name not in ref_shapes:
                has, lacks = (ref, path) if name in ref_shapes else (path, ref)
                raise MergeError(f"{name}: present in {has}, missing in {lacks}")
            if shapes[name] != ref_shapes[name]:
                raise MergeError(f"{name}: shape {ref_shapes[name]} in {ref} vs {shapes[name]} in {path}")
    # Same names everywhere by now, but the configs (e.g. Cohere's use_qk_norm) decide what mergekit asks for.
    for path in paths:
        _check_mergekit_tensors(path, set(ref_shapes))
    if not finite:
        return
    for path in paths:
        try:
            check_finite(path)
        except CheckpointError as e:
            raise MergeError(str(e)) from e


def merge_checkpoints(models: list[str | Path], weights: list[float], out_dir: str | Path, method: str = "linear", *,
                      base_model: str | Path | None = None, density: float = 0.5, slerp_t: float = 0.5, seed: int = 0,
                      dtype: str = "float32") -> dict:
    """Sanity-check the inputs, merge them with mergekit and atomically replace out_dir with the result; returns the recipe.

    The result carries `merge_recipe.yaml` (runnable as `mergekit-yaml merge_recipe.yaml OUT`) and the tokenizer,
    chat template, generation config (eos ids, sampling settings) and config.json of models[0]: the first merged model,
    which slerp also starts from; for ties / dare_ties that is models[0], not base_model.
    """
    # mergekit takes ~3 s to import; only a merge should pay for it, not loading the Dagster definitions.
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    import aya_assets.merge.architectures  # noqa: F401 - registers the corrected definitions before mergekit looks them up

    recipe = merge_recipe(models, weights, method, base_model=base_model, density=density, slerp_t=slerp_t, dtype=dtype)
    inputs = [entry["model"] for entry in recipe["models"]]
    # A linear merge carries any NaN/Inf of any input into its output (NaN × w is NaN even for w = 0), so one pass
    # over the result, before it is renamed into place, replaces a pass over every input: the inputs' bytes are
    # read once, by mergekit. The other methods can mask a NaN (sign election, drop-out), so their inputs are scanned.
    sanity_check(list(dict.fromkeys(filter(None, [recipe.get("base_model"), *inputs]))), finite=method != "linear")
    out = Path(out_dir).resolve()
    with atomic_dir(out) as tmp:
        options = MergeOptions(random_seed=seed, quiet=True, copy_tokenizer=False, write_model_card=False,
                               out_shard_size=OUT_SHARD_BYTES)
        try:
            run_merge(MergeConfiguration.model_validate(recipe), str(tmp), options)
        except Exception as e:
            raise RuntimeError(f"mergekit {method} merge of {inputs} into {out} failed: {e}") from e
        if method == "linear":
            _check_result_finite(tmp, inputs)
        donor = Path(inputs[0])
        _write_config(donor, tmp, dtype)
        for name in CARRIED_FILES:
            if (donor / name).is_file():
                shutil.copy2(donor / name, tmp / name)
        (tmp / RECIPE_FILE).write_text(yaml.safe_dump(recipe, sort_keys=False))
    return recipe


def _check_mergekit_tensors(path: Path, names: set[str]) -> None:
    """Raise MergeError naming the tensor where mergekit's definition of the architecture and the checkpoint disagree:
    a required tensor missing fails the merge, a tensor it does not list would be left out of the result silently."""
    from aya_assets.merge.architectures import mergekit_weights

    config = AutoConfig.from_pretrained(path)
    weights = mergekit_weights(config)
    if weights is None:
        return
    arch = config.architectures[0]
    for weight in weights:
        if not weight.optional and not names & {weight.name, *(weight.aliases or ()), *(weight.tied_names or ())}:
            raise MergeError(f"{path}: mergekit's {arch} definition requires tensor {weight.name}, which the checkpoint "
                             f"lacks; its weights do not match its config.json, or aya_assets/merge/architectures.py "
                             f"must correct that definition")
    listed = {name for weight in weights for name in (weight.name, *(weight.aliases or ()))}
    unlisted = sorted(names - listed)
    if unlisted:
        raise MergeError(f"{path}: tensor {unlisted[0]} is not in mergekit's {arch} definition, so the merge would drop "
                         f"it ({len(unlisted)} such tensors); correct that definition in aya_assets/merge/architectures.py")


def _check_result_finite(result: Path, inputs: list[str]) -> None:
    """Raise MergeError naming the input that made a merged tensor NaN/Inf, checking only that tensor in each input."""
    found = non_finite(result)
    if found:
        name, kind = found
        source = next((p for p in inputs if non_finite(Path(p), {name})), None)
        raise MergeError(f"{kind} in tensor {name} of {source}" if source else
                         f"{kind} in merged tensor {name}, though every input is finite there (overflow)")


def _model_path(model: str | Path) -> str:
    """The absolute path mergekit should read; '@' and '+' would be parsed as a revision and a LoRA adapter."""
    path = str(Path(model).resolve())
    if "@" in path or "+" in path:
        raise ValueError(f"mergekit reads '@' as a revision and '+' as a LoRA adapter; rename the checkpoint: {path}")
    return path


def _architecture(path: Path) -> tuple[str, tuple[str, ...]]:
    """(model_type, architectures) from config.json."""
    config = json.loads((path / "config.json").read_text())
    return config.get("model_type"), tuple(config.get("architectures") or ())


def _tokenizer_digest(path: Path) -> str:
    """A hash of what maps text to token ids: the id-defining parts of tokenizer.json, else tokenizer.model's bytes."""
    if (path / "tokenizer.json").is_file():
        spec = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
        data = json.dumps({key: spec.get(key) for key in TOKENIZER_KEYS}, sort_keys=True).encode()
    else:
        data = (path / "tokenizer.model").read_bytes()
    return hashlib.sha256(data).hexdigest()


def _write_config(donor: Path, out: Path, dtype: str) -> None:
    """config.json of the donor with the merge dtype."""
    # mergekit copies config.json from an arbitrary input when there is no base_model (a set's order); pin it to models[0].
    config = AutoConfig.from_pretrained(donor)
    config.dtype = dtype
    config.save_pretrained(out)

