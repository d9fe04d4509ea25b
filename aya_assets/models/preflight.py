"""A blocking check before the first GPU step: every hub checkpoint the profile names can be loaded here.

Hub ids are checked here rather than when the definitions load, so that the definitions (and the UI) load offline
on any machine, while a run stops before its first model step when a checkpoint is neither reachable nor cached.
Local paths, chat templates and devices are checked at load (aya_assets.profile).
"""

import dagster as dg

from aya_assets.profile import Profile, configured_models, hub_problems

MODELS_AVAILABLE = "configured_models_available"


def build_preflight_checks(profile: Profile) -> list:
    @dg.asset_check(asset="prompts", name=MODELS_AVAILABLE, blocking=True,
                    description="every configured hub checkpoint is reachable or in the local HF cache")
    def configured_models_available(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        problems = hub_problems(profile)
        for problem in problems:
            context.log.error(problem)
        # The description is what `aya` prints on its one error line: the first problem, and how many more.
        description = (problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")) if problems else None
        return dg.AssetCheckResult(passed=not problems, description=description, metadata={
            "models": ", ".join(m.key for m in configured_models(profile)) or "none",
            "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
        })

    return [configured_models_available]
