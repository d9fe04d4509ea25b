"""The Dagster code location: every stage's assets, built from one validated profile and wired to its resources."""

from collections import Counter

import dagster as dg

from aya_assets.arbitrage.arbiter import Arbiter
from aya_assets.arbitrage.assets import build_arbitrage_assets
from aya_assets.artifacts.store import ArtifactStore, model_key
from aya_assets.artifacts.tables import PARTITION_COLUMN, WarehouseIOManager
from aya_assets.checkpoints.io import CHECKPOINT_IO, CheckpointIOManager
from aya_assets.evaluation.assets import build_evaluation_assets
from aya_assets.evaluation.judge import LLMJudge, ReferenceJudge
from aya_assets.generation import EndpointBackend, GenerationBackend, TransformersBackend, VLLMBackend
from aya_assets.models.assets import build_model_assets
from aya_assets.models.preflight import build_preflight_checks
from aya_assets.paths import data_dir
from aya_assets.preference.assets import build_offline_assets, build_online_assets
from aya_assets.preference.translate import GlossaryTranslator, NLLBTranslator, NoTranslator
from aya_assets.profile import GenerationConfig, Profile, load_profile
from aya_assets.prompts.assets import build_prompt_assets
from aya_assets.safety.assets import build_safety_assets, classifier_path
from aya_assets.safety.harm import ClassifierHarmJudge, LLMHarmJudge
from aya_assets.sft.assets import build_sft_assets
from aya_assets.stages import Recipe


def generation_backend(cfg: GenerationConfig) -> GenerationBackend:
    if cfg.backend == "vllm":
        return VLLMBackend(**cfg.vllm.model_dump())
    if cfg.backend == "endpoint":
        return EndpointBackend(**cfg.endpoint.model_dump())
    return TransformersBackend(batch_size=cfg.batch_size, device=cfg.device)


def configured_checkpoints(profile: Profile) -> dict[str, list[str]]:
    """The checkpoints a `models.build: false` profile names, keyed as ArtifactStore.checkpoint looks them up."""
    if profile.models.build:
        return {}
    models = profile.models
    refs = {model_key("teacher_models", t.name): t for t in models.teachers}
    refs |= {"student_base": models.student, "reward_model": models.reward_model}
    return {key: [ref.path, ref.revision or ""] for key, ref in refs.items()}


def resources(profile: Profile) -> dict:
    store = ArtifactStore(root=str(data_dir()), configured=configured_checkpoints(profile))
    generator = generation_backend(profile.generation)
    ev, tr, sf = profile.evaluation, profile.translation, profile.safety
    return {
        "store": store,
        "io_manager": WarehouseIOManager(base_dir=str(store.warehouse)),
        CHECKPOINT_IO: CheckpointIOManager(store=store),
        "generator": generator,
        "arbiter": Arbiter(**profile.arbiter.model_dump()),
        "translator": NLLBTranslator(model=tr.model, batch_size=tr.batch_size, device=tr.device) if tr.translator == "nllb"
        else GlossaryTranslator() if tr.translator == "glossary" else NoTranslator(),
        "judge": LLMJudge(model=ev.judge_model, backend=generator, max_new_tokens=ev.judge_max_new_tokens) if ev.judge == "llm"
        else ReferenceJudge(fidelity_weight=ev.fidelity_weight, tie_margin=ev.tie_margin),
        "harm_judge": LLMHarmJudge(model=sf.harm_judge_model, backend=generator, max_new_tokens=sf.harm_judge_max_new_tokens)
        if sf.harm_judge == "llm" else ClassifierHarmJudge(path=str(classifier_path(store))),
    }


def build_definitions(profile: str | Profile | None = None) -> dg.Definitions:
    """Definitions for a profile (name, path or an already validated Profile): the graph and the resources of one profile."""
    if not isinstance(profile, Profile):
        profile = load_profile(profile)  # fail at load time, naming the bad key, not mid-run
    recipe = Recipe(profile)
    assets = [
        *build_prompt_assets(profile),
        *build_model_assets(profile, recipe),
        *build_arbitrage_assets(profile),
        *build_sft_assets(profile, recipe),
        *build_offline_assets(profile, recipe),
        *build_online_assets(profile, recipe),
        *build_evaluation_assets(profile, recipe),
        *build_safety_assets(profile, recipe),
    ]
    return dg.Definitions(assets=assets, asset_checks=build_preflight_checks(profile), jobs=stage_jobs(assets, recipe),
                          resources=resources(profile))


def stage_jobs(assets: list[dg.AssetsDefinition], recipe: Recipe) -> list:
    """One asset job per recipe step and partitioning (a Dagster job holds one partitions definition): `prompts_job`,
    `models_job`, `models_teacher_job`, `sft_cluster_job`, `online_1_language_job`, ... A run's name says what it ran.

    An unpartitioned asset joins the job of its upstream in the same group (a merge joins its cluster models).
    """
    nodes = {key: a for a in assets for key in a.keys}

    def kind(key: dg.AssetKey) -> str:
        column = (nodes[key].metadata_by_key[key] or {}).get(PARTITION_COLUMN)
        if column:
            return column
        name = key.to_user_string()
        return recipe[name].partitioning if name in recipe else "none"

    buckets: dict[tuple[str, str], list[dg.AssetKey]] = {}
    for key, a in nodes.items():
        group, k = a.group_names_by_key[key], kind(key)
        if k == "none":
            ups = [u for u in a.asset_deps[key] if u in nodes and nodes[u].group_names_by_key[u] == group and kind(u) != "none"]
            k = kind(ups[0]) if ups else k
        buckets.setdefault((group, k), []).append(key)
    per_group = Counter(group for group, _ in buckets)
    # "_job": a job may not share a name with an asset's op (the `prompts` group holds the `prompts` asset).
    return [dg.define_asset_job((group if k == "none" or per_group[group] == 1 else f"{group}_{k}") + "_job",
                                selection=dg.AssetSelection.assets(*keys),
                                description=f"The `{group}` step of the recipe ({k} partitions): its assets and their checks.")
            for (group, k), keys in buckets.items()]


@dg.definitions
def defs() -> dg.Definitions:
    """What `dagster dev` loads: the default profile (AYA_PROFILE or tiny), built when Dagster asks, not at import."""
    return build_definitions()
