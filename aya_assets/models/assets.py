"""Model assets: the tokenizer, the teacher pool, the student base and the reward model.

tiny profile (`models.build: true`): trained here on CPU from the bundled train prompts only.
gpu profile (`models.build: false`): the configured checkpoints, recorded with path, revision and hash.
"""

from pathlib import Path

import dagster as dg
import polars as pl

from aya_assets.arbitrage.arbiter import Arbiter
from aya_assets.checkpoints.build import Card, configured_checkpoint, materialize_checkpoint, train_info
from aya_assets.artifacts.store import ArtifactStore
from aya_assets.checkpoints.io import CHECKPOINT_IO, Checkpoint, located
from aya_assets.generation import GenerationBackend, SamplingSettings
from aya_assets.profile import ModelRef, Profile
from aya_assets.prompts.sources import EXACT_ANSWER_CATEGORIES
from aya_assets.stages import Recipe

GROUP = "models"
CODE_VERSION = "3"


def train_rows(prompts: pl.DataFrame) -> pl.DataFrame:
    """The only rows any model may learn from: train split with a reference answer (eval stays unseen)."""
    return prompts.filter((pl.col("split") == "train") & pl.col("reference").is_not_null())


def heldout_exact(generator: GenerationBackend, model: Path, prompts: pl.DataFrame, focus: list[str], max_new_tokens: int,
                  per_language: int = 40, seed: int = 0) -> dict:
    """Greedy exact match on held-out items with one right answer (up to `per_language` per language): overall, in the
    model's focus languages and outside them. What makes arbitrage worth it is teachers strong in their focus only."""
    from aya_assets.evaluation.quality import normalize_answer

    items = (prompts.filter((pl.col("split") == "eval") & pl.col("category").is_in(EXACT_ANSWER_CATEGORIES))
             .sort("prompt_id").filter(pl.int_range(pl.len()).shuffle(seed).over("language") < per_language))
    if items.is_empty():
        return {}
    answers = generator.generate(str(model), items["text"].to_list(), SamplingSettings(temperature=0.0, max_new_tokens=max_new_tokens))
    exact = [normalize_answer(a[0].text) == normalize_answer(r) for a, r in zip(answers, items["reference"])]
    in_focus = items["language"].is_in(focus).to_list()
    share = lambda picked: round(sum(picked) / len(picked), 4) if picked else None  # noqa: E731
    out = {"heldout_items": len(exact), "heldout_exact": share(exact)}
    if focus and not all(in_focus):
        out |= {"heldout_exact_focus": share([e for e, f in zip(exact, in_focus) if f]),
                "heldout_exact_other": share([e for e, f in zip(exact, in_focus) if not f])}
    return out


def pair_accuracy(arbiter: Arbiter, reward_model: Checkpoint, pairs: pl.DataFrame) -> dict:
    """Share of `pairs` whose chosen answer the reward model scores above the rejected one: overall and per kind."""
    if pairs.is_empty():
        return {}
    prompts = pairs["prompt"].to_list() * 2
    scores = arbiter.rewards(reward_model, prompts, pairs["chosen"].to_list() + pairs["rejected"].to_list())
    right = pairs.select("kind").with_columns(right=pl.Series(scores[: pairs.height]) > pl.Series(scores[pairs.height:]))
    per_kind = right.group_by("kind").agg(pl.col("right").mean()).sort("kind")
    return {"heldout_pairs": pairs.height, "heldout_pair_accuracy": round(right["right"].mean(), 4),
            **{f"heldout_accuracy_{kind}": round(value, 4) for kind, value in per_kind.iter_rows()}}


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
    from aya_assets.training.sft import train_sft

    all_prompts = {"prompts": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())}
    trained = dict(kinds={"huggingface", "pytorch"}, pool="gpu", **model)

    # The red-team texts stay out: with them the 2048 merges covered number words less (an answer took 8.3 tokens, not
    # 6.9) and held-out exact match of sft_merged fell from 0.496 to 0.368 (measured); refusals are longer instead.
    @dg.asset(ins=all_prompts, kinds={"huggingface", "tokenizers"}, **model)
    def tokenizer(context: dg.AssetExecutionContext, prompts: pl.DataFrame, store: ArtifactStore) -> dg.Output[Checkpoint]:
        """Byte-level BPE with a chat template, trained on train-split prompts and references only."""
        rows = train_rows(prompts)
        texts = rows["text"].to_list() + rows["reference"].to_list()
        size, longest = cfg.tokenizer_vocab, cfg.tokenizer_max_token_length

        def build(tmp):
            return {"vocab_size": len(train_tokenizer(texts, tmp, vocab_size=size, max_token_length=longest)),
                    "training_texts": len(texts)}

        card = Card("tokenizer", "byte-level BPE of the train prompts and references, digits one token each",
                    {"vocab_size": size, "max_token_length": longest})
        return materialize_checkpoint(context, located(store, "tokenizer"), [size, longest, texts], build, card)

    def train_lm(context, prompts: pl.DataFrame, tok: Checkpoint, out: Checkpoint, ref: ModelRef, settings,
                 generator: GenerationBackend, start: Checkpoint | None = None) -> dg.Output:
        """A causal LM trained mostly on `ref`'s focus languages: from scratch, or as a fine-tune of `start`."""
        focus = profile.focus_languages(ref)
        n = max(settings.steps * settings.batch_size // 4, 64)
        data = mixture(train_rows(prompts), focus, cfg.focus_share, n=n, seed=settings.seed + profile.seed)

        def build(tmp):
            if start is None:
                report = train_causal_lm(tok.local, conversations(data), tmp, cfg.architecture, settings)
            else:
                report = train_sft(start.local, conversations(data), tmp, settings)
            quality = heldout_exact(generator, tmp, prompts, focus, profile.generation.max_new_tokens, seed=profile.seed)
            return {**train_info(report), "focus_languages": ",".join(focus), **quality}

        origin = "from scratch" if start is None else "fine-tuned from student_base"
        trained_on = f"mostly on {', '.join(focus)}" if focus else "on every language alike"
        card = Card(ref.name, f"tiny Llama {context.asset_key.to_user_string()}, {origin}, trained {trained_on}",
                    {"architecture": cfg.architecture, "training": settings, "focus": focus, "focus_share": cfg.focus_share,
                     "start": "scratch" if start is None else start.path},
                    data.select("prompt_id", "language"))
        inputs = [tok.identity(), None if start is None else start.identity(), data.rows(), cfg.architecture, settings,
                  focus, profile.generation.max_new_tokens]
        return materialize_checkpoint(context, out, inputs, build, card)

    @dg.asset(ins=all_prompts, partitions_def=teacher_partitions, **trained)
    def teacher_models(context: dg.AssetExecutionContext, prompts: pl.DataFrame, tokenizer: Checkpoint, store: ArtifactStore,
                       generator: GenerationBackend, student_base: Checkpoint) -> dg.Output[Checkpoint]:
        """One small Llama per teacher: a fine-tune of student_base (the shared base, briefly trained on every
        language) on mostly its focus cluster's languages, so strengths differ for a reason. Cheaper than training
        each from scratch, and closer to how real teachers relate. Metadata: held-out exact match in and outside
        its focus."""
        name = context.partition_key
        return train_lm(context, prompts, tokenizer, located(store, "teacher_models", name), teachers[name],
                        cfg.teacher_training, generator, start=student_base)

    @dg.asset(ins=all_prompts, **trained)
    def student_base(context: dg.AssetExecutionContext, prompts: pl.DataFrame, tokenizer: Checkpoint,
                     store: ArtifactStore, generator: GenerationBackend) -> dg.Output[Checkpoint]:
        """The weak base every training stage and every built teacher starts from (the shared base)."""
        return train_lm(context, prompts, tokenizer, located(store, "student_base"), cfg.student, cfg.student_training,
                        generator)

    @dg.asset(ins=all_prompts, **trained)
    def reward_model(context: dg.AssetExecutionContext, prompts: pl.DataFrame, tokenizer: Checkpoint, student_base: Checkpoint,
                     store: ArtifactStore, arbiter: Arbiter, generator: GenerationBackend) -> dg.Output[Checkpoint]:
        """The arbiter's model, started from student_base (it already reads the prompts it will judge), as
        `models.reward_kind` says: a sequence classifier trained on references against eight kinds of worse answer
        (cut to the generation budget), or a causal LM fine-tuned on every language's train answers alike that
        scores an answer by its likelihood. Metadata: its pairwise accuracy on the same kinds of pair built from
        held-out items, per kind (and, for the causal LM, its own greedy held-out exact match)."""
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer.local)
        budget, settings, kind = profile.generation.max_new_tokens, cfg.reward_training, cfg.reward_kind
        heldout = reward_pairs(prompts, tok, budget, seed=profile.seed + 1, per_prompt=2, split="eval")
        if kind == "likelihood":
            n = max(settings.steps * settings.batch_size, 64)
            data = mixture(train_rows(prompts), [], cfg.focus_share, n=n, seed=settings.seed + profile.seed)
            rows, described = data.rows(), "causal LM fine-tuned on every language alike, scoring answers by likelihood"
            trained_on = data.select("prompt_id", "language")
        else:
            pairs = reward_pairs(prompts, tok, budget, seed=profile.seed, per_prompt=cfg.reward_pairs_per_prompt)
            rows, described = pairs.rows(), "sequence classifier trained on reference-vs-negative pairs"
            trained_on = pairs.select("prompt_id", "language", "kind")

        def build(tmp):
            if kind == "likelihood":
                report = train_sft(student_base.local, conversations(data), tmp, settings)
                quality = heldout_exact(generator, tmp, prompts, [], budget, seed=profile.seed)
            else:
                report = train_reward_model(tokenizer.local, to_conversational(pairs), tmp, cfg.architecture, settings,
                                            start=student_base.local)
                quality = {"pairs": pairs.height}
            return {**train_info(report), "reward_kind": kind, **quality,
                    **pair_accuracy(arbiter, Checkpoint(str(tmp)), heldout)}

        card = Card("reward_model", f"tiny Llama reward model (the arbiter), started from student_base: {described}",
                    {"architecture": cfg.architecture, "training": settings, "reward_kind": kind, "start": student_base.path},
                    trained_on)
        inputs = [tokenizer.identity(), student_base.identity(), kind, rows, heldout.rows(), cfg.architecture, settings]
        return materialize_checkpoint(context, located(store, "reward_model"), inputs, build, card)

    return [tokenizer, teacher_models, student_base, reward_model]
