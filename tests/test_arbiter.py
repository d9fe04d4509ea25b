"""The arbiter's two kinds of reward model: a sequence classifier's scalar, and a causal LM's mean log-probability of
the answer turn (the tiny profile's built reward model), on the project's tiny Llamas and the real-architecture zoo."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from conftest import always_says, tiny_llama
from transformers import AutoModelForCausalLM, AutoTokenizer
from zoo_models import ZOO, build_tokenizer, save_model, seed_texts

from aya_assets.arbitrage.arbiter import Arbiter, RewardModelError, reward_kind
from aya_assets.checkpoints.io import Checkpoint

PROMPTS = ["Schreibe 347 in Worten.", "hello world, how are you today?", "привет мир, как дела?"]
ANSWERS = ["dreihundertsiebenundvierzig", "bonjour le monde", "как дела? привет мир, как дела? привет"]


def by_hand(path, prompt: str, answer: str) -> float:
    """The mean log-probability of the answer turn's tokens, one conversation at a time, with no padding."""
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path).eval()
    head = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=True, return_dict=True,
                                         add_generation_prompt=True)["input_ids"]
    ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
                                        tokenize=True, return_dict=True)["input_ids"]
    assert ids[: len(head)] == head
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, :-1], -1)
    return logp[torch.arange(len(head) - 1, len(ids) - 1), torch.tensor(ids[len(head):])].mean().item()


def test_causal_lm_reward_is_the_answer_turns_mean_log_probability(tiny_tokenizer, tmp_path):
    path = tiny_llama(tmp_path / "lm", tiny_tokenizer, seed=1, max_position_embeddings=256)
    checkpoint = Checkpoint(str(path))
    assert reward_kind(checkpoint) == "likelihood"
    # Batches of two over three conversations of different lengths: padding changes nothing.
    rewards = Arbiter(batch_size=2, device="cpu").rewards(checkpoint, PROMPTS, ANSWERS)
    expected = [by_hand(path, p, a) for p, a in zip(PROMPTS, ANSWERS)]
    assert rewards == pytest.approx(expected, abs=1e-4)
    assert all(r < 0 for r in rewards)


def test_causal_lm_reward_prefers_what_the_model_would_say(tiny_tokenizer, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer)
    said = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(" hello")[0])
    path = tiny_llama(tmp_path / "says", tokenizer, edit=always_says(said), max_position_embeddings=256)
    word = tokenizer.decode([said])
    rewards = Arbiter(device="cpu").rewards(Checkpoint(str(path)), ["Say it."] * 3,
                                            [word * 8, word * 2, "bonjour le monde"])
    assert rewards[0] > rewards[1] > rewards[2]  # every answer pays for the end-of-turn token it does not predict


def test_a_conversation_past_max_length_loses_prompt_tokens_not_the_answer(tiny_tokenizer, tmp_path):
    path = tiny_llama(tmp_path / "lm", tiny_tokenizer, seed=2, max_position_embeddings=256)
    long_prompt = "hello world, how are you today? " * 12
    cut, whole = (Arbiter(device="cpu", max_length=n).rewards(Checkpoint(str(path)), [long_prompt], ["bonjour"])[0]
                  for n in (16, 256))
    assert math.isfinite(cut) and math.isfinite(whole) and cut != whole  # scored on fewer prompt tokens, still scored


@pytest.fixture(scope="module")
def zoo_lms(tmp_path_factory):
    """The zoo's causal LMs (every real family), and its sequence-classification reward model, each with its own
    tokenizer and chat template."""
    root, texts = tmp_path_factory.mktemp("arbiter_zoo"), seed_texts()
    names = ["aya_expanse", "qwen2_5", "llama3_1", "gemma2", "weak_english", "reward_model"]
    return {name: save_model(name, ZOO[name], build_tokenizer(texts, ZOO[name].fmt, ZOO[name].vocab, root / name),
                             root / name, seed) for seed, name in enumerate(names)}


@pytest.mark.parametrize("name", ["aya_expanse", "qwen2_5", "llama3_1", "gemma2", "weak_english"])
def test_a_configured_causal_lm_scores_by_likelihood_with_its_own_chat_template(zoo_lms, name):
    checkpoint = Checkpoint(str(zoo_lms[name]))
    assert reward_kind(checkpoint) == "likelihood"
    rewards = Arbiter(batch_size=2, device="cpu").rewards(checkpoint, PROMPTS, ANSWERS)
    assert rewards == pytest.approx([by_hand(zoo_lms[name], p, a) for p, a in zip(PROMPTS, ANSWERS)], abs=1e-4)


def test_a_configured_classifier_scores_with_its_head(zoo_lms):
    checkpoint = Checkpoint(str(zoo_lms["reward_model"]))
    assert reward_kind(checkpoint) == "classifier"
    rewards = Arbiter(device="cpu").rewards(checkpoint, PROMPTS, ANSWERS)
    assert len(set(rewards)) == 3 and all(math.isfinite(r) for r in rewards)


def test_a_checkpoint_of_neither_kind_is_named_with_what_to_change(zoo_lms, tmp_path):
    bare = shutil.copytree(zoo_lms["llama3_1"], tmp_path / "bare")
    config = json.loads((bare / "config.json").read_text())
    (bare / "config.json").write_text(json.dumps(config | {"architectures": ["LlamaModel"]}))
    with pytest.raises(RewardModelError, match=r"bare: config\.json's architectures \['LlamaModel'\] name neither a "
                                               r"sequence classifier .* point models\.reward_model\.path at one"):
        Arbiter(device="cpu").rewards(Checkpoint(str(bare)), PROMPTS, ANSWERS)


def test_scores_are_read_back_from_the_cache_until_a_row_or_the_model_changes(tiny_tokenizer, tmp_path, monkeypatch):
    import polars as pl

    model = Checkpoint(str(tiny_llama(tmp_path / "lm", tiny_tokenizer, seed=1, max_position_embeddings=256)))
    frame = pl.DataFrame({"prompt": PROMPTS, "completion": ANSWERS, "language": ["de", "en", "ru"]})
    arbiter, cache = Arbiter(device="cpu"), tmp_path / "cache"
    first = arbiter.score(frame, model, cache=cache)
    assert first.select("prompt", "completion", "language").equals(frame)  # rows stay in their order
    uncached = arbiter.score(frame, model)  # what the cache holds is what scoring gives (batched per language there)
    assert first["reward"].to_list() == pytest.approx(uncached["reward"].to_list(), abs=1e-5)
    assert sorted(p.parent.name for p in cache.glob("*/*.parquet")) == ["de", "en", "ru"]  # one entry per language

    def no_model(*args, **kwargs):
        raise AssertionError("scored again")

    with monkeypatch.context() as patched:
        patched.setattr(Arbiter, "rewards", no_model)
        assert arbiter.score(frame, model, cache=cache).equals(first)
        with pytest.raises(AssertionError, match="scored again"):
            arbiter.score(frame.with_columns(completion=pl.Series(["dreihundert", *ANSWERS[1:]])), model, cache=cache)
        with pytest.raises(AssertionError, match="scored again"):
            Arbiter(device="cpu", language_weight=0.5).score(frame, model, cache=cache)
        # A range of languages reads back each language's entry, whichever run wrote it.
        assert arbiter.score(frame[1:], model, cache=cache).equals(first[1:])

    changed = arbiter.score(frame.with_columns(completion=pl.Series(["dreihundert", *ANSWERS[1:]])), model, cache=cache)
    assert changed["reward"][1:].equals(first["reward"][1:]) and changed["reward"][0] != first["reward"][0]
    assert len(list(cache.glob("de/*.parquet"))) == 1  # German's older entry is gone
