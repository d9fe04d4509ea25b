"""Learned routing: a router predicts from the prompt alone which teacher the arbiter will prefer, so that outside the
calibration slice only its top-k teachers generate (arXiv 2408.14960, section on learned routing).

The model is scikit-learn's logistic regression (one per teacher: is it among the arbiter's best?) over TF-IDF character
n-grams of the language code and the prompt: it fits in about a second on CPU, reads every script without a tokenizer,
and its probabilities rank every teacher for top-k routing. Everything here is a pure function of small tables; the
assets only read and write them.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from contextlib import contextmanager

import numpy as np
import polars as pl

from aya_assets.arbitrage import routing
from aya_assets.evaluation.bootstrap import grouped_intervals
from aya_assets.profile import RouterConfig

RANK_SCHEMA = {"prompt_id": pl.String, "language": pl.String, "rank": pl.Int32, "teacher": pl.String,
               "probability": pl.Float64, "calibration": pl.Boolean, "trained_on": pl.Boolean}
ACCURACY_SCHEMA = {"language": pl.String, "routing": pl.String, "prompts": pl.Int64, "accuracy": pl.Float64,
                   "ci_low": pl.Float64, "ci_high": pl.Float64}
RANKED = ("prompt_id", "language", "rank", "teacher", "probability")  # what Router.rank returns
COST_SCHEMA = {"routing": pl.String, "completions": pl.Int64, "teacher_seconds": pl.Float64,
               "share_of_reward": pl.Float64, "seconds_share_of_reward": pl.Float64}


def features(frame: pl.DataFrame) -> list[str]:
    """What the router sees of a prompt: its language code, then its text."""
    return [f"<{language}> {text}" for language, text in zip(frame["language"], frame["prompt"])]


def held_out(ids: pl.Series, fraction: float, salt: str = "router") -> pl.Series:
    """Which ids a model does not train on (the router's calibration prompts; the harm classifier's references): a
    salted sha256 of the id, so the choice is independent of the id's own halves (which decided train/eval and the
    calibration slice) and of another model's split, and stable across runs."""
    buckets = [int.from_bytes(hashlib.sha256(f"{salt}|{i}".encode()).digest()[:4], "little") / 2**32 for i in ids]
    return pl.Series(buckets, dtype=pl.Float64) < fraction


def top_teachers(scores: pl.DataFrame) -> pl.DataFrame:
    """(prompt_id, teacher) for every teacher whose best completion has its prompt's top score. Ties all count: when
    teachers agree (the same right answer), routing to any of them yields as good an SFT target, and a label that
    broke the tie by name would teach the router the name, not the prompt."""
    best = scores.group_by("prompt_id", "teacher").agg(best=pl.col("score").max())
    return best.filter(pl.col("best") == pl.col("best").max().over("prompt_id")).select("prompt_id", "teacher")


@contextmanager
def constant_labels_expected():
    """scikit-learn warns when a teacher was always (or never) among the best; for a router that is a finding, not a
    fault: that teacher gets a constant probability."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Label (not )?[0-9]+ is present in all training examples")
        yield


class Router:
    """A fitted router over a fixed list of teachers (the pool): per teacher, the chance that it is among the
    arbiter's best for a prompt (one logistic regression per teacher over shared features, scikit-learn's
    one-vs-rest); a teacher that was always or never among the best gets that constant."""

    def __init__(self, teachers: list[str], settings: RouterConfig = RouterConfig()):
        self.teachers = sorted(teachers)
        self.settings = settings
        self.model = None

    def fit(self, train: pl.DataFrame) -> "Router":
        """Fit on (prompt_id, language, prompt, teacher) rows: each prompt's teachers tied for the top score."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier
        from sklearn.pipeline import make_pipeline

        if train.is_empty():
            raise ValueError("the router has no calibration prompt to train on: raise arbitrage.calibration_fraction")
        prompts = train.group_by("prompt_id", maintain_order=True).agg(pl.col("language", "prompt").first(), "teacher")
        labels = np.array([[t in set(row) for t in self.teachers] for row in prompts["teacher"].to_list()], dtype=int)
        s = self.settings
        with constant_labels_expected():
            self.model = make_pipeline(
                TfidfVectorizer(analyzer="char_wb", ngram_range=tuple(s.ngram_range), sublinear_tf=True),
                OneVsRestClassifier(LogisticRegression(C=s.regularization, max_iter=2000)),
            ).fit(features(prompts), labels)
        return self

    def probabilities(self, frame: pl.DataFrame) -> np.ndarray:
        """rows × self.teachers: each prompt's predicted chance that each teacher is among its best."""
        if not frame.height:
            return np.zeros((0, len(self.teachers)))
        with constant_labels_expected():
            return self.model.predict_proba(features(frame))

    def rank(self, prompts: pl.DataFrame) -> pl.DataFrame:
        """Every teacher ranked for every prompt (rank 1: the likeliest winner; ties by teacher name)."""
        n = len(self.teachers)
        if prompts.is_empty():
            return pl.DataFrame(schema={k: RANK_SCHEMA[k] for k in RANKED})
        probs = self.probabilities(prompts)
        order = np.lexsort((np.broadcast_to(np.arange(n), probs.shape), -probs), axis=1)
        return pl.DataFrame({
            "prompt_id": np.repeat(prompts["prompt_id"].to_numpy(), n),
            "language": np.repeat(prompts["language"].to_numpy(), n),
            "rank": np.tile(np.arange(1, n + 1), prompts.height),
            "teacher": np.array(self.teachers)[order].ravel(),
            "probability": np.take_along_axis(probs, order, axis=1).ravel(),
        }).cast({k: RANK_SCHEMA[k] for k in RANKED})

    def dumps(self) -> bytes:
        """The fitted router as joblib bytes (load with joblib.load): to route new prompts outside the pipeline."""
        import joblib

        buffer = io.BytesIO()
        joblib.dump(self, buffer)
        return buffer.getvalue()


def train_router(scores: pl.DataFrame, prompts: pl.DataFrame, teachers: list[str], calibration_fraction: float,
                 settings: RouterConfig = RouterConfig()) -> tuple[Router, pl.DataFrame]:
    """Fit the router on the arbiter's best teachers (ties included) of the calibration slice, less its held-out share,
    and rank every teacher for every train prompt in `prompts` (prompt_id, language, prompt).

    `scores` holds every teacher's scored completions at least on the calibration slice (reward_scores or
    calibration_scores). The ranks say which prompts are in the slice and which the router trained on.
    """
    calibration = set(routing.calibration_prompts(scores.lazy(), calibration_fraction).collect()["prompt_id"])
    verdicts = top_teachers(scores.filter(pl.col("prompt_id").is_in(list(calibration)))).join(
        prompts.select("prompt_id", "language", "prompt"), on="prompt_id").sort("prompt_id", "teacher")
    train = verdicts.filter(~held_out(verdicts["prompt_id"], settings.holdout))
    router = Router(teachers, settings).fit(train)
    trained = set(train["prompt_id"])
    ranks = router.rank(prompts.select("prompt_id", "language", "prompt")).with_columns(
        calibration=pl.col("prompt_id").is_in(list(calibration)), trained_on=pl.col("prompt_id").is_in(list(trained)))
    return router, ranks.select(*RANK_SCHEMA).sort("language", "prompt_id", "rank")


def routed(rows: pl.DataFrame, ranks: pl.DataFrame, k: int) -> pl.DataFrame:
    """The rows of `rows` (completions or scores) that learned top-k routing generates: every teacher's on the
    calibration slice, only the router's top k teachers' elsewhere."""
    keep = ranks.filter(pl.col("calibration") | (pl.col("rank") <= k)).select("prompt_id", "teacher")
    return rows.join(keep, on=["prompt_id", "teacher"], how="semi")


def assignments(ranks: pl.DataFrame, k: int) -> dict[str, set[str]]:
    """teacher -> the prompt ids it answers under learned top-k routing outside the calibration slice."""
    picked = ranks.filter(~pl.col("calibration") & (pl.col("rank") <= k))
    return {t: set(g["prompt_id"]) for (t,), g in picked.group_by("teacher")}


def accuracy(ranks: pl.DataFrame, scores: pl.DataFrame, ks: list[int], resamples: int = 1000,
             seed: int = 0) -> pl.DataFrame:
    """Per language (and `all`): how often the router's top k teachers include one the arbiter scores best (any of
    those tied for the top), next to fixed routing (the best teacher per language on the prompts the router trained
    on), with bootstrap 95% intervals.

    Measured on every prompt with a verdict over every teacher that the router did not train on: the held-out share
    of the calibration slice, plus, where `scores` covers every prompt (reward routing), the rest of train.
    """
    teachers = scores["teacher"].n_unique()
    complete = scores.group_by("prompt_id").agg(pl.col("teacher").n_unique()).filter(pl.col("teacher") == teachers)
    untrained = ranks.filter(~pl.col("trained_on"))
    evaluated = (untrained.select("prompt_id", "language").unique()
                 .join(complete.select("prompt_id"), on="prompt_id", how="semi"))
    winning = top_teachers(scores.join(evaluated.select("prompt_id"), on="prompt_id", how="semi"))
    trained = ranks.filter(pl.col("trained_on")).select("prompt_id").unique()
    trained_scores = scores.join(trained, on="prompt_id", how="semi")
    fixed = routing.best_teacher_per_language(trained_scores.lazy(), 1.0).collect()
    picks = {f"learned_{k}": untrained.filter(pl.col("rank") <= k).select("prompt_id", "teacher") for k in ks}
    picks["fixed"] = evaluated.join(fixed, on="language").select("prompt_id", "teacher")
    hits = []
    for name, picked in picks.items():
        right = picked.join(winning, on=["prompt_id", "teacher"], how="semi").select("prompt_id").unique()
        hits.append(evaluated.select("prompt_id", "language", routing=pl.lit(name),
                                     hit=pl.col("prompt_id").is_in(right["prompt_id"].implode()).cast(pl.Float64)))
    items = pl.concat(hits)
    items = pl.concat([items, items.with_columns(language=pl.lit("all"))]).sort("routing", "language", "prompt_id")
    if items.is_empty():
        return pl.DataFrame(schema=ACCURACY_SCHEMA)
    table = items.group_by("routing", "language", maintain_order=True).agg(
        prompts=pl.len().cast(pl.Int64), accuracy=pl.col("hit").mean())
    ci = grouped_intervals(items["hit"].to_numpy(), table["prompts"].to_numpy(), resamples, seed)
    return table.with_columns(ci_low=pl.Series(ci[:, 0]), ci_high=pl.Series(ci[:, 1])).select(*ACCURACY_SCHEMA).sort(
        pl.col("language") != "all", "language", "routing")


def _random_teacher(pool: pl.DataFrame, seed: int) -> pl.DataFrame:
    """The teacher random routing draws per prompt: the one whose completion routing.route('random') picks."""
    picks = routing.route(pool.with_columns(score=pl.lit(0.0)), "random", seed=seed)
    return picks.select("prompt_id", "teacher")


def costs(pool: pl.DataFrame, ranks: pl.DataFrame, ks: list[int], calibration_fraction: float, seed: int,
          scores: pl.DataFrame) -> pl.DataFrame:
    """What each routing would have generated of the full pool: completions and the teacher-seconds they took.

    reward: everything; learned_k: the calibration slice plus the router's top-k teachers elsewhere; fixed: the slice
    plus the slice's best teacher per language; random: one drawn teacher per prompt; single_<t>: one teacher. A
    teacher answers a prompt with all its samples. Seconds are each completion's share of its batch's wall time.
    """
    calibration = ranks.filter(pl.col("calibration")).select("prompt_id").unique()
    in_slice = pool.join(calibration, on="prompt_id", how="semi")
    outside = pool.join(calibration, on="prompt_id", how="anti")
    best = routing.best_teacher_per_language(scores.lazy(), calibration_fraction).collect()
    plans = {"reward": pool}
    plans |= {f"learned_{k}": routed(pool, ranks, k) for k in ks}
    plans["fixed"] = pl.concat([in_slice, outside.join(best, on=["language", "teacher"], how="semi")])
    plans["random"] = pool.join(_random_teacher(pool, seed), on=["prompt_id", "teacher"], how="semi")
    plans |= {f"single_{t}": pool.filter(pl.col("teacher") == t) for t in sorted(pool["teacher"].unique())}
    total, seconds = max(pool.height, 1), float(pool["seconds"].sum()) or 1.0
    return pl.DataFrame([{"routing": name, "completions": rows.height, "teacher_seconds": float(rows["seconds"].sum()),
                          "share_of_reward": rows.height / total,
                          "seconds_share_of_reward": float(rows["seconds"].sum()) / seconds}
                         for name, rows in plans.items()], schema=COST_SCHEMA)


def fingerprint(ranks: pl.DataFrame) -> str:
    """A short hash of the routing decisions (which prompts each teacher answers), for logs and cards."""
    top = ranks.select("prompt_id", "rank", "teacher").sort("prompt_id", "rank")
    return hashlib.sha256(top.write_csv().encode()).hexdigest()[:12]
