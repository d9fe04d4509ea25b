"""Validity checks over a prompts table: pure functions returning (passed, metadata)."""

from __future__ import annotations

import polars as pl

from aya_assets import langid
from aya_assets.languages import LANGUAGE_CODES
from aya_assets.prompts.sources import PROMPT_SCHEMA
from aya_assets.store import markdown_table

SCHEMA = "prompts_schema"
KNOWN_LANGUAGE = "prompts_known_language"
NON_EMPTY_TEXT = "prompts_non_empty_text"
UNIQUE_IDS = "prompts_unique_ids"
LANGUAGE_ID = "prompts_language_id"

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


def check_language_id(df: pl.DataFrame) -> Result:
    bad = language_mismatches(df)
    return bad.is_empty(), {
        "mismatched_rows": bad.height,
        "mismatch_rate": round(bad.height / max(df.height, 1), 4),
        "mismatches": markdown_table(bad, rows=20) if bad.height else "none",
    }


BLOCKING = {
    SCHEMA: check_schema,
    KNOWN_LANGUAGE: check_known_language,
    NON_EMPTY_TEXT: check_non_empty_text,
    UNIQUE_IDS: check_unique_ids,
}
