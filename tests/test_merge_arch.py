"""Merging tiny random checkpoints of the gpu profile's architectures with mergekit: Cohere with and without qk-norm,
Qwen2, Llama, Gemma2, tied and untied lm_head; and the sanity check refusing, before mergekit runs, what it would reject."""

import shutil
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from aya_assets.merge.merging import METHODS, MergeError, merge_checkpoints, sanity_check
from aya_assets.models.tokenizer import train_tokenizer

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
             max_position_embeddings=64)
# name: (config class, model class, extra config); Aya Expanse and Aya 23 are Cohere without qk-norm, tied.
ARCHITECTURES = {
    "cohere": ("CohereConfig", "CohereForCausalLM", {"use_qk_norm": False}),
    "cohere_qk_norm": ("CohereConfig", "CohereForCausalLM", {"use_qk_norm": True}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {"tie_word_embeddings": False}),
    "qwen2_tied": ("Qwen2Config", "Qwen2ForCausalLM", {"tie_word_embeddings": True}),
    "llama": ("LlamaConfig", "LlamaForCausalLM", {"tie_word_embeddings": False}),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", {"head_dim": 16}),
}
QK_NORM = "model.layers.0.self_attn.q_norm.weight"


def save_model(path: Path, tokenizer, arch: str, seed: int) -> Path:
    """A tiny random checkpoint of `arch`: one shared init (the common ancestor) plus seed-specific noise on every tensor."""
    config_name, model_name, extra = ARCHITECTURES[arch]
    config = getattr(transformers, config_name)(**SMALL, **extra, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = getattr(transformers, model_name)(config)
    noise = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=noise))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> dict[str, dict[str, Path]]:
    """Per architecture: a common ancestor `base` and two descendants `a`, `b`."""
    root = tmp_path_factory.mktemp("arch")
    tokenizer = train_tokenizer(["hello world, bonjour le monde, hola mundo, hallo welt"] * 8, root / "tokenizer", vocab_size=300)
    return {arch: {role: save_model(root / arch / role, tokenizer, arch, seed) for role, seed in (("base", 0), ("a", 1), ("b", 2))}
            for arch in ARCHITECTURES}


def assert_loads_finite(out: Path, arch: str) -> None:
    model = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert type(model).__name__ == ARCHITECTURES[arch][1]
    for name, param in model.state_dict().items():
        assert torch.isfinite(param).all(), name
    assert torch.isfinite(model(torch.tensor([[1, 2, 3]])).logits).all()


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_linear_merge_of_each_architecture_loads_with_the_merged_weights(zoo, tmp_path, arch):
    a, b = zoo[arch]["a"], zoo[arch]["b"]
    merge_checkpoints([a, b], [1, 1], tmp_path / "out")
    merged, ta, tb = (load_file(p / "model.safetensors") for p in (tmp_path / "out", a, b))
    assert merged.keys() == ta.keys()  # mergekit dropped no tensor, and lm_head stays tied where it was
    for name, tensor in merged.items():
        torch.testing.assert_close(tensor, (ta[name] + tb[name]) / 2, atol=1e-6, rtol=0, msg=name)
    assert_loads_finite(tmp_path / "out", arch)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "linear"])
def test_every_method_merges_cohere_without_qk_norm(zoo, tmp_path, method):
    models = zoo["cohere"]
    merge_checkpoints([models["a"], models["b"]], [0.5, 0.5], tmp_path / "out", method,
                      base_model=models["base"] if method in ("ties", "dare_ties") else None)
    assert_loads_finite(tmp_path / "out", "cohere")


def rewrite(src: Path, dst: Path, change) -> Path:
    """A copy of checkpoint `src` whose tensors `change` edited in place."""
    shutil.copytree(src, dst)
    state = load_file(dst / "model.safetensors")
    change(state)
    save_file(state, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def test_sanity_check_names_a_tensor_mergekit_requires_before_it_runs(zoo, tmp_path, monkeypatch):
    import mergekit.merge

    # Both inputs lack q_norm although their config.json says use_qk_norm: true.
    a, b = (rewrite(zoo["cohere_qk_norm"][r], tmp_path / r, lambda s: s.pop(QK_NORM)) for r in ("a", "b"))
    monkeypatch.setattr(mergekit.merge, "run_merge", lambda *a, **k: pytest.fail("mergekit ran"))
    with pytest.raises(MergeError, match=rf"{a}: mergekit's CohereForCausalLM definition requires tensor {QK_NORM}"):
        merge_checkpoints([a, b], [1, 1], tmp_path / "out")


def test_sanity_check_names_a_tensor_mergekit_would_drop(zoo, tmp_path):
    extra = "model.layers.0.self_attn.extra_gate.weight"
    a, b = (rewrite(zoo["qwen2"][r], tmp_path / r, lambda s: s.update({extra: torch.ones(4)})) for r in ("a", "b"))
    with pytest.raises(MergeError, match=rf"tensor {extra} is not in mergekit's Qwen2ForCausalLM definition"):
        sanity_check([a, b])
