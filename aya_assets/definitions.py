"""The Dagster code location: every stage's assets, wired to the resources of the active profile."""

import dagster as dg

from aya_assets.arbitrage.arbiter import Arbiter
from aya_assets.arbitrage.assets import build_arbitrage_assets
from aya_assets.evaluation.assets import build_evaluation_assets
from aya_assets.evaluation.judge import LLMJudge, ReferenceJudge
from aya_assets.generation import EndpointBackend, GenerationBackend, TransformersBackend, VLLMBackend
from aya_assets.models.assets import build_model_assets, model_location
from aya_assets.paths import data_dir
from aya_assets.preference.assets import build_offline_assets, build_online_assets
from aya_assets.preference.translate import NLLBTranslator, NoTranslator
from aya_assets.models.preflight import configured_models_available
from aya_assets.profile import GenerationConfig, Profile, load_profile, profile_path
from aya_assets.prompts.assets import prompts
from aya_assets.artifacts.store import ArtifactStore, ProfileResource
from aya_assets.sft.assets import build_sft_assets
from aya_assets.artifacts.tables import WarehouseIOManager


def generation_backend(cfg: GenerationConfig) -> GenerationBackend:
    if cfg.backend == "vllm":
        return VLLMBackend(**cfg.vllm.model_dump())
    if cfg.backend == "endpoint":
        return EndpointBackend(**cfg.endpoint.model_dump())
    return TransformersBackend(batch_size=cfg.batch_size, device=cfg.device)


def resources(profile: Profile, profile_name: str | None) -> dict:
    store = ArtifactStore(root=str(data_dir()))
    generator = generation_backend(profile.generation)
    ev, tr = profile.evaluation, profile.translation
    rm = profile.models.reward_model  # built (tiny) or the configured checkpoint (models.build false)
    arbiter_model = {"model": model_location(profile, store.models, "reward_model", rm),
                     "revision": None if profile.models.build else rm.revision}
    return {
        "profile": ProfileResource(name_or_path=str(profile_path(profile_name))),
        "store": store,
        "io_manager": WarehouseIOManager(base_dir=str(store.warehouse)),
        "generator": generator,
        "arbiter": Arbiter(**arbiter_model, **profile.arbiter.model_dump()),
        "translator": NoTranslator() if tr.translator == "none"
        else NLLBTranslator(model=tr.model, batch_size=tr.batch_size, device=tr.device),
        "judge": LLMJudge(model=ev.judge_model, backend=generator, max_new_tokens=ev.judge_max_new_tokens) if ev.judge == "llm"
        else ReferenceJudge(fidelity_weight=ev.fidelity_weight, tie_margin=ev.tie_margin),
    }


def build_definitions(profile_name: str | None = None) -> dg.Definitions:
    profile = load_profile(profile_name)  # fail at load time, naming the bad key, not mid-run
    stages = [build_model_assets, build_arbitrage_assets, build_sft_assets, build_offline_assets,
              build_online_assets, build_evaluation_assets]
    return dg.Definitions(
        assets=[prompts, *(asset for build in stages for asset in build(profile))],
        asset_checks=[configured_models_available],
        resources=resources(profile, profile_name),
    )


defs = build_definitions()
