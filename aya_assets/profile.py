"""Profiles: the YAML files in resources/ that configure every resource; validated strictly."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aya_assets import paths
from aya_assets.languages import DEFAULT_CLUSTERS, check_language, validate_clusters

DEFAULT_PROFILE = "tiny"
Split = Literal["train", "eval"]


class ProfileError(ValueError):
    """A profile file that cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _existing(path: str) -> str:
    if not paths.resolve(path).exists():
        raise ValueError(f"path does not exist: {paths.resolve(path)}")
    return path


class ColumnMap(_Strict):
    """Which input column holds each prompt field; unset optional fields are left empty."""

    text: str = "text"
    language: str | None = None
    reference: str | None = None
    category: str | None = None
    split: str | None = None
    id: str | None = None


class SeedSource(_Strict):
    """The bundled prompts: data/seed/prompts/<language>.jsonl."""

    kind: Literal["seed"]
    name: str = "seed"
    path: str = "data/seed/prompts"
    _check_path = field_validator("path")(_existing)


class TableSource(_Strict):
    """Any JSONL or Parquet file (or glob-free directory of them) with a column mapping."""

    kind: Literal["jsonl", "parquet"]
    name: str
    path: str
    columns: ColumnMap = ColumnMap()
    language: str | None = None  # used when the file has no language column
    split: Split | None = None  # used when the file has no split column
    _check_path = field_validator("path")(_existing)

    @model_validator(mode="after")
    def _language_known(self):
        if self.language is None and self.columns.language is None:
            raise ValueError("set `language` or `columns.language`")
        if self.language is not None:
            check_language(self.language)
        return self


class ArenaHardSource(_Strict):
    """Arena-Hard-Auto question.jsonl: question_id, category, cluster, turns[].content."""

    kind: Literal["arena_hard"]
    name: str = "arena_hard"
    path: str
    language: str
    split: Split = "eval"
    _check_path = field_validator("path")(_existing)
    _check_language = field_validator("language")(check_language)


class HubDatasetSource(_Strict):
    """CohereLabs/m-ArenaHard (one config per language: question_id, category, cluster, prompt)."""

    kind: Literal["hf_dataset"]
    name: str = "m_arenahard"
    dataset: str = "CohereLabs/m-ArenaHard"
    revision: str | None = None
    hf_split: str = "test"
    split: Split = "eval"
    languages: list[str] | None = None  # default: all 23
    local_dir: str | None = None  # a local copy laid out as <dir>/<language>/*.parquet; no hub access

    @field_validator("languages")
    @classmethod
    def _known(cls, value):
        for code in value or []:
            check_language(code)
        return value

    _check_local = field_validator("local_dir")(lambda v: v if v is None else _existing(v))


Source = Annotated[Union[SeedSource, TableSource, ArenaHardSource, HubDatasetSource], Field(discriminator="kind")]


class PromptsConfig(_Strict):
    sources: list[Source] = Field(min_length=1)
    eval_fraction: float = Field(0.3, ge=0.0, le=1.0)  # for rows whose source gives no split
    max_chars: int = Field(8000, gt=0)  # longer prompts are a data error, not a prompt

    @model_validator(mode="after")
    def _unique_names(self):
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique, repeated: {', '.join(dupes)}")
        return self


class Profile(_Strict):
    name: str
    seed: int = 0
    clusters: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_CLUSTERS))
    prompts: PromptsConfig

    @field_validator("clusters")
    @classmethod
    def _clusters(cls, value):
        return validate_clusters(value)


def profile_path(name_or_path: str | None = None) -> Path:
    """A profile name (tiny, gpu) from resources/, or a path to a YAML file; AYA_PROFILE by default."""
    ref = name_or_path or os.environ.get("AYA_PROFILE", DEFAULT_PROFILE)
    candidate = Path(ref)
    if candidate.suffix in {".yaml", ".yml"}:
        return paths.resolve(candidate)
    return paths.PACKAGE_ROOT / "resources" / f"{ref}.yaml"


def load_profile(name_or_path: str | None = None) -> Profile:
    path = profile_path(name_or_path)
    if not path.is_file():
        raise ProfileError(f"profile not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ProfileError(f"{path}: expected a mapping at the top level")
    try:
        return Profile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise ProfileError(f"{path}: {problems}") from None
