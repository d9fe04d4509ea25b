"""The tiny-profile model builders: checkpoint directories, tokenizer, training mixture, reward pairs, real training."""

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
import torch
import yaml
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from helpers import NAN_TENSOR

from aya_assets.languages import LANGUAGE_CODES
from aya_assets.checkpoints.files import CheckpointError, atomic_dir, check_checkpoint, content_hash, write_model_card
from aya_assets.models.data import CYCLE, KINDS, clip, reward_pairs, to_conversational
from aya_assets.models.data import mixture
from aya_assets.training.scratch import train_causal_lm, train_reward_model
from aya_assets.training.settings import TinyArchitecture, TrainSettings
from aya_assets.models.tokenizer import train_tokenizer
from aya_assets.profile import PromptsConfig
from aya_assets.prompts.sources import load_prompts


@pytest.fixture(scope="module")
def prompts() -> pl.DataFrame:
    return load_prompts(PromptsConfig.model_validate({"sources": [{"kind": "seed"}]}), LANGUAGE_CODES)


@pytest.fixture(scope="module")
def tokenizer_dir(prompts, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(prompts["text"].to_list() + prompts["reference"].to_list(), out)
    return out


def conversations(rows: pl.DataFrame) -> list[list[dict]]:
    return [
        [{"role": "user", "content": text}, {"role": "assistant", "content": reference}]
        for text, reference in rows.select("text", "reference").iter_rows()
    ]


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


# --- checkpoint directories -------------------------------------------------------------------------------------


def test_atomic_dir_replaces_the_old_directory_on_success(tmp_path):
    final = tmp_path / "model"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with atomic_dir(final) as tmp:
        assert tmp.parent == final.parent and tmp.name.startswith(".model.") and tmp.name.endswith(".tmp")
        (tmp / "new.txt").write_text("new")
        assert (final / "old.txt").exists()  # nothing changes at `final` until the block ends
    assert [p.name for p in final.iterdir()] == ["new.txt"]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("existed", [True, False])
def test_atomic_dir_leaves_nothing_half_written_on_error(tmp_path, existed):
    final = tmp_path / "model"
    if existed:
        final.mkdir()
        (final / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="training failed"):
        with atomic_dir(final) as tmp:
            (tmp / "half.safetensors").write_bytes(b"partial")
            raise RuntimeError("training failed")
    assert leftovers(tmp_path) == []
    if existed:
        assert [p.name for p in final.iterdir()] == ["old.txt"]
    else:
        assert not final.exists()


def write_checkpoint(path: Path, shape=(4, 2)) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (path / "tokenizer.json").write_text("{}")
    save_file({"weight": torch.zeros(shape)}, path / "model.safetensors")
    return path


def test_content_hash_is_stable_and_tracks_weights_and_files(tmp_path):
    a = write_checkpoint(tmp_path / "a")
    digest = content_hash(a)
    assert digest == content_hash(a) == content_hash(write_checkpoint(tmp_path / "b"))  # location does not count
    assert content_hash(write_checkpoint(tmp_path / "reshaped", shape=(2, 4))) != digest
    # Retrained in place, same shapes: a new hash, or shards and merges keyed on it would be reused stale.
    retrained = write_checkpoint(tmp_path / "retrained")
    save_file({"weight": torch.ones(4, 2)}, retrained / "model.safetensors")
    assert content_hash(retrained) != digest
    (a / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    assert content_hash(a) != digest
    assert len(content_hash(a / "model.safetensors")) == 64  # a single file hashes too


@pytest.mark.parametrize(
    ("remove", "named"),
    [("config.json", "config.json"), ("model.safetensors", "model.safetensors"), ("tokenizer.json", "tokenizer")],
)
def test_check_checkpoint_names_what_is_missing(ckpt, tmp_path, remove, named):
    path = Path(shutil.copytree(ckpt["a"], tmp_path / "ckpt"))
    check_checkpoint(path)
    (path / remove).unlink()
    with pytest.raises(CheckpointError, match=f"{path}: incomplete checkpoint, missing .*{named}"):
        check_checkpoint(path)


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("wrong_shapes", r"tensor model\.layers\.0\.mlp\.down_proj\.weight has shape \[32, 96\], config\.json implies \[32, 64\]"),
        ("small_vocab", r"the tokenizer has \d+ tokens but the embeddings hold \d+ \(vocabulary mismatch\)"),
        ("nan", rf"NaN in tensor {NAN_TENSOR}"),
    ],
)
def test_check_checkpoint_names_the_inconsistent_tensor(ckpt, broken, message):
    with pytest.raises(CheckpointError, match=message) as err:
        check_checkpoint(ckpt[broken])
    assert str(ckpt[broken]) in str(err.value)


def test_check_checkpoint_rejects_a_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        check_checkpoint(tmp_path / "nowhere")


def test_model_card_names_inputs_and_settings(tmp_path):
    path = write_model_card(
        tmp_path,
        name="teacher_slavic_greek",
        description="tiny Llama teacher",
        inputs={"prompts": "partitions en,de… run 1234abcd", "tokenizer": "run 5678efgh"},
        settings={"training": TrainSettings(steps=3, learning_rate=1e-3, batch_size=2), "focus": ["ru", "uk"]},
    )
    text = path.read_text()
    front_matter = yaml.safe_load(text.split("---")[1])
    assert front_matter == {"library_name": "transformers", "tags": ["aya_assets"]}
    assert "## Made from" in text and "- prompts: partitions en,de… run 1234abcd" in text
    settings = yaml.safe_load(text.split("```yaml")[1].split("```")[0])
    assert settings["training"]["steps"] == 3 and settings["focus"] == ["ru", "uk"]


def test_near_miss_is_the_most_alike_answer_and_eval_pairs_come_from_eval_items(tokenizer):
    numbers = load_prompts(PromptsConfig.model_validate(
        {"sources": [{"kind": "number_words", "count": 60, "languages": ["de"]}]}), ["de"])
    pairs = reward_pairs(numbers, tokenizer, BUDGET, seed=3, per_prompt=len(CYCLE))
    near = pairs.filter(pl.col("kind") == "near_miss")
    off = pairs.filter(pl.col("kind") == "off_topic")
    alike = lambda rows: sum(len(set(a) & set(b)) / len(set(a) | set(b)) for a, b in rows.select("chosen", "rejected").iter_rows())
    assert near.height and alike(near) / near.height > alike(off) / off.height  # harder than a random other answer
    held_out = reward_pairs(numbers, tokenizer, BUDGET, seed=3, split="eval")
    eval_ids = set(numbers.filter(pl.col("split") == "eval")["prompt_id"])
    assert held_out.height and set(held_out["prompt_id"]) <= eval_ids and not set(pairs["prompt_id"]) & eval_ids


# --- tokenizer --------------------------------------------------------------------------------------------------


def test_tokenizer_round_trips_every_language(prompts, tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert set(prompts["language"]) == set(LANGUAGE_CODES)
    for text in prompts["text"].to_list() + prompts["reference"].to_list():
        assert tok.decode(tok(text)["input_ids"]) == text
    unseen = "Ελληνικά, हिन्दी, 日本語 and emoji 🙂 outside the training text"
    assert tok.decode(tok(unseen)["input_ids"]) == unseen  # byte-level: no unknown token


def test_tokenizer_gives_each_digit_its_own_token_and_caps_token_length(tmp_path):
    numbers = load_prompts(PromptsConfig.model_validate({"sources": [{"kind": "number_words", "count": 300}]}), LANGUAGE_CODES)
    texts = numbers["text"].to_list() + numbers["reference"].to_list()
    tok = train_tokenizer(texts, tmp_path / "capped", vocab_size=2048, max_token_length=9)
    assert tok.tokenize("Zahl 347.")[-4:] == ["3", "4", "7", "."]  # any number: digits every train item has
    assert max(len(token) for token in tok.get_vocab() if not token.startswith("<|")) <= 9
    uncapped = train_tokenizer(texts, tmp_path / "uncapped", vocab_size=2048)
    assert len(uncapped.tokenize("dreihundertsiebenundvierzig")) < len(tok.tokenize("dreihundertsiebenundvierzig"))


def test_tokenizer_is_deterministic(prompts, tokenizer_dir, tmp_path):
    train_tokenizer(prompts["text"].to_list() + prompts["reference"].to_list(), tmp_path)
    assert (tmp_path / "tokenizer.json").read_text() == (tokenizer_dir / "tokenizer.json").read_text()


def test_chat_template_marks_the_assistant_turn_and_its_end(tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert (tok.eos_token, tok.pad_token, tok.padding_side) == ("<|end|>", "<|pad|>", "left")
    user = [{"role": "user", "content": "Какое озеро самое глубокое?"}]
    prompt = tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    assert prompt == "<|bos|><|user|>Какое озеро самое глубокое?<|end|><|assistant|>"
    answer = [*user, {"role": "assistant", "content": "Байкал."}]
    encoded = tok.apply_chat_template(answer, return_dict=True, return_assistant_tokens_mask=True)
    trained = [i for i, m in zip(encoded["input_ids"], encoded["assistant_masks"]) if m]
    assert tok.decode(trained) == "Байкал.<|end|>"  # the stop token is trained, the prompt is not
    with pytest.raises(Exception, match="unknown role"):
        tok.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


# --- training data ----------------------------------------------------------------------------------------------


def test_mixture_takes_the_focus_share_and_is_deterministic():
    rows = pl.DataFrame({"language": ["ru"] * 10 + ["ja"] * 30, "i": range(40)})
    mixed = mixture(rows, ["ru"], share=0.75, n=100, seed=3)
    assert mixed.height == 100
    assert (mixed["language"] == "ru").sum() == 75
    per_row = mixed["i"].filter(mixed["language"] == "ru").value_counts()["count"]
    assert sorted(per_row, reverse=True) == [8] * 5 + [7] * 5  # whole copies first: every row about equally often
    assert mixed.equals(mixture(rows, ["ru"], share=0.75, n=100, seed=3))
    assert not mixed.equals(mixture(rows, ["ru"], share=0.75, n=100, seed=4))
    assert mixture(rows, ["ko"], share=0.9, n=12, seed=0)["language"].is_in(["ru", "ja"]).all()


BUDGET = 48  # generation.max_new_tokens


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    return AutoTokenizer.from_pretrained(tokenizer_dir)


def n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False).input_ids)


def letters(text: str) -> list[str]:
    return sorted("".join(text.split()))


def test_clip_cuts_at_the_generation_budget(prompts, tokenizer):
    long = max(prompts["reference"], key=lambda ref: n_tokens(tokenizer, ref))
    assert n_tokens(tokenizer, long) > BUDGET
    cut = clip(long, tokenizer, BUDGET)
    # a prefix can re-tokenize a token or two differently at its end (BPE merges across the cut)
    assert long.startswith(cut) and abs(n_tokens(tokenizer, cut) - BUDGET) <= 2
    assert clip("Kurz.", tokenizer, BUDGET) == "Kurz."


def test_reward_pairs_use_train_references_and_each_kind(prompts, tokenizer):
    pairs = reward_pairs(prompts, tokenizer, BUDGET, seed=7, per_prompt=2 * len(CYCLE))
    train = prompts.filter(pl.col("split") == "train")
    assert set(pairs["prompt_id"]) == set(train["prompt_id"])  # every train prompt, no eval prompt
    assert sorted(pairs["kind"].unique()) == sorted(KINDS)
    assert pairs.group_by("kind").len()["len"].min() >= 1.9 * train.height  # two or more of each (a shuffle may be a no-op)
    eval_references = {clip(ref, tokenizer, BUDGET) for ref in prompts.filter(pl.col("split") == "eval")["reference"]}
    assert not eval_references & (set(pairs["chosen"]) | set(pairs["rejected"]))

    answer_of = {pid: clip(ref, tokenizer, BUDGET) for pid, ref in zip(train["prompt_id"], train["reference"])}
    language_of = {answer: language for answer, language in zip(answer_of.values(), train["language"])}
    changed = {"chosen": 0, "rejected": 0}  # more_garbled: characters moved from where the answer has them
    for row in pairs.iter_rows(named=True):
        kind, chosen, rejected, answer = row["kind"], row["chosen"], row["rejected"], answer_of[row["prompt_id"]]
        assert chosen != rejected
        if kind == "more_garbled":  # both are the answer's letters, the rejected one shuffled more
            assert letters(chosen) == letters(rejected) == letters(answer)
            for side in changed:
                changed[side] += sum(a != b for a, b in zip(row[side], answer))
            continue
        assert chosen == answer and n_tokens(tokenizer, chosen) <= BUDGET + 2
        if kind == "wrong_language":
            assert language_of[rejected] != row["language"]
        elif kind == "off_topic":
            assert language_of[rejected] == row["language"]
        elif kind == "truncated":  # shorter than the budget-length answer, so a full-length answer never loses for length
            assert chosen.startswith(rejected) and n_tokens(tokenizer, rejected) < n_tokens(tokenizer, chosen)
        elif kind == "garbled":  # the same letters, shuffled
            assert letters(rejected) == letters(chosen)
        elif kind == "overlong":  # the answer with more words before or after it (cut to the budget)
            assert len(rejected) > len(answer) or not rejected.startswith(answer)
        elif kind == "near_miss":  # another answer in the same language, the most alike of those drawn
            assert language_of[rejected] == row["language"] and rejected != answer
        else:  # mixed_script: pieces of the answer among pieces of other languages' answers
            assert kind == "mixed_script" and abs(len(rejected) - len(chosen)) < 0.5 * len(chosen) + 20
    assert changed["rejected"] > 1.5 * changed["chosen"]
    assert pairs.equals(reward_pairs(prompts, tokenizer, BUDGET, seed=7, per_prompt=2 * len(CYCLE)))


def test_to_conversational_is_trl_explicit_prompt_format(prompts, tokenizer):
    rows = to_conversational(reward_pairs(prompts.filter(pl.col("language").is_in(["ja", "hi"])), tokenizer, BUDGET, seed=0))
    assert set(rows[0]) == {"prompt", "chosen", "rejected"}
    assert rows[0]["prompt"][0]["role"] == "user" and rows[0]["chosen"][0]["role"] == "assistant"


# --- real training (CPU, a few steps) ---------------------------------------------------------------------------

ARCH = TinyArchitecture(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128)


@pytest.mark.slow
def test_sft_learns_and_writes_a_generating_checkpoint(prompts, tokenizer_dir, tmp_path):
    rows = prompts.filter((pl.col("split") == "train") & pl.col("language").is_in(["ru", "en"]))
    settings = TrainSettings(steps=8, learning_rate=1e-2, batch_size=8, seed=1)
    report = train_causal_lm(tokenizer_dir, conversations(rows), tmp_path / "lm", ARCH, settings)

    assert len(report.losses) == 8 and report.losses[-1] < report.losses[0] - 1.0
    assert report.examples == rows.height and report.parameters > 0
    check_checkpoint(tmp_path / "lm")
    tok = AutoTokenizer.from_pretrained(tmp_path / "lm")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "lm")
    assert model.generation_config.eos_token_id == tok.eos_token_id and model.generation_config.do_sample
    batch = tok.apply_chat_template(
        [[{"role": "user", "content": text}] for text in rows["text"][:2]],
        add_generation_prompt=True,
        padding=True,
        return_dict=True,
        return_tensors="pt",
    )
    generated = model.generate(**batch, max_new_tokens=8, do_sample=False)
    assert generated.shape[1] > batch["input_ids"].shape[1]

    again = train_causal_lm(tokenizer_dir, conversations(rows), tmp_path / "again", ARCH, settings)
    assert again.losses == report.losses  # seeded


@pytest.mark.slow
def test_reward_model_trains_and_scores(prompts, tokenizer_dir, tokenizer, tmp_path):
    pairs = to_conversational(reward_pairs(prompts.filter(pl.col("language").is_in(["ru", "ja", "en"])), tokenizer, BUDGET, seed=0))
    settings = TrainSettings(steps=8, learning_rate=3e-3, batch_size=8)
    report = train_reward_model(tokenizer_dir, pairs, tmp_path / "rm", ARCH, settings)

    assert len(report.losses) == 8 and report.examples == len(pairs)
    check_checkpoint(tmp_path / "rm")
    tok = AutoTokenizer.from_pretrained(tmp_path / "rm")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm")
    assert model.config.num_labels == 1 and model.config.pad_token_id == tok.pad_token_id
    texts = [
        tok.apply_chat_template([*pair["prompt"], *pair["chosen"]], tokenize=False) for pair in pairs[:3]
    ]
    with torch.no_grad():
        batched = model(**tok(texts, padding=True, return_tensors="pt")).logits
        alone = torch.cat([model(**tok(text, return_tensors="pt")).logits for text in texts])
    assert batched.shape == (3, 1) and torch.isfinite(batched).all()
    torch.testing.assert_close(batched, alone, atol=1e-4, rtol=1e-4)  # left padding does not change a score
