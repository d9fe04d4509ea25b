"""The teacher pool answers every train prompt, in resumable shards (teacher × language × chunk).

A shard's file name carries a fingerprint of everything that decides its content (model hash, prompts,
sampling, seed), so a re-run after a crash reuses finished shards and regenerates only the rest, and an owner key
(profile and model location), so that a run only ever deletes the stale shards of the models it generates with.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import polars as pl

from aya_assets.generation import GenerationBackend, SamplingSettings
from aya_assets.artifacts.tables import atomic_write_parquet

POOL_SCHEMA = {
    "prompt_id": pl.String,
    "language": pl.String,
    "prompt": pl.String,
    "teacher": pl.String,
    "sample": pl.Int32,
    "completion": pl.String,
    "tokens": pl.Int32,
    "finish_reason": pl.String,
    "seconds": pl.Float64,
}


@dataclass(frozen=True)
class Shard:
    teacher: str
    language: str
    index: int
    prompt_ids: tuple[str, ...]
    texts: tuple[str, ...]

    def seed(self, base_seed: int) -> int:
        # Independent of which other shards exist, so a shard regenerates identically on its own.
        digest = hashlib.sha256(f"{base_seed}|{self.teacher}|{self.language}|{self.index}".encode()).digest()
        return int.from_bytes(digest[:4], "little")

    def fingerprint(self, model_hash: str, sampling: SamplingSettings) -> str:
        payload = json.dumps([model_hash, sampling.model_dump(), self.prompt_ids], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    def path(self, shard_dir: Path, owner: str, fingerprint: str) -> Path:
        return shard_dir / self.language / f"{self.teacher}-{owner}-{self.index:04d}-{fingerprint}.parquet"


def owner_key(profile: str, location: str) -> str:
    """Whose shards these are: one profile's model at one location, whatever its weights or settings are now.

    Two profiles may name different checkpoints alike (`aya_expanse_8b` at a hub id and at a local fine-tune) and share
    a shard directory; the name alone let each delete the other's shards as stale. The weights stay out of the key on
    purpose: a model retrained in place keeps its owner, so its old shards are cleaned up rather than left behind.
    """
    return hashlib.sha256(f"{profile}|{location}".encode()).hexdigest()[:8]


def model_shards(language_dir: Path, teacher: str, owner: str) -> set[Path]:
    """Every shard file of one owner's `teacher` in one language directory, whatever its settings (as in Shard.path)."""
    # The 8-character owner and the digits keep teacher "a" from matching teacher "a-b"'s shards.
    return set(language_dir.glob(f"{teacher}-{owner}-[0-9][0-9][0-9][0-9]-*.parquet"))


def plan_shards(prompts: pl.DataFrame, teachers: list[str], shard_size: int,
                only: dict[str, set[str]] | None = None) -> list[Shard]:
    """Teacher-major order, so each model is loaded once per run. `only`: the prompt ids each teacher answers (learned
    routing), where not every teacher answers every prompt; a teacher it leaves out answers none."""
    shards = []
    for teacher in teachers:
        mine = prompts if only is None else prompts.filter(pl.col("prompt_id").is_in(list(only.get(teacher, ()))))
        for (language,), group in mine.sort("prompt_id").group_by("language", maintain_order=True):
            ids, texts = group["prompt_id"].to_list(), group["text"].to_list()
            for index, start in enumerate(range(0, len(ids), shard_size)):
                chunk = slice(start, start + shard_size)
                shards.append(Shard(teacher, language, index, tuple(ids[chunk]), tuple(texts[chunk])))
    return sorted(shards, key=lambda s: (teachers.index(s.teacher), s.language, s.index))


def _shard_frame(shard: Shard, results) -> pl.DataFrame:
    rows = [
        {
            "prompt_id": pid,
            "language": shard.language,
            "prompt": text,
            "teacher": shard.teacher,
            "sample": sample,
            "completion": c.text,
            "tokens": c.tokens,
            "finish_reason": c.finish_reason,
            "seconds": c.seconds,
        }
        for pid, text, completions in zip(shard.prompt_ids, shard.texts, results)
        for sample, c in enumerate(completions)
    ]
    return pl.DataFrame(rows, schema=POOL_SCHEMA)


def generate_pool(
    prompts: pl.DataFrame,
    models: dict[str, str],
    model_hashes: dict[str, str],
    backend: GenerationBackend,
    sampling: SamplingSettings,
    shard_dir: Path,
    shard_size: int,
    log: Callable[[str], None] = print,
    profile: str = "",
    only: dict[str, set[str]] | None = None,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Every teacher in `models` answers every prompt (or its prompts in `only`) `sampling.n` times; returns the table
    and shard counts.

    `profile` (the profile's name) and each model's location own its shards, see `owner_key`.
    """
    shards = plan_shards(prompts, list(models), shard_size, only)
    owners = {name: owner_key(profile, location) for name, location in models.items()}
    settings = {s: sampling.model_copy(update={"seed": s.seed(sampling.seed)}) for s in shards}
    frames, counts = run_shards(
        shards, shard_dir, owners, lambda s: s.fingerprint(model_hashes[s.teacher], settings[s]),
        lambda s: _shard_frame(s, backend.generate(models[s.teacher], list(s.texts), settings[s])), log,
    )
    table = pl.concat(frames) if frames else pl.DataFrame(schema=POOL_SCHEMA)
    return table.sort("language", "prompt_id", "teacher", "sample"), counts


def run_shards(
    shards: list[Shard],
    shard_dir: Path,
    owners: dict[str, str],
    fingerprint: Callable[[Shard], str],
    compute: Callable[[Shard], pl.DataFrame],
    log: Callable[[str], None] = print,
) -> tuple[list[pl.DataFrame], dict[str, int]]:
    """Each shard's table: read back where its fingerprinted file exists, else computed and written atomically.

    `owners` maps each shard's `teacher` to its owner key; generation and cached judge verdicts both run on this.
    """
    frames, counts = [], {"reused": 0, "generated": 0}
    keep: set[Path] = set()
    for number, shard in enumerate(shards, start=1):
        path = shard.path(shard_dir, owners[shard.teacher], fingerprint(shard))
        keep.add(path)
        if path.exists():
            frames.append(pl.read_parquet(path))
            counts["reused"] += 1
            continue
        frames.append(compute(shard))
        atomic_write_parquet(frames[-1], path)
        counts["generated"] += 1
        log(f"shard {number}/{len(shards)}: {shard.teacher} {shard.language}#{shard.index} ({len(shard.texts)} prompts)")
    # Drop these models' shards of older settings or weights: they can never be reused. Other models' shards in the
    # same directory (eval_generations keeps every stage there, another profile its own teachers) are not this
    # call's to judge.
    for language in {s.language for s in shards}:
        for teacher, owner in owners.items():
            for stale in model_shards(shard_dir / language, teacher, owner) - keep:
                stale.unlink(missing_ok=True)
    return frames, counts


def is_degenerate(text: str) -> bool:
    """Empty, or one token repeated: what a collapsed sampler produces."""
    words = text.split()
    return not words or (len(words) >= 8 and len(set(words)) / len(words) < 0.2)


def degenerate_rate(pool: pl.DataFrame) -> float:
    if pool.is_empty():
        return 0.0
    return sum(map(is_degenerate, pool["completion"].to_list())) / pool.height
