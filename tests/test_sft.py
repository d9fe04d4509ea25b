"""Cluster SFT data: a cluster's own languages in full, a seeded replay share of the others."""

import polars as pl

from aya_assets.sft.assets import cluster_rows


def arbitrage(languages, per_language=10):
    return pl.DataFrame({"language": [lang for lang in languages for _ in range(per_language)],
                         "prompt_id": [f"{lang}{i}" for lang in languages for i in range(per_language)]})


def test_replay_zero_keeps_only_the_cluster_languages():
    rows = cluster_rows(arbitrage(["en", "de", "ja", "ar"]), ["en", "de"], 0.0, seed=1)
    assert sorted(set(rows["language"])) == ["de", "en"] and rows.height == 20


def test_replay_adds_a_seeded_share_of_the_other_languages_whatever_their_order():
    data = arbitrage(["en", "de", "ja", "ar"])
    rows = cluster_rows(data, ["en", "de"], 0.5, seed=1)
    assert rows.filter(pl.col("language").is_in(["en", "de"])).height == 20  # own languages in full
    assert rows.filter(pl.col("language").is_in(["ja", "ar"])).height == 10  # half of the other 20
    shuffled = cluster_rows(data.sample(fraction=1.0, shuffle=True, seed=7), ["en", "de"], 0.5, seed=1)
    assert sorted(shuffled["prompt_id"]) == sorted(rows["prompt_id"])
    assert sorted(cluster_rows(data, ["en", "de"], 0.5, seed=2)["prompt_id"]) != sorted(rows["prompt_id"])
