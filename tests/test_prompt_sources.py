"""Prompt readers: every source kind, stable ids, dedup, and bad files that must fail naming file and row."""

import json

import polars as pl
import pytest

from aya_assets.languages import LANGUAGE_CODES
from aya_assets.profile import PromptsConfig
from aya_assets.prompts.sources import PromptSourceError, load_prompts, prompt_id


def config(*sources, **kw) -> PromptsConfig:
    return PromptsConfig.model_validate({"sources": list(sources), **kw})


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return str(path)


def test_prompt_id_is_stable_and_language_scoped():
    assert prompt_id("de", "Wie geht's?") == prompt_id("de", "  Wie geht's?\n")
    assert prompt_id("de", "Wie geht's?") != prompt_id("nl", "Wie geht's?")
    assert len(prompt_id("en", "hi")) == 16


def test_bundled_seed_covers_23_languages_with_references():
    df = load_prompts(config({"kind": "seed"}), LANGUAGE_CODES)
    per = df.group_by("language").agg(
        train=(pl.col("split") == "train").sum(),
        eval=(pl.col("split") == "eval").sum(),
        with_ref=pl.col("reference").is_not_null().sum(),
        categories=pl.col("category").n_unique(),
    )
    assert sorted(per["language"].to_list()) == sorted(LANGUAGE_CODES)
    assert per["train"].min() >= 10 and per["eval"].min() >= 6
    assert (per["with_ref"] == per["train"] + per["eval"]).all()
    assert per["categories"].min() >= 8  # varied topics, not one template
    assert df["prompt_id"].is_unique().all()


def test_jsonl_with_column_mapping_and_language_column(tmp_path):
    path = write_jsonl(
        tmp_path / "mine.jsonl",
        [
            {"q": "Qual é a capital de Portugal?", "lang": "pt", "a": "Lisboa.", "id": "p1"},
            {"q": "Wat is de hoofdstad van België?", "lang": "nl", "a": "Brussel.", "id": "p2"},
        ],
    )
    src = {"kind": "jsonl", "name": "mine", "path": path, "split": "train",
           "columns": {"text": "q", "language": "lang", "reference": "a", "id": "id"}}
    df = load_prompts(config(src), ["pt"])
    assert df.select("language", "text", "reference", "source_id", "split", "source").row(0) == (
        "pt", "Qual é a capital de Portugal?", "Lisboa.", "p1", "train", "mine"
    )


def test_parquet_source_with_fixed_language(tmp_path):
    path = tmp_path / "p.parquet"
    pl.DataFrame({"prompt": ["Czym jest fotosynteza?", "Jak upiec sernik?"]}).write_parquet(path)
    src = {"kind": "parquet", "name": "pq", "path": str(path), "language": "pl", "columns": {"text": "prompt"}}
    df = load_prompts(config(src, eval_fraction=0.5), ["pl"])
    assert df.height == 2 and set(df["split"]) <= {"train", "eval"}
    assert df.equals(load_prompts(config(src, eval_fraction=0.5), ["pl"]))  # split is deterministic


def test_arena_hard_question_jsonl_lands_in_its_language(tmp_path):
    rows = [
        {"question_id": f"q{i}", "category": "arena-hard-v0.1", "cluster": "Coding",
         "turns": [{"content": f"Schreibe eine Funktion Nummer {i}, die Primzahlen findet."}]}
        for i in range(7)
    ]
    path = write_jsonl(tmp_path / "question.jsonl", rows)
    df = load_prompts(config({"kind": "arena_hard", "path": path, "language": "de"}), ["de"])
    assert df.height == 7 and set(df["split"]) == {"eval"}
    assert sorted(df["source_id"]) == [f"q{i}" for i in range(7)]
    assert set(df["language"]) == {"de"}


def test_hub_dataset_through_datasets_on_a_local_copy_of_m_arenahard(tmp_path):
    """m-ArenaHard's layout (one folder per language, question_id/category/cluster/prompt) read by `datasets`."""
    for lang, text in [("ja", "日本の四季について説明してください。"), ("ko", "김치를 만드는 방법을 알려 주세요.")]:
        (tmp_path / lang).mkdir()
        pl.DataFrame({"question_id": ["a1"], "category": ["hard"], "cluster": ["c"], "prompt": [text]}).write_parquet(
            tmp_path / lang / "test-00000-of-00001.parquet"
        )
    src = {"kind": "hf_dataset", "local_dir": str(tmp_path), "languages": ["ja", "ko"]}
    df = load_prompts(config(src), ["ja", "ko", "zh"])
    assert sorted(df["language"]) == ["ja", "ko"]
    assert set(df["source"]) == {"m_arenahard"}


def test_hub_unreachable_is_a_clear_error_mocked_hub_offline():
    src = {"kind": "hf_dataset", "dataset": "CohereLabs/m-ArenaHard", "languages": ["ja"]}
    with pytest.raises(PromptSourceError, match=r"m_arenahard.*ja.*cannot load"):
        load_prompts(config(src), ["ja"])


def test_duplicates_across_sources_keep_the_first(tmp_path):
    text = "Jak upiec sernik?"
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": text, "reference": "Z twarogu."}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"text": text + "  "}, {"text": "Co to jest kwant?"}])
    df = load_prompts(
        config({"kind": "jsonl", "name": "a", "path": a, "language": "pl"},
               {"kind": "jsonl", "name": "b", "path": b, "language": "pl"}),
        ["pl"],
    )
    assert df.height == 2
    assert df.filter(pl.col("text") == text)["source"].to_list() == ["a"]


BAD_FILES = [
    ("invalid_json", b'{"text": "ok"}\n{"text": \n', r"bad\.jsonl:2: invalid JSON"),
    ("not_utf8", "{\"text\": \"caf\xe9\"}\n".encode("latin-1"), r"bad\.jsonl: not UTF-8"),
    ("missing_text", b'{"text": "ok"}\n{"prompt": "no text key"}\n', r"bad\.jsonl:2: missing field 'text'"),
    ("empty_text", b'{"text": "ok"}\n{"text": "   "}\n', r"bad\.jsonl:2: empty text"),
    ("unknown_language", b'{"text": "ok", "lang": "xx"}\n', r"bad\.jsonl:1: unknown language 'xx'"),
    ("not_an_object", b'["a", "b"]\n', r"bad\.jsonl:1: expected a JSON object"),
    ("bad_split", b'{"text": "ok", "split": "test"}\n', r"bad\.jsonl:1: split must be 'train' or 'eval'"),
    ("too_long", ('{"text": "' + "a" * 9000 + '"}\n').encode(), r"bad\.jsonl:1: text is 9000 characters"),
    ("text_not_string", b'{"text": {"nested": 1}}\n', r"bad\.jsonl:1: field 'text' must be text"),
]


@pytest.mark.parametrize("name, content, message", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_prompt_files_name_file_and_row(tmp_path, name, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    columns = {"language": "lang", "split": "split"} if name == "unknown_language" else {"split": "split"}
    src = {"kind": "jsonl", "name": "bad", "path": str(path), "columns": columns}
    if "language" not in columns:
        src["language"] = "en"
    with pytest.raises(PromptSourceError, match=message):
        load_prompts(config(src), LANGUAGE_CODES)


def test_arena_hard_without_turns(tmp_path):
    path = write_jsonl(tmp_path / "question.jsonl", [{"question_id": "q1", "category": "x"}])
    with pytest.raises(PromptSourceError, match=r"question\.jsonl:1: missing field 'turns'"):
        load_prompts(config({"kind": "arena_hard", "path": path, "language": "fr"}), ["fr"])


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 not really")
    src = {"kind": "parquet", "name": "pq", "path": str(path), "language": "en"}
    with pytest.raises(PromptSourceError, match=r"broken\.parquet: not a readable Parquet file"):
        load_prompts(config(src), ["en"])
