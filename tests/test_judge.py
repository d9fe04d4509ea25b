"""The judges and win rates: the reference judge's exact-answer rule and references cut to the budget, an LLM judge
(a tiny causal LM) through the transformers backend, verdicts that do not parse, the verdict cache, and win_rates
materialized in Dagster with the LLM judge of a profile and with the reference judge choosing the best single teacher."""

import math

import dagster as dg
import polars as pl
import pytest
from conftest import always_says, tiny_llama
from transformers import AutoTokenizer

from aya_assets.definitions import build_definitions
from aya_assets.evaluation import report
from aya_assets.evaluation.judge import LLMJudge, ReferenceJudge, parse_verdict, references_at_budget
from aya_assets.stages import Recipe
from aya_assets.evaluation.winrates import (VerdictShards, cached_verdicts, choose_best_single, in_selection,
                                            judge_both_orders, summarize, unparsed_shares)
from aya_assets.generation import TransformersBackend
from aya_assets.profile import load_profile
from aya_assets.artifacts.tables import atomic_write_parquet, table_path


@pytest.fixture(scope="module")
def judges(tmp_path_factory, tiny_tokenizer) -> dict[str, str]:
    """Tiny chat LMs that answer anything with one token, over and over: prefers_a always '[[A>B]]' (pure position
    bias); no_label always 'maybe', never an Arena-Hard label."""
    root = tmp_path_factory.mktemp("judges")
    out = {}
    for name, says in (("prefers_a", "[[A>B]]"), ("no_label", "maybe")):
        tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer)
        tokenizer.add_tokens([says])
        # A judge's prompt (Arena-Hard's instructions and both answers) is longer than the default context.
        out[name] = str(tiny_llama(root / name, tokenizer, edit=always_says(tokenizer.convert_tokens_to_ids(says)),
                                   hidden_size=16, intermediate_size=32, num_hidden_layers=1, max_position_embeddings=4096))
    return out


def llm_judge(model: str, max_new_tokens: int = 3) -> LLMJudge:
    return LLMJudge(model=model, backend=TransformersBackend(device="cpu", batch_size=8), max_new_tokens=max_new_tokens)


def pairs(n: int = 3, languages=("en", "fr")) -> pl.DataFrame:
    rows = [{"prompt_id": f"{lang}{i}", "language": lang, "prompt": f"question {i}?", "reference": "answer",
             "candidate": f"candidate {i}", "baseline": f"baseline {i}"} for lang in languages for i in range(n)]
    return pl.DataFrame(rows)


@pytest.mark.parametrize("text, score", [
    ("My verdict: [[A>>B]]", 1.0), ("[[A>B]]", 1.0), ("[[A=B]]", 0.5), ("[[B>A]]", 0.0), ("[[B>>A]]", 0.0),
    ("first [[B>A]], on reflection [[A>B]]", 1.0), ("[[A>B]] [[B>>A]]", 0.0), ("[[B>A]][[A=B]].", 0.5),  # the last label
    ("A is better", None), ("[[A>>B", None), ("", None),
    ("[[a>b]]", None), ("[[A > B]]", None), ("[[A>>>B]]", None), ("[A>B]", None), ("[[C>A]]", None),  # exact labels only
])
def test_parse_verdict(text, score):
    assert parse_verdict(text) == score


# --- the reference judge ---------------------------------------------------------------------------------------------

# (A exact, B longer and not exact, reference, language): lingua + chrF rate B higher in the last two, yet A wins.
EXACT_CASES = [
    ("zwei", "zwei und zwanzig Häuser stehen in der Straße", "zwei", "de"),
    ("two thousand and five", "two thousand and five hundred people live here", "two thousand and five", "en"),
    ("dos mil cinco", "dos mil cinco personas viven aquí en la ciudad", "dos mil cinco", "es"),
]


def test_reference_judge_lets_an_exact_answer_beat_any_other():
    judge = ReferenceJudge()
    a, b, refs, langs = (list(col) for col in zip(*EXACT_CASES))
    quality_a, quality_b = judge.quality(a, refs, langs), judge.quality(b, refs, langs)
    assert quality_b[1] > quality_a[1] and quality_b[2] > quality_a[2]  # the rule, not the quality, decides these
    assert [j.score for j in judge.compare(["q"] * 3, a, b, refs, langs)] == [1.0, 1.0, 1.0]
    assert [j.score for j in judge.compare(["q"] * 3, b, a, refs, langs)] == [0.0, 0.0, 0.0]  # symmetric
    # Exact after normalisation (whitespace, NFC) counts; two exact answers tie; no reference, no exact answer.
    [spaced, both, none] = judge.compare(["q"] * 3, [" zwei\n", "zwei", "zwei"], ["drei", " zwei", "drei"],
                                         ["zwei", "zwei", None], ["de"] * 3)
    assert (spaced.score, both.score) == (1.0, 0.5) and "A exact" in spaced.text and "B exact" in both.text
    assert "exact" not in none.text


def test_references_are_cut_to_the_generation_budget(tiny_tokenizer):
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer)
    long = "the quick brown fox jumps over the lazy dog " * 10
    cut, short, missing = references_at_budget([long, "a dog", None], tokenizer, 8)
    assert long.startswith(cut) and len(tokenizer(cut, add_special_tokens=False).input_ids) <= 8 < len(long.split())
    assert (short, missing) == ("a dog", None)


def test_cached_verdicts_are_keyed_on_the_exact_answer_rule():
    assert "exact answer first" in ReferenceJudge().identity()


def test_llm_judge_on_the_transformers_backend_judges_pairs_in_both_orders(judges):
    judge = llm_judge(judges["prefers_a"])
    out = judge.compare(["Which is better?", "Quelle est la meilleure ?"], ["a1", "a2"], ["b1", "b2"], [None, None], ["en", "fr"])
    assert [j.score for j in out] == [1.0, 1.0] and all("[[A>B]]" in j.text for j in out)
    verdicts = judge_both_orders(judge, pairs())
    # A judge that always prefers the first answer is pure position bias: swapping positions makes every pair a tie.
    assert verdicts["as_first"].to_list() == [1.0] * 6 and verdicts["as_second"].to_list() == [0.0] * 6
    summary = summarize(verdicts, resamples=100).row(0, named=True)
    assert summary == {"language": "all", "prompts": 6, "wins": 0, "ties": 6, "losses": 0, "win_rate": 0.5,
                       "ci_low": 0.5, "ci_high": 0.5, "judgements": 12, "unparsed": 0}


def test_llm_judge_asks_for_its_max_new_tokens(judges):
    [judgement] = llm_judge(judges["prefers_a"], max_new_tokens=2).compare(["q"], ["a"], ["b"], [None], ["en"])
    assert judgement.text.count("[[A>B]]") == 2


def test_unparsed_verdicts_are_counted_and_never_a_nan_rate(judges):
    verdicts = judge_both_orders(llm_judge(judges["no_label"]), pairs())
    assert verdicts["verdict"].null_count() == 6 and verdicts["first_judgement"][0].startswith("maybe")
    summary = summarize(verdicts, resamples=100)
    assert summary["language"].to_list() == ["all", "en", "fr"]
    assert summary["prompts"].to_list() == [0, 0, 0] and summary["unparsed"].to_list() == [12, 6, 6]
    assert summary["win_rate"].null_count() == 3
    assert not any(isinstance(v, float) and math.isnan(v) for row in summary.rows() for v in row)


# (as_first, as_second) per prompt -> (prompts decided, wins, ties, losses, win_rate, unparsed)
SUMMARIES = [
    ([(1.0, 1.0), (0.0, 0.0)], (2, 1, 0, 1, 0.5, 0)),
    ([(1.0, 0.0), (0.5, 0.5)], (2, 0, 2, 0, 0.5, 0)),
    ([(1.0, None), (None, None)], (1, 1, 0, 0, 1.0, 3)),  # one order unparsed: the other decides
    ([(None, None)], (0, 0, 0, 0, None, 2)),
]


@pytest.mark.parametrize("scores, expected", SUMMARIES)
def test_summarize(scores, expected):
    verdicts = pl.DataFrame({"prompt_id": [str(i) for i in range(len(scores))], "language": ["en"] * len(scores),
                             "as_first": [a for a, _ in scores], "as_second": [b for _, b in scores]},
                            schema_overrides={"as_first": pl.Float64, "as_second": pl.Float64})
    verdicts = verdicts.with_columns(verdict=pl.mean_horizontal("as_first", "as_second"))
    row = summarize(verdicts, resamples=100).row(0, named=True)
    assert (row["prompts"], row["wins"], row["ties"], row["losses"], row["win_rate"], row["unparsed"]) == expected
    assert row["judgements"] == 2 * len(scores)
    assert (row["ci_low"] is None) == (row["win_rate"] is None)


class CountingJudge:
    """Wraps a judge and counts the pairs it is asked about (pydantic resources cannot be monkeypatched)."""

    def __init__(self, judge):
        self.judge, self.pairs = judge, 0

    def compare(self, prompts, *args):
        self.pairs += len(prompts)
        return self.judge.compare(prompts, *args)

    def identity(self):
        return self.judge.identity()


def test_verdicts_are_cached_per_shard_and_rejudged_only_where_an_answer_changed(judges, tmp_path):
    judge = CountingJudge(llm_judge(judges["prefers_a"]))
    shards = VerdictShards(tmp_path, "owner123", size=2, log=lambda _: None)
    first, counts = cached_verdicts(judge, pairs(), "x_vs_y", shards)
    assert counts == {"generated": 4, "reused": 0} and judge.pairs == 12  # en and fr: 2 + 1 prompts each, both orders
    again, counts = cached_verdicts(judge, pairs(), "x_vs_y", shards)
    assert counts == {"generated": 0, "reused": 4} and judge.pairs == 12 and again.equals(first)
    changed = pairs().with_columns(candidate=pl.when(pl.col("prompt_id") == "fr2").then(pl.lit("new")).otherwise("candidate"))
    _, counts = cached_verdicts(judge, changed, "x_vs_y", shards)
    assert counts == {"generated": 1, "reused": 3} and judge.pairs == 14
    assert len(list(tmp_path.rglob("*.parquet"))) == 4  # the changed shard's old verdicts are gone
    longer = llm_judge(judges["prefers_a"], max_new_tokens=4)  # another judge setting: nothing is reused
    assert cached_verdicts(longer, changed, "x_vs_y", shards)[1] == {"generated": 4, "reused": 0}


def test_best_single_teacher_is_never_chosen_from_stages_without_verdicts():
    def verdicts(*values):
        return pl.DataFrame({"prompt_id": [f"p{i}" for i in range(len(values))], "verdict": list(values)},
                            schema_overrides={"verdict": pl.Float64})

    best = choose_best_single({"single_a": verdicts(0.0, 1.0, 0.5), "single_b": verdicts(None, None, None)}, resamples=50)
    assert best.stage == "single_a" and best.rates == {"single_a": 0.5, "single_b": None} and best.margin is None
    with pytest.raises(ValueError, match=r"best_single_teacher cannot be chosen: the judge gave no verdict .* single_a, "
                                         r"single_b against student_base on the selection slice \(3 prompts"):
        choose_best_single({"single_a": verdicts(None, None, None), "single_b": verdicts(None, None, None)})


def test_report_tables_say_when_a_stage_has_no_verdict():
    result = pl.concat([
        summarize(pl.DataFrame({"prompt_id": ["1"], "language": ["en"], "as_first": [v], "as_second": [v], "verdict": [v]},
                               schema_overrides={"as_first": pl.Float64, "as_second": pl.Float64, "verdict": pl.Float64}),
                  resamples=100).with_columns(stage=pl.lit(stage), baseline=pl.lit("student_base"))
        for stage, v in (("sft_merged", 1.0), ("dpo_offline_merged", None))
    ])
    shown = report.shown(report.step_table(result, ["student_base", "sft_merged", "dpo_offline_merged"]))
    assert shown["win_rate"].to_list() == ["1.0", report.NO_VERDICT] and shown["ci_low"].to_list() == ["1.0", ""]
    assert unparsed_shares(result).row(0, named=True) == {"stage": "dpo_offline_merged", "baseline": "student_base",
                                                          "judgements": 2, "unparsed": 2, "share": 1.0}


# --- win_rates in Dagster, with the LLM judge a profile configures, and with the reference judge ----------------------


def eval_generations(profile, prompts: int = 2, answer=lambda stage, i: f"{stage} answer {i}") -> dict[str, pl.DataFrame]:
    """`prompts` eval prompts in two languages answered by every stage (what eval_generations would have written);
    prompt i's reference is "answer {i}"."""
    frames = {}
    for stage in Recipe(profile).evaluated_keys():
        rows = [{"prompt_id": f"{lang}{i}", "language": lang, "prompt": f"question {i}", "stage": stage,
                 "completion": answer(stage, i), "tokens": 3, "finish_reason": "stop", "seconds": 0.1,
                 "reference": f"answer {i}", "reference_at_budget": f"answer {i}"}
                for lang in ("en", "fr") for i in range(prompts)]
        frames[stage] = pl.DataFrame(rows, schema_overrides={"tokens": pl.Int32})
    return frames


def materialize_win_rates(aya_home, path: str, generations: dict[str, pl.DataFrame]):
    """Materialize win_rates alone (and its checks) from the given eval generations."""
    defs = build_definitions(path)
    for stage, frame in generations.items():
        atomic_write_parquet(frame, table_path(aya_home / "data" / "warehouse", dg.AssetKey("eval_generations"), stage))
    with dg.instance_for_test() as instance:
        return dg.materialize([*defs.assets, *defs.asset_checks], selection=[dg.AssetKey("win_rates")], instance=instance,
                              resources=defs.resources, raise_on_error=False)


def win_rates_run(aya_home, write_profile, judge_model: str):
    """win_rates with `judge: llm` on the transformers backend."""
    path = write_profile(evaluation={"judge": "llm", "judge_model": judge_model, "judge_max_new_tokens": 3,
                                     "bootstrap_resamples": 100},
                         generation={"device": "cpu"}, online={"rounds": 1}, training={"baselines": False})
    judge = build_definitions(path).resources["judge"]
    assert isinstance(judge, LLMJudge) and isinstance(judge.backend, TransformersBackend) and judge.max_new_tokens == 3
    return materialize_win_rates(aya_home, path, eval_generations(load_profile(path)))


def test_win_rates_with_an_llm_judge_from_the_profile(aya_home, write_profile, judges):
    result = win_rates_run(aya_home, write_profile, judges["prefers_a"])
    assert result.success
    rates = pl.read_parquet(table_path(aya_home / "data" / "warehouse", dg.AssetKey("win_rates"), None))
    overall = rates.filter(pl.col("language") == "all")
    assert overall["ties"].to_list() == overall["prompts"].to_list() == [4] * overall.height  # position bias cancels
    assert (overall["win_rate"] == 0.5).all() and (overall["unparsed"] == 0).all()
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["judge_verdicts_parsed"]
    meta = result.asset_materializations_for_node("win_rates")[0].metadata
    assert meta["verdict_shards_reused"].value == 0 and meta["verdict_shards_judged"].value == 2 * overall.height
    again = win_rates_run(aya_home, write_profile, judges["prefers_a"])
    meta = again.asset_materializations_for_node("win_rates")[0].metadata
    assert meta["verdict_shards_judged"].value == 0 and meta["verdict_shards_reused"].value == 2 * overall.height


def test_win_rates_fail_their_blocking_check_when_the_judge_gives_no_verdicts(aya_home, write_profile, judges):
    result = win_rates_run(aya_home, write_profile, judges["no_label"])
    assert not result.success
    check = next(e for e in result.get_asset_check_evaluations() if e.check_name == "judge_verdicts_parsed")
    assert not check.passed and check.metadata["worst_unparsed_share"].value == 1.0
    assert check.metadata["example"].value.startswith("maybe")
    latest = (aya_home / "data" / "reports" / "latest.md").read_text()
    assert report.NO_VERDICT in latest and "nan" not in latest.lower()


def test_win_rates_choose_the_best_single_teacher_on_a_slice_they_do_not_report_on(aya_home, write_profile):
    # One single teacher answers every prompt exactly; the others, and every other stage, answer off the reference.
    # sft_merged is a baseline and an evaluated stage; the final merge (online_1_merged) trails it on every prompt.
    # Without the safety stage, so that the final model is the last online merge.
    path = write_profile(evaluation={"bootstrap_resamples": 100}, generation={"device": "cpu"}, online={"rounds": 1},
                         training={"baselines": True}, safety={"enabled": False})
    profile = load_profile(path)
    best = "single_teacher_slavic_greek"
    texts = {best: "answer {i}", "sft_merged": "answer number {i}", "online_1_merged": "the answer is {i} or so"}
    generations = eval_generations(profile, prompts=15, answer=lambda stage, i: texts.get(stage, "something else").format(i=i))
    result = materialize_win_rates(aya_home, path, generations)
    assert result.success
    ids = [f"{lang}{i}" for lang in ("en", "fr") for i in range(15)]
    selection = [p for p in ids if in_selection(p, profile.seed, 1 / 3)]
    held_out = len(ids) - len(selection)
    assert 0 < len(selection) < len(ids)

    rates = pl.read_parquet(table_path(aya_home / "data" / "warehouse", dg.AssetKey("win_rates"), None))
    overall = rates.filter(pl.col("language") == "all")
    assert set(overall["baseline"]) == {"student_base", best, "sft_merged"}
    assert (overall["prompts"] == held_out).all()  # every reported rate is on the prompts that did not choose
    assert not overall.filter(pl.col("stage") == pl.col("baseline")).height  # no stage against itself
    assert overall.filter((pl.col("stage") == best) & (pl.col("baseline") == "student_base"))["win_rate"].item() == 1.0

    meta = {k: v.value for k, v in result.asset_materializations_for_node("win_rates")[0].metadata.items()}
    assert (meta["best_single_teacher"], meta["best_single_selection_prompts"]) == (best, len(selection))
    assert meta["best_single_win_rate_on_selection"] == 1.0 and meta["best_single_pick_stability"] == 1.0
    assert meta["best_single_margin"] > 0
    assert (meta["selection_prompts"], meta["held_out_prompts"]) == (len(selection), held_out)
    assert meta["length_decisive_pairs"] > 0 and 0 <= meta["longer_answer_win_share"] <= 1
    latest = (aya_home / "data" / "reports" / "latest.md").read_text()
    assert f"best_single_teacher is **{best}**" in latest and "Length and verdicts" in latest

    check = next(e for e in result.get_asset_check_evaluations() if e.check_name == "final_not_below_arbitrage_sft")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["comparison"].value == "online_1_merged vs sft_merged"
    assert check.metadata["prompts"].value == held_out and check.metadata["ci"].value == "[0.000, 0.000]"
