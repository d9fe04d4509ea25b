"""Read the configured prompt sources into one validated table (pure functions, no Dagster)."""

from __future__ import annotations

import hashlib
import html
import json
import random
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from aya_assets import paths
from aya_assets.languages import LANGUAGE_CODES, LANGUAGES
from aya_assets.profile import (
    ArenaHardSource,
    HubDatasetSource,
    NumberWordsSource,
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
        text = path.read_bytes().decode("utf-8-sig")  # a byte-order mark (Windows editors) is not part of row 1
    except UnicodeDecodeError as exc:
        raise PromptSourceError(f"{path}: not UTF-8 text (byte {exc.start}): {exc.reason}") from None
    rows = []
    # "\n" only: str.splitlines also breaks at U+2028 and U+0085, which JSON strings may hold raw (arena-hard v2.0 does).
    for number, line in enumerate(text.split("\n"), start=1):
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


def _what(value) -> str:
    """What a value is, in the words of an error message."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _text(value, where: str, field: str, label: str | None = None) -> str:
    """A prompt's text as given: a non-blank string, or an error saying what the value is instead."""
    label = label or f"field {field!r}"
    if value is None:
        raise PromptSourceError(f"{where}: missing field {field!r}")
    if not isinstance(value, str):
        raise PromptSourceError(f"{where}: {label} is {_what(value)}, expected text")
    if not normalize_text(value):
        raise PromptSourceError(f"{where}: empty text: {label} is blank")
    return value


def _field(row: dict, column: str | None, where: str, required: bool = False):
    if column is None:
        return None
    if column not in row or row[column] is None:
        if required:
            raise PromptSourceError(f"{where}: missing field {column!r}")
        return None
    value = row[column]
    if not isinstance(value, (str, int, float)):
        raise PromptSourceError(f"{where}: field {column!r} is {_what(value)}, expected text")
    return str(value)


def _check_new_id(seen: dict, key: tuple, where: str) -> None:
    """Ids are unique per language (translations share theirs); a repeat names both rows."""
    if key in seen:
        raise PromptSourceError(f"{where}: duplicate id {key[-1]!r} (first at {seen[key]}); ids must be unique per language")
    seen[key] = where


def _record(
    *, where: str, source: str, language: str | None, text: str, split, reference, category, source_id, cfg: PromptsConfig
) -> dict:
    if language not in LANGUAGES:
        raise PromptSourceError(f"{where}: unknown language {language!r}; expected one of {', '.join(LANGUAGE_CODES)}")
    if split not in (None, "train", "eval"):
        raise PromptSourceError(f"{where}: split must be 'train' or 'eval', got {split!r}")
    text = normalize_text(text)
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
        "_where": where,  # for the max_chars report, dropped before the table
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
                    text=_text(row.get("text"), where, "text"),
                    split=_field(row, "split", where),
                    reference=_field(row, "reference", where),
                    category=_field(row, "category", where),
                    source_id=None,
                    cfg=cfg,
                )
            )
    return out


def _from_table(src: TableSource, languages: list[str], cfg: PromptsConfig) -> list[dict]:
    out, cols, seen = [], src.columns, {}
    for path in _files(paths.resolve(src.path), (".jsonl", ".parquet")):
        for row in _read_table_file(path):
            where = f"{path}:{row['_row']}"
            language = _field(row, cols.language, where, required=True) if cols.language else src.language
            source_id = _field(row, cols.id, where)
            if source_id is not None:
                _check_new_id(seen, (language, source_id), where)
            if language in LANGUAGES and language not in languages:
                continue
            out.append(
                _record(
                    where=where,
                    source=src.name,
                    language=language,
                    text=_text(row.get(cols.text), where, cols.text),
                    split=_field(row, cols.split, where) or src.split,
                    reference=_field(row, cols.reference, where),
                    category=_field(row, cols.category, where),
                    source_id=source_id,
                    cfg=cfg,
                )
            )
    return out


# Named references only when closed by ';': a bare "&not" or "&times" in a URL's query string is not an entity.
ENTITY = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")


def unescape_entities(text: str) -> str:
    """HTML entities that translation left in a prompt (m-ArenaHard: &#39;, &quot;) become the characters they stand for.

    A text that also holds a raw < or > was not escaped as a whole, so its entities are content (arena-hard v2.0 asks
    about JavaScript that rewrites &gt; and &lt;) and stay as written.
    """
    if "<" in text or ">" in text:
        return text
    return ENTITY.sub(lambda m: html.unescape(m.group()), text)


def _arena_hard_text(row: dict, where: str) -> str:
    if "prompt" in row:  # arena-hard-auto v2.0 (and v0.1 as reformatted upstream), m-ArenaHard v1 and v2.0
        return _text(row["prompt"], where, "prompt")
    if "turns" not in row:
        raise PromptSourceError(
            f"{where}: missing field 'turns' (v0.1: turns: [{{\"content\": ...}}]) or 'prompt' (v2.0, m-ArenaHard); "
            f"the row has {', '.join(sorted(k for k in row if not k.startswith('_'))) or 'no fields'}"
        )
    turns = row["turns"]  # arena-hard-auto v0.1 as first published: the first user turn is the prompt
    if not isinstance(turns, list) or not turns:
        raise PromptSourceError(f"{where}: turns is {_what(turns)}, expected a list of {{\"content\": ...}}")
    if not isinstance(turns[0], dict):
        raise PromptSourceError(f"{where}: turns[0] is {_what(turns[0])}, expected an object with 'content'")
    return _text(turns[0].get("content"), where, "turns[0].content", label="turns[0].content")


def _arena_hard_rows(rows: list[dict], where_of, *, src_name: str, language: str, split: str, cfg) -> list[dict]:
    out, seen = [], {}
    for row in rows:
        where = where_of(row)
        text = unescape_entities(_arena_hard_text(row, where))
        qid = _field(row, "uid" if "uid" in row else "question_id", where, required=True)
        _check_new_id(seen, (qid,), where)
        out.append(
            _record(
                where=where,
                source=src_name,
                language=language,
                text=text,
                split=split,
                reference=None,
                # The most specific label: v2.0's subcategory (coding, math), v0.1's topic cluster; category is the set.
                category=_field(row, "subcategory", where) or _field(row, "cluster", where) or _field(row, "category", where),
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


def _local_copy_rows(src: HubDatasetSource, language: str) -> list[dict]:
    """A language's rows from a local copy laid out as published: <local_dir>/<language>/test-00000-of-00001.parquet."""
    folder = paths.resolve(src.local_dir) / language
    files = _files(folder, (".parquet", ".jsonl")) if folder.is_dir() else []
    if not files:
        raise PromptSourceError(
            f"source {src.name!r}: no {folder}/*.parquet; a local copy of {src.dataset} has one folder per language "
            f"(as on the hub: {language}/test-00000-of-00001.parquet), or set `languages` to those it has"
        )
    return [dict(row, _where=f"{path}:{row['_row']}") for path in files for row in _read_table_file(path)]


def _from_hub(src: HubDatasetSource, languages: list[str], cfg: PromptsConfig) -> list[dict]:
    if not src.local_dir:
        import datasets  # heavy; only the hub needs it
    out = []
    for language in [code for code in (src.languages or LANGUAGE_CODES) if code in languages]:
        if src.local_dir:
            rows = _local_copy_rows(src, language)
        else:
            try:
                ds = datasets.load_dataset(src.dataset, language, split=src.hf_split, revision=src.revision)
            except Exception as exc:  # datasets raises many types: offline, missing config, bad files
                raise PromptSourceError(f"source {src.name!r} ({src.dataset}, {language}): cannot load: {exc}") from None
            rows = [dict(r, _where=f"{src.dataset}[{language}] row {i}") for i, r in enumerate(ds, start=1)]
        out += _arena_hard_rows(rows, lambda r: r["_where"], src_name=src.name, language=language, split=src.split, cfg=cfg)
    return out


# Categories of generated items whose reference is the one right answer (scored by exact match, not only chrF).
EXACT_ANSWER_CATEGORIES = frozenset({"number_words"})
SOFT_HYPHEN = "\u00ad"  # ICU marks break points inside long German, Dutch, Italian and Greek words with it


def number_split(n: int, seed: int, eval_fraction: float) -> str:
    """train / eval for the number `n`, from a seeded hash of it alone: the same items are held out in every language."""
    digest = hashlib.sha256(f"number_words:{seed}:{n}".encode()).hexdigest()
    return default_split(digest, eval_fraction)


def draw_numbers(src: NumberWordsSource) -> list[int]:
    """`count` distinct numbers from the inclusive range, seeded, ascending; the same for every language."""
    low, high = src.numbers
    return sorted(random.Random(src.seed).sample(range(low, high + 1), src.count))


def number_templates(src: NumberWordsSource, languages: list[str]) -> dict[str, str]:
    """The bundled {language: template} for `languages`; a missing language or a template without {n} names the file."""
    path = paths.resolve(src.templates)
    try:
        templates = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PromptSourceError(f"{path}: not a JSON object of templates: {exc}") from None
    if not isinstance(templates, dict):
        raise PromptSourceError(f"{path}: expected a JSON object {{language: template}}, got {_what(templates)}")
    out = {}
    for language in languages:
        where = f"{path}[{language!r}]"
        if language not in templates:
            raise PromptSourceError(f"{path}: no template for language {language!r}; add one or set the source's `languages`")
        template = _text(templates[language], where, language, label="the template")
        if template.count("{n}") != 1:
            raise PromptSourceError(f"{where}: the template must hold {{n}} (the number, as digits) exactly once: {template!r}")
        out[language] = template
    return out


def number_speller(language: str):
    """ICU's rule-based spell-out for `language`; an error where ICU would fall back to another locale's rules."""
    import icu  # pyicu-wheels; only this source needs it

    speller = icu.RuleBasedNumberFormat(icu.URBNFRuleSetTag.SPELLOUT, icu.Locale(language))
    actual = speller.getLocale(icu.ULocDataLocaleType.ACTUAL_LOCALE).getLanguage()
    if actual != language:
        raise PromptSourceError(f"ICU {icu.ICU_VERSION} has no spell-out rules for {language!r} (it falls back to {actual!r})")
    return lambda n: speller.format(n).replace(SOFT_HYPHEN, "")


def _from_number_words(src: NumberWordsSource, languages: list[str], cfg: PromptsConfig) -> list[dict]:
    wanted = [code for code in (src.languages or LANGUAGE_CODES) if code in languages]
    templates, numbers = number_templates(src, wanted), draw_numbers(src)
    out = []
    for language in wanted:
        spell = number_speller(language)
        for n in numbers:
            out.append(
                _record(
                    where=f"source {src.name!r} ({language}, {n})",
                    source=src.name,
                    language=language,
                    text=templates[language].replace("{n}", str(n)),
                    split=number_split(n, src.seed, src.eval_fraction),
                    reference=spell(n),
                    category="number_words",  # in EXACT_ANSWER_CATEGORIES
                    source_id=str(n),  # the item: the same number in every language
                    cfg=cfg,
                )
            )
    return out


READERS = {
    SeedSource: _from_seed,
    TableSource: _from_table,
    ArenaHardSource: _from_arena_hard,
    HubDatasetSource: _from_hub,
    NumberWordsSource: _from_number_words,
}

SKIPPED_SCHEMA = {"language": pl.String, "source": pl.String, "where": pl.String, "chars": pl.Int64}


@dataclass(frozen=True)
class LoadedPrompts:
    frame: pl.DataFrame  # PROMPT_SCHEMA, one row per prompt_id
    skipped: pl.DataFrame  # SKIPPED_SCHEMA: rows longer than prompts.max_chars, left out


def read_source(src: Source, languages: list[str], cfg: PromptsConfig) -> tuple[list[dict], list[dict]]:
    """A source's rows for `languages`, split into those kept and those over prompts.max_chars."""
    rows = READERS[type(src)](src, languages, cfg)
    kept = [r for r in rows if len(r["text"]) <= cfg.max_chars]
    if rows and not kept:
        first = rows[0]
        raise PromptSourceError(
            f"{first['_where']}: text is {len(first['text'])} characters, over prompts.max_chars={cfg.max_chars}, as are "
            f"all {len(rows)} row(s) of source {src.name!r}, which would leave it empty; raise prompts.max_chars or map "
            "the source's text column to the prompt"
        )
    skipped = [{"language": r["language"], "source": src.name, "where": r["_where"], "chars": len(r["text"])}
               for r in rows if len(r["text"]) > cfg.max_chars]
    return kept, skipped


def read_prompts(cfg: PromptsConfig, languages: list[str]) -> LoadedPrompts:
    """All configured sources for `languages`, deduplicated by prompt_id (first source in config order wins)."""
    kept, skipped = [], []
    for src in cfg.sources:
        rows, long = read_source(src, languages, cfg)
        kept += rows
        skipped += long
    frame = pl.DataFrame([{k: r[k] for k in PROMPT_SCHEMA} for r in kept], schema=PROMPT_SCHEMA)
    frame = frame.unique(subset="prompt_id", keep="first", maintain_order=True).sort(["language", "split", "prompt_id"])
    return LoadedPrompts(frame, pl.DataFrame(skipped, schema=SKIPPED_SCHEMA))


def load_prompts(cfg: PromptsConfig, languages: list[str]) -> pl.DataFrame:
    """The prompts table of read_prompts, for callers that need no report of skipped rows."""
    return read_prompts(cfg, languages).frame
