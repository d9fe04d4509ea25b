"""Language identification over the 23 Aya languages (lingua), shared by checks, the arbiter and the judge."""

from __future__ import annotations

import re
from functools import lru_cache

from aya_assets.languages import LANGUAGE_CODES


def _language(code: str):
    # lingua is imported on first use: importing this module (the arbiter, the judge) does not need it.
    from lingua import IsoCode639_1, Language

    return Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper()))


@lru_cache(maxsize=1)
def _detector():
    from lingua import LanguageDetectorBuilder

    return LanguageDetectorBuilder.from_languages(*map(_language, LANGUAGE_CODES)).with_preloaded_language_models().build()


def detect(texts: list[str]) -> list[str | None]:
    """ISO code of the most likely language per text, None where lingua cannot tell."""
    found = _detector().detect_languages_in_parallel_of(texts)
    return [lang.iso_code_639_1.name.lower() if lang is not None else None for lang in found]


# lingua 2.1 (lingua-rs 1.7) is not deterministic on Han text mixed with kana: its rule stage counts words per
# language in a std HashMap and sorts the counts with ties left in iteration order, and Rust draws SipHash keys from
# the OS per process (and steps them for every new map), so tied languages come out in a new order on every call.
# Its "Japanese if Japanese and Chinese are the top two" rule then fires or not, at uneven odds (one measured text:
# ja = 1.0 on 1 call in 7, 1.6e-9 otherwise). Nothing else in the rule stage depends on that order, and Japanese is
# only counted from kana, Chinese from Han, so only texts with both can have two outcomes; a text's value is then the
# mean of its two. 24 probes missed a 1-in-7 outcome in 2.5% of processes (the cross-process flips); TIE_PROBES
# makes that (6/7)**256 ~ 1e-17.
HAN = re.compile(r"[\u2e80-\u2fdf\u3005\u3007\u3021-\u3029\u3038-\u303b\u3400-\u9fff\uf900-\ufaff\U00020000-\U0003ffff]")
KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\u32d0-\u32fe\u3300-\u3357\uff66-\uff9f\U0001aff0-\U0001b16f]")
TIE_PROBES = 256
# The statistical stage sums probabilities in HashMap order too, so values differ in the last bits between calls;
# at 6 decimals two calls round apart about once in 1e10, at 9 (as before) once in 1e7.
DECIMALS = 6


def confidence(texts: list[str], codes: list[str]) -> list[float]:
    """Probability in [0, 1] that each text is in its given language; the same text gets the same value in every process."""
    return [_confidence(t, c) for t, c in zip(texts, codes)]


@lru_cache(maxsize=1 << 16)
def _confidence(text: str, code: str) -> float:
    if not text.strip():
        return 0.0
    det, lang = _detector(), _language(code)
    probes = TIE_PROBES if HAN.search(text) and KANA.search(text) else 1
    outcomes = sorted({round(det.compute_language_confidence(text, lang), DECIMALS) for _ in range(probes)})
    return round(sum(outcomes) / len(outcomes), DECIMALS)
