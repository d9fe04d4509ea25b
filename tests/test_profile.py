import json
import math
import re
import shutil

import dagster as dg
import huggingface_hub
import pytest
import torch
from conftest import tiny_llama
from helpers import OTHER_TEXTS, TEXTS

from aya_assets.definitions import build_definitions
from aya_assets.evaluation.judge import LLMJudge
from aya_assets.generation import VLLMBackend
from aya_assets.models.tokenizer import train_tokenizer
from aya_assets.models.preflight import build_preflight_checks
from aya_assets.profile import ProfileError, configured_models, hub_problems, load_profile


def test_shipped_profiles_are_valid():
    tiny = load_profile("tiny")
    assert tiny.name == "tiny" and len(tiny.clusters) == 4
    assert load_profile("gpu").name == "gpu"


# Each bad profile and the message that must name its key; tests/test_cli.py runs them through `aya` too.
BAD_PROFILES = [
    ({"unknown_key": 1}, r"unknown_key: Extra inputs are not permitted"),
    ({"seed": "abc"}, r"seed: Input should be a valid integer"),
    ({"prompts": {"sources": [{"kind": "seed", "path": "does/not/exist"}]}}, r"prompts\.sources\.0\.seed\.path: .*does not exist"),
    ({"prompts": {"sources": []}}, r"prompts\.sources: List should have at least 1 item"),
    ({"clusters": {"slavic_greek": []}}, r"clusters: .*slavic_greek: cluster has no languages"),
    ({"clusters": {"romance_germanic": ["en", "fr"]}}, r"clusters: .*languages in no cluster: nl, de, it, pt, ro"),
    ({"models": {"teachers": [{"name": "t1", "focus": ["atlantis"]}], "translation_source": None}}, r"unknown language 'atlantis'"),
    ({"models": {"build": False}}, r"models: .*`path` is required when models.build is false"),
    ({"models": {"build": False, "teachers": [{"name": "t", "path": "/no/such/ckpt"}],
                 "student": {"name": "s", "path": "org/student"}, "reward_model": {"name": "r", "path": "org/rm"},
                 "translation_source": None}}, r"path does not exist: /no/such/ckpt"),
    ({"arbitrage": {"routing": "single:nobody"}}, r"unknown teacher 'nobody'"),
    ({"arbitrage": {"routing": "best"}}, r"arbitrage.routing: String should match pattern"),
    ({"generation": {"backend": "endpoint"}}, r"needs an `endpoint:` section"),
    ({"models": {"architecture": {"hidden_size": "big"}}}, r"models.architecture.hidden_size"),
    ({"models": {"architecture": {"depth": 3}}}, r"models.architecture.depth"),
    (
        {"prompts": {"sources": [{"kind": "arena_hard", "path": "pyproject.toml", "language": "xx"}]}},
        r"language: .*unknown language 'xx'",
    ),
    (
        {"prompts": {"sources": [{"kind": "seed"}, {"kind": "seed"}]}},
        r"source names must be unique, repeated: seed",
    ),
    # Configured checkpoints, checked at load: a relative path that is neither there nor org/name is no hub id,
    # an existing path must be a checkpoint, and a missing translator says how to do without one.
    ({"models": {"build": False, "teachers": [{"name": "t", "path": "no_such_dir"}],
                 "student": {"name": "s", "path": "org/student"}, "reward_model": {"name": "r", "path": "org/rm"},
                 "translation_source": None}},
     r"models\.teachers\.0\.path \(t\): 'no_such_dir' is neither a local path .* nor a hub id org/name"),
    ({"models": {"build": False, "teachers": [{"name": "t", "path": "data/seed"}],
                 "student": {"name": "s", "path": "org/student"}, "reward_model": {"name": "r", "path": "org/rm"},
                 "translation_source": None}},
     r"models\.teachers\.0\.path \(t\): .*data/seed has no config\.json, so it is not a Hugging Face checkpoint"),
    ({"evaluation": {"judge": "llm", "judge_model": "./no/judge"}},
     r"evaluation\.judge_model: path does not exist: .*no/judge; point evaluation\.judge_model at a local checkpoint"),
    ({"translation": {"translator": "nllb", "model": "./no/nllb"}},
     r"translation\.model: path does not exist: .*no/nllb; .*or set translation\.translator: none"),
    ({"generation": {"device": "gpu"}}, r"generation\.device: 'gpu' is not a torch device"),
    # The merge plan and the safety stage.
    ({"merge": {"plan": ["within_run", "safety"]}}, r"merge\.plan: .*must hold across_clusters"),
    ({"merge": {"plan": ["across_clusters", "within_run"]}}, r"merge\.plan: .*in the order within_run, across_clusters, safety"),
    ({"merge": {"plan": ["nested"]}}, r"merge\.plan\.0: Input should be 'within_run', 'across_clusters' or 'safety'"),
    ({"merge": {"within_run": {"keep": 0}}}, r"merge\.within_run\.keep: Input should be greater than or equal to 1"),
    ({"safety": {"harm_judge": "llm"}}, r"safety: .*harm_judge 'llm' needs safety\.harm_judge_model"),
    ({"safety": {"sweep": [0.0, 1.5]}}, r"safety\.sweep: .*weights must be in \[0, 1\], got \[1\.5\]"),
    ({"safety": {"sources": [{"kind": "aya_redteaming", "path": "no/such/copy"}]}},
     r"safety\.sources\.0\.path: path does not exist: .*no/such/copy"),
]


@pytest.mark.parametrize("overrides, message", BAD_PROFILES)
def test_bad_profile_errors_name_the_key(write_profile, overrides, message):
    path = write_profile(**overrides)
    with pytest.raises(ProfileError, match=message) as info:
        load_profile(path)
    assert path in str(info.value)


def test_missing_profile_file():
    with pytest.raises(ProfileError, match="profile not found"):
        load_profile("no_such_profile")


def test_gpu_profile_definitions_load_offline_with_the_llm_judge_wired():
    defs = build_definitions("gpu")  # hub ids everywhere, HF_HUB_OFFLINE=1: they wait for the preflight check
    dg.Definitions.validate_loadable(defs)
    judge, gpu = defs.resources["judge"], load_profile("gpu")
    assert isinstance(judge, LLMJudge) and isinstance(judge.backend, VLLMBackend)
    assert judge.model == gpu.evaluation.judge_model and judge.max_new_tokens == gpu.evaluation.judge_max_new_tokens
    store = defs.resources["store"]  # where every consumer of reward_model (the arbiter's scoring assets) finds it
    assert store.checkpoint("reward_model") == (gpu.models.reward_model.path, gpu.models.reward_model.revision)
    assert dg.AssetCheckKey(dg.AssetKey("prompts"), "configured_models_available") in defs.resolve_asset_graph().asset_check_keys


# --- configured checkpoints ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, tiny_tokenizer):
    """A tiny chat Llama, a sequence-classification reward model with its own tokenizer, and broken copies."""
    root = tmp_path_factory.mktemp("zoo")
    out = {"chat": tiny_llama(root / "chat", tiny_tokenizer, seed=1)}
    rm_tokenizer = train_tokenizer(OTHER_TEXTS + TEXTS, root / "rm_tok", vocab_size=500)
    out["reward"] = tiny_llama(root / "reward", rm_tokenizer, reward=True, num_hidden_layers=1)
    for broken, files in {"no_config": ["config.json"], "no_weights": ["model.safetensors"],
                          "no_tokenizer": ["tokenizer.json"], "no_template": ["chat_template.jinja"]}.items():
        out[broken] = shutil.copytree(out["chat"], root / broken)
        for name in files:
            (out[broken] / name).unlink()
    # A base model without a head: neither a reward model nor a causal LM the arbiter could score with.
    out["bare_model"] = shutil.copytree(out["chat"], root / "bare_model")
    config = json.loads((out["bare_model"] / "config.json").read_text())
    (out["bare_model"] / "config.json").write_text(json.dumps(config | {"architectures": ["LlamaModel"]}))
    return out


def zoo_profile(zoo, **paths) -> dict:
    """Profile overrides: every model a local checkpoint of the zoo (models.build false); `paths` replace roles."""
    where = {"teacher": zoo["chat"], "student": zoo["chat"], "reward": zoo["reward"]} | {k: zoo[v] for k, v in paths.items()}
    overrides = {"models": {"build": False, "teachers": [{"name": "t", "path": str(where["teacher"])}],
                            "student": {"name": "s", "path": str(where["student"])},
                            "reward_model": {"name": "r", "path": str(where["reward"])}, "translation_source": None}}
    if "judge" in where:
        overrides["evaluation"] = {"judge": "llm", "judge_model": str(where["judge"])}
    if "translator" in where:
        overrides["translation"] = {"translator": "nllb", "model": str(where["translator"])}
    return overrides


# (role -> zoo checkpoint, the message fragment)
BAD_CHECKPOINTS = [
    ({"teacher": "no_config"}, r"models\.teachers\.0\.path \(t\): .*no_config has no config\.json"),
    ({"student": "no_weights"}, r"models\.student\.path: .*no_weights has no weights \(model\.safetensors"),
    ({"reward": "no_tokenizer"}, r"models\.reward_model\.path: .*no_tokenizer has no tokenizer"),
    ({"reward": "bare_model"}, r"models\.reward_model\.path: .*bare_model: config\.json's architectures \['LlamaModel'\] "
                               r"name neither a sequence classifier .* nor a causal LM"),
    ({"teacher": "no_template"}, r"models\.teachers\.0\.path \(t\): .*no_template has no chat template"),
    ({"judge": "no_template"}, r"evaluation\.judge_model: .*no_template has no chat template"),
    ({"translator": "no_config"}, r"translation\.model: .*no_config has no config\.json.*set translation\.translator: none"),
]


@pytest.mark.parametrize("paths, message", BAD_CHECKPOINTS)
def test_configured_checkpoints_are_checked_at_load(write_profile, zoo, paths, message):
    path = write_profile(**zoo_profile(zoo, **paths))
    with pytest.raises(ProfileError, match=message) as info:
        load_profile(path)
    assert path in str(info.value) and "\n" not in str(info.value)


def test_complete_local_checkpoints_load(write_profile, zoo):
    profile = load_profile(write_profile(**zoo_profile(zoo, judge="chat", translator="no_template")))  # NLLB: no chat
    assert [m.key for m in configured_models(profile)] == [
        "models.teachers.0.path (t)", "models.student.path", "models.reward_model.path", "evaluation.judge_model",
        "translation.model"]
    assert hub_problems(profile) == []


@pytest.mark.parametrize("reward", ["reward", "chat"])  # a sequence classifier, a causal LM scored by likelihood
def test_arbiter_scores_with_the_configured_reward_model(write_profile, zoo, reward):
    from aya_assets.checkpoints.io import located

    defs = build_definitions(write_profile(**zoo_profile(zoo, reward=reward)))
    reward_model = located(defs.resources["store"], "reward_model")
    assert reward_model.path == str(zoo[reward])  # not data/models/reward_model, which only a built profile has
    [reward] = defs.resources["arbiter"].rewards(reward_model, ["Hello, how are you?"], ["bonjour le monde"])
    assert math.isfinite(reward)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("section", ["generation", "arbiter", "translation"])
def test_cuda_device_without_cuda_names_the_key(write_profile, section):
    with pytest.raises(ProfileError, match=rf"{section}\.device: 'cuda' but torch sees no CUDA device on this machine"):
        load_profile(write_profile(**{section: {"device": "cuda"}}))


def fake_hub_cache(root, repo: str, checkpoint, drop: tuple[str, ...] = ()):
    """The HF cache layout (models--org--name/refs/main, snapshots/<commit>/) holding a copy of `checkpoint`."""
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text("0" * 40)
    shutil.copytree(checkpoint, repo_dir / "snapshots" / ("0" * 40), ignore=shutil.ignore_patterns(*drop))


# (cached repos, offline, the preflight's message fragment or None)
HUB_CASES = [
    ({}, True, r"models\.student\.path: org/student not found locally and HF_HUB_OFFLINE=1; download it first "
               r"\(hf download org/student\) or point models\.student\.path at a local checkpoint directory"),
    ({}, False, None),  # the hub is reachable: transformers downloads it
    ({"org/student": ()}, True, None),
    ({"org/student": ("chat_template.jinja",)}, True, r"models\.student\.path: the cached org/student has no chat template"),
    ({"org/student": ("tokenizer.json",)}, True, r"models\.student\.path: the cached org/student has no tokenizer"),
]


@pytest.mark.parametrize("cached, offline, message", HUB_CASES)
def test_hub_ids_are_checked_by_the_preflight(write_profile, zoo, tmp_path, monkeypatch, cached, offline, message):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    overrides = zoo_profile(zoo)
    overrides["models"]["student"]["path"] = "org/student"
    profile = load_profile(write_profile(**overrides))  # a hub id never fails the load
    cache = tmp_path / "hf_cache"
    cache.mkdir()
    for repo, drop in cached.items():
        fake_hub_cache(cache, repo, zoo["chat"], drop)
    problems = hub_problems(profile, cache_dir=cache)
    assert (problems == []) if message is None else (len(problems) == 1 and re.search(message, problems[0]))


def test_preflight_check_fails_on_an_uncached_hub_id_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    [check] = build_preflight_checks(load_profile("gpu"))
    result = check(dg.build_asset_check_context())
    assert not result.passed and "translation.translator: none" in result.metadata["problems"].value
    spec = next(iter(check.check_specs))
    assert spec.blocking and spec.asset_key == dg.AssetKey("prompts")  # it stops every run before any model step
