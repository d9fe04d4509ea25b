"""Judges for pairwise evaluation — never the arbiter. Verdicts are from A's side: 1 win, 0.5 tie, 0 loss."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, NamedTuple

import dagster as dg
from pydantic import PrivateAttr

from aya_assets.checkpoints.files import model_identity
from aya_assets.evaluation.quality import normalize_answer
from aya_assets.generation import GenerationBackend, SamplingSettings
from aya_assets.languages import langid
from aya_assets.models.data import clip

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Arena-Hard's judge prompt, shortened: the judge answers itself first, then compares, then gives a label.
ARENA_HARD_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants "
    "to the user prompt displayed below. You will be given assistant A's answer and assistant B's answer. "
    "Your job is to evaluate which assistant's answer is better. Answers must be in the language of the prompt; "
    "an answer in another language is a serious flaw. Begin your evaluation by generating your own answer to the "
    "prompt, then compare both answers with yours, identifying any mistakes or missing information. "
    "After providing your explanation, output your final verdict with exactly one label: "
    "[[A>>B]] (A is significantly better), [[A>B]] (A is slightly better), [[A=B]] (tie), "
    "[[B>A]] (B is slightly better), [[B>>A]] (B is significantly better)."
)
ARENA_HARD_USER = "<|User Prompt|>\n{prompt}\n\n<|The Start of Assistant A's Answer|>\n{a}\n<|The End of Assistant A's Answer|>\n\n<|The Start of Assistant B's Answer|>\n{b}\n<|The End of Assistant B's Answer|>"
LABELS = {"A>>B": 1.0, "A>B": 1.0, "A=B": 0.5, "B>A": 0.0, "B>>A": 0.0}
LABEL_RE = re.compile(r"\[\[(A>>B|A>B|A=B|B>A|B>>A)\]\]")


def parse_verdict(text: str) -> float | None:
    """The last Arena-Hard label in a judgement, as A's score; None when the judge gave none."""
    found = LABEL_RE.findall(text)
    return LABELS[found[-1]] if found else None


def references_at_budget(references: list[str | None], tokenizer: PreTrainedTokenizerBase,
                         max_tokens: int) -> list[str | None]:
    """Each reference cut to its first `max_tokens` tokens (models.data.clip): no answer written in max_new_tokens can
    be longer, so chrF against the whole reference would score an answer by how much of it fits, not how good it is."""
    return [None if r is None else clip(r, tokenizer, max_tokens) for r in references]


class Judgement(NamedTuple):
    score: float | None  # A's score: 1 win, 0.5 tie, 0 loss; None when the judge gave no verdict
    text: str  # what the judge said, kept so that an unparsed verdict can be read


class Judge(dg.ConfigurableResource, ABC):
    """Compares two answers to the same prompt; `compare` is called for both orders by the caller."""

    @abstractmethod
    def compare(self, prompts: list[str], a: list[str], b: list[str], references: list[str | None],
                languages: list[str]) -> list[Judgement]:
        """A's judgement per item."""

    @abstractmethod
    def identity(self) -> list:
        """Everything besides the pair itself that decides a verdict: cached verdicts are keyed on it."""

    @property
    def name(self) -> str:
        return type(self).__name__


class ReferenceJudge(Judge):
    """tiny: quality = fidelity_weight * P(answer in the prompt's language) + (1 - w) * chrF(answer, reference) / 100.

    An answer equal to the reference (quality.normalize_answer on both) beats one that is not, whatever their
    qualities; otherwise the better quality wins and a gap below `tie_margin` is a tie. Deterministic and symmetric by
    construction. The caller passes references cut to the generation budget (references_at_budget), so that a longer
    answer does not win by covering more of a reference no answer could finish.
    """

    fidelity_weight: float = 0.5
    tie_margin: float = 0.02

    # (answer, reference, language) -> quality: each stage's answer meets every baseline in both orders, so the same
    # triple comes up six times in a tiny demo's judging (chrF and lingua were 40 of win_rates' 47 s).
    _qualities: dict = PrivateAttr(default_factory=dict)

    def quality(self, answers: list[str], references: list[str | None], languages: list[str]) -> list[float]:
        from sacrebleu.metrics import CHRF

        keys = list(zip(answers, references, languages))
        new = [key for key in dict.fromkeys(keys) if key not in self._qualities]
        if new:
            chrf = CHRF()
            fidelity = langid.confidence([t for t, _, _ in new], [lang for _, _, lang in new])
            w = self.fidelity_weight
            for (t, r, lang), f in zip(new, fidelity):
                s = chrf.sentence_score(t, [r]).score / 100 if r and t.strip() else 0.0
                self._qualities[(t, r, lang)] = w * f + (1 - w) * s
        return [self._qualities[key] for key in keys]

    def compare(self, prompts, a, b, references, languages):
        qa, qb = self.quality(a, references, languages), self.quality(b, references, languages)
        out = []
        for x, y, ea, eb in zip(qa, qb, exact(a, references), exact(b, references)):
            text = f"quality A {x:.3f}, B {y:.3f}" + ("; A exact" if ea else "") + ("; B exact" if eb else "")
            score = float(ea) if ea != eb else 0.5 if ea or abs(x - y) < self.tie_margin else float(x > y)
            out.append(Judgement(score, text))
        return out

    def identity(self) -> list:
        return [self.name, self.fidelity_weight, self.tie_margin, "exact answer first"]  # the rule's name keys the cache


def exact(answers: list[str], references: list[str | None]) -> list[bool]:
    """Whether each answer equals its reference once both are normalised (as stage_quality's exact match)."""
    return [bool(ref := normalize_answer(r)) and normalize_answer(t) == ref for t, r in zip(answers, references)]


class LLMJudge(Judge):
    """gpu: an LLM with the Arena-Hard prompt, through any generation backend (vLLM, transformers or an endpoint)."""

    model: str  # checkpoint dir, hub id or served name
    backend: GenerationBackend  # a nested resource (not ResourceDependency, which is for non-Pythonic resources)
    max_new_tokens: int = 1024  # evaluation.judge_max_new_tokens

    @property
    def name(self) -> str:
        return f"LLMJudge({self.model})"

    def compare(self, prompts, a, b, references, languages):
        requests = [ARENA_HARD_SYSTEM + "\n\n" + ARENA_HARD_USER.format(prompt=p, a=x, b=y) for p, x, y in zip(prompts, a, b)]
        outputs = self.backend.generate(self.model, requests, SamplingSettings(n=1, temperature=0.0, max_new_tokens=self.max_new_tokens))
        return [Judgement(parse_verdict(o[0].text), o[0].text) for o in outputs]

    def identity(self) -> list:
        return [type(self).__name__, model_identity(self.model), self.max_new_tokens,
                ARENA_HARD_SYSTEM, ARENA_HARD_USER]
