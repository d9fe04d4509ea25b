"""Language partitions for data, cluster partitions for training, and the mapping between them."""

from __future__ import annotations

import dagster as dg

from aya_assets.languages import LANGUAGE_CODES, language_to_clusters

language_partitions = dg.StaticPartitionsDefinition(LANGUAGE_CODES)


def cluster_partitions(clusters: dict[str, list[str]]) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition(list(clusters))


def language_to_cluster_mapping(clusters: dict[str, list[str]]) -> dg.StaticPartitionMapping:
    """en/es/fr feed every cluster; every other language feeds its family's cluster."""
    return dg.StaticPartitionMapping(language_to_clusters(clusters))
