import os

os.environ["HF_HUB_OFFLINE"] = "1"  # no test may reach a hub
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import shutil  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import dagster as dg  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402


@pytest.fixture
def aya_home(tmp_path, monkeypatch) -> Path:
    """A fresh data/ root for one test: warehouse, models and catalog all land under tmp_path."""
    monkeypatch.setenv("AYA_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run the tiny models on one thread: they gain nothing from more, and on a busy CPU extra threads stall."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster").mkdir(exist_ok=True)
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as inst:
        yield inst


def merge(base: dict, overrides: dict) -> dict:
    """Deep merge: nested mappings are merged key by key, anything else replaced."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# The tiny profile shrunk further so that the whole graph trains and generates in seconds in tests.
FAST = {
    # 20 numbers instead of 400 (6 held out per language), beside the whole bundled free-text set.
    "prompts": {"sources": [{"kind": "number_words", "numbers": [0, 999], "count": 20, "eval_fraction": 0.3},
                            {"kind": "seed", "path": "data/seed/prompts"}]},
    "models": {
        "tokenizer_vocab": 600,
        "architecture": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "max_positions": 160},
        "teacher_training": {"steps": 12, "learning_rate": 0.005, "batch_size": 8},
        "student_training": {"steps": 6, "learning_rate": 0.005, "batch_size": 8},
        "reward_training": {"steps": 12, "learning_rate": 0.002, "batch_size": 8},
    },
    "generation": {"samples": 2, "max_new_tokens": 6, "batch_size": 64},
    "training": {"sft": {"steps": 6, "learning_rate": 0.005, "batch_size": 8},
                 "dpo": {"steps": 4, "learning_rate": 0.001, "batch_size": 8}},
    "online": {"rounds": 1, "samples": 2},
    "evaluation": {"bootstrap_resamples": 200},
    "safety": {"sft": {"steps": 6, "learning_rate": 0.005, "batch_size": 8},
               "dpo": {"steps": 4, "learning_rate": 0.001, "batch_size": 8}, "sweep": [0.0, 0.5, 1.0]},
}


@pytest.fixture
def write_profile(tmp_path):
    """Write a profile YAML built from the tiny one with (deep-merged) overrides; returns its path."""

    def _write(**overrides) -> str:
        base = merge(yaml.safe_load((Path(__file__).parents[1] / "resources" / "tiny.yaml").read_text()), overrides)
        path = tmp_path / f"profile_{len(list(tmp_path.glob('profile_*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump(base, allow_unicode=True, sort_keys=False))
        return str(path)

    return _write


@pytest.fixture
def fast_profile(write_profile) -> str:
    return write_profile(**FAST)


def pytest_collection_modifyitems(config, items):
    """Tests marked gpu need a CUDA device: skip them where torch sees none."""
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if gpu:
        import torch

        if not torch.cuda.is_available():
            for item in gpu:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


# --- tiny checkpoints: one builder, and the session's shared checkpoints built with it ------------------------------

# A tiny Llama: small enough that building one costs a fraction of a second, large enough for two layers to merge.
TINY_LLAMA = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                  max_position_embeddings=64, tie_word_embeddings=False)
# The trained ones (TinyArchitecture, as train_causal_lm builds them): one layer, a context that fits every seed answer.
TRAINED_ARCH = dict(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_positions=256)


def tiny_llama(out: Path, tokenizer, *, seed: int | None = None, reward: bool = False,
               edit: Callable | None = None, **config) -> Path:
    """A random tiny Llama saved with its tokenizer (an object or a directory); returns `out`.

    The weights are torch seed 0's, the common ancestor of every checkpoint built here; `seed` adds that seed's noise to
    every tensor (norms too, so no tensor is trivially equal across checkpoints). `reward`: a one-label
    sequence-classification head instead of the LM head. `edit(model)` rewrites weights before saving. `config`
    overrides TINY_LLAMA or any LlamaConfig field.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    if isinstance(tokenizer, (str, Path)):
        tokenizer = AutoTokenizer.from_pretrained(tokenizer)
    ids = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    torch.manual_seed(0)
    if reward:
        model = LlamaForSequenceClassification(LlamaConfig(**(TINY_LLAMA | ids | {"num_labels": 1} | config)))
    else:
        model = LlamaForCausalLM(LlamaConfig(**(TINY_LLAMA | ids | config)))
        model.generation_config.max_new_tokens = 7  # not the default, so tests can see it carried through
    with torch.no_grad():
        if seed is not None:
            noise = torch.Generator().manual_seed(seed)
            for param in model.parameters():
                param.add_(0.05 * torch.randn(param.shape, generator=noise))
        if edit is not None:
            edit(model)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def always_says(token_id: int) -> Callable:
    """An edit for tiny_llama: the model answers anything with `token_id`, over and over.

    Every embedding is the same and every layer adds nothing to the residual stream, so the last hidden state is the
    same at every position, and the head, zero but for the token's row, always picks that token.
    """

    def edit(model) -> None:
        model.model.embed_tokens.weight.fill_(1.0)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        model.lm_head.weight[token_id] = 1.0

    return edit


def never_says(token_ids: list[int]) -> Callable:
    """An edit for tiny_llama: the model never picks greedily any of `token_ids` (the special tokens, say).

    Every other row of the head is mirrored into its neighbour's, so one of each pair scores >= 0, while those tokens
    score 0.
    """

    def edit(model) -> None:
        import torch

        head = model.lm_head.weight
        ordinary = torch.tensor([i for i in range(head.shape[0]) if i not in set(token_ids)])
        ordinary = ordinary[: len(ordinary) - len(ordinary) % 2]
        head[ordinary[1::2]] = -head[ordinary[::2]]
        head[token_ids] = 0

    return edit


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory) -> Path:
    """The project's byte-level BPE (600 tokens) trained on helpers.TEXTS: the tokenizer of the random checkpoints."""
    from helpers import TEXTS

    from aya_assets.models.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("tiny_tokenizer")
    train_tokenizer(TEXTS, out, vocab_size=600)
    return out


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory, tiny_tokenizer) -> dict[str, Path]:
    """Random tiny Llamas by role, for merges and checkpoint checks: a common ancestor, three descendants, two
    tied-embedding ones, a wider one, and broken variants of `a`."""
    from helpers import NAN_TENSOR, OTHER_TEXTS
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    from aya_assets.models.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("ckpt")
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer)
    out = {name: tiny_llama(root / name, tokenizer, seed=seed) for name, seed in (("base", 0), ("a", 1), ("b", 2), ("c", 3))}
    out |= {f"tied_{name}": tiny_llama(root / f"tied_{name}", tokenizer, seed=seed, tie_word_embeddings=True)
            for name, seed in (("a", 1), ("b", 2))}
    out["wide"] = tiny_llama(root / "wide", tokenizer, seed=4, intermediate_size=96)

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
    out["small_vocab"] = tiny_llama(root / "small_vocab", tokenizer, seed=5, vocab_size=len(tokenizer) - 40)
    return out


@pytest.fixture(scope="session")
def chat_checkpoints(tmp_path_factory, tiny_tokenizer) -> dict[str, str]:
    """Three random tiny chat Llamas sharing one tokenizer, for generation: `random`, `never_eos` (no special token is
    ever greedily picked, so no answer stops) and `only_eos` (every answer is the EOS alone)."""
    from transformers import AutoTokenizer

    from aya_assets.models.tokenizer import SPECIAL_TOKENS

    root = tmp_path_factory.mktemp("chat")
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer)
    # Peaked logits, so greedy choices are not near-ties that rounding (or padding) could flip.
    generating = dict(num_attention_heads=4, max_position_embeddings=256, initializer_range=0.2)
    edits = {"random": None, "never_eos": never_says(tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS)),
             "only_eos": always_says(tokenizer.eos_token_id)}
    return {name: str(tiny_llama(root / name, tokenizer, edit=edit, **generating)) for name, edit in edits.items()}


@pytest.fixture(scope="session")
def seed_prompts():
    """The bundled seed prompts of every language, both splits."""
    from aya_assets.languages import LANGUAGE_CODES
    from aya_assets.profile import PromptsConfig
    from aya_assets.prompts.sources import load_prompts

    return load_prompts(PromptsConfig.model_validate({"sources": [{"kind": "seed"}]}), LANGUAGE_CODES)


@pytest.fixture(scope="session")
def seed_tokenizer(tmp_path_factory, seed_prompts) -> Path:
    """The project's byte-level BPE (600 tokens) trained on the seed prompts and references: the trained models'."""
    from aya_assets.models.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("seed_tokenizer")
    train_tokenizer(seed_prompts["text"].to_list() + seed_prompts["reference"].to_list(), out, vocab_size=600)
    return out


def seed_conversations(rows) -> list[list[dict]]:
    """Seed prompt rows as user/assistant conversations, the reference as the answer."""
    return [[{"role": "user", "content": text}, {"role": "assistant", "content": reference}]
            for text, reference in rows.select("text", "reference").iter_rows()]


def seed_rows(prompts, languages: tuple[str, ...], split: str | None = None):
    """The seed prompts of `languages` (in that order), of one split or (None) both."""
    import polars as pl

    chosen = pl.concat([prompts.filter(pl.col("language") == lang) for lang in languages])
    return chosen if split is None else chosen.filter(pl.col("split") == split)


@pytest.fixture(scope="session")
def trained_lm(tmp_path_factory, seed_prompts, seed_tokenizer) -> Callable[..., Path]:
    """A factory: a tiny Llama trained from scratch (train_causal_lm) for `steps` on the seed answers of `languages`
    (of one `split` or both); built once per session for each set of arguments, each alone in its own directory."""
    from aya_assets.training.scratch import train_causal_lm
    from aya_assets.training.settings import TinyArchitecture, TrainSettings

    built: dict[tuple, Path] = {}

    def build(languages: tuple[str, ...], steps: int, split: str | None = None) -> Path:
        key = (tuple(languages), steps, split)
        if key not in built:
            out = tmp_path_factory.mktemp("lm_" + "_".join(languages)) / "model"
            conversations = seed_conversations(seed_rows(seed_prompts, languages, split))
            train_causal_lm(seed_tokenizer, conversations, out, TinyArchitecture(**TRAINED_ARCH),
                            TrainSettings(steps=steps, learning_rate=5e-3, batch_size=8))
            built[key] = out
        return built[key]

    return build


@pytest.fixture(scope="session")
def dpo_start(trained_lm, seed_prompts) -> tuple[Path, list[dict]]:
    """A tiny SFT checkpoint on the 24 German seed answers; 24 pairs: the seed reference chosen, a Russian answer
    rejected (the kind of rejected completion the arbiter and the translation-contrast pairs produce)."""
    import polars as pl

    from aya_assets.training.dpo import preference_rows

    answered = seed_rows(seed_prompts, ("de",))
    russian = seed_rows(seed_prompts, ("ru",))["reference"]
    frame = pl.DataFrame({"prompt": answered["text"], "chosen": answered["reference"], "rejected": russian})
    return trained_lm(("de",), steps=10), preference_rows(frame)
