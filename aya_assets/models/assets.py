"""Model assets: the tokenizer, the teacher pool, the student base and the reward model.

tiny profile (`models.build: true`): trained here on CPU from the bundled train prompts only.
gpu profile (`models.build: false`): resolved to configured checkpoints, recorded with path, revision and hash.
"""

from pathlib import Path

import dagster as dg
import polars as pl

from aya_assets.checkpoints.build import build_or_reuse, fingerprint, report_metadata, train_info
from aya_assets.checkpoints.lineage import upstream_runs
from aya_assets.checkpoints.files import check_checkpoint, content_hash, write_model_card
from aya_assets.profile import ModelRef, Profile
from aya_assets.artifacts.store import ArtifactStore

GROUP = "models"
CODE_VERSION = "1"
PROMPTS = dg.AssetKey("prompts")
TOKENIZER = dg.AssetKey("tokenizer")


def model_location(profile: Profile, models_root: Path, asset: str, ref: ModelRef) -> str:
    """Where a model's weights are: the built checkpoint (tiny) or the configured path / hub id (gpu)."""
    if profile.models.build:
        return str(models_root / asset / ref.name) if asset == "teacher_models" else str(models_root / asset)
    return ref.path


def checkpoint_path(profile: Profile, models_root: Path, asset: str, partition: str | None = None) -> str:
    """Any model asset's weights: configured models resolve through the profile, trained ones live in the store."""
    if asset == "student_base":
        return model_location(profile, models_root, asset, profile.models.student)
    if asset == "teacher_models":
        return model_location(profile, models_root, asset, next(t for t in profile.models.teachers if t.name == partition))
    return str(models_root / asset / partition) if partition else str(models_root / asset)


def train_rows(prompts: pl.DataFrame) -> pl.DataFrame:
    """The only rows any model may learn from: train split with a reference answer (eval stays unseen)."""
    return prompts.filter((pl.col("split") == "train") & pl.col("reference").is_not_null())


def conversations(rows: pl.DataFrame) -> list[list[dict]]:
    return [
        [{"role": "user", "content": text}, {"role": "assistant", "content": reference}]
        for text, reference in rows.select("text", "reference").iter_rows()
    ]


def pretrained_metadata(ref: ModelRef) -> dict:
    """A configured checkpoint: local dirs are checked and hashed; hub ids are recorded with their revision."""
    local = Path(ref.path)
    meta = {"path": ref.path, "revision": ref.revision or "default branch"}
    if local.exists():
        check_checkpoint(local)
        meta["content_hash"] = content_hash(local)
    else:
        meta["content_hash"] = "hub checkpoint: not hashed until downloaded"
    return meta


def build_model_assets(profile: Profile) -> list:
    cfg = profile.models
    teachers = {t.name: t for t in cfg.teachers}
    teacher_partitions = dg.StaticPartitionsDefinition(list(teachers))
    all_prompts = {"prompts": dg.AssetIn(PROMPTS, partition_mapping=dg.AllPartitionMapping())}

    if not cfg.build:

        @dg.asset(partitions_def=teacher_partitions, group_name=GROUP, kinds={"huggingface"}, code_version=CODE_VERSION)
        def teacher_models(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
            """A configured teacher checkpoint (local path or hub id)."""
            return dg.MaterializeResult(metadata=pretrained_metadata(teachers[context.partition_key]))

        @dg.asset(group_name=GROUP, kinds={"huggingface"}, code_version=CODE_VERSION)
        def student_base() -> dg.MaterializeResult:
            """The configured student checkpoint every training stage starts from."""
            return dg.MaterializeResult(metadata=pretrained_metadata(cfg.student))

        @dg.asset(group_name=GROUP, kinds={"huggingface"}, code_version=CODE_VERSION)
        def reward_model() -> dg.MaterializeResult:
            """The configured reward model (the arbiter)."""
            return dg.MaterializeResult(metadata=pretrained_metadata(cfg.reward_model))

        return [teacher_models, student_base, reward_model]

    from aya_assets.models.data import reward_pairs, to_conversational
    from aya_assets.models.data import mixture
    from aya_assets.training.scratch import train_causal_lm, train_reward_model
    from aya_assets.models.tokenizer import train_tokenizer

    @dg.asset(ins=all_prompts, group_name=GROUP, kinds={"huggingface", "tokenizers"}, code_version=CODE_VERSION)
    def tokenizer(context: dg.AssetExecutionContext, prompts: pl.DataFrame, store: ArtifactStore) -> dg.MaterializeResult:
        """Byte-level BPE with a chat template, trained on train-split prompts and references only."""
        rows = train_rows(prompts)
        texts = rows["text"].to_list() + rows["reference"].to_list()
        out = store.models / "tokenizer"

        def build(tmp: Path) -> dict:
            tok = train_tokenizer(texts, tmp, vocab_size=cfg.tokenizer_vocab)
            return {"vocab_size": len(tok), "training_texts": len(texts)}

        reused, info = build_or_reuse(out, fingerprint(CODE_VERSION, cfg.tokenizer_vocab, texts), build)
        return dg.MaterializeResult(metadata=report_metadata(out, reused, info, "tokenizer"))

    def _train_lm(context, prompts, store, ref: ModelRef, asset: str, settings) -> dg.MaterializeResult:
        focus = profile.focus_languages(ref)
        rows = train_rows(prompts)
        n = max(settings.steps * settings.batch_size // 4, 64)
        data = mixture(rows, focus, cfg.focus_share, n=n, seed=settings.seed + profile.seed)
        out = Path(model_location(profile, store.models, asset, ref))
        tok_dir = store.models / "tokenizer"
        inputs = upstream_runs(context, [PROMPTS, TOKENIZER])

        def build(tmp: Path) -> dict:
            report = train_causal_lm(tok_dir, conversations(data), tmp, cfg.architecture, settings)
            data.select("prompt_id", "language").write_parquet(tmp / "training_data.parquet")
            write_model_card(tmp, name=ref.name, description=f"tiny Llama {asset}, trained mostly on {', '.join(focus)}",
                             inputs=inputs, settings={"architecture": cfg.architecture, "training": settings,
                                                      "focus": focus, "focus_share": cfg.focus_share})
            return {**train_info(report), "focus_languages": ",".join(focus)}

        print_ = fingerprint(CODE_VERSION, content_hash(tok_dir), data.rows(), cfg.architecture, settings, focus)
        reused, info = build_or_reuse(out, print_, build)
        context.log.info(f"{ref.name}: {'reused' if reused else 'trained'} at {out}")
        return dg.MaterializeResult(metadata=report_metadata(out, reused, info, ref.name))

    @dg.asset(ins=all_prompts, deps=[TOKENIZER], partitions_def=teacher_partitions, group_name=GROUP,
              kinds={"huggingface", "pytorch"}, code_version=CODE_VERSION, pool="gpu")
    def teacher_models(context: dg.AssetExecutionContext, prompts: pl.DataFrame, store: ArtifactStore) -> dg.MaterializeResult:
        """One small Llama per teacher, trained mostly on its focus cluster's languages so strengths differ."""
        ref = teachers[context.partition_key]
        return _train_lm(context, prompts, store, ref, "teacher_models", cfg.teacher_training)

    @dg.asset(ins=all_prompts, deps=[TOKENIZER], group_name=GROUP, kinds={"huggingface", "pytorch"},
              code_version=CODE_VERSION, pool="gpu")
    def student_base(context: dg.AssetExecutionContext, prompts: pl.DataFrame, store: ArtifactStore) -> dg.MaterializeResult:
        """The weak, mostly-English base every training stage starts from."""
        return _train_lm(context, prompts, store, cfg.student, "student_base", cfg.student_training)

    @dg.asset(ins=all_prompts, deps=[TOKENIZER], group_name=GROUP, kinds={"huggingface", "pytorch"},
              code_version=CODE_VERSION, pool="gpu")
    def reward_model(context: dg.AssetExecutionContext, prompts: pl.DataFrame, store: ArtifactStore) -> dg.MaterializeResult:
        """Sequence-classification reward model: references (cut to the generation budget) beat six kinds of worse answer."""
        from transformers import AutoTokenizer

        out = store.models / "reward_model"
        tok_dir = store.models / "tokenizer"
        pairs = reward_pairs(train_rows(prompts), AutoTokenizer.from_pretrained(tok_dir), profile.generation.max_new_tokens,
                             seed=profile.seed, per_prompt=cfg.reward_pairs_per_prompt)
        settings = cfg.reward_training
        inputs = upstream_runs(context, [PROMPTS, TOKENIZER])

        def build(tmp: Path) -> dict:
            report = train_reward_model(tok_dir, to_conversational(pairs), tmp, cfg.architecture, settings)
            pairs.select("prompt_id", "language", "kind").write_parquet(tmp / "training_data.parquet")
            write_model_card(tmp, name="reward_model", description="tiny Llama reward model (the arbiter)",
                             inputs=inputs, settings={"architecture": cfg.architecture, "training": settings})
            return {**train_info(report), "pairs": pairs.height}

        print_ = fingerprint(CODE_VERSION, content_hash(tok_dir), pairs.rows(), cfg.architecture, settings)
        reused, info = build_or_reuse(out, print_, build)
        return dg.MaterializeResult(metadata=report_metadata(out, reused, info, "reward_model"))

    return [tokenizer, teacher_models, student_base, reward_model]
