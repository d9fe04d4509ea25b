"""Preference pairs in TRL's conversational schema (prompt / chosen / rejected), as pure Polars."""

from __future__ import annotations

import polars as pl

from aya_assets.arbitrage.routing import turn

PAIR_SCHEMA_COLUMNS = [
    "prompt_id", "language", "kind", "prompt", "chosen", "rejected",
    "chosen_source", "rejected_source", "chosen_score", "rejected_score", "margin",
]


def conversational(frame: pl.DataFrame) -> pl.DataFrame:
    """Text columns prompt_text/chosen_text/rejected_text → TRL's prompt/chosen/rejected message lists."""
    return frame.with_columns(
        prompt=pl.concat_list(turn("user", "prompt_text")),
        chosen=pl.concat_list(turn("assistant", "chosen_text")),
        rejected=pl.concat_list(turn("assistant", "rejected_text")),
    ).select(PAIR_SCHEMA_COLUMNS)


def best_vs_worst(scores: pl.DataFrame, min_margin: float, kind: str) -> pl.DataFrame:
    """Per prompt: the highest-scored completion against the lowest, kept when the gap is at least `min_margin` and the
    two answers differ (with min_margin 0, a prompt with one answer or equal scores must not pair an answer with itself)."""
    ranked = scores.with_columns(source=pl.col("teacher") + "#" + pl.col("sample").cast(pl.String))
    order = ["prompt_id", "score", "source"]
    best = ranked.sort(order, descending=[False, True, False]).group_by("prompt_id", maintain_order=True).first()
    worst = ranked.sort(order, descending=[False, False, False]).group_by("prompt_id", maintain_order=True).first()
    pairs = best.join(worst, on="prompt_id", suffix="_worst").select(
        "prompt_id",
        "language",
        kind=pl.lit(kind),
        prompt_text=pl.col("prompt"),
        chosen_text=pl.col("completion"),
        rejected_text=pl.col("completion_worst"),
        chosen_source=pl.col("source"),
        rejected_source=pl.col("source_worst"),
        chosen_score=pl.col("score"),
        rejected_score=pl.col("score_worst"),
        margin=pl.col("score") - pl.col("score_worst"),
    )
    kept = pairs.filter((pl.col("margin") >= min_margin) & (pl.col("chosen_text") != pl.col("rejected_text")))
    return conversational(kept.sort("language", "prompt_id"))


def translation_contrast(native: pl.DataFrame, translated: pl.DataFrame) -> pl.DataFrame:
    """Chosen = the native (arbitrage) answer, rejected = the weak English model's answer translated into the language.

    `native`: prompt_id, language, prompt, completion, teacher, score (arbitrage_sft rows).
    `translated`: prompt_id, translation, source_model.
    """
    pairs = native.join(translated, on="prompt_id").select(
        "prompt_id",
        "language",
        kind=pl.lit("translation"),
        prompt_text=pl.col("prompt"),
        chosen_text=pl.col("completion"),
        rejected_text=pl.col("translation"),
        chosen_source=pl.col("teacher"),
        rejected_source=pl.col("source_model"),
        chosen_score=pl.col("score"),
        rejected_score=pl.lit(None, pl.Float64),
        margin=pl.lit(None, pl.Float64),
    )
    return conversational(pairs.sort("language", "prompt_id"))


def safety_contrast(redteam: pl.DataFrame) -> pl.DataFrame:
    """Chosen = a red-team train prompt's safe reference (a refusal), rejected = its unsafe reference (compliance)."""
    rows = redteam.filter((pl.col("split") == "train") & pl.col("reference").is_not_null()
                          & pl.col("unsafe_reference").is_not_null() & (pl.col("reference") != pl.col("unsafe_reference")))
    pairs = rows.select(
        "prompt_id",
        "language",
        kind=pl.lit("safety"),
        prompt_text=pl.col("text"),
        chosen_text=pl.col("reference"),
        rejected_text=pl.col("unsafe_reference"),
        chosen_source=pl.lit("safe_reference"),
        rejected_source=pl.lit("unsafe_reference"),
        chosen_score=pl.lit(None, pl.Float64),
        rejected_score=pl.lit(None, pl.Float64),
        margin=pl.lit(None, pl.Float64),
    )
    return conversational(pairs.sort("language", "prompt_id"))


def trl_rows(pairs: pl.DataFrame) -> list[dict]:
    """The rows TRL's DPOTrainer takes."""
    return pairs.select("prompt", "chosen", "rejected").to_dicts()


def cluster_pairs(pairs: pl.DataFrame, clusters: dict[str, list[str]]) -> pl.DataFrame:
    """Per cluster: the pairs of its languages (what its DPO trains on) and their mean margin (None if unscored)."""
    rows = []
    for cluster, languages in clusters.items():
        own = pairs.filter(pl.col("language").is_in(languages))
        margins = own["margin"].drop_nulls()
        rows.append({"cluster": cluster, "pairs": own.height, "mean_margin": float(margins.mean()) if margins.len() else None})
    return pl.DataFrame(rows, schema={"cluster": pl.String, "pairs": pl.Int64, "mean_margin": pl.Float64})


def failing_clusters(per_cluster: pl.DataFrame) -> list[str]:
    """Clusters whose DPO would train on nothing, or on pairs whose chosen side does not outscore the rejected."""
    return per_cluster.filter((pl.col("pairs") == 0) | (pl.col("mean_margin") <= 0))["cluster"].to_list()
