"""Model assets: the tokenizer, the teacher pool, the student base and the reward model.

tiny profile (`models.build: true`): trained here on CPU from the bundled train prompts only.
gpu profile (`models.build: false`): the configured checkpoints, recorded with path, revision and hash.
"""

import dagster as dg
import polars as pl

from aya_assets.checkpoints.build import Card, configured_checkpoint, materialize_checkpoint, train_info
from aya_assets.artifacts.store import ArtifactStore
from aya_assets.checkpoints.io import CHECKPOINT_IO, Checkpoint, located
from aya_assets.profile import ModelRef, Profile
from aya_assets.stages import Recipe

GROUP = "models"
CODE_VERSION = "1"


def train_rows(prompts: pl.DataFrame) -> pl.DataFrame:
    """The only rows any model may learn from: train split with a reference answer (eval stays unseen)."""
    return prompts.filter((pl.col("split") == "train") & pl.col("reference").is_not_null())


def conversations(rows: pl.DataFrame) -> list[list[dict]]:
    return [
        [{"role": "user", "content": text}, {"role": "assistant", "content": reference}]
        for text, reference in rows.select("text", "reference").iter_rows()
    ]


def build_model_assets(profile: Profile, recipe: Recipe) -> list:
    cfg = profile.models
    teachers = {t.name: t for t in cfg.teachers}
    teacher_partitions = dg.StaticPartitionsDefinition(recipe.partitions(recipe["teacher_models"]))
    model = dict(group_name=GROUP, io_manager_key=CHECKPOINT_IO, code_version=CODE_VERSION)

    if not cfg.build:

        @dg.asset(partitions_def=teacher_partitions, kinds={"huggingface"}, **model)
        def teacher_models(context: dg.AssetExecutionContext) -> dg.Output[Checkpoint]:
            """A configured teacher checkpoint (local path or hub id)."""
            return configured_checkpoint(Checkpoint(teachers[context.partition_key].path, teachers[context.partition_key].revision))

        @dg.asset(kinds={"huggingface"}, **model)
        def student_base() -> dg.Output[Checkpoint]:
            """The configured student checkpoint every training stage starts from."""
            return configured_checkpoint(Checkpoint(cfg.student.path, cfg.student.revision))

        @dg.asset(kinds={"huggingface"}, **model)
        def reward_model() -> dg.Output[Checkpoint]:
            """The configured reward model (the arbiter)."""
            return configured_checkpoint(Checkpoint(cfg.reward_model.path, cfg.reward_model.revision))

        return [teacher_models, student_base, reward_model]

    from aya_assets.models.data import mixture, reward_pairs, to_conversational
    from aya_assets.models.tokenizer import train_tokenizer
    from aya_assets.training.scratch import train_causal_lm, train_reward_model

    all_prompts = {"prompts": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())}
    trained = dict(kinds={"huggingface", "pytorch"}, pool="gpu", **model)

    @dg.asset(ins=all_prompts, kinds={"huggingface", "tokenizers"}, **model)
    def tokenizer(context: dg.AssetExecutionContext, prompts: pl.DataFrame, store: ArtifactStore) -> dg.Output[Checkpoint]:
        """Byte-level BPE with a chat template, trained on train-split prompts and references only."""
        rows = train_rows(prompts)
        texts = rows["text"].to_list() + rows["reference"].to_list()

        def build(tmp):
            return {"vocab_size": len(train_tokenizer(texts, tmp, vocab_size=cfg.tokenizer_vocab)), "training_texts": len(texts)}

        card = Card("tokenizer", "byte-level BPE of the train prompts and references", {"vocab_size": cfg.tokenizer_vocab})
        return materialize_checkpoint(context, located(store, "tokenizer"), [cfg.tokenizer_vocab, texts], build, card)

    def train_lm(context, prompts: pl.DataFrame, tok: Checkpoint, out: Checkpoint, ref: ModelRef, settings) -> dg.Output:
        focus = profile.focus_languages(ref)
        n = max(settings.steps * settings.batch_size // 4, 64)
        data = mixture(train_rows(prompts), focus, cfg.focus_share, n=n, seed=settings.seed + profile.seed)

        def build(tmp):
            report = train_causal_lm(tok.local, conversations(data), tmp, cfg.architecture, settings)
            return {**train_info(report), "focus_languages": ",".join(focus)}

        card = Card(ref.name, f"tiny Llama {context.asset_key.to_user_string()}, trained mostly on {', '.join(focus)}",
                    {"architecture": cfg.architecture, "training": settings, "focus": focus, "focus_share": cfg.focus_share},
                    data.select("prompt_id", "language"))
        inputs = [tok.identity(), data.rows(), cfg.architecture, settings, focus]
        return materialize_checkpoint(context, out, inputs, build, card)

    @dg.asset(ins=all_prompts, partitions_def=teacher_partitions, **trained)
    def teacher_models(context: dg.AssetExecutionContext, prompts: pl.DataFrame, tokenizer: Checkpoint,
                       store: ArtifactStore) -> dg.Output[Checkpoint]:
        """One small Llama per teacher, trained mostly on its focus cluster's languages so strengths differ."""
        name = context.partition_key
        return train_lm(context, prompts, tokenizer, located(store, "teacher_models", name), teachers[name], cfg.teacher_training)

    @dg.asset(ins=all_prompts, **trained)
    def student_base(context: dg.AssetExecutionContext, prompts: pl.DataFrame, tokenizer: Checkpoint,
                     store: ArtifactStore) -> dg.Output[Checkpoint]:
        """The weak, mostly-English base every training stage starts from."""
        return train_lm(context, prompts, tokenizer, located(store, "student_base"), cfg.student, cfg.student_training)

    @dg.asset(ins=all_prompts, **trained)
    def reward_model(context: dg.AssetExecutionContext, prompts: pl.DataFrame, tokenizer: Checkpoint,
                     store: ArtifactStore) -> dg.Output[Checkpoint]:
        """Sequence-classification reward model: references (cut to the generation budget) beat six kinds of worse answer."""
        from transformers import AutoTokenizer

        pairs = reward_pairs(train_rows(prompts), AutoTokenizer.from_pretrained(tokenizer.local),
                             profile.generation.max_new_tokens, seed=profile.seed, per_prompt=cfg.reward_pairs_per_prompt)
        settings = cfg.reward_training

        def build(tmp):
            report = train_reward_model(tokenizer.local, to_conversational(pairs), tmp, cfg.architecture, settings)
            return {**train_info(report), "pairs": pairs.height}

        card = Card("reward_model", "tiny Llama reward model (the arbiter)",
                    {"architecture": cfg.architecture, "training": settings}, pairs.select("prompt_id", "language", "kind"))
        inputs = [tokenizer.identity(), pairs.rows(), cfg.architecture, settings]
        return materialize_checkpoint(context, located(store, "reward_model"), inputs, build, card)

    return [tokenizer, teacher_models, student_base, reward_model]
