"""Inputs the model benchmarks share: seed prompts, a tokenizer trained on them and a tiny random Llama."""

from __future__ import annotations

import json
from pathlib import Path

from aya_assets.paths import PACKAGE_ROOT

SEED_PROMPTS = PACKAGE_ROOT / "data" / "seed" / "prompts"


def seed_rows() -> list[dict]:
    """Every bundled seed prompt (text, reference, ...), all languages, in file order."""
    return [json.loads(line) for path in sorted(SEED_PROMPTS.glob("*.jsonl")) for line in path.read_text().splitlines() if line]


def tokenizer(out: Path) -> Path:
    """The tiny profile's byte-level BPE, trained on the seed prompts and references, saved in `out`."""
    from aya_assets.models.tokenizer import train_tokenizer

    train_tokenizer([text for row in seed_rows() for text in (row["text"], row["reference"])], out)
    return out


def tiny_model(out: Path) -> Path:
    """A randomly initialised Llama of the tiny profile's shape, saved with its tokenizer in `out`."""
    from transformers import AutoTokenizer, GenerationConfig, LlamaForCausalLM, set_seed

    from aya_assets.training.scratch import llama_config
    from aya_assets.training.settings import TinyArchitecture

    tok = AutoTokenizer.from_pretrained(tokenizer(out))
    set_seed(0)
    model = LlamaForCausalLM(llama_config(TinyArchitecture(), tok))
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id)
    model.save_pretrained(out)
    return out
