"""Kept checkpoints for the within-run merge: real SFT and DPO steps on a tiny Cohere student keep the last k
model-only checkpoints under kept/step-<N>/, each a complete checkpoint with the final model's files, and they merge."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from aya_assets.checkpoints.files import check_checkpoint
from aya_assets.merge.merging import merge_checkpoints, sanity_check
from aya_assets.training.dpo import DPOSettings, train_dpo
from aya_assets.training.settings import KeepCheckpoints, TrainSettings
from aya_assets.training.sft import train_sft
from aya_assets.training.trainer import KEPT_DIR, kept_checkpoints
from test_sft import CONVERSATIONS, save_student, student_tokenizer

PAIRS = [{"prompt": c[:1], "chosen": c[1:], "rejected": [{"role": "assistant", "content": "hola mundo"}]}
         for c in CONVERSATIONS]
# What a resumable Trainer checkpoint adds to a model: none of it belongs in a kept checkpoint.
TRAINER_FILES = {"trainer_state.json", "training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth", "README.md"}


def settings(steps: int) -> TrainSettings:
    return TrainSettings(steps=steps, learning_rate=1e-2, batch_size=4)


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs the tiny models on one torch thread (conftest.one_torch_thread)."""


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("student")
    return save_student(root / "student", student_tokenizer(root))


@pytest.fixture(scope="module")
def six_steps(student, tmp_path_factory) -> tuple[Path, list[int]]:
    """SFT for 6 steps keeping 3 checkpoints 2 steps apart."""
    out = tmp_path_factory.mktemp("sft") / "sft"
    return out, train_sft(student, CONVERSATIONS, out, settings(6), KeepCheckpoints(keep=3, every=2)).kept_steps


def assert_complete_like_the_final(step_dir: Path, final: Path) -> None:
    """A loadable checkpoint with the final model's files, byte for byte apart from the weights, and nothing else."""
    check_checkpoint(step_dir)
    AutoModelForCausalLM.from_pretrained(step_dir)
    AutoTokenizer.from_pretrained(step_dir)
    files = {p.name for p in step_dir.iterdir()}
    assert files == {p.name for p in final.iterdir() if p.is_file()} and not files & TRAINER_FILES
    assert (step_dir / "generation_config.json").read_bytes() == (final / "generation_config.json").read_bytes()
    for name in files - {"model.safetensors"}:
        assert (step_dir / name).read_bytes() == (final / name).read_bytes(), name


def assert_same_weights(a: Path, b: Path) -> None:
    left, right = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


@pytest.mark.slow
def test_sft_keeps_the_last_k_checkpoints_newest_first_each_complete(six_steps):
    out, kept_steps = six_steps
    kept = kept_checkpoints(out)
    assert kept_steps == [6, 4, 2]
    assert kept == [out / KEPT_DIR / f"step-{step}" for step in (6, 4, 2)]
    assert sorted(p.name for p in (out / KEPT_DIR).iterdir()) == ["step-2", "step-4", "step-6"]
    for step_dir in kept:
        assert_complete_like_the_final(step_dir, out)
    assert_same_weights(kept[0], out)  # the last kept step is the final model
    first, last = load_file(kept[-1] / "model.safetensors"), load_file(kept[0] / "model.safetensors")
    assert any(not torch.equal(first[k], last[k]) for k in first)  # and the others are earlier points of the run


@pytest.mark.slow
@pytest.mark.parametrize("steps, keep, every, expected", [
    (7, 3, 2, [7, 5, 3]),  # evenly spaced back from the final step, off the multiples of `every`
    (3, 3, 2, [3, 1]),  # fewer steps than keep x every: as many as fit
    (2, 3, 5, [2]),  # every past the run: the final step only
    (4, 1, 1, [4]),
])
def test_the_final_step_is_kept_whatever_the_spacing(student, tmp_path, steps, keep, every, expected):
    report = train_sft(student, CONVERSATIONS, tmp_path / "sft", settings(steps), KeepCheckpoints(keep=keep, every=every))
    assert report.kept_steps == expected == [int(p.name.removeprefix("step-")) for p in kept_checkpoints(tmp_path / "sft")]
    assert_same_weights(kept_checkpoints(tmp_path / "sft")[0], tmp_path / "sft")


@pytest.mark.slow
def test_dpo_keeps_its_checkpoints_too(student, tmp_path):
    out = tmp_path / "dpo"
    report = train_dpo(student, PAIRS, out, DPOSettings(steps=3, learning_rate=1e-3, batch_size=4),
                       KeepCheckpoints(keep=2, every=1))
    assert report.kept_steps == [3, 2]
    kept = kept_checkpoints(out)
    assert [p.name for p in kept] == ["step-3", "step-2"]
    for step_dir in kept:
        assert_complete_like_the_final(step_dir, out)
    assert_same_weights(kept[0], out)


@pytest.mark.slow
def test_without_keep_nothing_is_kept_and_the_run_writes_what_it_did(student, six_steps, tmp_path):
    report = train_sft(student, CONVERSATIONS, tmp_path / "sft", settings(2))
    assert report.kept_steps == [] and kept_checkpoints(tmp_path / "sft") == []
    assert not (tmp_path / "sft" / KEPT_DIR).exists()
    kept_run, _ = six_steps
    assert {p.name for p in (tmp_path / "sft").iterdir()} == {p.name for p in kept_run.iterdir()} - {KEPT_DIR}
    dpo = train_dpo(student, PAIRS, tmp_path / "dpo", DPOSettings(steps=1, learning_rate=1e-3, batch_size=4))
    assert dpo.kept_steps == [] and not (tmp_path / "dpo" / KEPT_DIR).exists()


@pytest.mark.slow
def test_the_kept_checkpoints_merge_into_their_mean(six_steps, tmp_path):
    out, _ = six_steps
    kept = kept_checkpoints(out)
    merge_checkpoints(kept, [1.0] * len(kept), tmp_path / "merged", "linear")
    sanity_check([tmp_path / "merged", *kept])
    inputs = [load_file(p / "model.safetensors") for p in kept]
    merged = load_file(tmp_path / "merged" / "model.safetensors")
    assert merged.keys() == inputs[0].keys()
    for name, tensor in merged.items():
        torch.testing.assert_close(tensor, torch.stack([t[name] for t in inputs]).mean(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("steps, keep, share, every", [
    (100, 3, 0.1, 10),
    (450, 3, 0.1, 45),
    (7, 2, 0.3, 2),  # 2.1 rounds down
    (8, 3, 0.3, 2),  # 2.4
    (9, 3, 0.3, 3),  # 2.7 rounds up
    (4, 3, 0.1, 1),  # 0.4 would be no spacing at all: at least one step
    (10, 1, 1.0, 10),  # the whole run: the final step only
])
def test_for_steps_spaces_the_checkpoints_a_share_of_the_run_apart(steps, keep, share, every):
    assert KeepCheckpoints.for_steps(steps, keep, share) == KeepCheckpoints(keep=keep, every=every)


@pytest.mark.parametrize("keep, every", [(0, 2), (3, 0)])
def test_keep_checkpoints_refuses_nothing_to_keep(keep, every):
    with pytest.raises(ValueError, match="keep >= 1 and every >= 1"):
        KeepCheckpoints(keep=keep, every=every)
