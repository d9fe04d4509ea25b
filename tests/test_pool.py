"""Pool generation in resumable shards: a failure mid-run loses only the shard in flight."""

import polars as pl
import pytest

from aya_assets.arbitrage.pool import degenerate_rate, generate_pool, is_degenerate, plan_shards
from aya_assets.generation import SamplingSettings, TransformersBackend

@pytest.fixture(scope="module")
def setup(tmp_path_factory, trained_lm, seed_prompts):
    """Two real tiny teachers (a few SFT steps each, on the German and on the Japanese answers) and the train prompts of
    three languages."""
    models = {name: str(trained_lm((lang,), steps=3, split="train")) for name, lang in [("t_de", "de"), ("t_ja", "ja")]}
    prompts = seed_prompts.filter((pl.col("split") == "train") & pl.col("language").is_in(["de", "ja", "ru"]))
    return tmp_path_factory.mktemp("pool"), prompts, models


CALLS = {"n": 0}


class FailingBackend(TransformersBackend):
    """The real backend with a fault injected: raises on call number `fail_on` (0 = never)."""

    fail_on: int = 0

    def generate(self, model, prompts, sampling, progress=None):
        CALLS["n"] += 1
        if CALLS["n"] == self.fail_on:
            raise RuntimeError("injected failure: the GPU fell off the bus")
        return super().generate(model, prompts, sampling, progress)


SAMPLING = SamplingSettings(n=2, max_new_tokens=5, temperature=0.9, seed=7)
HASHES = {"t_de": "h1", "t_ja": "h2"}


def run(models, prompts, shard_dir, backend):
    return generate_pool(prompts, models, HASHES, backend, SAMPLING, shard_dir, shard_size=6, log=lambda _: None)


def test_plan_is_teacher_major_and_covers_every_prompt(setup):
    _, prompts, models = setup
    shards = plan_shards(prompts, list(models), shard_size=6)
    assert [s.teacher for s in shards] == sorted([s.teacher for s in shards], key=list(models).index)
    for teacher in models:
        ids = [p for s in shards if s.teacher == teacher for p in s.prompt_ids]
        assert sorted(ids) == sorted(prompts["prompt_id"].to_list())


def test_crash_then_rerun_reuses_finished_shards_and_equals_uninterrupted_run(setup):
    root, prompts, models = setup
    reference, counts = run(models, prompts, root / "uninterrupted", FailingBackend(batch_size=16))
    total = counts["generated"]
    assert total == len(plan_shards(prompts, list(models), 6)) and counts["reused"] == 0
    assert reference.height == prompts.height * len(models) * SAMPLING.n

    CALLS['n'] = 0
    with pytest.raises(RuntimeError, match="injected failure"):
        run(models, prompts, root / "crashy", FailingBackend(batch_size=16, fail_on=4))
    finished = list((root / "crashy").rglob("*.parquet"))
    assert len(finished) == 3  # the three shards before the failure, nothing half-written
    assert not list((root / "crashy").rglob("*.tmp"))

    CALLS['n'] = 0
    resumed, counts = run(models, prompts, root / "crashy", FailingBackend(batch_size=16))
    assert counts == {"reused": 3, "generated": total - 3}
    assert CALLS['n'] == total - 3
    assert resumed.drop("seconds").equals(reference.drop("seconds"))


def test_changed_settings_do_not_reuse_old_shards(setup):
    root, prompts, models = setup
    run(models, prompts, root / "settings", FailingBackend(batch_size=16))
    other = SAMPLING.model_copy(update={"max_new_tokens": 4})
    _, counts = generate_pool(prompts, models, HASHES, FailingBackend(batch_size=16), other, root / "settings", 6,
                              log=lambda _: None)
    assert counts["reused"] == 0
    assert len(list((root / "settings").rglob("*.parquet"))) == counts["generated"]  # stale shards removed


def test_one_models_run_keeps_the_other_models_shards(setup):
    """eval_generations runs one stage at a time into one shard directory: no stage may delete another's shards."""
    root, prompts, models = setup
    for name in models:
        generate_pool(prompts, {name: models[name]}, HASHES, FailingBackend(batch_size=16), SAMPLING, root / "stages",
                      6, log=lambda _: None)
    for name in models:
        _, counts = generate_pool(prompts, {name: models[name]}, HASHES, FailingBackend(batch_size=16), SAMPLING,
                                  root / "stages", 6, log=lambda _: None)
        assert counts["generated"] == 0 and counts["reused"] > 0, name


@pytest.mark.parametrize(
    "text, degenerate",
    [("", True), ("   ", True), ("la la la la la la la la la", True), ("Berlin ist die Hauptstadt.", False)],
)
def test_degenerate(text, degenerate):
    assert is_degenerate(text) is degenerate


def test_degenerate_rate():
    assert degenerate_rate(pl.DataFrame({"completion": ["", "ok fine", "x", "  "]})) == 0.5


def test_two_profiles_with_the_same_teacher_names_keep_each_others_shards(setup):
    """Same names, other checkpoints, one shard directory: neither profile's run may delete the other's shards."""
    root, prompts, models = setup
    swapped = {"t_de": models["t_ja"], "t_ja": models["t_de"]}
    profiles = {"a": (models, HASHES), "b": (swapped, {"t_de": "h2", "t_ja": "h1"})}
    for profile, (paths, hashes) in profiles.items():
        generate_pool(prompts, paths, hashes, FailingBackend(batch_size=16), SAMPLING, root / "profiles", 6,
                      log=lambda _: None, profile=profile)
    for profile, (paths, hashes) in profiles.items():
        _, counts = generate_pool(prompts, paths, hashes, FailingBackend(batch_size=16), SAMPLING, root / "profiles", 6,
                                  log=lambda _: None, profile=profile)
        assert counts["generated"] == 0 and counts["reused"] == len(plan_shards(prompts, list(paths), 6)), profile
    # A model retrained in place (same profile, same location, new weights) still replaces its own old shards.
    _, counts = generate_pool(prompts, models, {"t_de": "h1-retrained", "t_ja": "h2"}, FailingBackend(batch_size=16),
                              SAMPLING, root / "profiles", 6, log=lambda _: None, profile="a")
    assert counts["generated"] == len(plan_shards(prompts, ["t_de"], 6))
    assert len(list((root / "profiles").rglob("*.parquet"))) == 2 * len(plan_shards(prompts, list(models), 6))
