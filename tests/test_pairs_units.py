"""Preference pairs as pure Polars over small tables: best-vs-worst, translation contrast, TRL rows, per-cluster counts.
(test_pairs.py has the failing-cluster table and the DPO asset over stub pairs.)"""

import polars as pl
import pytest

from aya_assets.preference.pairs import (PAIR_SCHEMA_COLUMNS, best_vs_worst, cluster_pairs, failing_clusters,
                                         translation_contrast, trl_rows)


def scores(rows: list[tuple[str, str, str, int, float]]) -> pl.DataFrame:
    """reward_scores rows of (prompt_id, language, teacher, sample, score); the completion is named after its source."""
    return pl.DataFrame(
        [{"prompt_id": p, "language": lang, "prompt": f"q {p}", "completion": f"{t}{s} on {p}", "teacher": t, "sample": s,
          "score": score} for p, lang, t, s, score in rows]
    )


def picked(pairs: pl.DataFrame) -> list[tuple]:
    return pairs.select("prompt_id", "chosen_source", "rejected_source", "margin").rows()


# (rows, min_margin) -> (prompt_id, chosen_source, rejected_source, margin) per pair kept
BEST_VS_WORST = [
    pytest.param([("p1", "en", "t", 0, 0.875), ("p1", "en", "u", 0, 0.125), ("p1", "en", "t", 1, 0.5)], 0.5,
                 [("p1", "t#0", "u#0", 0.75)], id="highest-against-lowest"),
    pytest.param([("p1", "en", "t", 0, 0.75), ("p1", "en", "u", 0, 0.25)], 0.5,
                 [("p1", "t#0", "u#0", 0.5)], id="a-gap-equal-to-min-margin-is-kept"),
    pytest.param([("p1", "en", "t", 0, 0.5), ("p1", "en", "u", 0, 0.375)], 0.5, [], id="a-closer-gap-is-dropped"),
    # Equal scores: the source that sorts first is chosen among the best and rejected among the worst.
    pytest.param([("p1", "en", "u", 0, 0.875), ("p1", "en", "t", 0, 0.875), ("p1", "en", "v", 0, 0.125),
                  ("p1", "en", "t", 1, 0.125)], 0.1, [("p1", "t#0", "t#1", 0.75)], id="ties-by-source"),
    pytest.param([("p1", "en", "t", 0, 0.875)], 0.1, [], id="one-completion-has-no-pair"),
    pytest.param([("p2", "fr", "t", 0, 1.0), ("p2", "fr", "u", 0, 0.0), ("p3", "de", "t", 0, 0.5), ("p3", "de", "u", 0, 0.0),
                  ("p1", "fr", "t", 0, 0.0), ("p1", "fr", "u", 0, 0.5)], 0.1,
                 [("p3", "t#0", "u#0", 0.5), ("p1", "u#0", "t#0", 0.5), ("p2", "t#0", "u#0", 1.0)],
                 id="per-prompt-sorted-by-language-then-prompt"),
]


@pytest.mark.parametrize("rows, min_margin, expected", BEST_VS_WORST)
def test_best_vs_worst(rows, min_margin, expected):
    pairs = best_vs_worst(scores(rows), min_margin, "best_vs_worst")
    assert pairs.columns == PAIR_SCHEMA_COLUMNS
    assert picked(pairs) == expected
    assert (pairs["kind"] == "best_vs_worst").all()
    assert (pairs["chosen_score"] - pairs["rejected_score"] == pairs["margin"]).all()


def test_best_vs_worst_rows_are_trl_conversations():
    [row] = best_vs_worst(scores([("p1", "en", "t", 0, 0.875), ("p1", "en", "u", 2, 0.125)]), 0.1, "online_1").to_dicts()
    assert row == {"prompt_id": "p1", "language": "en", "kind": "online_1",
                   "prompt": [{"role": "user", "content": "q p1"}],
                   "chosen": [{"role": "assistant", "content": "t0 on p1"}],
                   "rejected": [{"role": "assistant", "content": "u2 on p1"}],
                   "chosen_source": "t#0", "rejected_source": "u#2", "chosen_score": 0.875, "rejected_score": 0.125,
                   "margin": 0.75}


@pytest.mark.parametrize("rows", [
    [("p1", "en", "t", 0, 0.5)],
    [("p1", "en", "t", 0, 0.5), ("p1", "en", "u", 0, 0.5)],
])
def test_best_vs_worst_never_pairs_a_completion_with_itself(rows):
    pairs = best_vs_worst(scores(rows), 0.0, "best_vs_worst")
    assert (pairs["chosen_source"] != pairs["rejected_source"]).all() and (pairs["chosen"] != pairs["rejected"]).all()


def test_translation_contrast_rejects_the_translated_english_answer():
    native = pl.DataFrame([("p2", "fr", "q2", "natif", "t", 0.5), ("p1", "de", "q1", "nativ", "u", 0.25),
                           ("p3", "de", "q3", "ohne", "t", 0.75)],
                          schema=["prompt_id", "language", "prompt", "completion", "teacher", "score"], orient="row")
    translated = pl.DataFrame([("p1", "übersetzt", "weak_en"), ("p2", "traduit", "weak_en")],
                              schema=["prompt_id", "translation", "source_model"], orient="row")
    pairs = translation_contrast(native, translated)
    assert pairs.columns == PAIR_SCHEMA_COLUMNS
    # p3 has no translation: no pair. Rejected rows carry no score and the pair no margin.
    assert pairs.select("prompt_id", "language", "kind", "chosen_source", "rejected_source", "chosen_score",
                        "rejected_score", "margin").rows() == [
        ("p1", "de", "translation", "u", "weak_en", 0.25, None, None),
        ("p2", "fr", "translation", "t", "weak_en", 0.5, None, None),
    ]
    assert trl_rows(pairs) == [
        {"prompt": [{"role": "user", "content": "q1"}], "chosen": [{"role": "assistant", "content": "nativ"}],
         "rejected": [{"role": "assistant", "content": "übersetzt"}]},
        {"prompt": [{"role": "user", "content": "q2"}], "chosen": [{"role": "assistant", "content": "natif"}],
         "rejected": [{"role": "assistant", "content": "traduit"}]},
    ]


def test_trl_rows_of_no_pairs():
    assert trl_rows(best_vs_worst(scores([("p1", "en", "t", 0, 0.5)]), 0.1, "best_vs_worst")) == []


CLUSTERS = {"west": ["en", "fr"], "east": ["ja", "zh"], "none": []}


def margins(rows: list[tuple[str, float | None]]) -> pl.DataFrame:
    return pl.DataFrame({"language": [r[0] for r in rows], "margin": [r[1] for r in rows]},
                        schema={"language": pl.String, "margin": pl.Float64})


# (language, margin) pairs -> (cluster, pairs, mean_margin) per cluster, and the failing clusters
CLUSTER_TABLES = [
    ([("en", 0.5), ("fr", None), ("ja", 0.25), ("zh", 0.75)],
     # west: one scored pair and one translation pair -> mean over the scored one only
     [("west", 2, 0.5), ("east", 2, 0.5), ("none", 0, None)], ["none"]),
    ([("en", 0.5), ("fr", -0.5), ("ja", None)],
     [("west", 2, 0.0), ("east", 1, None), ("none", 0, None)], ["west", "none"]),  # a mean of exactly 0 fails
    ([("de", 1.0)], [("west", 0, None), ("east", 0, None), ("none", 0, None)], ["west", "east", "none"]),
]


@pytest.mark.parametrize("rows, per_cluster, failing", CLUSTER_TABLES)
def test_cluster_pairs_and_failing_clusters(rows, per_cluster, failing):
    table = cluster_pairs(margins(rows), CLUSTERS)
    assert table.rows() == per_cluster
    assert failing_clusters(table) == failing


def test_the_weak_model_is_asked_the_same_items_english_prompt_where_one_exists():
    from aya_assets.preference.assets import english_version

    row = lambda pid, lang, text, source, item: {"prompt_id": pid, "language": lang, "text": text, "source": source,  # noqa: E731
                                                 "source_id": item}
    prompts = pl.DataFrame([row("d1", "de", "Schreibe die Zahl 7 in Worten.", "number_words", "7"),
                            row("d2", "de", "Wie spät ist es?", "seed", None),
                            row("d3", "de", "Schreibe die Zahl 8 in Worten.", "number_words", "8")])
    english = pl.DataFrame([row("e1", "en", "Write the number 7 in words.", "number_words", "7"),
                            row("e2", "en", "What time is it?", "seed", None),
                            row("e3", "en", "Write 8.", "other_source", "8")])
    asked = english_version(prompts, english)
    assert asked.select("prompt_id", "language", "text").rows() == [
        ("d1", "de", "Write the number 7 in words."),  # the same item in English
        ("d2", "de", "Wie spät ist es?"),  # no item id: asked as it is
        ("d3", "de", "Schreibe die Zahl 8 in Worten."),  # item 8 exists in English only in another source
    ]
