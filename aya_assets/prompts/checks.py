"""Validity checks over a prompts table: pure functions returning (passed, metadata), and what each one means."""

from __future__ import annotations

import dagster as dg
import polars as pl

from aya_assets.languages import langid
from aya_assets.languages import LANGUAGE_CODES
from aya_assets.prompts.sources import PROMPT_SCHEMA
from aya_assets.artifacts.tables import markdown_table

SCHEMA = "prompts_schema"
KNOWN_LANGUAGE = "prompts_known_language"
NON_EMPTY_TEXT = "prompts_non_empty_text"
UNIQUE_IDS = "prompts_unique_ids"
COVERS_SPLITS = "prompts_train_and_eval_per_language"
LANGUAGE_ID = "prompts_language_id"

DESCRIPTIONS = {
    SCHEMA: "Every column of the prompts schema is present with its type.",
    KNOWN_LANGUAGE: "Every row's language is one of the 23 Aya languages.",
    NON_EMPTY_TEXT: "No prompt text is empty or blank.",
    UNIQUE_IDS: "prompt_id (a hash of language and text) is unique.",
    COVERS_SPLITS: "Every materialized language has train and eval prompts.",
    LANGUAGE_ID: "Per language, the share of prompts that lingua reads as another language (or cannot tell) is at most "
    "prompts.max_language_mismatch (default 0.2); the failing languages and their shares are in the metadata.",
}

Result = tuple[bool, dict]


def check_schema(df: pl.DataFrame) -> Result:
    wrong = {c: str(df.schema.get(c)) for c, t in PROMPT_SCHEMA.items() if df.schema.get(c) != t}
    return not wrong, {"wrong_or_missing_columns": str(wrong)}


def check_known_language(df: pl.DataFrame) -> Result:
    bad = df.filter(~pl.col("language").is_in(LANGUAGE_CODES))
    return bad.is_empty(), {"unknown_language_rows": bad.height}


def check_non_empty_text(df: pl.DataFrame) -> Result:
    bad = df.filter(pl.col("text").is_null() | (pl.col("text").str.strip_chars() == ""))
    return bad.is_empty(), {"empty_text_rows": bad.height}


def check_unique_ids(df: pl.DataFrame) -> Result:
    dupes = df.filter(pl.col("prompt_id").is_duplicated())
    return dupes.is_empty(), {"duplicate_id_rows": dupes.height}


def check_covers_splits(df: pl.DataFrame, languages: list[str]) -> Result:
    counts = df.group_by("language", "split").len()
    missing = [
        f"{lang}/{split}"
        for lang in languages
        for split in ("train", "eval")
        if counts.filter((pl.col("language") == lang) & (pl.col("split") == split)).is_empty()
    ]
    return not missing, {"missing_language_splits": ", ".join(missing) or "none"}


def language_mismatches(df: pl.DataFrame) -> pl.DataFrame:
    """Rows whose text lingua reads as another language than their label."""
    if df.is_empty():
        return df.select("prompt_id", "language", "text").with_columns(detected=pl.lit(None, pl.String))
    detected = langid.detect(df["text"].to_list())
    return (
        df.select("prompt_id", "language", "text")
        .with_columns(detected=pl.Series(detected, dtype=pl.String))
        .filter(pl.col("detected").is_null() | (pl.col("detected") != pl.col("language")))
    )


def mismatch_shares(df: pl.DataFrame, bad: pl.DataFrame) -> pl.DataFrame:
    """Per language: rows, rows lingua reads as another language, and their share."""
    mismatched = bad.group_by("language").len("mismatched")
    return (
        df.group_by("language").len("rows")
        .join(mismatched, on="language", how="left")
        .with_columns(pl.col("mismatched").fill_null(0))
        .with_columns(share=(pl.col("mismatched") / pl.col("rows")).round(4))
        .sort("share", "language", descending=[True, False])
    )


def check_language_id(df: pl.DataFrame, max_share: float) -> Result:
    bad = language_mismatches(df)
    shares = mismatch_shares(df, bad)
    failing = shares.filter(pl.col("share") > max_share)
    return failing.is_empty(), {
        "failing_languages": ", ".join(f"{lang} ({share:.0%})" for lang, share in failing.select("language", "share").rows())
        or "none",
        "max_share": max_share,
        "mismatched_rows": bad.height,
        # Markdown, not text: the UI renders a MetadataValue.md table, and shows a plain string as its raw pipes.
        "shares": dg.MetadataValue.md(markdown_table(shares.filter(pl.col("mismatched") > 0), rows=len(LANGUAGE_CODES))
                                      if bad.height else "none"),
        "mismatches": dg.MetadataValue.md(markdown_table(bad, rows=20) if bad.height else "none"),
    }


def evaluate(df: pl.DataFrame, languages: list[str], max_mismatch: float) -> dict[str, Result]:
    """Every check over `df`, the rows of the materialized `languages`, by check name."""
    return {
        SCHEMA: check_schema(df),
        KNOWN_LANGUAGE: check_known_language(df),
        NON_EMPTY_TEXT: check_non_empty_text(df),
        UNIQUE_IDS: check_unique_ids(df),
        COVERS_SPLITS: check_covers_splits(df, languages),
        LANGUAGE_ID: check_language_id(df, max_mismatch),
    }
