"""Cluster SFT data, and SFT of a real-architecture student: the loss mode its chat template allows, the prompt masked,
its generation config kept through SFT, DPO and a merge, and a template SFT cannot use refused up front."""

import math
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, CohereConfig, CohereForCausalLM, GenerationConfig

from aya_assets.merge.merging import merge_checkpoints
from aya_assets.models.assets import build_model_assets
from aya_assets.training.settings import TrainSettings
from aya_assets.models.tokenizer import CHAT_TEMPLATE, train_tokenizer
from aya_assets.profile import load_profile
from aya_assets.artifacts.store import ArtifactStore
from aya_assets.checkpoints.io import CHECKPOINT_IO, CheckpointIOManager
from aya_assets.definitions import configured_checkpoints
from aya_assets.stages import Recipe
from aya_assets.sft.assets import cluster_rows, student_chat_template
from aya_assets.training.dpo import DPOSettings, train_dpo
from aya_assets.training.sft import (
    ASSISTANT_ONLY, COMPLETION_ONLY, ChatTemplateError, loss_mode, sft_trainer, train_sft,
)


def arbitrage(languages, per_language=10):
    return pl.DataFrame({"language": [lang for lang in languages for _ in range(per_language)],
                         "prompt_id": [f"{lang}{i}" for lang in languages for i in range(per_language)]})


def test_replay_zero_keeps_only_the_cluster_languages():
    rows = cluster_rows(arbitrage(["en", "de", "ja", "ar"]), ["en", "de"], 0.0, seed=1)
    assert sorted(set(rows["language"])) == ["de", "en"] and rows.height == 20


def test_replay_adds_a_seeded_share_of_the_other_languages_whatever_their_order():
    data = arbitrage(["en", "de", "ja", "ar"])
    rows = cluster_rows(data, ["en", "de"], 0.5, seed=1)
    assert rows.filter(pl.col("language").is_in(["en", "de"])).height == 20  # own languages in full
    assert rows.filter(pl.col("language").is_in(["ja", "ar"])).height == 10  # half of the other 20
    shuffled = cluster_rows(data.sample(fraction=1.0, shuffle=True, seed=7), ["en", "de"], 0.5, seed=1)
    assert sorted(shuffled["prompt_id"]) == sorted(rows["prompt_id"])
    assert sorted(cluster_rows(data, ["en", "de"], 0.5, seed=2)["prompt_id"]) != sorted(rows["prompt_id"])


# --- SFT of a real-architecture student: a tiny random Cohere whose chat template, like Aya's, has no generation markers.

TURN_TOKENS = ["<|START_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>", "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>"]
COHERE_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}<|START_OF_TURN_TOKEN|><|USER_TOKEN|>{{ message['content'] }}<|END_OF_TURN_TOKEN|>"
    "{% elif message['role'] == 'assistant' %}"
    "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>{{ message['content'] }}<|END_OF_TURN_TOKEN|>"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>{% endif %}"
)
CONVERSATIONS = [
    [{"role": "user", "content": f"hello world {i}, how are you?"}, {"role": "assistant", "content": f"bonjour le monde {i}"}]
    for i in range(8)
]
TRAIN = TrainSettings(steps=2, learning_rate=1e-3, batch_size=4)


def student_tokenizer(root: Path, chat_template: str | None = COHERE_TEMPLATE):
    """A byte-level BPE with Cohere's turn tokens, END_OF_TURN as eos, and `chat_template` in place of the tiny one."""
    tokenizer = train_tokenizer(["hello world, how are you? bonjour le monde"] * 8, root / "tokenizer", vocab_size=300)
    tokenizer.add_special_tokens({"additional_special_tokens": TURN_TOKENS})
    tokenizer.eos_token = "<|END_OF_TURN_TOKEN|>"
    tokenizer.chat_template = chat_template
    return tokenizer


def save_student(path: Path, tokenizer) -> Path:
    """A tiny Cohere without qk-norm (Aya's setting) with its own generation config: two eos ids, sampling settings."""
    config = CohereConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                          intermediate_size=64, max_position_embeddings=128, vocab_size=len(tokenizer), use_qk_norm=False,
                          bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                          pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = CohereForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=True, temperature=0.3, top_p=0.8,
        eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|end|>")], max_new_tokens=5,
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def own_generation(path: Path) -> dict:
    config = GenerationConfig.from_pretrained(path)
    return {"eos_token_id": config.eos_token_id, "temperature": config.temperature, "top_p": config.top_p,
            "do_sample": config.do_sample, "max_new_tokens": config.max_new_tokens}


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("student")
    return save_student(root / "student", student_tokenizer(root))


@pytest.mark.parametrize("template, mode", [(CHAT_TEMPLATE, ASSISTANT_ONLY), (COHERE_TEMPLATE, COMPLETION_ONLY)])
def test_loss_mode_keeps_assistant_only_loss_where_the_template_has_generation_markers(tmp_path, template, mode):
    assert loss_mode(student_tokenizer(tmp_path, template), tmp_path) == mode


@pytest.mark.parametrize("template, problem", [
    (None, "has no chat template"),
    ("{% for m in messages %}{% generation %}{% endgeneration %}{{ m['content'] }}{% endfor %}", "enclose no token"),
    ("{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }}{% endif %}{% endfor %}", "train on no token"),
    ("{{ raise_exception('roles must alternate') }}", "fails on a user/assistant conversation: roles must alternate"),
])
def test_loss_mode_refuses_a_template_sft_cannot_train_with_naming_the_checkpoint(tmp_path, template, problem):
    with pytest.raises(ChatTemplateError, match=rf"^{tmp_path}: .*{problem}"):
        loss_mode(student_tokenizer(tmp_path, template), tmp_path)


@pytest.mark.parametrize("template, end", [(COHERE_TEMPLATE, "<|END_OF_TURN_TOKEN|>"), (CHAT_TEMPLATE, "<|end|>")])
def test_the_loss_covers_the_answer_and_its_end_of_turn_only(tmp_path, template, end):
    student = save_student(tmp_path / "student", student_tokenizer(tmp_path, template))
    tokenizer = AutoTokenizer.from_pretrained(student)
    trainer = sft_trainer(AutoModelForCausalLM.from_pretrained(student), tokenizer, CONVERSATIONS, tmp_path / "out", TRAIN,
                          loss_mode(tokenizer, student))
    row = trainer.train_dataset[0]
    prompt = tokenizer.apply_chat_template(CONVERSATIONS[0][:1], add_generation_prompt=True, return_dict=False)
    assert row["input_ids"] == tokenizer.apply_chat_template(CONVERSATIONS[0], return_dict=False)
    assert row["labels"][: len(prompt)] == [-100] * len(prompt)
    answer = [label for label in row["labels"][len(prompt):] if label != -100]
    assert tokenizer.decode(answer) == "bonjour le monde 0" + end
    batch = trainer.data_collator([row, trainer.train_dataset[1]])  # what a training step sees, padded
    assert batch["labels"][0, : len(row["labels"])].tolist() == row["labels"]
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()


def test_sft_dpo_and_merge_keep_the_students_generation_config(student, tmp_path):
    expected = own_generation(student)
    tokenizer = AutoTokenizer.from_pretrained(student)
    assert expected["eos_token_id"] == [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|end|>")]
    assert (expected["temperature"], expected["top_p"]) == (0.3, 0.8)

    report = train_sft(student, CONVERSATIONS, tmp_path / "sft", TRAIN)
    assert report.losses and all(math.isfinite(loss) for loss in report.losses)
    assert own_generation(tmp_path / "sft") == expected

    pairs = [{"prompt": c[:1], "chosen": c[1:], "rejected": [{"role": "assistant", "content": "hola mundo"}]}
             for c in CONVERSATIONS]
    train_dpo(tmp_path / "sft", pairs, tmp_path / "dpo", DPOSettings(steps=1, learning_rate=1e-3, batch_size=4))
    assert own_generation(tmp_path / "dpo") == expected

    # A merge takes models[0]'s generation config, whatever the others say.
    other = Path(shutil.copytree(tmp_path / "dpo", tmp_path / "other"))
    GenerationConfig.from_pretrained(other, temperature=0.9, top_p=0.5).save_pretrained(other)
    merge_checkpoints([tmp_path / "sft", other], [1, 1], tmp_path / "merged")
    assert own_generation(tmp_path / "merged") == expected


def run_student_base(tmp_path, write_profile, student: Path) -> dg.ExecuteInProcessResult:
    """Materialize the configured student_base (models.build: false) and its checks, as the first run of the graph does."""
    ref = {"name": "student_base", "path": str(student)}
    profile = write_profile(models={"build": False, "teachers": [{"name": "t", "path": str(student)}], "student": ref,
                                    "reward_model": {"name": "rm", "path": str(student)}, "translation_source": None})
    loaded = load_profile(profile)
    assets = [a for a in build_model_assets(loaded, Recipe(loaded)) if a.key == dg.AssetKey("student_base")]
    store = ArtifactStore(root=str(tmp_path / "data"), configured=configured_checkpoints(loaded))
    resources = {"store": store, CHECKPOINT_IO: CheckpointIOManager(store=store)}
    assets.append(student_chat_template)
    return dg.materialize(assets, resources=resources)


def test_the_student_base_check_reports_the_loss_its_template_allows(student, tmp_path, write_profile):
    (evaluation,) = run_student_base(tmp_path, write_profile, student).get_asset_check_evaluations()
    assert evaluation.passed and evaluation.metadata["loss"].text == COMPLETION_ONLY


def test_a_student_template_sft_cannot_use_stops_the_run_at_student_base(tmp_path, write_profile):
    bad = save_student(tmp_path / "no_template", student_tokenizer(tmp_path, None))
    with pytest.raises(ChatTemplateError, match=rf"^{bad}: the tokenizer has no chat template"):
        run_student_base(tmp_path, write_profile, bad)
