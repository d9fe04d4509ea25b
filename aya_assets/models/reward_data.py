"""Preference pairs for the tiny reward model: a prompt's reference answer beats three kinds of bad answer."""

from __future__ import annotations

import random

import polars as pl

from aya_assets.training.dpo import preference_rows

# wrong_language: another language's reference; off_topic: another prompt's reference in the same language;
# truncated: the first ~30% of the reference itself. Together they teach fidelity, relevance and completeness.
KINDS = ("wrong_language", "off_topic", "truncated")
PAIR_SCHEMA = {name: pl.String for name in ("prompt_id", "language", "kind", "prompt", "chosen", "rejected")}


def truncate(text: str, fraction: float) -> str:
    """The first `fraction` of `text`, by words, or by characters for scripts written without spaces."""
    words = text.split()
    if len(words) >= 4:
        return " ".join(words[: max(1, round(len(words) * fraction))])
    return text[: max(1, round(len(text) * fraction))]


def reward_pairs(prompts: pl.DataFrame, seed: int, per_prompt: int = 3) -> pl.DataFrame:
    """`per_prompt` pairs per train prompt with a reference, cycling through KINDS; eval prompts are never used."""
    rows = prompts.filter((pl.col("split") == "train") & pl.col("reference").is_not_null()).sort("prompt_id")
    references = {
        language: group["reference"].to_list()
        for (language,), group in rows.group_by("language", maintain_order=True)
    }
    rng = random.Random(seed)
    pairs = []
    for prompt_id, language, prompt, chosen in rows.select("prompt_id", "language", "text", "reference").iter_rows():
        other_languages = [code for code in references if code != language]
        same_language = [ref for ref in references[language] if ref != chosen]
        for i in range(per_prompt):
            kind = KINDS[i % len(KINDS)]
            if kind == "wrong_language" and other_languages:
                rejected = rng.choice(references[rng.choice(other_languages)])
            elif kind == "off_topic" and same_language:
                rejected = rng.choice(same_language)
            elif kind == "truncated":
                rejected = truncate(chosen, rng.uniform(0.2, 0.4))
            else:
                continue  # no other language, or no other prompt in this one
            pairs.append((prompt_id, language, kind, prompt, chosen, rejected))
    return pl.DataFrame(pairs, schema=PAIR_SCHEMA, orient="row")


# The reward model takes the same TRL explicit-prompt rows as DPO: one converter serves both.
to_conversational = preference_rows
