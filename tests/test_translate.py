"""The glossary translator (a literal, word-by-word translation through ICU's spell-out words), the translator wiring,
and the translation_pairs asset on a small graph: a weak model that only says "three", translated into German."""

import shutil

import dagster as dg
import polars as pl
import pytest

from aya_assets.artifacts.store import ArtifactStore
from aya_assets.artifacts.tables import WarehouseIOManager
from aya_assets.checkpoints.io import CHECKPOINT_IO, Checkpoint, CheckpointIOManager
from aya_assets.definitions import resources
from aya_assets.generation import TransformersBackend
from aya_assets.languages import LANGUAGE_CODES
from aya_assets.partitions import per_language
from aya_assets.preference.assets import build_offline_assets
from aya_assets.preference.translate import (NUMBER_VALUES, GlossaryTranslator, NLLBTranslator, NoTranslator,
                                             literal_translation, number_glossary, scale_word, translate_answers,
                                             translation_report)
from aya_assets.profile import PromptsConfig, load_profile
from aya_assets.prompts.sources import load_prompts, number_speller
from aya_assets.stages import Recipe
from conftest import FAST, always_says, tiny_llama

pytest.importorskip("icu")

# (language, English, literal translation, ICU's native spelling of the same number)
LITERAL = [
    pytest.param("de", "three hundred forty-seven", "drei hundert vierzig sieben", 347, id="de-compounds-split"),
    pytest.param("ru", "three hundred forty-seven", "три сто сорок семь", 347, id="ru-no-триста"),
    pytest.param("fr", "twenty-one", "vingt un", 21, id="fr-no-et"),
    pytest.param("ko", "three hundred forty-seven", "삼 백 사십 칠", 347, id="ko-spaces-kept"),
    pytest.param("ja", "one thousand", "一千", 1000, id="ja-glued-but-one-kept"),
    pytest.param("zh", "one hundred five", "一百五", 105, id="zh-glued-no-zero"),
    pytest.param("id", "one hundred", "satu ratus", 100, id="id-not-seratus"),
]


@pytest.mark.parametrize("language, english, literal, n", LITERAL)
def test_a_literal_translation_has_word_by_word_artifacts(language, english, literal, n):
    assert number_speller("en")(n) == english  # the weak model's task: ICU's English spelling
    assert GlossaryTranslator().translate([english], language) == [literal]
    assert literal != number_speller(language)(n)


def test_a_literal_translation_can_be_the_native_one():
    """Japanese and Chinese number words compose as English ones do: the glued pieces are the native spelling."""
    assert GlossaryTranslator().translate(["three hundred forty-seven"] * 2, "ja") == ["三百四十七", number_speller("ja")(347)]


@pytest.mark.parametrize("language, scale, word", [
    ("de", 100, "hundert"), ("zh", 100, "百"), ("id", 100, "ratus"),  # what 3 x scale adds to "three"
    ("ru", 1000, "тысяча"), ("de", 10**6, "Million"),  # the scale's form without its "one"
    ("ru", 100, "сто"), ("fr", 100, "cent"), ("hi", 10**6, "दस लाख"),  # the scale's own form (a million: ten lakh)
    ("es", 10**9, "mil millones"),
])
def test_scale_words_are_read_off_icu(language, scale, word):
    assert scale_word(number_speller(language), scale) == word


def test_every_english_spelling_up_to_999_is_translated_word_for_word_in_every_language():
    english = number_speller("en")
    texts = [english(n) for n in range(1000)]
    for language in LANGUAGE_CODES:
        glossary = number_glossary(language)
        assert len(glossary) == len(NUMBER_VALUES) and all(w.strip() and "\u00ad" not in w for w in glossary.values())
        translated, words = GlossaryTranslator().word_counts(texts, language)
        assert translated == words > 1000, language


def test_unknown_words_punctuation_and_capitals():
    glossary = number_glossary("de")
    assert literal_translation("Three apples, forty-two pears.\nwell-known", glossary) == (
        "Drei apples, vierzig zwei pears.\nwell-known", 3, 7)
    # Unglued only between two translated words: an English word keeps its space in Japanese too.
    assert literal_translation("three apples", number_glossary("ja"), unspaced=True) == ("三 apples", 1, 2)
    assert literal_translation("", glossary) == ("", 0, 0)


def test_word_counts_per_translator():
    texts = ["three apples", "forty-two"]
    assert GlossaryTranslator().word_counts(texts, "de") == (3, 4)
    assert NoTranslator().word_counts(texts, "de") == (0, 4)
    assert NLLBTranslator(model="./nowhere").word_counts(texts, "de") is None  # a model cannot say; nothing is loaded


@pytest.mark.parametrize("translator, cls", [("none", NoTranslator), ("glossary", GlossaryTranslator),
                                             ("nllb", NLLBTranslator)])
def test_the_profile_picks_the_translator(write_profile, ckpt, translator, cls):
    nllb = ckpt["a"]  # any local checkpoint passes the profile's checks; nothing is loaded here
    chosen = resources(load_profile(write_profile(translation={"translator": translator, "model": str(nllb)})))["translator"]
    assert type(chosen) is cls and chosen.name == {"none": "none", "glossary": "glossary", "nllb": str(nllb)}[translator]


def test_the_report_hears_the_language_after_translation():
    answers = pl.DataFrame({"prompt_id": ["p1", "p2", "p3"], "language": ["de", "de", "ja"],
                            "completion": ["three hundred forty-seven", "nine hundred ninety-nine", "three hundred forty-seven"]})
    translated = translate_answers(answers, GlossaryTranslator(), "weak via glossary")
    assert translated["translation"].to_list() == ["drei hundert vierzig sieben", "neun hundert neunzig neun", "三百四十七"]
    assert set(translated["source_model"]) == {"weak via glossary"}
    rows = translated.with_columns(native=pl.Series([number_speller(lang)(n) for lang, n in
                                                     (("de", 347), ("de", 999), ("ja", 347))]))
    report = {r["language"]: r for r in translation_report(rows, GlossaryTranslator()).iter_rows(named=True)}
    assert report["de"] | {"words_translated": 1.0} == {
        "language": "de", "rows": 2, "words": 8, "words_translated": 1.0, "target_before": 0.0, "target_after": 1.0,
        "english_before": 1.0, "same_as_native": 0}
    assert report["ja"]["same_as_native"] == 1 and report["ja"]["english_before"] == 1.0
    assert translate_answers(answers.clear(), GlossaryTranslator(), "x").columns == translated.columns


@pytest.fixture
def says_three(tmp_path):
    """A tokenizer trained on ICU's English spellings and a tiny Llama that answers anything with " three" over and over."""
    from aya_assets.models.tokenizer import train_tokenizer

    english = number_speller("en")
    tokenizer = train_tokenizer([english(n) for n in range(1000)], tmp_path / "tok", vocab_size=400)
    return tiny_llama(tmp_path / "says_three", tokenizer, edit=always_says(tokenizer.convert_tokens_to_ids("Ġthree")))


def test_translation_pairs_reject_the_weak_answer_translated(aya_home, write_profile, instance, says_three):
    profile = load_profile(write_profile(**FAST, translation={"translator": "glossary"}))
    store = ArtifactStore(root=str(aya_home / "data"))
    prompts = load_prompts(PromptsConfig.model_validate({"sources": [{"kind": "number_words", "count": 12}]}),
                           ["de", "ja"]).filter(pl.col("split") == "train")

    @dg.asset(name="prompts", **per_language("prompts"))
    def prompts_stub(context: dg.AssetExecutionContext) -> pl.DataFrame:
        return prompts.filter(pl.col("language") == context.partition_key)

    @dg.asset(name="arbitrage_sft", **per_language("arbitrage"))
    def native_stub(context: dg.AssetExecutionContext) -> pl.DataFrame:
        own = prompts.filter(pl.col("language") == context.partition_key)
        return own.select("prompt_id", "language", prompt="text", completion="reference", teacher=pl.lit("native"),
                          score=pl.lit(1.0))

    @dg.asset(name="teacher_models", partitions_def=dg.StaticPartitionsDefinition(["weak_english"]),
              io_manager_key=CHECKPOINT_IO)
    def weak_stub() -> Checkpoint:
        out = store.models / "teacher_models" / "weak_english"
        shutil.copytree(says_three, out, dirs_exist_ok=True)
        return Checkpoint(str(out))

    translation_pairs = next(a for a in build_offline_assets(profile, Recipe(profile))
                             if a.key == dg.AssetKey("translation_pairs"))
    assets = [prompts_stub, native_stub, weak_stub, translation_pairs]
    res = {"store": store, "io_manager": WarehouseIOManager(base_dir=str(store.warehouse)),
           CHECKPOINT_IO: CheckpointIOManager(store=store), "generator": TransformersBackend(batch_size=8, device="cpu"),
           "translator": GlossaryTranslator()}
    assert dg.materialize([weak_stub], resources=res, instance=instance, partition_key="weak_english").success
    for language in ("en", "de", "ja"):  # en too: the weak model is asked each item's English prompt
        assert dg.materialize(assets, selection=["prompts", "arbitrage_sft"], resources=res, instance=instance,
                              partition_key=language).success
    result = dg.materialize(assets, selection=["translation_pairs"], resources=res, instance=instance, partition_key="de")

    pairs = pl.read_parquet(store.warehouse / "translation_pairs" / "de.parquet")
    assert pairs.height == prompts.filter(pl.col("language") == "de").height > 0
    rejected = {r[0]["content"].strip() for r in pairs["rejected"]}
    assert len(rejected) == 1 and set(rejected.pop().split()) == {"drei"}  # " three three ..." word by word
    assert set(pairs["rejected_source"]) == {"weak_english via glossary"}
    meta = result.asset_materializations_for_node("translation_pairs")[0].metadata
    assert meta["translator"].value == "glossary" and meta["words_translated"].value == 1.0
    assert meta["target_language_before"].value == 0.0 and meta["target_language_after"].value == 1.0
    samples = meta["translation_samples"].value
    assert samples.count("| de ") == 3 and "three three" in samples and "drei drei" in samples
    assert "| de " in meta["translation_by_language"].value
