"""Language identification over the 23 Aya languages (lingua), shared by checks, the arbiter and the judge."""

from __future__ import annotations

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


def confidence(texts: list[str], codes: list[str]) -> list[float]:
    """Probability in [0, 1] that each text is in its given language."""
    det = _detector()
    targets = [_language(c) for c in codes]
    return [det.compute_language_confidence(t, lang) if t.strip() else 0.0 for t, lang in zip(texts, targets)]
