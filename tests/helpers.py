"""Checkpoints the tests share: tiny Llamas built on the spot, and broken variants of them."""

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM

from aya_assets.models.tokenizer import train_tokenizer

TEXTS = [
    "hello world, how are you today? bonjour le monde, comment allez-vous? hola mundo, ¿cómo estás?",
    "hallo welt, wie geht es dir? ciao mondo, come stai? olá mundo, como vai? привет мир, как дела?",
    "γειά σου κόσμε, τι κάνεις; مرحبا بالعالم، كيف حالك؟ नमस्ते दुनिया, आप कैसे हैं? こんにちは世界、元気ですか？",
] * 4
OTHER_TEXTS = ["the quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs."] * 8
NAN_TENSOR = "model.layers.1.self_attn.v_proj.weight"


def save_llama(path: Path, tokenizer, seed: int, *, tie: bool = False, intermediate_size: int = 64,
               vocab_size: int | None = None) -> Path:
    """A tiny Llama: one shared random init (the common ancestor) plus seed-specific noise on every tensor."""
    config = LlamaConfig(vocab_size=vocab_size or len(tokenizer), hidden_size=32, intermediate_size=intermediate_size, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=tie,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    noise = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        # Noise on the norms too, so that no tensor is trivially identical (all ones) across checkpoints.
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=noise))
    model.generation_config.max_new_tokens = 7
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_checkpoints(root: Path) -> dict[str, Path]:
    """Checkpoints by role: a common ancestor, three descendants, two tied-embedding ones, and broken variants of `a`."""
    tokenizer = train_tokenizer(TEXTS, root / "tokenizer", vocab_size=600)
    out = {name: save_llama(root / name, tokenizer, seed) for name, seed in (("base", 0), ("a", 1), ("b", 2), ("c", 3))}
    out |= {f"tied_{name}": save_llama(root / f"tied_{name}", tokenizer, seed, tie=True) for name, seed in (("a", 1), ("b", 2))}
    out["wide"] = save_llama(root / "wide", tokenizer, 4, intermediate_size=96)

    out["nan"] = Path(shutil.copytree(out["a"], root / "nan"))
    state = load_file(out["nan"] / "model.safetensors")
    state[NAN_TENSOR][1, 2] = float("nan")
    save_file(state, out["nan"] / "model.safetensors", metadata={"format": "pt"})

    out["other_tokenizer"] = Path(shutil.copytree(out["a"], root / "other_tokenizer"))
    train_tokenizer(OTHER_TEXTS, out["other_tokenizer"], vocab_size=600)

    out["no_config"] = Path(shutil.copytree(out["a"], root / "no_config"))
    (out["no_config"] / "config.json").unlink()

    # Weights of another shape than the checkpoint's own config.json says (a's config, wide's weights).
    out["wrong_shapes"] = Path(shutil.copytree(out["a"], root / "wrong_shapes"))
    shutil.copy2(out["wide"] / "model.safetensors", out["wrong_shapes"] / "model.safetensors")
    # A tokenizer with more tokens than the embeddings have rows.
    out["small_vocab"] = save_llama(root / "small_vocab", tokenizer, 5, vocab_size=len(tokenizer) - 40)
    return out
