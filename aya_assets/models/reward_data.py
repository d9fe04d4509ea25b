"""Preference pairs for the tiny reward model: a prompt's reference answer beats four kinds of bad answer."""

from __future__ import annotations

import random

import polars as pl

from aya_assets.training.dpo import preference_rows

# wrong_language: another language's reference; off_topic: another prompt's reference in the same language;
# garbled: the reference's words with their letters shuffled (right script, no sense); mixed_script: the
# reference's words interleaved with two other languages' words. The last two are what weak generators emit:
# without them the reward model rewards noise it never saw.
# No "truncated" kind: every tiny generation stops at max_new_tokens, so a cut-off reference looked just like the
# best teacher's answer. Measured on the demo's pool (600 steps, 16 pairs per prompt both times): with it the reward
# ranked the focus teacher's answer above another teacher's in 66% of pairs, without it 84%; arbitrage picked the
# focus teacher for 60% of prompts with it, 76% without.
KINDS = ("wrong_language", "off_topic", "garbled", "mixed_script")
PAIR_SCHEMA = {name: pl.String for name in ("prompt_id", "language", "kind", "prompt", "chosen", "rejected")}
# Answers are scored at generation length (tens of tokens), so references are cut to about that length.
CLIP_CHARS = 160


def clip(text: str, limit: int = CLIP_CHARS) -> str:
    """`text` cut to `limit` characters, at a word boundary when one is near."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return cut[:space] if space > limit // 2 else cut


def garble(text: str, rng: random.Random) -> str:
    """Each word's letters shuffled (whole-text characters for scripts without spaces): right script, no sense."""
    words = text.split()
    if len(words) < 4:
        chars = list(text)
        rng.shuffle(chars)
        return "".join(chars)
    return " ".join("".join(rng.sample(word, len(word))) for word in words)


def mix_scripts(text: str, others: list[str], rng: random.Random) -> str:
    """`text`'s pieces interleaved with pieces of `others` (other languages), about the same length as `text`."""
    def split(source: str) -> list[str]:  # words, or 3-character pieces for scripts written without spaces
        return source.split() if " " in source else [source[i:i + 3] for i in range(0, len(source), 3)]

    pieces = [piece for source in [text, *others] for piece in split(source)]
    rng.shuffle(pieces)
    out, length = [], 0
    for piece in pieces:
        if length >= len(text):
            break
        out.append(piece)
        length += len(piece) + 1
    return " ".join(out)


def reward_pairs(prompts: pl.DataFrame, seed: int, per_prompt: int = len(KINDS)) -> pl.DataFrame:
    """`per_prompt` pairs per train prompt with a reference, cycling through KINDS; eval prompts are never used."""
    rows = prompts.filter((pl.col("split") == "train") & pl.col("reference").is_not_null()).sort("prompt_id")
    references = {
        language: [clip(ref) for ref in group["reference"].to_list()]
        for (language,), group in rows.group_by("language", maintain_order=True)
    }
    rng = random.Random(seed)
    pairs = []
    for prompt_id, language, prompt, reference in rows.select("prompt_id", "language", "text", "reference").iter_rows():
        chosen = clip(reference)
        other_languages = [code for code in references if code != language]
        same_language = [ref for ref in references[language] if ref != chosen]
        for i in range(per_prompt):
            kind = KINDS[i % len(KINDS)]
            if kind == "wrong_language" and other_languages:
                rejected = rng.choice(references[rng.choice(other_languages)])
            elif kind == "off_topic" and same_language:
                rejected = rng.choice(same_language)
            elif kind == "garbled":
                rejected = garble(chosen, rng)
            elif kind == "mixed_script" and len(other_languages) >= 2:
                others = [rng.choice(references[code]) for code in rng.sample(other_languages, 2)]
                rejected = mix_scripts(chosen, others, rng)
            else:
                continue  # no other language, or no other prompt in this one
            pairs.append((prompt_id, language, kind, prompt, chosen, rejected))
    return pl.DataFrame(pairs, schema=PAIR_SCHEMA, orient="row")


# The reward model takes the same TRL explicit-prompt rows as DPO: one converter serves both.
to_conversational = preference_rows
