"""Preference pairs for the tiny reward model: a prompt's reference answer beats eight kinds of worse answer."""

from __future__ import annotations

import difflib
import random
from typing import TYPE_CHECKING

import polars as pl

from aya_assets.training.dpo import preference_rows

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# wrong_language: another language's reference; off_topic: another prompt's reference in the same language;
# truncated: the first 20-50% of the answer's tokens; garbled: every word's letters shuffled (right script, no
# sense); mixed_script: the answer's words among two other languages' words; more_garbled: a partly garbled answer
# beats a more garbled one. garbled and mixed_script are what weak generators emit. more_garbled teaches the order
# among bad answers, which is all the online rounds compare: on a demo's online samples the reward's order of two
# samples matched their chrF to the reference in 57-68% of pairs without it, 66-74% with it (32-43% before either).
# near_miss: of 16 other references in the same language, the one sharing most characters with the answer (difflib's
# quick_ratio: a multiset overlap, linear; its ratio cost 21 s for the tiny profile's 140k pairs): for a
# generated task the right form of a nearby item (a number off by a digit), the mistake teachers actually make. With
# off_topic alone the reward model told a right number from a wrong one in 65% of held-out pairs.
# overlong: the answer with a piece of another same-language answer before or after it. truncated alone taught the
# reward model that longer is better: on a demo's pool it ranked "siebenhundertdreiundsiebzig" above the right
# "dreiundsiebzig" for 73, and its top pick was exact for 35% of train prompts against 47% for a random candidate.
KINDS = ("wrong_language", "off_topic", "truncated", "garbled", "mixed_script", "more_garbled", "near_miss", "overlong")
# The order pairs are drawn in: the kinds that need the prompt read (a right number from a wrong one) come up twice as
# often as those a glance at the answer settles (held-out accuracy 53-68% against 86-99%).
CYCLE = ("near_miss", "wrong_language", "overlong", "off_topic", "near_miss", "truncated", "garbled", "overlong",
         "off_topic", "mixed_script", "near_miss", "more_garbled")
NEAR_MISS_DRAWS = 16
PAIR_SCHEMA = {name: pl.String for name in ("prompt_id", "language", "kind", "prompt", "chosen", "rejected")}


def clip(text: str, tokenizer: PreTrainedTokenizerBase, max_tokens: int) -> str:
    """`text` cut to its first `max_tokens` tokens: a perfect answer as generation emits it at that budget.

    Every tiny generation stops at max_new_tokens. References cut at 160 characters made the best teacher's
    full-budget answer (45-125 characters) look like a "truncated" negative: the reward ranked the focus teacher's
    answer above another teacher's in 66% of a demo pool's pairs; cut at the token budget, 92% (600 steps each).
    """
    ids = tokenizer(text, add_special_tokens=False).input_ids
    return text if len(ids) <= max_tokens else _decode(tokenizer, ids[:max_tokens])


def truncate(text: str, tokenizer: PreTrainedTokenizerBase, fraction: float) -> str:
    """The first `fraction` of `text`'s tokens (at least one)."""
    ids = tokenizer(text, add_special_tokens=False).input_ids
    return _decode(tokenizer, ids[: max(1, round(len(ids) * fraction))])


def _decode(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
    # A cut can split a multi-byte character, which decodes to U+FFFD: drop it (and a trailing space) so the result
    # is a prefix of the text.
    return tokenizer.decode(ids).rstrip("\ufffd").rstrip()


def garble(text: str, rng: random.Random, fraction: float = 1.0) -> str:
    """The letters of `fraction` of the words shuffled (of the characters, for scripts written without spaces)."""
    words = text.split()
    if len(words) < 4:
        chars = list(text)
        picked = sorted(rng.sample(range(len(chars)), round(len(chars) * fraction)))
        moved = [chars[i] for i in picked]
        rng.shuffle(moved)
        for i, char in zip(picked, moved):
            chars[i] = char
        return "".join(chars)
    picked = set(rng.sample(range(len(words)), max(1, round(len(words) * fraction))))
    return " ".join("".join(rng.sample(word, len(word))) if i in picked else word for i, word in enumerate(words))


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


def reward_pairs(
    prompts: pl.DataFrame, tokenizer: PreTrainedTokenizerBase, max_tokens: int, seed: int, per_prompt: int = len(CYCLE),
    split: str = "train",
) -> pl.DataFrame:
    """`per_prompt` pairs per prompt of `split` with a reference, cycling through CYCLE (training: the train split only;
    the eval split's pairs measure the trained reward model on items it never saw).

    References are clipped to `max_tokens`, the generation budget the arbiter's answers are written at.
    """
    rows = prompts.filter((pl.col("split") == split) & pl.col("reference").is_not_null()).sort("prompt_id")
    clipped = {ref: clip(ref, tokenizer, max_tokens) for ref in rows["reference"]}
    references = {
        language: [clipped[ref] for ref in group["reference"]]
        for (language,), group in rows.group_by("language", maintain_order=True)
    }
    rng = random.Random(seed)
    pairs = []
    rows_ = rows.select("prompt_id", "language", "text", "reference").iter_rows()
    for index, (prompt_id, language, prompt, reference) in enumerate(rows_):
        answer = clipped[reference]
        other_languages = [code for code in references if code != language]
        same_language = [ref for ref in references[language] if ref != answer]
        for i in range(per_prompt):
            # Each prompt starts the cycle where the last left off: fewer pairs per prompt than kinds still cover all.
            kind, chosen = CYCLE[(index * per_prompt + i) % len(CYCLE)], answer
            if kind == "wrong_language" and other_languages:
                rejected = rng.choice(references[rng.choice(other_languages)])
            elif kind == "off_topic" and same_language:
                rejected = rng.choice(same_language)
            elif kind == "truncated":
                rejected = truncate(answer, tokenizer, rng.uniform(0.2, 0.5))
            elif kind == "garbled":
                rejected = garble(answer, rng)
            elif kind == "mixed_script" and len(other_languages) >= 2:
                others = [rng.choice(references[code]) for code in rng.sample(other_languages, 2)]
                rejected = mix_scripts(answer, others, rng)
            elif kind == "near_miss" and same_language:
                drawn = rng.sample(same_language, min(NEAR_MISS_DRAWS, len(same_language)))
                rejected = max(drawn, key=lambda other: difflib.SequenceMatcher(None, answer, other).quick_ratio())
            elif kind == "overlong" and same_language:
                words = rng.choice(same_language).split()
                piece = " ".join(words[: rng.randint(1, max(1, len(words) // 2))])
                joint = " " if " " in answer or " " in piece else ""
                rejected = clip(piece + joint + answer if rng.random() < 0.5 else answer + joint + piece, tokenizer, max_tokens)
            elif kind == "more_garbled":
                light = rng.uniform(0.1, 0.5)
                chosen, rejected = garble(answer, rng, light), garble(answer, rng, min(1.0, light + rng.uniform(0.3, 0.5)))
            else:
                continue  # no other language, or no other prompt in this one
            if chosen != rejected:  # a shuffle can leave a short text as it was
                pairs.append((prompt_id, language, kind, prompt, chosen, rejected))
    return pl.DataFrame(pairs, schema=PAIR_SCHEMA, orient="row")


# The reward model takes the same TRL explicit-prompt rows as DPO: one converter serves both.
to_conversational = preference_rows


def mixture(rows: pl.DataFrame, focus: list[str], share: float, n: int, seed: int) -> pl.DataFrame:
    """`n` rows, about `share` of them from languages in `focus` and the rest from the others, shuffled by `seed`."""
    in_focus = rows.filter(pl.col("language").is_in(focus))
    others = rows.filter(~pl.col("language").is_in(focus))
    take_focus = round(share * n) if in_focus.height and others.height else (n if in_focus.height else 0)
    parts = [_draw(in_focus, take_focus, seed), _draw(others, n - take_focus, seed + 1)]
    return pl.concat(parts).sample(fraction=1.0, shuffle=True, seed=seed)


def _draw(rows: pl.DataFrame, k: int, seed: int) -> pl.DataFrame:
    # Whole copies first, then a sample of the remainder: every row is seen about equally often.
    copies, remainder = divmod(k, rows.height) if rows.height else (0, 0)
    return pl.concat([rows] * copies + [rows.sample(remainder, seed=seed)])
