"""Read the configured prompt sources into one validated table (pure functions, no Dagster)."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from pathlib import Path

import polars as pl

from aya_assets import paths
from aya_assets.languages import LANGUAGE_CODES, LANGUAGES
from aya_assets.profile import (
    ArenaHardSource,
    HubDatasetSource,
    PromptsConfig,
    SeedSource,
    Source,
    TableSource,
)

PROMPT_SCHEMA = {
    "prompt_id": pl.String,
    "language": pl.String,
    "text": pl.String,
    "source": pl.String,
    "source_id": pl.String,
    "split": pl.String,
    "reference": pl.String,
    "category": pl.String,
}


class PromptSourceError(ValueError):
    """A prompt file or row that cannot be used; the message names the file and row."""


def normalize_text(text: str) -> str:
    return unicodedata.normalize("NFC", text).strip()


def prompt_id(language: str, text: str) -> str:
    """Stable id: the same text in the same language gets the same id in every source and run."""
    return hashlib.sha256(f"{language}\n{normalize_text(text)}".encode()).hexdigest()[:16]


def default_split(pid: str, eval_fraction: float) -> str:
    # Deterministic by id so a prompt never moves between train and eval across runs.
    return "eval" if int(pid[:8], 16) / 0xFFFFFFFF < eval_fraction else "train"


def read_jsonl(path: Path) -> list[dict]:
    """JSON lines, parsed one by one so an error names the line (pl.read_ndjson would not)."""
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise PromptSourceError(f"{path}: not UTF-8 text (byte {exc.start}): {exc.reason}") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptSourceError(f"{path}:{number}: invalid JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise PromptSourceError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        row["_row"] = number
        rows.append(row)
    return rows


def _files(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in suffixes)
    return [path]


def _read_table_file(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:  # polars raises several types for a corrupt file
            raise PromptSourceError(f"{path}: not a readable Parquet file: {exc}") from None
        return [dict(row, _row=i) for i, row in enumerate(frame.iter_rows(named=True), start=1)]
    return read_jsonl(path)


def _field(row: dict, column: str | None, where: str, required: bool = False):
    if column is None:
        return None
    if column not in row or row[column] is None:
        if required:
            raise PromptSourceError(f"{where}: missing field {column!r}")
        return None
    value = row[column]
    if not isinstance(value, (str, int, float)):
        raise PromptSourceError(f"{where}: field {column!r} must be text, got {type(value).__name__}")
    return str(value)


def _record(
    *, where: str, source: str, language: str | None, text, split, reference, category, source_id, cfg: PromptsConfig
) -> dict:
    if language not in LANGUAGES:
        raise PromptSourceError(f"{where}: unknown language {language!r}; expected one of {', '.join(LANGUAGE_CODES)}")
    if not isinstance(text, str) or not normalize_text(text):
        raise PromptSourceError(f"{where}: empty text")
    text = normalize_text(text)
    if len(text) > cfg.max_chars:
        raise PromptSourceError(f"{where}: text is {len(text)} characters, over prompts.max_chars={cfg.max_chars}")
    if split not in (None, "train", "eval"):
        raise PromptSourceError(f"{where}: split must be 'train' or 'eval', got {split!r}")
    pid = prompt_id(language, text)
    return {
        "prompt_id": pid,
        "language": language,
        "text": text,
        "source": source,
        "source_id": source_id,
        "split": split or default_split(pid, cfg.eval_fraction),
        "reference": normalize_text(reference) if reference else None,
        "category": category,
    }


def _from_seed(src: SeedSource, languages: list[str], cfg: PromptsConfig) -> list[dict]:
    out = []
    for language in languages:
        path = paths.resolve(src.path) / f"{language}.jsonl"
        if not path.exists():
            continue
        for row in read_jsonl(path):
            where = f"{path}:{row['_row']}"
            out.append(
                _record(
                    where=where,
                    source=src.name,
                    language=language,
                    text=_field(row, "text", where, required=True),
                    split=_field(row, "split", where),
                    reference=_field(row, "reference", where),
                    category=_field(row, "category", where),
                    source_id=None,
                    cfg=cfg,
                )
            )
    return out


def _from_table(src: TableSource, languages: list[str], cfg: PromptsConfig) -> list[dict]:
    out, cols, first_seen = [], src.columns, {}
    for path in _files(paths.resolve(src.path), (".jsonl", ".parquet")):
        for row in _read_table_file(path):
            where = f"{path}:{row['_row']}"
            source_id = _field(row, cols.id, where)
            if source_id is not None:
                if source_id in first_seen:
                    raise PromptSourceError(f"{where}: duplicate id {source_id!r} (first at {first_seen[source_id]})")
                first_seen[source_id] = where
            language = _field(row, cols.language, where, required=True) if cols.language else src.language
            if language in LANGUAGES and language not in languages:
                continue
            out.append(
                _record(
                    where=where,
                    source=src.name,
                    language=language,
                    text=_field(row, cols.text, where, required=True),
                    split=_field(row, cols.split, where) or src.split,
                    reference=_field(row, cols.reference, where),
                    category=_field(row, cols.category, where),
                    source_id=source_id,
                    cfg=cfg,
                )
            )
    return out


def _arena_hard_rows(rows: list[dict], where_of, *, src_name: str, language: str, split: str, cfg) -> list[dict]:
    out = []
    for row in rows:
        where = where_of(row)
        if "prompt" in row:  # m-ArenaHard's flat layout
            text = row["prompt"]
        else:  # Arena-Hard-Auto question.jsonl: the first user turn is the prompt
            turns = row.get("turns")
            if not isinstance(turns, list) or not turns or not isinstance(turns[0], dict):
                raise PromptSourceError(f"{where}: missing field 'turns' (a list of {{'content': ...}})")
            text = turns[0].get("content")
        qid = _field(row, "question_id", where, required=True)
        out.append(
            _record(
                where=where,
                source=src_name,
                language=language,
                text=text,
                split=split,
                reference=None,
                category=_field(row, "category", where) or _field(row, "cluster", where),
                source_id=qid,
                cfg=cfg,
            )
        )
    return out


def _from_arena_hard(src: ArenaHardSource, languages: list[str], cfg: PromptsConfig) -> list[dict]:
    if src.language not in languages:
        return []
    path = paths.resolve(src.path)
    return _arena_hard_rows(
        read_jsonl(path), lambda r: f"{path}:{r['_row']}", src_name=src.name, language=src.language,
        split=src.split, cfg=cfg,
    )


def _from_hub(src: HubDatasetSource, languages: list[str], cfg: PromptsConfig) -> list[dict]:
    import datasets  # heavy; only this source needs it

    out = []
    for language in [code for code in (src.languages or LANGUAGE_CODES) if code in languages]:
        try:
            if src.local_dir:
                files = str(paths.resolve(src.local_dir) / language / "*.parquet")
                ds = datasets.load_dataset("parquet", data_files=files, split="train")
            else:
                ds = datasets.load_dataset(src.dataset, language, split=src.hf_split, revision=src.revision)
        except Exception as exc:  # datasets raises many types: offline, missing config, bad files
            raise PromptSourceError(f"source {src.name!r} ({src.dataset}, {language}): cannot load: {exc}") from None
        rows = [dict(r, _row=i) for i, r in enumerate(ds, start=1)]
        out += _arena_hard_rows(
            rows, lambda r, lang=language: f"{src.dataset}[{lang}] row {r['_row']}", src_name=src.name,
            language=language, split=src.split, cfg=cfg,
        )
    return out


READERS = {
    SeedSource: _from_seed,
    TableSource: _from_table,
    ArenaHardSource: _from_arena_hard,
    HubDatasetSource: _from_hub,
}


def read_source(src: Source, languages: list[str], cfg: PromptsConfig) -> list[dict]:
    return READERS[type(src)](src, languages, cfg)


def load_prompts(cfg: PromptsConfig, languages: list[str]) -> pl.DataFrame:
    """All configured sources for `languages`, deduplicated by prompt_id (first source in config order wins)."""
    rows = [row for src in cfg.sources for row in read_source(src, languages, cfg)]
    frame = pl.DataFrame(rows, schema=PROMPT_SCHEMA)
    return frame.unique(subset="prompt_id", keep="first", maintain_order=True).sort(
        ["language", "split", "prompt_id"]
    )
