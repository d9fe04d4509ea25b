"""Translators for translation-contrast pairs: none on the tiny profile, NLLB through transformers on GPUs."""

from __future__ import annotations

from abc import ABC, abstractmethod

import dagster as dg
from pydantic import PrivateAttr

# FLORES-200 codes NLLB expects for the 23 Aya languages.
NLLB_CODES = {
    "ar": "arb_Arab", "zh": "zho_Hans", "cs": "ces_Latn", "nl": "nld_Latn", "en": "eng_Latn", "fr": "fra_Latn",
    "de": "deu_Latn", "el": "ell_Grek", "he": "heb_Hebr", "hi": "hin_Deva", "id": "ind_Latn", "it": "ita_Latn",
    "ja": "jpn_Jpan", "ko": "kor_Hang", "fa": "pes_Arab", "pl": "pol_Latn", "pt": "por_Latn", "ro": "ron_Latn",
    "ru": "rus_Cyrl", "es": "spa_Latn", "tr": "tur_Latn", "uk": "ukr_Cyrl", "vi": "vie_Latn",
}


class Translator(dg.ConfigurableResource, ABC):
    """Translates English texts into one of the 23 languages."""

    @abstractmethod
    def translate(self, texts: list[str], target: str) -> list[str]: ...

    @property
    def name(self) -> str:
        return type(self).__name__


class NoTranslator(Translator):
    """Leaves the text as it is: the tiny profile has no offline translation model (see README)."""

    def translate(self, texts: list[str], target: str) -> list[str]:
        return list(texts)

    @property
    def name(self) -> str:
        return "none"


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
