"""Translators for translation-contrast pairs: none, a literal glossary translator (tiny), NLLB through transformers (gpu)."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from functools import lru_cache

import dagster as dg
import polars as pl
from pydantic import PrivateAttr

# FLORES-200 codes NLLB expects for the 23 Aya languages.
NLLB_CODES = {
    "ar": "arb_Arab", "zh": "zho_Hans", "cs": "ces_Latn", "nl": "nld_Latn", "en": "eng_Latn", "fr": "fra_Latn",
    "de": "deu_Latn", "el": "ell_Grek", "he": "heb_Hebr", "hi": "hin_Deva", "id": "ind_Latn", "it": "ita_Latn",
    "ja": "jpn_Jpan", "ko": "kor_Hang", "fa": "pes_Arab", "pl": "pol_Latn", "pt": "por_Latn", "ro": "ron_Latn",
    "ru": "rus_Cyrl", "es": "spa_Latn", "tr": "tur_Latn", "uk": "ukr_Cyrl", "vi": "vie_Latn",
}

# English number words by value: ICU's English spell-out of 0-19, the tens and the scales ("one hundred" -> hundred).
SCALES = (100, 1000, 10**6, 10**9, 10**12)
NUMBER_VALUES = (*range(20), *range(20, 100, 10), *SCALES)
# Written without spaces between words: a literal translator glues the pieces it translated (三 百 四十 七 -> 三百四十七).
# Korean writes spaces between words, so its literal translation keeps them (삼 백 사십 칠; ICU writes 삼백사십칠).
UNSPACED = {"zh", "ja"}
WORD = re.compile(r"([^\W\d_]+)")  # a run of letters; spaces, hyphens, digits and punctuation separate words
GLUE = re.compile(r"[ -]")  # what separates two glossary words: a space, or the hyphen of forty-seven


class Translator(dg.ConfigurableResource, ABC):
    """Translates English texts into one of the 23 languages."""

    @abstractmethod
    def translate(self, texts: list[str], target: str) -> list[str]: ...

    def word_counts(self, texts: list[str], target: str) -> tuple[int, int] | None:
        """(words it translates into `target`, words in all) over `texts`; None where it cannot tell (a model)."""
        return None

    @property
    def name(self) -> str:
        return type(self).__name__


class NoTranslator(Translator):
    """Leaves the text as it is: the tiny profile has no offline translation model (see README)."""

    def translate(self, texts: list[str], target: str) -> list[str]:
        return list(texts)

    def word_counts(self, texts: list[str], target: str) -> tuple[int, int] | None:
        return 0, sum(len(WORD.findall(text)) for text in texts)

    @property
    def name(self) -> str:
        return "none"


def scale_word(spell, scale: int) -> str:
    """The target's word for `scale` on its own, as a glossary lists it, read off ICU's spell-out `spell`.

    What 3 x scale adds to "three", where the form of the scale ends with it (dreihundert -> hundert, 三百 -> 百,
    tiga ratus -> ratus though 100 is seratus); else the scale's form without its leading "one" where 3 x scale is
    "three" and a separate word (одна тысяча -> тысяча, eine Million -> Million); else the scale's form (сто, cent,
    hi दस लाख: a million is ten lakh).
    """
    one, three, triple = spell(scale), spell(3), spell(3 * scale)
    for sep in (" ", ""):
        if triple.startswith(three + sep):
            rest = triple[len(three + sep):]
            if rest and one.endswith(rest):
                return rest
            if sep and len(one.split()) > 1:
                return one.split(maxsplit=1)[1]
    return one


@lru_cache(maxsize=None)
def number_glossary(target: str) -> dict[str, str]:
    """English number word -> the target's ICU spell-out of its value (three -> drei, forty -> vierzig, hundred -> hundert)."""
    from aya_assets.prompts.sources import number_speller  # the references' speller: the same words, soft hyphens stripped

    english, spell = number_speller("en"), number_speller(target)
    glossary = {}
    for value in NUMBER_VALUES:
        word = english(value).removeprefix("one ")
        if not WORD.fullmatch(word):
            raise ValueError(f"ICU's English spell-out of {value} is {english(value)!r}, not one word")
        glossary[word] = scale_word(spell, value) if value in SCALES else spell(value)
    return glossary


def literal_translation(text: str, glossary: dict[str, str], unspaced: bool = False) -> tuple[str, int, int]:
    """`text` word by word through `glossary` (case-insensitive; a capital first letter is kept), unknown words left as
    they are; returns the translation, the words translated and the words in all.

    Between two translated words a space or hyphen becomes one space, or nothing where the target is `unspaced`;
    every other separator stays (three, four. -> drei, vier.).
    """
    parts = WORD.split(text)  # separator, word, separator, ..., separator
    words = parts[1::2]
    found = [glossary.get(w.lower()) for w in words]
    out = [parts[0]]
    for i, (word, hit) in enumerate(zip(words, found)):
        if hit is not None and word[:1].isupper():
            hit = hit[:1].upper() + hit[1:]
        out.append(word if hit is None else hit)
        sep = parts[2 * i + 2]
        if hit is not None and i + 1 < len(words) and found[i + 1] is not None and GLUE.fullmatch(sep):
            sep = "" if unspaced else " "
        out.append(sep)
    return "".join(out), sum(hit is not None for hit in found), len(words)


class GlossaryTranslator(Translator):
    """Word by word through a glossary generated at run time from ICU's spell-out rules (nothing downloaded): English
    number words become the target's, unknown words stay English, so the result has a literal translation's artifacts
    (three hundred forty-seven -> drei hundert vierzig sieben; the native form is dreihundertsiebenundvierzig)."""

    def translate(self, texts: list[str], target: str) -> list[str]:
        return [self._literal(text, target)[0] for text in texts]

    def word_counts(self, texts: list[str], target: str) -> tuple[int, int] | None:
        counts = [self._literal(text, target)[1:] for text in texts]
        return sum(k for k, _ in counts), sum(n for _, n in counts)

    @staticmethod
    def _literal(text: str, target: str) -> tuple[str, int, int]:
        return literal_translation(text, number_glossary(target), unspaced=target in UNSPACED)

    @property
    def name(self) -> str:
        return "glossary"


class NLLBTranslator(Translator):
    """NLLB (or any seq2seq model with FLORES-200 language tokens) through transformers."""

    model: str = "facebook/nllb-200-distilled-600M"
    batch_size: int = 16
    device: str = "auto"
    max_new_tokens: int = 512

    _loaded: tuple | None = PrivateAttr(default=None)

    @property
    def name(self) -> str:
        return self.model

    def translate(self, texts: list[str], target: str) -> list[str]:
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        if target not in NLLB_CODES:
            raise ValueError(f"no NLLB code for language {target!r}")
        if self._loaded is None:
            device = ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device
            tokenizer = AutoTokenizer.from_pretrained(self.model, src_lang=NLLB_CODES["en"])
            self._loaded = (tokenizer, AutoModelForSeq2SeqLM.from_pretrained(self.model).to(device).eval(), device)
        tokenizer, model, device = self._loaded
        forced = tokenizer.convert_tokens_to_ids(NLLB_CODES[target])
        out: list[str] = []
        for start in range(0, len(texts), self.batch_size):
            batch = tokenizer(texts[start : start + self.batch_size], return_tensors="pt", padding=True, truncation=True).to(device)
            with torch.inference_mode():
                ids = model.generate(**batch, forced_bos_token_id=forced, max_new_tokens=self.max_new_tokens)
            out += tokenizer.batch_decode(ids, skip_special_tokens=True)
        return out


TRANSLATED_SCHEMA = {"prompt_id": pl.String, "language": pl.String, "english": pl.String, "translation": pl.String,
                     "source_model": pl.String}


def translate_answers(answers: pl.DataFrame, translator: Translator, source_model: str) -> pl.DataFrame:
    """The weak model's answers (pool rows: prompt_id, language, completion) translated into each row's language."""
    frames = [
        group.select("prompt_id", "language", english="completion").with_columns(
            translation=pl.Series(translator.translate(group["completion"].to_list(), language), dtype=pl.String),
            source_model=pl.lit(source_model),
        )
        for (language,), group in answers.group_by("language", maintain_order=True)
    ]
    return pl.concat(frames) if frames else pl.DataFrame(schema=TRANSLATED_SCHEMA)


def translation_report(rows: pl.DataFrame, translator: Translator) -> pl.DataFrame:
    """Per language of `rows` (language, english, translation, native): how much the translator changed and whether
    lingua hears the language on the rejected side before (the weak model's answer) and after translation."""
    from aya_assets.languages.langid import detect

    out = []
    for (language,), group in rows.group_by("language", maintain_order=True):
        before, after = detect(group["english"].to_list()), detect(group["translation"].to_list())
        translated, words = translator.word_counts(group["english"].to_list(), language) or (None, None)
        out.append({
            "language": language, "rows": group.height, "words": words,
            "words_translated": translated / words if words else None,
            "target_before": sum(d == language for d in before) / group.height,
            "target_after": sum(d == language for d in after) / group.height,
            "english_before": sum(d == "en" for d in before) / group.height,
            "same_as_native": int((group["translation"] == group["native"]).sum()),
        })
    return pl.DataFrame(out, schema={"language": pl.String, "rows": pl.Int64, "words": pl.Int64, "words_translated": pl.Float64,
                                     "target_before": pl.Float64, "target_after": pl.Float64,
                                     "english_before": pl.Float64, "same_as_native": pl.Int64})
