"""The generated number-spelling source: ICU references in all 23 languages, an item-level split shared by every
language, stable ids, the prompt checks on its output, and bad configurations that name their key."""

import json
import unicodedata

import polars as pl
import pytest

from aya_assets.languages import LANGUAGE_CODES
from aya_assets.profile import ProfileError, PromptsConfig, load_profile
from aya_assets.prompts import checks
from aya_assets.prompts.sources import PromptSourceError, load_prompts, number_split, prompt_id

pytest.importorskip("icu")


def numbers(**kw) -> dict:
    return {"kind": "number_words", **kw}


def load(languages=LANGUAGE_CODES, **kw) -> pl.DataFrame:
    return load_prompts(PromptsConfig.model_validate({"sources": [numbers(**kw)]}), languages)


@pytest.fixture(scope="module")
def table() -> pl.DataFrame:
    return load(count=40)


def test_every_language_gets_every_number_with_a_clean_icu_reference(table):
    per = table.group_by("language").agg(n=pl.len(), numbers=pl.col("source_id").n_unique())
    assert sorted(per["language"]) == sorted(LANGUAGE_CODES) and set(per["n"]) == set(per["numbers"]) == {40}
    refs = table["reference"].to_list()
    assert all(r and r.strip() for r in refs)
    assert not any("\u00ad" in r for r in refs)  # ICU's soft hyphens are stripped
    assert all(unicodedata.is_normalized("NFC", r) for r in refs)
    assert set(table["source"]) == {"number_words"} and set(table["category"]) == {"number_words"}
    # the number appears as digits in the prompt, and the references are in each language's own words
    assert all(n in text for n, text in table.select("source_id", "text").rows())
    assert table.group_by("source_id").agg(pl.col("reference").n_unique())["reference"].min() >= 15


@pytest.mark.parametrize("language, n, words", [
    ("en", 21, "twenty-one"),
    ("de", 21, "einundzwanzig"),  # ICU writes ein\xadund\xadzwanzig
    ("nl", 21, "eenentwintig"),
    ("it", 21, "ventuno"),
    ("fr", 80, "quatre-vingts"),
    ("he", 7, "שבע"),
    ("zh", 21, "二十一"),
    ("ru", 999, "девятьсот девяносто девять"),
])
def test_references_are_icu_spell_out(language, n, words):
    row = load([language], numbers=[n, n], count=1).row(0, named=True)
    assert row["reference"] == words and str(n) in row["text"]


def test_split_is_by_number_and_the_same_in_every_language(table):
    splits = table.group_by("source_id").agg(pl.col("split").unique())
    assert splits["split"].list.len().max() == 1  # one split per number, whatever the language
    held_out = {lang: set(g["source_id"]) for (lang,), g in table.filter(pl.col("split") == "eval").group_by("language")}
    assert len({frozenset(s) for s in held_out.values()}) == 1 and len(held_out) == 23
    assert 0 < len(next(iter(held_out.values()))) < 40
    # the split of a number is a function of the number (and the seed) only: not of the draw, count or language
    wider = load(["ko"], count=200)
    mine = dict(wider.select("source_id", "split").rows())
    assert all(mine[n] == s for n, s in table.select("source_id", "split").rows() if n in mine)
    assert all(number_split(int(n), 0, 0.3) == s for n, s in wider.select("source_id", "split").rows())


def test_eval_fraction_sets_the_held_out_share():
    share = (load(["en"], count=1000)["split"] == "eval").mean()
    assert 0.25 < share < 0.35
    assert set(load(["en"], count=50, eval_fraction=0.0)["split"]) == {"train"}
    assert set(load(["en"], count=50, eval_fraction=1.0)["split"]) == {"eval"}


def test_deterministic_and_seeded(table):
    assert load(count=40).equals(table)
    other = load(count=40, seed=1)
    assert set(other["source_id"]) != set(table["source_id"])
    assert all(int(n) in range(0, 1000) for n in table["source_id"])
    assert set(load(["en"], numbers=[5, 14], count=10)["source_id"]) == {str(n) for n in range(5, 15)}


def test_prompt_ids_are_the_hash_of_language_and_text(table):
    assert all(pid == prompt_id(lang, text) for pid, lang, text in table.select("prompt_id", "language", "text").rows())
    assert table["prompt_id"].is_unique().all()
    assert load(["en"], numbers=[21, 21], count=1)["prompt_id"].item() == prompt_id("en", "Write the number 21 in words.")


def test_prompt_checks_pass_on_its_output(table):
    results = checks.evaluate(table, LANGUAGE_CODES, max_mismatch=0.0)  # lingua reads every template as its language
    assert {name: passed for name, (passed, _) in results.items()} == {name: True for name in results}


def test_the_source_languages_and_the_materialized_ones_both_limit_it():
    mine = PromptsConfig.model_validate({"sources": [numbers(count=5, languages=["de", "fr"])]})
    assert set(load_prompts(mine, LANGUAGE_CODES)["language"]) == {"de", "fr"}
    assert set(load_prompts(mine, ["de", "ja"])["language"]) == {"de"}


BAD = [
    (numbers(count=0), r"prompts\.sources\.1\.number_words\.count: Input should be greater than or equal to 1"),
    (numbers(numbers=[10, 5]), r"prompts\.sources\.1\.number_words: numbers: expected \[low, high\] with 0 <= low <= high"),
    (numbers(numbers=[-3, 5]), r"numbers: expected \[low, high\] with 0 <= low <= high, got \[-3, 5\]"),
    (numbers(numbers=[0, 9], count=11), r"count: 11 numbers cannot be drawn from numbers \[0, 9\] \(10 in all\)"),
    (numbers(eval_fraction=1.5), r"prompts\.sources\.1\.number_words\.eval_fraction: Input should be less than or equal to 1"),
    (numbers(templates="no/such.json"), r"prompts\.sources\.1\.number_words\.templates: path does not exist"),
    (numbers(languages=["xx"]), r"prompts\.sources\.1\.number_words\.languages: .*unknown language 'xx'"),
    (numbers(count_per_language=3), r"prompts\.sources\.1\.number_words\.count_per_language: Extra inputs are not permitted"),
]


@pytest.mark.parametrize("source, message", BAD)
def test_bad_config_names_the_key(write_profile, source, message):
    path = write_profile(prompts={"sources": [{"kind": "seed"}, source]})
    with pytest.raises(ProfileError, match=message):
        load_profile(path)


@pytest.mark.parametrize("templates, message", [
    ({"en": "Write {n} in words."}, r"no template for language 'de'; add one or set the source's `languages`"),
    ({"en": "Write {n} in words.", "de": "Schreibe die Zahl in Worten."}, r"\['de'\]: the template must hold \{n\}"),
    ({"en": "Write {n} in words.", "de": "  "}, r"\['de'\]: empty text: the template is blank"),
    (["Write {n} in words."], r"expected a JSON object \{language: template\}, got a list"),
])
def test_bad_templates_name_the_file_and_language(tmp_path, templates, message):
    path = tmp_path / "templates.json"
    path.write_text(json.dumps(templates), encoding="utf-8")
    with pytest.raises(PromptSourceError, match=message) as info:
        load(["en", "de"], templates=str(path), count=3)
    assert str(path) in str(info.value)
