"""Profiles: the YAML files in resources/ that configure every resource; validated strictly."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Callable, Literal, NamedTuple, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aya_assets import paths
from aya_assets.paths import profile_path
from aya_assets.languages import DEFAULT_CLUSTERS, check_language, validate_clusters
from aya_assets.checkpoints.files import REWARD_KIND_PROBLEM, TOKENIZER_FILES, reward_kind_of
from aya_assets.training.settings import DPOSettings, TinyArchitecture, TrainSettings

Split = Literal["train", "eval"]


class ProfileError(ValueError):
    """A profile file that cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _existing(path: str) -> str:
    if not paths.resolve(path).exists():
        raise ValueError(f"path does not exist: {paths.resolve(path)}")
    return path


def _localized(path: str | None) -> str | None:
    """A model path that exists (from the checkout) becomes absolute, so it means the same from any working directory."""
    return str(paths.resolve(path)) if path is not None and paths.resolve(path).exists() else path


def check_device(value: str) -> str:
    """auto and cpu work anywhere; cuda[:n] and mps only where torch sees that device."""
    if value in ("auto", "cpu"):
        return value
    import torch

    try:
        device = torch.device(value)
    except RuntimeError:
        raise ValueError(f"{value!r} is not a torch device; use auto, cpu, cuda or cuda:<index>") from None
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda" and not cuda:
        raise ValueError(f"{value!r} but torch sees no CUDA device on this machine; set it to auto (the GPU when there is one) or cpu")
    if device.type == "cuda" and (device.index or 0) >= cuda:
        raise ValueError(f"{value!r} but torch sees {cuda} CUDA device(s); use cuda:0 to cuda:{cuda - 1} or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{value!r} but torch sees no MPS device on this machine; set it to auto or cpu")
    if device.type not in ("cuda", "mps"):
        raise ValueError(f"{value!r}: only auto, cpu, cuda[:n] and mps are supported")
    return value


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


class NumberWordsSource(_Strict):
    """Generated: "write N in words" in each language from bundled templates, references from ICU's spell-out rules."""

    kind: Literal["number_words"]
    name: str = "number_words"
    templates: str = "data/seed/tasks/number_words.json"  # {language: "... {n} ..."}, the number as digits
    numbers: tuple[int, int] = (0, 999)  # the inclusive range items are drawn from
    count: int = Field(200, ge=1)  # numbers drawn (seeded); every language gets the same ones
    eval_fraction: float = Field(0.3, ge=0.0, le=1.0)  # held out by a seeded hash of the number, never of the language
    seed: int = 0
    languages: list[str] | None = None  # default: all 23
    _check_templates = field_validator("templates")(_existing)
    _check_languages = field_validator("languages")(lambda v: v if v is None else [check_language(c) for c in v])

    @model_validator(mode="after")
    def _range(self):
        low, high = self.numbers
        if not 0 <= low <= high:
            raise ValueError(f"numbers: expected [low, high] with 0 <= low <= high, got [{low}, {high}]")
        if self.count > high - low + 1:
            raise ValueError(f"count: {self.count} numbers cannot be drawn from numbers [{low}, {high}] "
                             f"({high - low + 1} in all); lower count or widen numbers")
        return self


Source = Annotated[Union[SeedSource, TableSource, ArenaHardSource, HubDatasetSource, NumberWordsSource],
                   Field(discriminator="kind")]


class PromptsConfig(_Strict):
    sources: list[Source] = Field(min_length=1)
    eval_fraction: float = Field(0.3, ge=0.0, le=1.0)  # for rows whose source gives no split
    max_chars: int = Field(8000, gt=0)  # longer prompts are a data error, not a prompt
    # Share of a language's prompts lingua may read as another language before the blocking language-ID check fails:
    # short prompts, names and code are misread now and then (the bundled seed: at most 1 of 24), a mislabelled file
    # is mostly wrong.
    max_language_mismatch: float = Field(0.2, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _unique_names(self):
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique, repeated: {', '.join(dupes)}")
        return self


class ModelRef(_Strict):
    """One model: built from the bundled data (tiny) or a configured checkpoint (local dir or hub id)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    path: str | None = None  # required when models.build is false
    revision: str | None = None
    focus: list[str] = []  # languages or cluster names this model is (mostly) trained on when built
    in_pool: bool = True  # teachers only: whether it answers in the arbitrage pool
    _local = field_validator("path")(_localized)


class ModelsConfig(_Strict):
    build: bool = True  # tiny: train every model from data/seed; gpu: use the configured checkpoints
    tokenizer_vocab: int = Field(4096, ge=300)
    # Longest token in bytes (None: no cap). Spelled-out numbers need one: uncapped BPE learns whole number words
    # ("hundertsieben", "三百四十") as tokens, and 2.3% of held-out answers then need a token no train answer has.
    tokenizer_max_token_length: int | None = Field(None, ge=1)
    architecture: TinyArchitecture = TinyArchitecture()
    teacher_training: TrainSettings = TrainSettings(steps=300, learning_rate=3e-3, batch_size=16)
    student_training: TrainSettings = TrainSettings(steps=80, learning_rate=3e-3, batch_size=16)
    reward_training: TrainSettings = TrainSettings(steps=200, learning_rate=1e-3, batch_size=16)
    # The built reward model (models.build: true; a configured one's kind comes from its config.json):
    # "classifier", a sequence classifier trained on reference-vs-negative pairs; "likelihood", a causal LM fine-tuned
    # from student_base on every language's train answers, scoring an answer by its mean log-probability.
    reward_kind: Literal["classifier", "likelihood"] = "classifier"
    # Each pair draws fresh negatives (a new shuffle, another answer): more of them, not more steps over the same
    # ones, is what taught the reward model (measured, 600 steps: the focus teacher's answer ranked above another
    # teacher's in 79% of pool pairs with 8 pairs per prompt, 84% with 16).
    reward_pairs_per_prompt: int = Field(20, ge=1)
    focus_share: float = Field(0.85, gt=0.0, le=1.0)  # share of a built model's data from its focus languages
    teachers: list[ModelRef] = Field(min_length=1)
    student: ModelRef
    reward_model: ModelRef
    translation_source: str | None = None  # the weak English teacher used for translation-contrast pairs

    @model_validator(mode="after")
    def _consistent(self):
        names = [t.name for t in self.teachers]
        if len(set(names)) != len(names):
            raise ValueError(f"teacher names must be unique: {names}")
        if not any(t.in_pool for t in self.teachers):
            raise ValueError("no teacher has in_pool: true")
        if self.translation_source is not None and self.translation_source not in names:
            raise ValueError(f"translation_source {self.translation_source!r} is not a teacher")
        if not self.build:
            for ref in [*self.teachers, self.student, self.reward_model]:
                if ref.path is None:
                    raise ValueError(f"{ref.name}: `path` is required when models.build is false")
        return self


class VllmSettings(_Strict):
    tensor_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float = Field(0.85, gt=0.0, le=1.0)
    max_model_len: int | None = None
    dtype: str = "auto"


class EndpointSettings(_Strict):
    base_url: str
    api_key_env: str | None = None
    timeout_s: float = 120
    max_retries: int = Field(4, ge=0)
    backoff_s: float = Field(1.0, ge=0.0)
    max_concurrency: int = Field(8, ge=1)
    model_names: dict[str, str] = {}


class GenerationConfig(_Strict):
    backend: Literal["transformers", "vllm", "endpoint"] = "transformers"
    batch_size: int = Field(32, ge=1)  # transformers backend
    device: str = "auto"
    samples: int = Field(2, ge=1)  # completions per teacher per prompt (n)
    max_new_tokens: int = Field(48, ge=1)
    temperature: float = Field(0.8, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    shard_size: int = Field(64, ge=1)  # prompts per resumable shard
    vllm: VllmSettings = VllmSettings()
    endpoint: EndpointSettings | None = None
    _device = field_validator("device")(check_device)

    @model_validator(mode="after")
    def _endpoint(self):
        if self.backend == "endpoint" and self.endpoint is None:
            raise ValueError("backend 'endpoint' needs an `endpoint:` section with base_url")
        return self


class ArbiterConfig(_Strict):
    language_weight: float = Field(1.0, ge=0.0)  # score = reward + weight * P(completion is in the prompt's language)
    batch_size: int = Field(32, ge=1)
    device: str = "auto"
    _device = field_validator("device")(check_device)


class RouterConfig(_Strict):
    """The learned router (arbitrage/router.py): TF-IDF character n-grams of language and prompt, logistic regression."""

    ngram_range: tuple[int, int] = (1, 3)
    regularization: float = Field(1.0, gt=0.0)  # logistic regression's C (higher: less regularised)
    holdout: float = Field(0.2, ge=0.0, lt=1.0)  # share of the calibration slice kept out of training, for accuracy
    # The learned_<k> baseline students trained on the full pool's scores restricted to what top-k routing generates,
    # next to reward, fixed and random routing in the cost-quality comparison. [] for none; k >= the pool's size is
    # reward routing itself and is left out.
    compare_topk: list[int] = [1, 2]

    @field_validator("compare_topk")
    @classmethod
    def _topk(cls, value):
        if any(k < 1 for k in value):
            raise ValueError(f"compare_topk: every k must be at least 1, got {value}")
        return value

    @field_validator("ngram_range")
    @classmethod
    def _ngrams(cls, value):
        if not 1 <= value[0] <= value[1]:
            raise ValueError(f"ngram_range must be [low, high] with 1 <= low <= high, got {list(value)}")
        return value


class ArbitrageConfig(_Strict):
    # learned: a router trained on the calibration slice picks the teachers that generate everywhere else.
    routing: str = Field("reward", pattern=r"^(reward|learned|fixed|random|single:[A-Za-z0-9_.-]+)$")
    # Train prompts every pool teacher answers: they decide `fixed` routing and train the router.
    calibration_fraction: float = Field(0.25, gt=0.0, le=1.0)
    learned_topk: int = Field(1, ge=1)  # routing `learned`: teachers that answer each prompt outside the slice
    router: RouterConfig = RouterConfig()
    max_degenerate_rate: float = Field(0.3, ge=0.0, le=1.0)
    max_reward_length_correlation: float = Field(0.6, ge=0.0, le=1.0)


class TrainingConfig(_Strict):
    sft: TrainSettings = TrainSettings(steps=150, learning_rate=2e-3, batch_size=16)
    baselines: bool = True  # also SFT on single-teacher and random routing (what evaluation compares against)
    # Share of the other clusters' arbitrage rows that each cluster's SFT also trains on. 0 = only the cluster's own
    # languages (the recipe as published); small models need some, or the cluster models drift too far apart to merge.
    cluster_replay: float = Field(0.0, ge=0.0, le=1.0)
    dpo: DPOSettings = DPOSettings(steps=40, learning_rate=1e-3, batch_size=8, beta=0.1)
    min_margin: float = Field(0.1, ge=0.0)  # best-vs-worst pairs closer than this in score are dropped


MergeStage = Literal["within_run", "across_clusters", "safety"]
MERGE_STAGE_ORDER = ("within_run", "across_clusters", "safety")


class WithinRunConfig(_Strict):
    """Checkpoints each cluster run keeps for the within-run merge: the last `keep`, `every` (a share of its steps) apart."""

    keep: int = Field(3, ge=1)
    every: float = Field(0.1, gt=0.0, le=1.0)


class MergeConfig(_Strict):
    method: Literal["linear", "slerp", "ties", "dare_ties"] = "linear"
    weights: dict[str, float] | None = None  # per cluster; default: proportional to each cluster's training rows
    density: float = Field(0.5, gt=0.0, le=1.0)  # ties / dare_ties
    slerp_t: float = Field(0.5, ge=0.0, le=1.0)
    # The merge stages, in the recipe's order: within_run (each cluster run's kept checkpoints averaged), then
    # across_clusters (the method above), then safety (safety-tuned and general model, safety.merge_weight).
    plan: list[MergeStage] = ["within_run", "across_clusters", "safety"]
    within_run: WithinRunConfig = WithinRunConfig()

    @field_validator("plan")
    @classmethod
    def _plan(cls, value):
        if "across_clusters" not in value:
            raise ValueError("merge.plan must hold across_clusters: the cluster models are merged into one model")
        if len(set(value)) != len(value) or value != [s for s in MERGE_STAGE_ORDER if s in value]:
            raise ValueError(f"merge.plan: each stage once, in the order {', '.join(MERGE_STAGE_ORDER)}; got {value}")
        return value


class RedTeamSource(_Strict):
    """Red-team prompts in the Aya Red-teaming layout (CohereLabs/aya_redteaming): aya_<iso 639-3>.jsonl files with
    prompt, language (English name), harm_category, global_or_local; optional safe_reference / unsafe_reference (the
    bundled tiny set has both). `path`: a local copy (a folder of those files, or one file); else the hub dataset."""

    kind: Literal["aya_redteaming"]
    name: str = "aya_redteaming"
    path: str | None = None
    dataset: str = "CohereLabs/aya_redteaming"
    revision: str | None = None
    languages: list[str] | None = None  # default: every Aya language the source has
    split: Split | None = None  # default: a seeded hash of prompt_id with safety.eval_fraction
    _check_path = field_validator("path")(lambda v: v if v is None else _existing(v))
    _check_languages = field_validator("languages")(lambda v: v if v is None else [check_language(c) for c in v])


class HarmClassifierConfig(_Strict):
    """tiny harm judge: TF-IDF character n-grams + logistic regression, refusal vs anything else (scikit-learn)."""

    ngram_range: tuple[int, int] = (1, 4)
    regularization: float = Field(1.0, gt=0.0)  # scikit-learn's C


class SafetyConfig(_Strict):
    enabled: bool = True
    sources: list[RedTeamSource] = Field(default_factory=lambda: [RedTeamSource(kind="aya_redteaming",
                                                                                  name="redteam_seed",
                                                                                  path="data/seed/redteam")])
    eval_fraction: float = Field(0.3, ge=0.0, le=1.0)  # for rows whose source gives no split
    # General rows (arbitrage SFT data) per safety row in the safety SFT: the mix that keeps general skills.
    general_mix: float = Field(1.0, ge=0.0)
    sft: TrainSettings = TrainSettings(steps=100, learning_rate=1e-3, batch_size=16)
    dpo: DPOSettings | None = DPOSettings(steps=20, learning_rate=1e-4, batch_size=8)  # safe over unsafe; null: none
    merge_weight: float = Field(0.5, ge=0.0, le=1.0)  # the safety-tuned model's weight in the safety merge
    sweep: list[float] = [0.0, 0.25, 0.5, 0.75, 1.0]  # safety_merged partitions (merge_weight is always one)
    harm_judge: Literal["classifier", "llm"] = "classifier"
    harm_judge_model: str | None = None  # llm: a guard model's checkpoint dir, hub id or served name
    harm_judge_max_new_tokens: int = Field(16, ge=1)
    classifier: HarmClassifierConfig = HarmClassifierConfig()
    classifier_holdout: float = Field(0.2, gt=0.0, lt=1.0)  # share of train references held out to report accuracy

    @field_validator("sweep")
    @classmethod
    def _sweep(cls, value):
        bad = [w for w in value if not 0.0 <= w <= 1.0]
        if bad:
            raise ValueError(f"safety.sweep: weights must be in [0, 1], got {bad}")
        return value

    @model_validator(mode="after")
    def _judge(self):
        if self.harm_judge == "llm" and not self.harm_judge_model:
            raise ValueError("safety.harm_judge 'llm' needs safety.harm_judge_model (a guard model)")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"safety.sources: names must be unique, got {names}")
        if self.enabled and not self.sources:
            raise ValueError("safety.enabled needs at least one red-team source in safety.sources")
        return self

    @property
    def weights(self) -> list[float]:
        """The safety-merge weights swept (each a safety_merged partition), merge_weight among them, ascending."""
        return sorted({round(w, 4) for w in [*self.sweep, self.merge_weight]})

    _local = field_validator("harm_judge_model")(_localized)


class OnlineConfig(_Strict):
    rounds: int = Field(3, ge=0, le=10)
    samples: int = Field(4, ge=2)  # completions per prompt from the previous round's model
    temperature: float = Field(1.0, gt=0.0)
    dpo: DPOSettings | None = None  # default: training.dpo


class TranslationConfig(_Strict):
    # none: the weak English answer as it is; glossary (tiny): word by word through a bundled/generated glossary, so
    # the rejected side is a real (if literal) translation; nllb (gpu): an NLLB checkpoint.
    translator: Literal["none", "glossary", "nllb"] = "none"
    model: str = "facebook/nllb-200-distilled-600M"
    batch_size: int = Field(16, ge=1)
    device: str = "auto"
    _device = field_validator("device")(check_device)
    _local = field_validator("model")(_localized)


class EvaluationConfig(_Strict):
    # Each stage is compared with each baseline: a stage key, or best_single_teacher (the single-teacher SFT
    # baseline with the highest win rate against the student base on the selection slice).
    baselines: list[str] = ["student_base", "best_single_teacher", "sft_merged"]
    # Share of eval prompts (a seeded hash of prompt_id, the same for every stage) that choose best_single_teacher;
    # every win rate is reported on the rest, so the choice does not inflate its own comparisons.
    selection_fraction: float = Field(1 / 3, gt=0.0, lt=1.0)
    judge: Literal["reference", "llm"] = "reference"  # reference: lingua + chrF (tiny); llm: Arena-Hard prompt
    judge_model: str | None = None  # llm judge: checkpoint dir, hub id or served name (never the arbiter)
    # Arena-Hard's judge reasons before its label; too few tokens cut the label off (counted as unparsed).
    judge_max_new_tokens: int = Field(1024, ge=1)
    max_unparsed_share: float = Field(0.1, ge=0.0, le=1.0)  # judgements without a label; more fails win_rates
    fidelity_weight: float = Field(0.5, ge=0.0, le=1.0)
    tie_margin: float = Field(0.02, ge=0.0)
    bootstrap_resamples: int = Field(1000, ge=100)
    temperature: float = Field(0.7, ge=0.0)
    # final vs arbitrage SFT judged directly: fails when its 95% CI's high end is below 0.5 - this
    regression_tolerance: float = Field(0.0, ge=0.0)

    @model_validator(mode="after")
    def _judge_model(self):
        if self.judge == "llm" and not self.judge_model:
            raise ValueError("evaluation.judge 'llm' needs evaluation.judge_model")
        return self

    _local = field_validator("judge_model")(_localized)


class Profile(_Strict):
    name: str
    seed: int = 0
    clusters: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_CLUSTERS))
    prompts: PromptsConfig
    models: ModelsConfig
    generation: GenerationConfig = GenerationConfig()
    arbiter: ArbiterConfig = ArbiterConfig()
    arbitrage: ArbitrageConfig = ArbitrageConfig()
    training: TrainingConfig = TrainingConfig()
    merge: MergeConfig = MergeConfig()
    online: OnlineConfig = OnlineConfig()
    translation: TranslationConfig = TranslationConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    safety: SafetyConfig = SafetyConfig()
    # Concurrency slots per Dagster pool (the instance's pool limits, set when aya starts). Trained and generating
    # steps carry pool="gpu": one at a time per GPU on the gpu profile; on the CPU profile one per core.
    pools: dict[str, int] = {"gpu": 1}

    @field_validator("clusters")
    @classmethod
    def _clusters(cls, value):
        return validate_clusters(value)

    @field_validator("pools")
    @classmethod
    def _pools(cls, value):
        bad = {k: v for k, v in value.items() if v < 1}
        if bad:
            raise ValueError(f"pools: every pool needs at least 1 slot, got {bad}")
        return value

    @model_validator(mode="after")
    def _references(self):
        teachers = [t.name for t in self.models.teachers]
        if self.arbitrage.routing.startswith("single:") and self.arbitrage.routing[7:] not in teachers:
            raise ValueError(f"arbitrage.routing: unknown teacher {self.arbitrage.routing[7:]!r}; teachers: {teachers}")
        pool, arbitrage = self.pool_teachers, self.arbitrage
        if arbitrage.learned_topk > len(pool):
            raise ValueError(f"arbitrage.learned_topk: {arbitrage.learned_topk} is more teachers than the pool has "
                             f"({len(pool)}: {pool})")
        if arbitrage.routing == "learned" and self.training.baselines:
            raise ValueError("arbitrage.routing learned generates only the router's teachers outside the calibration "
                             "slice, so the single-teacher and routing baselines have no data: set training.baselines: "
                             "false (or compare routings under routing: reward, which simulates learned_k from the pool)")
        if self.merge.weights is not None and set(self.merge.weights) != set(self.clusters):
            raise ValueError(f"merge.weights must name every cluster exactly: {sorted(self.clusters)}")
        if self.merge.method == "slerp" and len(self.clusters) != 2:
            raise ValueError("merge.method slerp merges exactly two checkpoints; use linear/ties/dare_ties for more clusters")
        if self.evaluation.judge_model and self.evaluation.judge_model == self.models.reward_model.path:
            raise ValueError("evaluation.judge_model must not be the arbiter (models.reward_model)")
        for ref in [*self.models.teachers, self.models.student]:
            for item in ref.focus:
                if item not in self.clusters:
                    check_language(item, f"models: {ref.name}.focus")
        problems = [p for m in configured_models(self) if (p := local_problem(m))]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def focus_languages(self, ref: ModelRef) -> list[str]:
        """A model's focus, with cluster names expanded to their languages."""
        return sorted({code for item in ref.focus for code in self.clusters.get(item, [item])})

    @property
    def pool_teachers(self) -> list[str]:
        return [t.name for t in self.models.teachers if t.in_pool]

    @property
    def compared_topk(self) -> list[int]:
        """arbitrage.router.compare_topk below the pool's size (top-|pool| routing is reward routing), sorted."""
        return sorted({k for k in self.arbitrage.router.compare_topk if k < len(self.pool_teachers)})


# --- the checkpoints a profile names: checked at load (local) and before the first GPU step (hub) ---------------

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # org/name, as the hub spells a repo id
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


class ConfiguredModel(NamedTuple):
    """A checkpoint the profile names: its key, where it is, and what the pipeline needs from it."""

    key: str
    path: str
    revision: str | None
    chat: bool  # prompted (or scored) through its chat template
    fix: str  # what to change when it cannot be used
    reward: bool = False  # the arbiter scores with it: a sequence classifier or a causal LM


def configured_models(profile: Profile) -> list[ConfiguredModel]:
    """Every checkpoint a run loads: pretrained models (models.build false), the LLM judge, the translator."""
    served = profile.generation.backend == "endpoint"  # teachers and the judge are then names on the server
    models, out = profile.models, []

    def local(key: str, path: str, revision: str | None = None, name: str | None = None, reward: bool = False) -> ConfiguredModel:
        return ConfiguredModel(f"{key} ({name})" if name else key, path, revision, True,
                               f"point {key} at a local checkpoint directory", reward)

    if not models.build:
        if not served:
            out += [local(f"models.teachers.{i}.path", t.path, t.revision, t.name) for i, t in enumerate(models.teachers)]
        out += [local("models.student.path", models.student.path, models.student.revision),
                local("models.reward_model.path", models.reward_model.path, models.reward_model.revision, reward=True)]
    if profile.evaluation.judge == "llm" and not served:
        out.append(local("evaluation.judge_model", profile.evaluation.judge_model))
    if profile.translation.translator == "nllb":
        out.append(ConfiguredModel("translation.model", profile.translation.model, None, False,
                                   "point translation.model at a local NLLB directory, or set translation.translator: none"))
    return out


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it, but read now (the library reads it once, at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _file_problem(model: ConfiguredModel, where: str, find: Callable[[str], Path | None]) -> str | None:
    """What a checkpoint lacks, given a way to find its files (a local directory or the HF cache)."""
    if find("config.json") is None:
        return f"{model.key}: {where} has no config.json, so it is not a Hugging Face checkpoint; {model.fix}"
    if not any(find(f) for f in WEIGHT_FILES):
        return f"{model.key}: {where} has no weights ({', '.join(WEIGHT_FILES)}); {model.fix}"
    if not any(find(f) for f in TOKENIZER_FILES):
        return f"{model.key}: {where} has no tokenizer ({' or '.join(TOKENIZER_FILES)}); save the model's tokenizer beside it"
    if model.reward:
        architectures = json.loads(find("config.json").read_text(encoding="utf-8")).get("architectures")
        if reward_kind_of(architectures) is None:
            return f"{model.key}: {where}: {REWARD_KIND_PROBLEM.format(architectures=architectures or [])}"
    config = find("tokenizer_config.json")
    if model.chat and not any(find(f) for f in CHAT_TEMPLATE_FILES) and (
            config is None or "chat_template" not in json.loads(config.read_text(encoding="utf-8"))):
        return (f"{model.key}: {where} has no chat template ({', '.join(CHAT_TEMPLATE_FILES)} or tokenizer_config.json's "
                f"chat_template), and the pipeline prompts it through one; use a chat/instruct checkpoint or add its template")
    return None


def local_problem(model: ConfiguredModel) -> str | None:
    """At load: a path that exists is a complete local checkpoint; one that does not must look like a hub id."""
    where = paths.resolve(model.path)
    if where.exists():
        return _file_problem(model, str(where), lambda f: where / f if (where / f).is_file() else None)
    if Path(model.path).expanduser().is_absolute() or model.path.startswith("."):
        return f"{model.key}: path does not exist: {where}; {model.fix}"
    if not HUB_ID.fullmatch(model.path):
        return (f"{model.key}: {model.path!r} is neither a local path (no {where}) nor a hub id org/name; "
                f"{model.fix} (relative paths are taken from the checkout) or give its hub id")
    return None  # a hub id: hub_problem checks it where the run needs it, so the definitions load offline


def hub_problem(model: ConfiguredModel, cache_dir: str | Path | None = None) -> str | None:
    """Before the first GPU step: a hub id is accepted when the hub is reachable or the checkpoint is in the HF cache."""
    if paths.resolve(model.path).exists() or not HUB_ID.fullmatch(model.path) or not hub_offline():
        return None
    from huggingface_hub import try_to_load_from_cache

    def cached(filename: str) -> Path | None:
        found = try_to_load_from_cache(model.path, filename, cache_dir=cache_dir, revision=model.revision)
        return Path(found) if isinstance(found, str) else None  # None or a "known missing" marker otherwise

    if cached("config.json") is None:
        return (f"{model.key}: {model.path} not found locally and HF_HUB_OFFLINE=1; download it first "
                f"(hf download {model.path}) or {model.fix}")
    return _file_problem(model, f"the cached {model.path}", cached)


def hub_problems(profile: Profile, cache_dir: str | Path | None = None) -> list[str]:
    return [p for m in configured_models(profile) if (p := hub_problem(m, cache_dir))]


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
        # Our own messages start with the key they are about; pydantic's "Value error, " prefix adds nothing.
        problems = "; ".join(
            ": ".join(filter(None, ['.'.join(str(p) for p in err['loc']), err['msg'].removeprefix("Value error, ")]))
            for err in exc.errors()
        )
        raise ProfileError(f"{path}: {problems}") from None
