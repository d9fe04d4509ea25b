"""Red-team prompts in the Aya Red-teaming layout (CohereLabs/aya_redteaming) as one table (pure functions, no Dagster).

The layout: one aya_<iso 639-3>.jsonl per language at the dataset's root; each row has prompt, language (its English
name), harm_category (a list literal in a string), global_or_local, literal_translation, semantic_translation and
explanation. The bundled set (data/seed/redteam) adds id, safe_reference and unsafe_reference.
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from aya_assets import paths
from aya_assets.languages import LANGUAGE_CODES, LANGUAGES
from aya_assets.profile import RedTeamSource
from aya_assets.prompts.sources import (
    PROMPT_SCHEMA,
    PromptSourceError,
    _check_new_id,
    _field,
    _files,
    _text,
    _what,
    default_split,
    normalize_text,
    prompt_id,
    read_jsonl,
)

# The prompts' columns (reference: the safe answer to learn), then global_or_local and a compliance (the answer to avoid);
# category holds the row's harm categories joined by "; ".
REDTEAM_SCHEMA = {**PROMPT_SCHEMA, "scope": pl.String, "unsafe_reference": pl.String}
SKIPPED_SCHEMA = {"source": pl.String, "file": pl.String, "language": pl.String, "rows": pl.Int64, "reason": pl.String}
NOT_AYA = "not an Aya language"

# Languages the published set has beyond the 23 Aya ones, keyed by ISO 639-3: reported as skipped, not loaded.
OTHER_LANGUAGES = {"srp": "Serbian", "tgl": "Tagalog"}
# A file name's ISO 639-3 code -> the language: an Aya language's ISO 639-1 code, or a key of OTHER_LANGUAGES.
FILE_CODES = {
    "arb": "ar", "zho": "zh", "ces": "cs", "nld": "nl", "eng": "en", "fra": "fr", "deu": "de", "ell": "el",
    "heb": "he", "hin": "hi", "ind": "id", "ita": "it", "jpn": "ja", "kor": "ko", "pes": "fa", "pol": "pl",
    "por": "pt", "ron": "ro", "rus": "ru", "spa": "es", "tur": "tr", "ukr": "uk", "vie": "vi",
    "srp": "srp", "tgl": "tgl", "fil": "tgl",
}
# A row's `language` (its English name, any case) -> the same keys; the dataset writes Tagalog as "Filipino".
LANGUAGE_NAMES = {lang.name.lower(): code for code, lang in LANGUAGES.items()} | {
    "serbian": "srp", "tagalog": "tgl", "filipino": "tgl",
}
FILE_NAME = re.compile(r"aya_([a-z]{3})\.jsonl")
SCOPES = ("global", "local")
LOCAL_COPY = "set the source's `path` to a local copy (a folder of aya_<code>.jsonl files)"


@dataclass(frozen=True)
class LoadedRedTeam:
    frame: pl.DataFrame  # REDTEAM_SCHEMA, one row per prompt_id
    skipped: pl.DataFrame  # SKIPPED_SCHEMA: rows left out, by file and language (rows null: a hub file not downloaded)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _display(language: str) -> str:
    return LANGUAGES[language].name if language in LANGUAGES else OTHER_LANGUAGES[language]


def file_language(name: str) -> str | None:
    """The language an aya_<code>.jsonl file name declares (None for other names and unknown codes)."""
    match = FILE_NAME.fullmatch(name)
    return FILE_CODES.get(match.group(1)) if match else None


def row_language(row: dict, where: str, file_name: str) -> str:
    """The row's language from its English name, which must agree with the file name's code where it has one."""
    declared, value = file_language(file_name), row.get("language")
    if value is None and declared:
        return declared
    if value is None:
        raise PromptSourceError(f"{where}: missing field 'language' (the language's English name, e.g. 'English')")
    if not isinstance(value, str):
        raise PromptSourceError(
            f"{where}: field 'language' is {_what(value)}, expected an English name, e.g. 'English'")
    language = LANGUAGE_NAMES.get(normalize_text(value).lower())
    if language is None:
        names = sorted({_display(code) for code in LANGUAGE_NAMES.values()} | {"Filipino"})
        raise PromptSourceError(
            f"{where}: unknown language {value!r}; expected an English name, one of {', '.join(names)}")
    if declared and language != declared:
        raise PromptSourceError(
            f"{where}: language {value!r} does not match the file name {file_name} ({_display(declared)}); "
            "move the row to its language's file or correct its language"
        )
    return language


def harm_categories(value, where: str) -> list[str]:
    """harm_category as published, a list literal in a string ('["Hate Speech", "Profanity"]'), or a real list."""
    if value is None:
        return []
    parsed = value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            try:
                parsed = ast.literal_eval(value)  # a Python literal: ['Hate Speech']
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                parsed = value
    if not isinstance(parsed, list) or not all(isinstance(c, str) and normalize_text(c) for c in parsed):
        raise PromptSourceError(
            f"{where}: harm_category is not a list of categories: {value!r:.120}; write a list of names, "
            "e.g. '[\"Hate Speech\", \"Profanity\"]'"
        )
    return [normalize_text(c) for c in parsed]


def _scope(row: dict, where: str) -> str | None:
    value = _field(row, "global_or_local", where)
    if value is None:
        return None
    if normalize_text(value).lower() not in SCOPES:
        raise PromptSourceError(f"{where}: global_or_local must be 'global' or 'local', got {value!r}")
    return normalize_text(value).lower()


def _reference(row: dict, column: str, where: str) -> str | None:
    value = _field(row, column, where)
    return (normalize_text(value) or None) if value is not None else None


def _read_file(path: Path, src: RedTeamSource, wanted: list[str], eval_fraction: float, max_chars: int,
               seen_ids: dict) -> tuple[list[dict], list[dict]]:
    """One aya_<code>.jsonl file: the rows of `wanted` languages, and counts of those left out."""
    kept, left_out = [], Counter()
    for row in read_jsonl(path):
        where = f"{path}:{row['_row']}"
        language = row_language(row, where, path.name)
        if language not in LANGUAGES:
            left_out[(normalize_text(row.get("language") or _display(language)), NOT_AYA)] += 1
            continue
        if language not in wanted:
            continue
        text = normalize_text(_text(row.get("prompt"), where, "prompt"))
        categories = harm_categories(row.get("harm_category"), where)
        scope = _scope(row, where)
        source_id = _field(row, "id", where)
        if source_id is not None:
            _check_new_id(seen_ids, (language, source_id), where)
        if len(text) > max_chars:
            left_out[(_display(language), f"over max_chars={max_chars}")] += 1
            continue
        pid = prompt_id(language, text)
        kept.append({
            "prompt_id": pid,
            "language": language,
            "text": text,
            "source": src.name,
            "source_id": source_id,
            "split": src.split or default_split(pid, eval_fraction),
            "category": "; ".join(categories) or None,
            "scope": scope,
            "reference": _reference(row, "safe_reference", where),
            "unsafe_reference": _reference(row, "unsafe_reference", where),
        })
    skipped = [{"source": src.name, "file": str(path), "language": name, "rows": n, "reason": reason}
               for (name, reason), n in left_out.items()]
    return kept, skipped


def _local_files(src: RedTeamSource, wanted: list[str]) -> list[Path]:
    """The copy's .jsonl files, less those whose name declares an Aya language not wanted."""
    root = paths.resolve(src.path)
    files = _files(root, (".jsonl",))
    if not files:
        raise PromptSourceError(
            f"source {src.name!r}: no .jsonl files in {root}; a local copy of {src.dataset} is a folder of "
            "aya_<code>.jsonl files (or one of them)"
        )
    return [f for f in files if file_language(f.name) not in LANGUAGES or file_language(f.name) in wanted]


def _hub_files(src: RedTeamSource, wanted: list[str]) -> tuple[list[Path], list[dict]]:
    """The wanted languages' files downloaded from the hub, and the files of other languages, reported unread."""
    import huggingface_hub  # only the hub path needs it

    where = f"source {src.name!r} ({src.dataset}{'@' + src.revision if src.revision else ''})"
    try:
        names = huggingface_hub.list_repo_files(src.dataset, repo_type="dataset", revision=src.revision)
    except Exception as exc:  # offline, no such repo or revision, no access: huggingface_hub raises many types
        raise PromptSourceError(
            f"{where}: cannot list the dataset's files: {_one_line(exc)}; offline? {LOCAL_COPY}") from None
    published = {name: file_language(name) for name in names if file_language(name)}
    if not published:
        raise PromptSourceError(
            f"{where}: no aya_<code>.jsonl files at the dataset's root (it has "
            f"{', '.join(sorted(names)[:8]) or 'none'}); is it in the Aya Red-teaming layout? Otherwise {LOCAL_COPY}"
        )
    downloaded, skipped = [], []
    for name, language in sorted(published.items()):
        if language in wanted:
            try:
                downloaded.append(Path(huggingface_hub.hf_hub_download(
                    repo_id=src.dataset, filename=name, repo_type="dataset", revision=src.revision)))
            except Exception as exc:  # as above
                raise PromptSourceError(
                    f"{where}: cannot download {name}: {_one_line(exc)}; offline? {LOCAL_COPY}") from None
        elif language not in LANGUAGES:
            skipped.append({"source": src.name, "file": f"hf://datasets/{src.dataset}/{name}",
                            "language": _display(language), "rows": None, "reason": NOT_AYA})
    return downloaded, skipped


def read_redteam(sources: list[RedTeamSource], languages: list[str], eval_fraction: float,
                 max_chars: int = 8000) -> LoadedRedTeam:
    """All red-team sources for `languages`, deduplicated by prompt_id (first source in config order wins)."""
    kept, skipped = [], []
    for src in sources:
        seen_ids: dict = {}  # ids are unique per language within a source
        wanted = [code for code in (src.languages or LANGUAGE_CODES) if code in languages]
        if src.path:
            files = _local_files(src, wanted)
        else:
            files, unread = _hub_files(src, wanted)
            skipped += unread
        for path in files:
            rows, left_out = _read_file(path, src, wanted, eval_fraction, max_chars, seen_ids)
            kept += rows
            skipped += left_out
    frame = pl.DataFrame(kept, schema=REDTEAM_SCHEMA)
    frame = frame.unique(subset="prompt_id", keep="first", maintain_order=True).sort(["language", "split", "prompt_id"])
    return LoadedRedTeam(frame, pl.DataFrame(skipped, schema=SKIPPED_SCHEMA))
