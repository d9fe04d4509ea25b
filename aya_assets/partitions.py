"""Language partitions for data, cluster partitions for training, and the mapping between them."""

from __future__ import annotations

import dagster as dg

from aya_assets.artifacts.tables import PARTITION_COLUMN
from aya_assets.languages import LANGUAGE_CODES, language_to_clusters

language_partitions = dg.StaticPartitionsDefinition(LANGUAGE_CODES)


def cluster_partitions(clusters: dict[str, list[str]]) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition(list(clusters))


def language_to_cluster_mapping(clusters: dict[str, list[str]]) -> dg.StaticPartitionMapping:
    """en/es/fr feed every cluster; every other language feeds its family's cluster."""
    return dg.StaticPartitionMapping(language_to_clusters(clusters))


def per_language(group: str) -> dict:
    """The decorator arguments every per-language table asset shares: language partitions, one run per backfill."""
    return dict(partitions_def=language_partitions, backfill_policy=dg.BackfillPolicy.single_run(),
                metadata={PARTITION_COLUMN: "language"}, group_name=group)
