"""The `prompts` asset: every configured source, per language, validated before any model work."""

import dagster as dg
import polars as pl

from aya_assets.partitions import language_partitions
from aya_assets.prompts import checks
from aya_assets.prompts.sources import load_prompts
from aya_assets.resources import ProfileResource
from aya_assets.store import PARTITION_COLUMN

COVERS_SPLITS = "prompts_train_and_eval_per_language"


def check_covers_splits(df: pl.DataFrame, languages: list[str]) -> checks.Result:
    counts = df.group_by("language", "split").len()
    missing = [
        f"{lang}/{split}"
        for lang in languages
        for split in ("train", "eval")
        if counts.filter((pl.col("language") == lang) & (pl.col("split") == split)).is_empty()
    ]
    return not missing, {"missing_language_splits": ", ".join(missing) or "none"}


@dg.asset(
    partitions_def=language_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="prompts",
    kinds={"polars", "parquet"},
    code_version="1",
    metadata={PARTITION_COLUMN: "language"},
    check_specs=[dg.AssetCheckSpec(name, asset="prompts", blocking=True) for name in [*checks.BLOCKING, COVERS_SPLITS]]
    + [dg.AssetCheckSpec(checks.LANGUAGE_ID, asset="prompts", description="lingua disagrees with the label")],
)
def prompts(context: dg.AssetExecutionContext, profile: ProfileResource):
    """Prompts from every configured source, with stable ids and a train/eval split."""
    languages = list(context.partition_keys)
    df = load_prompts(profile.profile.prompts, languages)
    context.log.info(f"{df.height} prompts for {len(languages)} language(s)")
    yield dg.Output(df, metadata={"sources": ", ".join(sorted(df["source"].unique().to_list()))})
    for name, check in checks.BLOCKING.items():
        passed, meta = check(df)
        yield dg.AssetCheckResult(check_name=name, passed=passed, metadata=meta)
    passed, meta = check_covers_splits(df, languages)
    yield dg.AssetCheckResult(check_name=COVERS_SPLITS, passed=passed, metadata=meta)
    passed, meta = checks.check_language_id(df)
    yield dg.AssetCheckResult(
        check_name=checks.LANGUAGE_ID, passed=passed, metadata=meta, severity=dg.AssetCheckSeverity.WARN
    )
