"""Linear merge of four random ~0.5B Llama checkpoints (bf16): the project's merge_checkpoints against the
mergekit-yaml CLI on the same recipe, and against just reading the inputs (`cat`).

Run as a module, it is our contender's worker: `python -m bench.merge OUT MODEL...`.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import save_file

from aya_assets.checkpoints.files import weight_files
from bench import fixtures
from bench.measure import measure, python_worker, report
from bench.table import Row, mib, run_summary

# 26 layers of hidden 1024 / MLP 4096 plus untied 32k embeddings: 502M parameters, 1.0 GB in bf16.
FULL = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 26, "vocab_size": 32000}
QUICK = FULL | {"num_hidden_layers": 4}  # 133M parameters
MODELS = 4


def tensor_shapes(arch: dict) -> dict[str, tuple[int, ...]]:
    """Every weight of a LlamaForCausalLM with full multi-head attention and untied embeddings."""
    h, i, v = arch["hidden_size"], arch["intermediate_size"], arch["vocab_size"]
    shapes = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,), "lm_head.weight": (v, h)}
    for layer in range(arch["num_hidden_layers"]):
        prefix = f"model.layers.{layer}."
        shapes |= {prefix + f"self_attn.{p}_proj.weight": (h, h) for p in "qkvo"}
        shapes |= {prefix + f"mlp.{p}_proj.weight": (i, h) for p in ("gate", "up")}
        shapes |= {prefix + "mlp.down_proj.weight": (h, i),
                   prefix + "input_layernorm.weight": (h,), prefix + "post_attention_layernorm.weight": (h,)}
    return shapes


def write_checkpoint(out: Path, arch: dict, tokenizer: Path, seed: int) -> Path:
    """Random bf16 weights written straight to safetensors, a config.json and a copy of `tokenizer`."""
    from transformers import LlamaConfig

    generator = torch.Generator().manual_seed(seed)
    tensors = {name: torch.empty(shape, dtype=torch.bfloat16).normal_(0, 0.02, generator=generator)
               for name, shape in tensor_shapes(arch).items()}
    shutil.copytree(tokenizer, out)
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    heads = arch["hidden_size"] // 64
    LlamaConfig(**arch, num_attention_heads=heads, num_key_value_heads=heads, tie_word_embeddings=False,
                architectures=["LlamaForCausalLM"], dtype="bfloat16").save_pretrained(out)
    return out


def same_weights(a: Path, b: Path) -> bool:
    """Whether two merged checkpoints hold identical tensors (however sharded), compared one tensor at a time."""
    def tensors(path: Path) -> dict:
        return {name: (file, name) for file in weight_files(path) for name in safe_open(file, "pt").keys()}

    left, right = tensors(a), tensors(b)
    if left.keys() != right.keys():
        return False
    load = lambda where: safe_open(where[0], "pt").get_tensor(where[1])  # noqa: E731
    return all(torch.equal(load(left[name]), load(right[name])) for name in left)


def worker(out: str, *models: str) -> None:
    from aya_assets.merge.merging import merge_checkpoints

    started = time.perf_counter()
    merge_checkpoints(list(models), [1 / len(models)] * len(models), out, "linear", dtype="bfloat16")
    report(merge_call_s=time.perf_counter() - started)


def run(quick: bool, work: Path) -> tuple[list[Row], dict]:
    from aya_assets.merge.merging import merge_recipe

    arch = QUICK if quick else FULL
    parameters = sum(torch.Size(s).numel() for s in tensor_shapes(arch).values())
    needed = (MODELS + 2) * parameters * 2  # inputs and two merged outputs, 2 bytes a parameter
    free = shutil.disk_usage(work).free
    if free < needed * 1.2:
        raise RuntimeError(f"merge benchmark needs {needed / 1e9:.1f} GB in {work}, {free / 1e9:.1f} GB free")
    root = work / "merge"
    try:
        tokenizer = fixtures.tokenizer(root / "tokenizer")
        models = [write_checkpoint(root / f"model_{k}", arch, tokenizer, seed=k) for k in range(MODELS)]
        files = [m / "model.safetensors" for m in models]
        input_bytes = sum(f.stat().st_size for f in files)
        recipe = root / "recipe.yaml"
        recipe.write_text(yaml.safe_dump(merge_recipe(models, [1 / MODELS] * MODELS, "linear", dtype="bfloat16")))
        # cat first: it also leaves every contender the same warm page cache.
        read = measure(["cat", *map(str, files)])
        # The CLI options that match what merge_checkpoints passes to mergekit.
        cli = [str(Path(sys.executable).parent / "mergekit-yaml"), str(recipe), str(root / "out_mergekit"),
               "--quiet", "--no-copy-tokenizer", "--no-write-model-card"]
        mergekit = measure(cli, log=work / "merge.log")
        ours = measure(python_worker("bench.merge", root / "out_ours", *models), log=work / "merge.log")
        if not same_weights(root / "out_ours", root / "out_mergekit"):
            raise AssertionError("merge_checkpoints and mergekit-yaml produced different weights")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for result in (read, mergekit, ours):
        result["seconds"] = result["wall_s"]  # whole processes: both merges pay their imports
    details = {"parameters_per_model": parameters, "input_bytes": input_bytes, "cat": read, "mergekit": mergekit, "ours": ours}
    time_ratio, rss_ratio = ours["seconds"] / mergekit["seconds"], ours["peak_rss_bytes"] / input_bytes
    label = f"{MODELS} × {parameters / 1e9:.2f}B bf16"
    rows = [
        Row("merge_vs_mergekit", f"merge vs mergekit-yaml ({label}), ours/mergekit", run_summary(ours),
            run_summary(mergekit), time_ratio, "≤ 1.1×", time_ratio <= 1.1),
        Row("merge_peak_rss_over_model_bytes", "merge peak RSS / input bytes",
            f"{mib(ours['peak_rss_bytes'])} RSS, of which ~{mib(ours['peak_anon_bytes_sampled'])} anonymous",
            f"{mib(input_bytes)} of inputs; mergekit {mib(mergekit['peak_rss_bytes'])} RSS, "
            f"~{mib(mergekit['peak_anon_bytes_sampled'])} anonymous; cat {run_summary(read)}", rss_ratio, "≤ 0.5", rss_ratio <= 0.5),
    ]
    return rows, details


if __name__ == "__main__":
    worker(*sys.argv[1:])
