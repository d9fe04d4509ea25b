"""Merging tiny Llama checkpoints with mergekit: each method against a hand-computed reference, and the refusals."""

import json
from pathlib import Path

import mergekit.merge
import pytest
import torch
import yaml
from mergekit.config import MergeConfiguration
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from helpers import NAN_TENSOR

from aya_assets.merge.merging import METHODS, RECIPE_FILE, MergeError, merge_checkpoints, merge_recipe


def tensors(path: Path) -> dict[str, torch.Tensor]:
    return {name: t for file in sorted(path.glob("*.safetensors")) for name, t in load_file(file).items()}


def slerp_reference(v0: torch.Tensor, v1: torch.Tensor, t: float) -> torch.Tensor:
    """SLERP of two tensors as flat vectors: the angle between their directions, the weights applied to the raw vectors."""
    a, b = v0.double().flatten(), v1.double().flatten()
    omega = torch.arccos(torch.dot(a / a.norm(), b / b.norm()))
    return ((torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)).reshape(v0.shape)


def ties_reference(base: torch.Tensor, models: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """TIES at density 1: each element's sign elected by the weighted task vectors' sum, plus the weighted mean of those agreeing."""
    deltas = torch.stack([w * (m.double() - base.double()) for m, w in zip(models, weights)])
    elected = torch.where(deltas.sum(0) >= 0, 1.0, -1.0)
    agree = torch.sign(deltas) == elected
    w = torch.tensor(weights, dtype=torch.float64).reshape(-1, *[1] * base.ndim)
    agreeing_weight = (w * agree).sum(0)
    mean = (deltas * agree).sum(0) / torch.where(agreeing_weight == 0, 1.0, agreeing_weight)
    return base.double() + mean


@pytest.mark.parametrize("tied", [False, True])
def test_linear_is_the_normalised_weighted_mean(ckpt, tmp_path, tied):
    a, b = (ckpt["tied_a"], ckpt["tied_b"]) if tied else (ckpt["a"], ckpt["b"])
    out = tmp_path / "merged"
    merge_checkpoints([a, b], [0.25, 0.75], out)
    merged, ta, tb = tensors(out), tensors(a), tensors(b)
    assert merged.keys() == ta.keys()
    for name, tensor in merged.items():
        torch.testing.assert_close(tensor, 0.25 * ta[name] + 0.75 * tb[name], atol=1e-6, rtol=0, msg=name)

    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.tie_word_embeddings is tied
    assert (model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()) is tied
    assert model.generation_config.max_new_tokens == 7
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template == AutoTokenizer.from_pretrained(a).chat_template is not None

    # (1, 3) is (0.25, 0.75) once normalised; merging again replaces the previous result in place.
    merge_checkpoints([a, b], [1, 3], out)
    for name, tensor in tensors(out).items():
        torch.testing.assert_close(tensor, merged[name], atol=1e-6, rtol=0, msg=name)
    assert [p.name for p in tmp_path.iterdir()] == ["merged"]


@pytest.mark.parametrize("t", [0.0, 0.5, 1.0])
def test_slerp_matches_the_formula(ckpt, tmp_path, t):
    merge_checkpoints([ckpt["a"], ckpt["b"]], [1, 1], tmp_path / "out", "slerp", slerp_t=t)
    merged, ta, tb = tensors(tmp_path / "out"), tensors(ckpt["a"]), tensors(ckpt["b"])
    for name, tensor in merged.items():
        expected = {0.0: ta[name], 1.0: tb[name]}.get(t, slerp_reference(ta[name], tb[name], t).float())
        torch.testing.assert_close(tensor, expected, atol=1e-6, rtol=0, msg=name)


def test_ties_matches_sign_election_and_disjoint_mean(ckpt, tmp_path):
    names, weights = ["a", "b", "c"], [0.2, 0.3, 0.5]
    merge_checkpoints([ckpt[n] for n in names], weights, tmp_path / "out", "ties", base_model=ckpt["base"], density=1.0)
    merged, base, models = tensors(tmp_path / "out"), tensors(ckpt["base"]), [tensors(ckpt[n]) for n in names]
    for name, tensor in merged.items():
        expected = ties_reference(base[name], [m[name] for m in models], weights).float()
        torch.testing.assert_close(tensor, expected, atol=1e-6, rtol=0, msg=name)


def test_dare_ties_is_deterministic_for_a_seed(ckpt, tmp_path):
    def run(seed: int, out: str) -> dict[str, torch.Tensor]:
        merge_checkpoints([ckpt["a"], ckpt["b"]], [0.5, 0.5], tmp_path / out, "dare_ties",
                          base_model=ckpt["base"], density=0.5, seed=seed)
        return tensors(tmp_path / out)

    first, again, other = run(0, "first"), run(0, "again"), run(1, "other")
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


@pytest.mark.parametrize(
    "bad, message",
    [
        ("wide", r"model\.layers\.0\.mlp\.down_proj\.weight: shape \[32, 64\] in .*/a vs \[32, 96\] in .*/wide"),
        ("nan", rf"NaN in tensor {NAN_TENSOR} of .*/nan"),
        ("other_tokenizer", r"tokenizer differs: .*/a vs .*/other_tokenizer"),
        ("no_config", r"missing files: config\.json in .*/no_config"),
    ],
)
def test_refused_merges_write_nothing(ckpt, tmp_path, bad, message):
    out = tmp_path / "merged"
    with pytest.raises(MergeError, match=message):
        merge_checkpoints([ckpt["a"], ckpt[bad]], [0.5, 0.5], out)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("method", ["ties", "dare_ties"])
def test_nan_inputs_are_refused_by_methods_that_could_mask_them(ckpt, tmp_path, method):
    """Linear merges find a NaN input through their result (NaN × w is NaN); sign election or drop-out could hide one."""
    with pytest.raises(MergeError, match=rf"NaN in tensor {NAN_TENSOR} of .*/nan"):
        merge_checkpoints([ckpt["a"], ckpt["nan"]], [0.5, 0.5], tmp_path / "merged", method, base_model=ckpt["base"])
    assert list(tmp_path.iterdir()) == []


def test_a_failed_merge_leaves_the_previous_result(ckpt, tmp_path, monkeypatch):
    out = tmp_path / "merged"
    merge_checkpoints([ckpt["a"], ckpt["b"]], [0.5, 0.5], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(mergekit.merge, "run_merge", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        merge_checkpoints([ckpt["a"], ckpt["c"]], [0.5, 0.5], out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["merged"]


@pytest.mark.parametrize("method", METHODS)
def test_recipe_file_is_the_mergekit_config(ckpt, tmp_path, method):
    base = ckpt["base"] if method in ("ties", "dare_ties") else None
    recipe = merge_checkpoints([ckpt["a"], ckpt["b"]], [1, 2], tmp_path / "out", method, base_model=base)
    written = yaml.safe_load((tmp_path / "out" / RECIPE_FILE).read_text())
    assert written == recipe and written["merge_method"] == method
    config = MergeConfiguration.model_validate(written)
    assert all(Path(str(ref.model.path)).is_absolute() for ref in config.referenced_models())
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"] == "llama"
    AutoModelForCausalLM.from_pretrained(tmp_path / "out")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "average"}, "unknown merge method"),
        ({"weights": [1.0]}, "1 weights for 2 models"),
        ({"weights": [1.0, -1.0]}, "non-negative"),
        ({"weights": [0.0, 0.0]}, "not all zero"),
        ({"models": ["/m/a", "/m/a"]}, "duplicate models"),
        ({"base_model": "/m/base"}, "linear merge takes no base_model"),
        ({"models": ["/m/a", "/m/b", "/m/c"], "weights": [1, 1, 1], "method": "slerp"}, "exactly 2 models"),
        ({"method": "slerp", "slerp_t": 1.5}, r"slerp_t must be in \[0, 1\]"),
        ({"method": "slerp", "base_model": "/m/b"}, "base_model must be None or models"),
        ({"method": "ties"}, "ties needs base_model"),
        ({"method": "dare_ties", "base_model": "/m/a"}, "must not also be one of the models"),
        ({"method": "ties", "base_model": "/m/base", "density": 0.0}, r"density must be in \(0, 1\]"),
        ({"dtype": "int8"}, "unknown dtype"),
        ({"models": ["/m/a@main", "/m/b"]}, "revision"),
    ],
)
def test_recipe_rejects_bad_arguments(kwargs, message):
    args = {"models": ["/m/a", "/m/b"], "weights": [1.0, 1.0]} | kwargs
    with pytest.raises(ValueError, match=message):
        merge_recipe(args.pop("models"), args.pop("weights"), **args)
