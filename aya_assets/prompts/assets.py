"""The `prompts` asset: every configured source, per language, validated before any model work."""

from pathlib import Path

import dagster as dg
import polars as pl

from aya_assets.languages import LANGUAGE_CODES
from aya_assets.partitions import language_partitions
from aya_assets.profile import Profile
from aya_assets.prompts import checks
from aya_assets.prompts.sources import LoadedPrompts, read_prompts
from aya_assets.artifacts.store import ArtifactStore
from aya_assets.artifacts.tables import PARTITION_COLUMN, markdown_table, read_partitions, stored_partitions

CODE_VERSION = "2"


def partition_metadata(loaded: LoadedPrompts, language: str) -> dict:
    """What one language's materialization reports beyond its table: its sources and the rows left out."""
    sources = loaded.frame.filter(pl.col("language") == language)["source"].unique().sort().to_list()
    skipped = loaded.skipped.filter(pl.col("language") == language).drop("language")
    meta = {"sources": ", ".join(sources) or "none", "skipped_over_max_chars": skipped.height}
    if skipped.height:
        meta["skipped_rows"] = dg.MetadataValue.md(markdown_table(skipped, rows=20))
    return meta


def with_stored(df: pl.DataFrame, warehouse: Path, asset_key: dg.AssetKey, fresh: list[str]) -> tuple[pl.DataFrame, list[str]]:
    """This run's rows plus those of every other partition in the warehouse, and the languages they cover."""
    others = [key for key in stored_partitions(warehouse, asset_key, LANGUAGE_CODES) if key not in fresh]
    whole = pl.concat([df, read_partitions(warehouse, asset_key, others)], how="diagonal_relaxed") if others else df
    return whole, sorted([*fresh, *others])


def stored_checks(context: dg.AssetExecutionContext, fresh: pl.DataFrame, store: ArtifactStore, languages: list[str],
                  max_mismatch: float, every_language: bool = True):
    """The prompt checks (checks.evaluate) over this run's rows and every stored partition of the asset, logging each
    failure's figures; `every_language`: each stored language must have train and eval rows (else only those present,
    for a source that covers some languages)."""
    whole, covered = with_stored(fresh, store.warehouse, context.asset_key, languages)
    judged = covered if every_language else sorted(set(whole["language"]))
    for name, (passed, meta) in checks.evaluate(whole, judged, max_mismatch).items():
        if not passed:  # the figures, not the Markdown tables, so that `aya materialize` says what failed
            figures = ", ".join(f"{k}: {v}" for k, v in meta.items() if not isinstance(v, dg.MarkdownMetadataValue))
            context.log.error(f"check {name} failed over the stored partitions {', '.join(covered)}: {figures}")
        yield dg.AssetCheckResult(check_name=name, passed=passed, metadata={**meta, "checked_partitions": ", ".join(covered)})


def prompt_table_args(asset: str, code_version: str) -> dict:
    """What a prompt table asset declares: language partitions as one backfill run, the prompts group (read before any
    model work) and the blocking prompt checks."""
    return dict(
        partitions_def=language_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="prompts",
        kinds={"polars", "parquet"},
        code_version=code_version,
        metadata={PARTITION_COLUMN: "language"},
        # Checks are asset-wide over every stored partition: in dagster 1.13 an AssetCheckResult names no partition, and
        # a partitioned check spec gets one only in a run of a single key, so a single-run backfill could not report per key.
        check_specs=[dg.AssetCheckSpec(name, asset=asset, blocking=True, description=text)
                     for name, text in checks.DESCRIPTIONS.items()],
    )


def build_prompt_assets(profile: Profile) -> list:
    @dg.asset(**prompt_table_args("prompts", CODE_VERSION))
    def prompts(context: dg.AssetExecutionContext, store: ArtifactStore):
        """Prompts from every configured source, with stable ids and a train/eval split."""
        languages = list(context.partition_keys)
        loaded = read_prompts(profile.prompts, languages)
        context.log.info(f"{loaded.frame.height} prompts for {len(languages)} language(s), {loaded.skipped.height} over max_chars")
        for language in languages:
            context.add_asset_metadata(partition_metadata(loaded, language), partition_key=language)
        yield dg.Output(loaded.frame)
        yield from stored_checks(context, loaded.frame, store, languages, profile.prompts.max_language_mismatch)

    return [prompts]
