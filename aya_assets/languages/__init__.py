"""The 23 Aya languages and the language-family clusters that training is split by."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    code: str  # ISO 639-1, the partition key
    name: str  # English name; also the name of lingua's Language enum member (upper-cased)
    script: str


LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in [
        Language("ar", "Arabic", "Arabic"),
        Language("zh", "Chinese", "Han (Simplified)"),
        Language("cs", "Czech", "Latin"),
        Language("nl", "Dutch", "Latin"),
        Language("en", "English", "Latin"),
        Language("fr", "French", "Latin"),
        Language("de", "German", "Latin"),
        Language("el", "Greek", "Greek"),
        Language("he", "Hebrew", "Hebrew"),
        Language("hi", "Hindi", "Devanagari"),
        Language("id", "Indonesian", "Latin"),
        Language("it", "Italian", "Latin"),
        Language("ja", "Japanese", "Kana + Han"),
        Language("ko", "Korean", "Hangul"),
        Language("fa", "Persian", "Arabic (Persian)"),
        Language("pl", "Polish", "Latin"),
        Language("pt", "Portuguese", "Latin"),
        Language("ro", "Romanian", "Latin"),
        Language("ru", "Russian", "Cyrillic"),
        Language("es", "Spanish", "Latin"),
        Language("tr", "Turkish", "Latin"),
        Language("uk", "Ukrainian", "Cyrillic"),
        Language("vi", "Vietnamese", "Latin"),
    ]
}
LANGUAGE_CODES: list[str] = list(LANGUAGES)

# The paper keeps high-resource anchors in every cluster so that no merge loses them.
SHARED_LANGUAGES: tuple[str, ...] = ("en", "es", "fr")

DEFAULT_CLUSTERS: dict[str, list[str]] = {
    "romance_germanic": ["en", "es", "fr", "de", "nl", "it", "pt", "ro"],
    "slavic_greek": ["en", "es", "fr", "cs", "pl", "ru", "uk", "el"],
    "mideast_indic": ["en", "es", "fr", "ar", "he", "fa", "tr", "hi"],
    "east_asian": ["en", "es", "fr", "zh", "ja", "ko", "vi", "id"],
}


class UnknownLanguageError(ValueError):
    pass


def check_language(code: str, where: str = "") -> str:
    """Return `code` if it is one of the 23 Aya languages, else raise naming where it came from."""
    if code not in LANGUAGES:
        prefix = f"{where}: " if where else ""
        raise UnknownLanguageError(
            f"{prefix}unknown language {code!r}; expected one of {', '.join(LANGUAGE_CODES)}"
        )
    return code


def validate_clusters(clusters: dict[str, list[str]], where: str = "clusters") -> dict[str, list[str]]:
    """Every cluster non-empty and made of known codes; every language in at least one cluster."""
    if not clusters:
        raise ValueError(f"{where}: no clusters configured")
    for name, codes in clusters.items():
        if not codes:
            raise ValueError(f"{where}.{name}: cluster has no languages")
        for code in codes:
            check_language(code, f"{where}.{name}")
    covered = {code for codes in clusters.values() for code in codes}
    missing = [code for code in LANGUAGE_CODES if code not in covered]
    if missing:
        raise ValueError(f"{where}: languages in no cluster: {', '.join(missing)}")
    return clusters


def language_to_clusters(clusters: dict[str, list[str]]) -> dict[str, list[str]]:
    """Inverse mapping, e.g. en -> every cluster, de -> [romance_germanic]."""
    out: dict[str, list[str]] = {code: [] for code in LANGUAGE_CODES}
    for name, codes in clusters.items():
        for code in codes:
            out[code].append(name)
    return out
