"""Stage quality against the references over small hand-computed tables: normalisation, exact match, chrF, intervals."""

import polars as pl
import pytest

from aya_assets.evaluation.quality import QUALITY_SCHEMA, normalize_answer, stage_quality


def generations(rows):
    """eval_generations' columns that stage_quality reads: (stage, language, completion, reference) per row, and the
    reference at the budget (a row's fifth item; the reference itself when it fits)."""
    return pl.DataFrame([r if len(r) == 5 else (*r, r[3]) for r in rows],
                        schema={"stage": pl.String, "language": pl.String, "completion": pl.String,
                                "reference": pl.String, "reference_at_budget": pl.String}, orient="row")


@pytest.mark.parametrize("text, normal", [
    ("  zwei\thundert \n", "zwei hundert"),  # whitespace runs collapse, ends stripped
    ("cafe\u0301", "caf\u00e9"),  # NFD to NFC
    ("a\u00a0 b", "a b"),  # a no-break space is whitespace too
    (None, ""),
])
def test_normalize_answer(text, normal):
    assert normalize_answer(text) == normal


TABLE = generations([
    # stage a: de 2 of 2 exact (one after normalisation), fr 1 of 2, and an item without a reference (left out)
    ("a", "de", "zwei", "zwei"),
    ("a", "de", " drei\n", "drei"),
    ("a", "fr", "un", "un"),
    ("a", "fr", "", "deux"),
    ("a", "fr", "trois", None),
    # stage b: nothing exact; chrF of "abd" against "abc" is 38.89 (sacrebleu CHRF, char 6-grams, beta 2)
    ("b", "de", "abd", "abc"),
    ("b", "fr", "xyz", "cinq", "cin"),  # no character in common: chrF 0; a reference longer than the budget
    ("c", "de", "x", "x"),  # a stage not asked for: left out
])


def test_exact_match_and_chrf_per_stage_and_language():
    out = stage_quality(TABLE, ["a", "b"], resamples=200)
    assert out.schema == pl.Schema(QUALITY_SCHEMA)
    got = {(r["stage"], r["language"]): (r["n"], r["exact_match"], r["chrf"], r["over_budget"])
           for r in out.iter_rows(named=True)}
    assert got == {
        ("a", "all"): (4, 0.75, pytest.approx(75.0), 0),  # chrF: 100, 100, 100, 0 (an empty answer)
        ("a", "de"): (2, 1.0, pytest.approx(100.0), 0),
        ("a", "fr"): (2, 0.5, pytest.approx(50.0), 0),
        ("b", "all"): (2, 0.0, pytest.approx(38.8889 / 2, abs=1e-3), 1),
        ("b", "de"): (1, 0.0, pytest.approx(38.8889, abs=1e-3), 0),
        ("b", "fr"): (1, 0.0, pytest.approx(0.0), 1),
    }
    # stage order as given, `all` first, then languages in order
    assert out.select("stage", "language").rows() == [("a", "all"), ("a", "de"), ("a", "fr"),
                                                     ("b", "all"), ("b", "de"), ("b", "fr")]


def test_intervals_bracket_exact_match_and_collapse_when_constant():
    out = stage_quality(TABLE, ["a", "b"], resamples=500, seed=1)
    assert ((out["ci_low"] <= out["exact_match"]) & (out["exact_match"] <= out["ci_high"])).all()
    assert out.filter(pl.col("language") == "de").select("ci_low", "ci_high").rows() == [(1.0, 1.0), (0.0, 0.0)]
    spread = out.filter((pl.col("stage") == "a") & (pl.col("language") == "all")).row(0, named=True)
    assert 0.0 <= spread["ci_low"] < 0.75 < spread["ci_high"] <= 1.0
    assert stage_quality(TABLE, ["a", "b"], resamples=500, seed=1).equals(out)  # deterministic per seed


def test_stage_without_referenced_items_has_an_empty_all_row():
    out = stage_quality(generations([("a", "de", "x", None)]), ["a"])
    assert out.rows() == [("a", "all", 0, None, None, None, None, None)]


def test_intervals_of_many_languages_come_from_one_pass():
    # 23 languages x 100 items, 3 stages: every interval brackets its rate; a language all right has no width.
    rows = [(stage, f"l{lang:02d}", "x" if (lang == 0 or (i * 7 + lang + s) % 3) else "y", "x")
            for s, stage in enumerate("abc") for lang in range(23) for i in range(100)]
    out = stage_quality(generations(rows), ["a", "b", "c"], resamples=1000)
    assert out.height == 3 * 24 and set(out["n"]) == {100, 2300}
    assert ((out["ci_low"] <= out["exact_match"]) & (out["exact_match"] <= out["ci_high"])).all()
    per_language = out.filter(pl.col("language") != "all")
    assert per_language.filter(pl.col("ci_high") == pl.col("ci_low"))["language"].to_list() == ["l00"] * 3
    widths = per_language.filter(pl.col("language") != "l00").select(w=pl.col("ci_high") - pl.col("ci_low"))["w"]
    assert widths.min() > 0.1 and widths.max() < 0.27  # 100 items at about 2/3: +- 0.09
