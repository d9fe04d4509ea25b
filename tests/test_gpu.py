"""The project's GPU code paths on a CUDA device: generation in bfloat16, DPO training, reward scoring.

Every test here is marked `gpu` and skipped where torch sees no CUDA device (see conftest.py). The tiny models
are conftest.py's (chat_checkpoints, dpo_start); on a GPU machine their training runs there too.
"""

import math
from dataclasses import fields

import pytest
import torch
from conftest import TRAINED_ARCH
from test_generation import GREEDY, PROMPTS, texts
from transformers import AutoModelForCausalLM
from trl import DPOTrainer

from aya_assets.arbitrage.arbiter import Arbiter
from aya_assets.checkpoints.io import Checkpoint
from aya_assets.generation import Completion, SamplingSettings, TransformersBackend
from aya_assets.training.scratch import train_reward_model
from aya_assets.training.settings import TinyArchitecture, TrainSettings
from aya_assets.training.dpo import DPOSettings, train_dpo

pytestmark = pytest.mark.gpu


def schema(results: list[list[Completion]]) -> set[tuple]:
    """The field names and value types of every completion."""
    return {tuple((f.name, type(getattr(c, f.name))) for f in fields(c)) for r in results for c in r}


# --- generation -------------------------------------------------------------------------------------------------


def test_transformers_auto_runs_bfloat16_on_cuda_with_the_cpu_schema(chat_checkpoints):
    sampling = SamplingSettings(n=3, max_new_tokens=6, seed=1)
    backend = TransformersBackend(batch_size=3)  # device and dtype "auto"
    progress = []
    results = backend.generate(chat_checkpoints["random"], PROMPTS, sampling, progress=lambda *p: progress.append(p))
    _, _, lm = backend._loaded
    assert lm.device.type == "cuda" and lm.dtype == torch.bfloat16

    on_cpu = TransformersBackend(batch_size=3, device="cpu").generate(chat_checkpoints["random"], PROMPTS, sampling)
    assert [len(r) for r in results] == [len(r) for r in on_cpu] == [3] * len(PROMPTS)
    assert progress == [(3, 4), (4, 4)]
    assert schema(results) == schema(on_cpu) == {
        (("text", str), ("tokens", int), ("finish_reason", str), ("seconds", float))
    }
    for completion in (c for r in results for c in r):
        assert 1 <= completion.tokens <= sampling.max_new_tokens
        assert completion.finish_reason in {"stop", "length"}
        assert completion.text == completion.text.strip()
        assert completion.seconds > 0


def test_transformers_sampling_on_cuda_is_seeded_and_leaves_the_callers_rng(chat_checkpoints):
    backend = TransformersBackend(batch_size=2)
    sampling = SamplingSettings(n=2, max_new_tokens=6, temperature=1.0, seed=7)
    first = texts(backend.generate(chat_checkpoints["random"], PROMPTS, sampling))
    backend.generate(chat_checkpoints["random"], PROMPTS[:1], sampling.model_copy(update={"seed": 99}))
    cuda_rng, cpu_rng = torch.cuda.get_rng_state(), torch.get_rng_state()
    again = texts(backend.generate(chat_checkpoints["random"], PROMPTS, sampling))
    assert torch.equal(torch.cuda.get_rng_state(), cuda_rng) and torch.equal(torch.get_rng_state(), cpu_rng)
    other_seed = texts(backend.generate(chat_checkpoints["random"], PROMPTS, sampling.model_copy(update={"seed": 123})))
    other_first_batch = texts(backend.generate(chat_checkpoints["random"], ["Bonjour", "Hola"] + PROMPTS[2:], sampling))
    assert first == again
    assert first != other_seed
    assert other_first_batch[2:] == first[2:]  # a batch's samples depend on its own prompts only


def test_transformers_batched_greedy_equals_one_by_one_on_cuda(chat_checkpoints):
    """Left padding on the GPU's attention kernels; float32, so rounding cannot flip a greedy choice."""
    model = chat_checkpoints["random"]
    batched = TransformersBackend(batch_size=len(PROMPTS), dtype="float32").generate(model, PROMPTS, GREEDY)
    single = TransformersBackend(batch_size=1, dtype="float32").generate(model, PROMPTS, GREEDY)
    assert [[(c.text, c.tokens, c.finish_reason) for c in r] for r in batched] == [
        [(c.text, c.tokens, c.finish_reason) for c in r] for r in single
    ]
    assert any(c.text for r in batched for c in r)


def test_transformers_finish_reasons_on_cuda(chat_checkpoints):
    backend = TransformersBackend()
    never = backend.generate(chat_checkpoints["never_eos"], PROMPTS, GREEDY)
    assert {(c.finish_reason, c.tokens) for r in never for c in r} == {("length", GREEDY.max_new_tokens)}
    only = backend.generate(chat_checkpoints["only_eos"], PROMPTS, GREEDY)
    assert {(c.finish_reason, c.tokens, c.text) for r in only for c in r} == {("stop", 1, "")}


# --- DPO --------------------------------------------------------------------------------------------------------

STEPS = 8
SETTINGS = DPOSettings(steps=STEPS, learning_rate=1e-3, batch_size=8)


def dpo_on_cuda(start, out_dir, settings: DPOSettings) -> tuple:
    """train_dpo, recording where the policy sits and what TRL holds as training starts."""
    seen = {}
    train = DPOTrainer.train

    def spy(self, *args, **kwargs):
        seen.update(device=self.model.device.type, holds_ref_model=self.ref_model is not None, bf16=self.args.bf16)
        return train(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DPOTrainer, "train", spy)
        report = train_dpo(start[0], start[1], out_dir, settings)
    return report, seen


def test_dpo_trains_on_cuda_with_precomputed_reference(dpo_start, tmp_path):
    model_dir, _ = dpo_start
    report, seen = dpo_on_cuda(dpo_start, tmp_path / "dpo", SETTINGS)
    assert seen == {"device": "cuda", "holds_ref_model": False, "bf16": torch.cuda.is_bf16_supported()}
    assert len(report.losses) == len(report.reward_margins) == STEPS
    assert all(math.isfinite(x) for x in report.losses + report.reward_margins + report.reward_accuracies)
    # Policy and reference are the same weights at the first step (up to bfloat16 rounding in the two passes).
    assert report.losses[0] == pytest.approx(math.log(2), abs=0.03)
    assert report.reward_margins[0] == pytest.approx(0.0, abs=0.05)

    before = AutoModelForCausalLM.from_pretrained(model_dir).state_dict()
    after_model = AutoModelForCausalLM.from_pretrained(tmp_path / "dpo")
    after = after_model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.isfinite(t).all() for t in after.values())
    changed = [name for name in after if not torch.equal(after[name], before[name])]
    assert changed and any("layers.0" in name for name in changed)
    assert after_model.dtype == torch.float32  # mixed precision trains float32 master weights and saves those


def test_dpo_per_step_reference_matches_precomputed_on_cuda(dpo_start, tmp_path):
    precomputed, _ = dpo_on_cuda(dpo_start, tmp_path / "pre", SETTINGS)
    per_step, seen = dpo_on_cuda(
        dpo_start, tmp_path / "per_step", DPOSettings(**{**vars(SETTINGS), "precompute_ref_log_probs": False})
    )
    assert seen["device"] == "cuda" and seen["holds_ref_model"]
    print("precomputed losses", precomputed.losses, "\nper-step losses", per_step.losses)
    # bfloat16 autocast: the two modes agree to rounding, not to the last bit as on CPU (test_dpo.py).
    assert per_step.losses == pytest.approx(precomputed.losses, rel=0.02, abs=2e-3)


# --- the arbiter's reward model ---------------------------------------------------------------------------------


def test_arbiter_rewards_on_cuda_match_cpu(dpo_start, seed_tokenizer, tmp_path):
    _, pairs = dpo_start
    report = train_reward_model(seed_tokenizer, pairs, tmp_path / "rm", TinyArchitecture(**TRAINED_ARCH),
                                TrainSettings(steps=6, learning_rate=3e-3, batch_size=8))
    assert len(report.losses) == 6 and all(math.isfinite(x) for x in report.losses)

    prompts = [p["prompt"][0]["content"] for p in pairs[:4]] * 2
    completions = [p["chosen"][0]["content"] for p in pairs[:4]] + [p["rejected"][0]["content"] for p in pairs[:4]]
    rm = Checkpoint(str(tmp_path / "rm"))
    gpu = Arbiter(language_weight=0.0, batch_size=3)
    progress = []
    on_gpu = gpu.rewards(rm, prompts, completions, progress=lambda *p: progress.append(p))
    _, model, device = gpu._loaded[rm]
    assert device == "cuda" and model.device.type == "cuda" and model.dtype == torch.bfloat16
    assert progress == [(3, 8), (6, 8), (8, 8)]
    on_cpu = Arbiter(language_weight=0.0, batch_size=3, device="cpu").rewards(rm, prompts, completions)
    assert len(on_gpu) == len(on_cpu) == 8 and all(isinstance(x, float) and math.isfinite(x) for x in on_gpu)
    print("rewards on cuda (bf16)", on_gpu, "\nrewards on cpu (fp32)", on_cpu)
    # bfloat16 keeps about 3 significant digits; left padding in uneven batches must not move a score further.
    torch.testing.assert_close(torch.tensor(on_gpu), torch.tensor(on_cpu), atol=0.05, rtol=0.05)
