"""DPO with TRL on a tiny SFT'd Llama: a real run moves the policy, the reference is honoured and released."""

import gc
import math
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaForCausalLM
from trl import DPOTrainer

from aya_assets.training.dpo import DPOReport, DPOSettings, preference_rows, train_dpo

STEPS = 20
SETTINGS = DPOSettings(steps=STEPS, learning_rate=1e-3, batch_size=8)


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs the tiny models on one torch thread (conftest.one_torch_thread)."""


@contextmanager
def watch_training(root: Path):
    """Record, as training starts, whether TRL holds a reference model and how many of our causal LMs are alive."""
    seen = {}
    train = DPOTrainer.train

    def spy(self, *args, **kwargs):
        gc.collect()
        seen["holds_ref_model"] = self.ref_model is not None
        # type() rather than isinstance: the latter trips deprecation proxies (torch.distributed.reduce_op) in gc.
        seen["models_alive"] = sum(
            type(o) is LlamaForCausalLM and Path(o.name_or_path).is_relative_to(root) for o in gc.get_objects()
        )
        return train(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DPOTrainer, "train", spy)
        yield seen


def run(start, out_dir: Path, settings: DPOSettings) -> tuple[DPOReport, dict]:
    model_dir, pairs = start
    with watch_training(model_dir.parent) as seen:
        report = train_dpo(model_dir, pairs, out_dir, settings)
    return report, seen


@pytest.fixture(scope="module")
def precomputed(dpo_start, tmp_path_factory) -> tuple[DPOReport, dict, Path]:
    out_dir = tmp_path_factory.mktemp("dpo") / "dpo"
    report, seen = run(dpo_start, out_dir, SETTINGS)
    return report, seen, out_dir


def completion_gap(model_dir: Path, pairs: list[dict]) -> float:
    """Mean log p(chosen | prompt) - log p(rejected | prompt) under the checkpoint, tokenised as TRL does."""
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def log_prob(prompt: list[dict], completion: list[dict]) -> float:
        prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_dict=False)
        ids = torch.tensor([tokenizer.apply_chat_template(prompt + completion, return_dict=False)])
        with torch.no_grad():
            token_log_probs = model(ids).logits[0, :-1].log_softmax(-1).gather(-1, ids[0, 1:, None])[:, 0]
        return token_log_probs[len(prompt_ids) - 1 :].sum().item()

    gaps = [log_prob(p["prompt"], p["chosen"]) - log_prob(p["prompt"], p["rejected"]) for p in pairs]
    return sum(gaps) / len(gaps)


def test_saves_a_loadable_checkpoint_with_the_input_generation_config(dpo_start, precomputed):
    model_dir, _ = dpo_start
    _, _, out_dir = precomputed
    model = AutoModelForCausalLM.from_pretrained(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    assert model.config.vocab_size == len(tokenizer)
    assert tokenizer.chat_template == AutoTokenizer.from_pretrained(model_dir).chat_template
    assert GenerationConfig.from_pretrained(out_dir).to_dict() == GenerationConfig.from_pretrained(model_dir).to_dict()
    assert not (out_dir / "training_args.bin").exists()


def test_reports_every_step_and_a_positive_final_margin(dpo_start, precomputed):
    report, _, _ = precomputed
    assert len(report.losses) == len(report.reward_margins) == len(report.reward_accuracies) == STEPS
    assert report.pairs == report.trained_pairs == len(dpo_start[1])  # 20 steps x 8 see more than the 24 pairs
    # Policy and reference are the same weights at the first step: zero margin, loss log 2.
    assert report.reward_margins[0] == pytest.approx(0.0, abs=1e-5)
    assert report.losses[0] == pytest.approx(math.log(2), abs=1e-4)
    assert report.final_margin == report.reward_margins[-1] > 0
    assert report.final_accuracy == report.reward_accuracies[-1] > 0.5
    assert report.losses[-1] < report.losses[0]


def test_policy_prefers_chosen_more_than_the_reference_does(dpo_start, precomputed):
    model_dir, pairs = dpo_start
    _, _, out_dir = precomputed
    assert completion_gap(out_dir, pairs[:6]) > completion_gap(model_dir, pairs[:6]) + 1.0


def test_precomputed_reference_is_not_held_and_matches_the_per_step_reference(dpo_start, precomputed, tmp_path):
    report, seen, _ = precomputed
    assert seen == {"holds_ref_model": False, "models_alive": 1}
    per_step, seen = run(dpo_start, tmp_path / "dpo", DPOSettings(**{**vars(SETTINGS), "precompute_ref_log_probs": False}))
    assert seen == {"holds_ref_model": True, "models_alive": 2}
    assert per_step.losses == pytest.approx(report.losses, rel=1e-4, abs=1e-6)


def test_no_pairs_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="at least one preference pair"):
        train_dpo(tmp_path / "model", [], tmp_path / "dpo", SETTINGS)


def test_preference_rows_are_trl_conversations():
    frame = pl.DataFrame({"prompt": ["Wie spät?"], "chosen": ["Drei Uhr."], "rejected": ["Three."], "extra": ["x"]})
    assert preference_rows(frame) == [
        {
            "prompt": [{"role": "user", "content": "Wie spät?"}],
            "chosen": [{"role": "assistant", "content": "Drei Uhr."}],
            "rejected": [{"role": "assistant", "content": "Three."}],
        }
    ]


def test_only_the_pairs_training_draws_are_prepared_and_the_sample_is_seeded(dpo_start, tmp_path):
    few = DPOSettings(steps=2, learning_rate=1e-3, batch_size=4)
    first = train_dpo(dpo_start[0], dpo_start[1], tmp_path / "a", few)
    assert (first.pairs, first.trained_pairs) == (24, 8)  # 2 steps x 4: the reference pass skips the other 16
    again = train_dpo(dpo_start[0], dpo_start[1], tmp_path / "b", few)
    assert again.losses == first.losses and again.reward_margins == first.reward_margins
