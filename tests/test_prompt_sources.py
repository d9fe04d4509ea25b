"""Prompt readers: every source kind, stable ids, dedup, and bad files that must fail naming file and row."""

import json
from pathlib import Path

import polars as pl
import pytest

from aya_assets.languages import LANGUAGE_CODES
from aya_assets.profile import PromptsConfig
from aya_assets.prompts.sources import PromptSourceError, load_prompts, prompt_id, read_prompts, unescape_entities


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


# Arena-Hard-Auto's question.jsonl as published: v0.1 as first released (question_id, turns), with a BOM added, a
# row of 8,611 characters, HTML entities and a URL whose '&' are no entities; v2.0 (uid, category, subcategory,
# prompt) with a raw U+2028 inside a prompt (as upstream has), JavaScript that handles &lt; itself and a long row.
ARENA_HARD = Path(__file__).parent / "data"


def test_arena_hard_v0_1_as_published_loads_with_defaults():
    path = ARENA_HARD / "arena-hard-v0.1" / "question.jsonl"
    loaded = read_prompts(config({"kind": "arena_hard", "path": str(path), "language": "en"}), ["en"])
    df = loaded.frame
    assert df.height == 4 and set(df["split"]) == {"eval"} and set(df["source"]) == {"arena_hard"}
    assert loaded.skipped.rows() == [("en", "arena_hard", f"{path}:3", 8611)]
    text = dict(zip(df["source_id"], df["text"]))
    assert text["1f0e7a2b9c4d4e8b8f3a6c5d2e1b0a92"].startswith('What\'s the difference between "git merge" and "git rebase"')
    assert "?team=ducks&strength=EV&notify=1" in text["3b8c7d6e5f4a4b3c8d7e6f5a4b3c2d34"]
    assert "0c5bd3d1a6f94c3fa1b8e2f0a9d7c601" in text  # the row after the BOM
    assert "Git Workflows" in set(df["category"])  # the topic cluster, not the constant 'arena-hard-v0.1'


def test_arena_hard_v2_0_as_published_loads_with_defaults():
    path = ARENA_HARD / "arena-hard-v2.0" / "question.jsonl"
    loaded = read_prompts(config({"kind": "arena_hard", "path": str(path), "language": "en"}), ["en"])
    df = loaded.frame
    assert sorted(df["source_id"]) == ["5d6e7f8a9b0c1d2e", "6e7f8a9b0c1d2e3f", "8a9b0c1d2e3f4a5b"]
    assert loaded.skipped.select("where", "chars").rows() == [(f"{path}:3", 9453)]
    text = dict(zip(df["source_id"], df["text"]))
    assert "\u2028Use induction." in text["6e7f8a9b0c1d2e3f"]  # one row, not split at U+2028
    assert "md.replace(/&lt;/g, '<')" in text["5d6e7f8a9b0c1d2e"]  # code that handles entities keeps them
    assert set(df["category"]) == {"coding", "math", "creative_writing"}


# m-ArenaHard as published on the hub, one folder per language holding test-00000-of-00001.parquet; v1
# (CohereLabs/m-ArenaHard) has question_id, cluster, category, prompt; v2.0 (CohereLabs/m-ArenaHard-v2.0) has
# question_id, category, subcategory, prompt, language. Translations share their question_id.
M_ARENAHARD = {
    "v1": lambda lang, qid, text: {"question_id": qid, "cluster": "Python Basics", "category": "arena-hard-v0.1", "prompt": text},
    "v2.0": lambda lang, qid, text: {"question_id": qid, "category": "hard_prompt", "subcategory": "coding",
                                     "prompt": text, "language": lang},
}
TRANSLATED = {
    "ja": ["Pythonでリストを逆順にする方法は？", "&quot;こんにちは&quot;を英語に翻訳してください。", "説明してください。" * 900],
    "el": ["Πώς αντιστρέφω μια λίστα στην Python;", "Τι σημαίνει &#39;lambda&#39; στην Python;", "Εξήγησε. " * 900],
}


def write_m_arenahard(root, layout: str, rows=TRANSLATED):
    for lang, texts in rows.items():
        (root / lang).mkdir(parents=True)
        frame = pl.DataFrame([M_ARENAHARD[layout](lang, f"q{i}", t) for i, t in enumerate(texts)])
        frame.write_parquet(root / lang / "test-00000-of-00001.parquet")
    return str(root)


@pytest.mark.parametrize("layout", list(M_ARENAHARD))
def test_m_arenahard_local_copy_as_published_loads_with_defaults(tmp_path, layout):
    src = {"kind": "hf_dataset", "local_dir": write_m_arenahard(tmp_path, layout), "languages": ["ja", "el"]}
    loaded = read_prompts(config(src), ["ja", "el", "zh"])
    df = loaded.frame
    assert sorted(df["language"]) == ["el", "el", "ja", "ja"] and set(df["source_id"]) == {"q0", "q1"}
    assert set(df["text"]) >= {'"こんにちは"を英語に翻訳してください。', "Τι σημαίνει 'lambda' στην Python;"}
    assert sorted(loaded.skipped["where"]) == [f"{tmp_path}/{lang}/test-00000-of-00001.parquet:3" for lang in ("el", "ja")]
    assert set(df["category"]) == {"coding" if layout == "v2.0" else "Python Basics"}


def test_m_arenahard_local_copy_without_a_language_folder_says_which(tmp_path):
    src = {"kind": "hf_dataset", "local_dir": write_m_arenahard(tmp_path, "v1"), "languages": ["ja", "ko"]}
    with pytest.raises(PromptSourceError, match=r"m_arenahard.*no .*/ko/\*\.parquet.*ko/test-00000-of-00001\.parquet"):
        load_prompts(config(src), ["ko"])


def test_m_arenahard_duplicate_question_id_names_both_rows(tmp_path):
    rows = {"ja": ["一つ目の質問です。", "二つ目の質問です。"]}
    root = write_m_arenahard(tmp_path, "v2.0", rows)
    file = tmp_path / "ja" / "test-00000-of-00001.parquet"
    pl.read_parquet(file).with_columns(question_id=pl.lit("q7")).write_parquet(file)
    with pytest.raises(PromptSourceError, match=rf"{file}:2: duplicate id 'q7' \(first at {file}:1\)"):
        load_prompts(config({"kind": "hf_dataset", "local_dir": root, "languages": ["ja"]}), ["ja"])


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
    # Every row over the limit: nothing would be left of the source, so it is an error, not a skip.
    ("too_long", ('{"text": "' + "a" * 9000 + '"}\n').encode(), r"bad\.jsonl:1: text is 9000 characters, over prompts\.max_chars=8000"),
    ("text_not_string", b'{"text": {"nested": 1}}\n', r"bad\.jsonl:1: field 'text' is an object, expected text"),
    ("text_a_number", b'{"text": 42}\n', r"bad\.jsonl:1: field 'text' is a number, expected text"),
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


# Arena-Hard rows that cannot be used, and what the error says is wrong with the value.
BAD_ARENA_ROWS = [
    ("numeric_content", {"question_id": "q1", "turns": [{"content": 17}]}, r"turns\[0\]\.content is a number, expected text"),
    ("empty_turns", {"question_id": "q1", "turns": []}, r"turns is an empty list"),
    ("turns_a_string", {"question_id": "q1", "turns": "hello"}, r"turns is a str, expected a list"),
    ("turn_a_string", {"question_id": "q1", "turns": ["hello"]}, r"turns\[0\] is a str, expected an object with 'content'"),
    ("no_content", {"question_id": "q1", "turns": [{"role": "user"}]}, r"missing field 'turns\[0\]\.content'"),
    ("blank_content", {"question_id": "q1", "turns": [{"content": "  "}]}, r"empty text: turns\[0\]\.content is blank"),
    ("no_turns_or_prompt", {"question_id": "q1", "category": "x"},
     r"missing field 'turns' .* or 'prompt' .*; the row has category, question_id"),
    ("numeric_prompt", {"uid": "u1", "prompt": 3.5}, r"field 'prompt' is a number, expected text"),
    ("no_id", {"prompt": "Hello?"}, r"missing field 'question_id'"),
]


@pytest.mark.parametrize("row, message", [r[1:] for r in BAD_ARENA_ROWS], ids=[r[0] for r in BAD_ARENA_ROWS])
def test_bad_arena_hard_rows_say_what_is_wrong(tmp_path, row, message):
    path = write_jsonl(tmp_path / "question.jsonl", [{"question_id": "q0", "turns": [{"content": "Fine."}]}, row])
    with pytest.raises(PromptSourceError, match=r"question\.jsonl:2: " + message):
        load_prompts(config({"kind": "arena_hard", "path": path, "language": "fr"}), ["fr"])


def test_arena_hard_duplicate_question_id_names_both_lines(tmp_path):
    rows = [{"question_id": f"q{i % 3}", "turns": [{"content": f"Question numéro {i} ?"}]} for i in range(5)]
    path = write_jsonl(tmp_path / "question.jsonl", rows)
    with pytest.raises(PromptSourceError, match=rf"{path}:4: duplicate id 'q0' \(first at {path}:1\)"):
        load_prompts(config({"kind": "arena_hard", "path": path, "language": "fr"}), ["fr"])


@pytest.mark.parametrize("text, expected", [
    ("What&#39;s &quot;new&quot;?", 'What\'s "new"?'),
    ("创新&#x27;景村一体&#x27;模式", "创新'景村一体'模式"),
    ("Tom &amp; Jerry&nbsp;!", "Tom & Jerry\xa0!"),
    ("https://x.org/?a=1&notify=2&times=3", "https://x.org/?a=1&notify=2&times=3"),  # no ';': no entity
    ("s.replace(/&lt;/g, '<')", "s.replace(/&lt;/g, '<')"),  # raw '<': the text was never escaped as a whole
])
def test_unescape_entities(text, expected):
    assert unescape_entities(text) == expected


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 not really")
    src = {"kind": "parquet", "name": "pq", "path": str(path), "language": "en"}
    with pytest.raises(PromptSourceError, match=r"broken\.parquet: not a readable Parquet file"):
        load_prompts(config(src), ["en"])
