"""The whole tiny graph (shrunk further) in real in-process Dagster runs, from prompts to win rates."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from aya_assets.artifacts.atomic import write_bytes
from aya_assets.catalog.refresh import refresh_catalog
from aya_assets.catalog.sql import run_query
from aya_assets.definitions import build_definitions
from aya_assets.cli.runner import materialize_all
from aya_assets.languages import LANGUAGE_CODES
from conftest import FAST, merge

pytestmark = pytest.mark.slow
POOL_TEACHERS = 4
ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    home = tmp_path_factory.mktemp("aya_home")
    tiny = yaml.safe_load((ROOT / "resources" / "tiny.yaml").read_text())
    profile = home / "fast.yaml"
    profile.write_text(yaml.safe_dump(merge(tiny, FAST), sort_keys=False))
    # The instance lives where `aya` keeps it (data/dagster under AYA_HOME), with the project's dagster.yaml, so that a
    # webserver process started on it sees these runs as `aya ui` would.
    (home / "data" / "dagster").mkdir(parents=True)
    settings = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    with pytest.MonkeyPatch.context() as mp, \
            dg.instance_for_test(overrides=settings, temp_dir=str(home / "data" / "dagster")) as instance:
        mp.setenv("AYA_HOME", str(home))
        defs = build_definitions(str(profile))
        results = materialize_all(defs, instance)
        yield home / "data", defs, instance, results


def read(data, asset):
    return pl.read_parquet(data / "warehouse" / asset / "*.parquet")


def materializations(results, asset):
    return [m for r in results for m in r.asset_materializations_for_node(asset)]


def test_every_run_succeeds_and_checks_pass(graph):
    _, _, _, results = graph
    assert all(r.success for r in results)
    evaluations = [e for r in results for e in r.get_asset_check_evaluations()]
    failed = [e.check_name for e in evaluations if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR]
    assert not failed
    assert {"every_train_prompt_selected", "pool_degenerate_rate", "reward_length_correlation", "merge_sanity",
            "pairs_positive_margin", "final_not_below_arbitrage_sft"} <= {e.check_name for e in evaluations}


def test_runs_are_named_after_their_step_and_checkpoints_report_their_content_hash_as_data_version(graph):
    _, defs, instance, results = graph
    names = {instance.get_run_by_id(r.run_id).job_name for r in results}
    assert names == {job.name for job in defs.jobs} and {"models_job", "sft_cluster_job", "online_1_language_job"} <= names
    for asset in ("student_base", "sft_checkpoints", "sft_merged", "online_1_merged"):
        for m in materializations(results, asset):
            assert m.tags["dagster/data_version"] == m.metadata["content_hash"].value  # Dagster's staleness sees content


def test_pool_covers_teachers_prompts_and_samples(graph):
    data, *_ = graph
    pool = read(data, "pool_completions")
    prompts = read(data, "prompts").filter(pl.col("split") == "train")
    assert pool.height == prompts.height * POOL_TEACHERS * 2
    assert pool["teacher"].n_unique() == POOL_TEACHERS and "weak_english" not in pool["teacher"].to_list()
    assert set(pool["prompt_id"]) == set(prompts["prompt_id"])
    assert pool["finish_reason"].is_in(["stop", "length"]).all() and (pool["tokens"] <= 6).all()


def test_scores_keep_each_component(graph):
    data, *_ = graph
    scores = read(data, "reward_scores")
    assert {"reward", "language_confidence", "score"} <= set(scores.columns)
    assert scores["language_confidence"].is_between(0, 1).all()
    recombined = scores["reward"] + 1.0 * scores["language_confidence"]
    assert (recombined - scores["score"]).abs().max() < 1e-9


def test_arbitrage_sft_one_best_row_per_train_prompt(graph):
    data, *_ = graph
    sft, scores = read(data, "arbitrage_sft"), read(data, "reward_scores")
    train = read(data, "prompts").filter(pl.col("split") == "train")
    assert sorted(sft["prompt_id"]) == sorted(train["prompt_id"])
    best = scores.group_by("prompt_id").agg(pl.col("score").max().alias("best"))
    assert sft.join(best, on="prompt_id").filter(pl.col("score") != pl.col("best")).is_empty()
    first = sft["messages"][0].to_list()
    assert [m["role"] for m in first] == ["user", "assistant"]


def test_teacher_wins_table_and_heatmap(graph):
    data, *_ = graph
    wins = read(data, "teacher_wins")
    assert wins.height == 23 * POOL_TEACHERS
    shares = wins.group_by("language").agg(pl.col("win_share").sum())
    assert (shares["win_share"] - 1.0).abs().max() < 1e-9
    assert (data / "reports" / "teacher_wins.png").read_bytes()[:4] == b"\x89PNG"


def test_no_eval_prompt_reaches_any_model(graph):
    data, *_ = graph
    prompts = read(data, "prompts")
    eval_ids = set(prompts.filter(pl.col("split") == "eval")["prompt_id"])
    eval_texts = set(prompts.filter(pl.col("split") == "eval")["text"]) | set(
        prompts.filter(pl.col("split") == "eval")["reference"]
    )
    used = [pl.read_parquet(p) for p in (data / "models").rglob("training_data.parquet")]
    # 5 teachers, student, reward model, 4 cluster SFTs, 9 baselines (4 single teachers, random, fixed, learned top-1
    # and top-2, reward), 4 offline DPOs, 4 online DPOs, the safety SFT and the safety DPO.
    assert len(used) == 5 + 1 + 1 + 4 + 9 + 4 + 4 + 2
    redteam = read(data, "redteam_prompts")
    held_out = eval_ids | set(redteam.filter(pl.col("split") == "eval")["prompt_id"])
    assert not held_out & set(pl.concat(used, how="diagonal")["prompt_id"])
    # Nothing that trains (pool, router, arbitrage, pairs, online samples) sees an eval prompt either.
    for asset in ("pool_completions", "router", "arbitrage_sft", "offline_pairs", "translation_pairs", "online_1_completions"):
        assert not eval_ids & set(read(data, asset)["prompt_id"]), asset
    # The tokenizer saw only train text: its build record counts exactly the train prompts and references.
    build = json.loads((data / "models" / "tokenizer" / "aya_build.json").read_text())
    assert build["training_texts"] == 2 * prompts.filter(pl.col("split") == "train").height
    assert eval_texts  # the eval set exists and was held out


def test_model_cards_name_their_inputs(graph):
    data, *_ = graph
    card = (data / "models" / "teacher_models" / "teacher_slavic_greek" / "README.md").read_text()
    assert "prompts" in card and "tokenizer" in card and "runs" in card


UPSTREAM = """
    WITH RECURSIVE up(asset) AS (
        SELECT '{asset}' UNION SELECT d.upstream_asset FROM asset_deps d JOIN up ON d.asset = up.asset
    ) SELECT asset FROM up ORDER BY 1"""


def test_sql_lineage_reaches_prompts(graph):
    data, defs, instance, _ = graph
    db = refresh_catalog(data / "aya.duckdb", data / "warehouse", instance, defs)
    upstream = set(run_query(db, data / "warehouse", UPSTREAM.format(asset="online_1_merged"))["asset"])
    assert {"prompts", "teacher_models", "reward_model", "arbitrage_sft", "sft_checkpoints", "sft_merged",
            "offline_pairs", "translation_pairs", "dpo_offline_merged", "online_1_pairs"} <= upstream
    assert run_query(db, data / "warehouse", "SELECT count(*) FROM teacher_wins").item() == 23 * POOL_TEACHERS
    mats = run_query(db, data / "warehouse", "SELECT count(*) FROM materializations WHERE asset = 'sft_checkpoints'")
    assert mats.item() == 4


def test_cluster_sft_trains_on_its_languages_plus_replay_and_merges_by_data_share(graph):
    from transformers import AutoModelForCausalLM

    data, defs, *_ = graph
    models = data / "models"
    used = pl.read_parquet(models / "sft_checkpoints" / "east_asian" / "training_data.parquet")
    own = {"en", "es", "fr", "zh", "ja", "ko", "vi", "id"}
    arbitrage = read(data, "arbitrage_sft")
    # Every row of the cluster's languages, and the tiny profile's replay share (0.5) of the other 15 languages' rows.
    assert used.filter(pl.col("language").is_in(own)).height == arbitrage.filter(pl.col("language").is_in(own)).height
    replayed = used.filter(~pl.col("language").is_in(own)).height
    assert replayed == int(0.5 * arbitrage.filter(~pl.col("language").is_in(own)).height)  # polars' sample floors
    # With replay every language partition feeds every cluster, in the asset graph too.
    graph_ = defs.resolve_asset_graph()
    mapping = graph_.get(dg.AssetKey("sft_checkpoints")).partition_mappings[dg.AssetKey("arbitrage_sft")]
    assert isinstance(mapping, dg.AllPartitionMapping)
    AutoModelForCausalLM.from_pretrained(models / "sft_merged")
    recipe = yaml.safe_load((models / "sft_merged" / "merge_recipe.yaml").read_text())
    assert recipe["merge_method"] == "linear" and len(recipe["models"]) == 4
    weights = {Path(m["model"]).name: m["parameters"]["weight"] for m in recipe["models"]}
    rows = {c: pl.read_parquet(models / "sft_checkpoints" / c / "training_data.parquet").height for c in weights}
    assert abs(sum(weights.values()) - 1.0) < 1e-9
    # Each cluster's share of the rows its SFT trained on (TRL may drop a row whose answer is empty after truncation).
    assert all(abs(weights[c] - rows[c] / sum(rows.values())) < 0.01 for c in weights), (weights, rows)
    for baseline in ("random", "reward", "single_teacher_east_asian"):
        assert (models / "baseline_sft" / baseline / "model.safetensors").exists()


def test_preference_pairs_use_trl_conversational_schema(graph):
    data, *_ = graph
    offline, translation = read(data, "offline_pairs"), read(data, "translation_pairs")
    for pairs in (offline, translation):
        row = pairs.row(0, named=True)
        assert [m["role"] for m in row["prompt"]] == ["user"]
        assert [m["role"] for m in row["chosen"]] == ["assistant"] == [m["role"] for m in row["rejected"]]
    assert (offline["margin"] >= 0.1).all()
    assert "en" not in translation["language"].to_list() and translation["rejected_source"][0].startswith("weak_english")


def test_dpo_rounds_log_margins_and_reference_is_the_previous_merge(graph):
    data, _, _, results = graph
    for asset in ("dpo_offline", "online_1_dpo"):
        mats = materializations(results, asset)
        assert len(mats) == 4
        assert all("reward_margins_curve" in m.metadata and "last_reward_margins" in m.metadata for m in mats)
    card = (data / "models" / "online_1_dpo" / "slavic_greek" / "README.md").read_text()
    assert "dpo_offline_merged" in card and "online_1_pairs" in card


def test_win_rates_report_and_charts(graph):
    data, *_ = graph
    rates = read(data, "win_rates")
    stages = set(rates["stage"])
    assert {"sft_merged", "dpo_offline_merged", "online_1_merged", "random", "reward"} <= stages
    overall = rates.filter(pl.col("language") == "all")
    assert (overall["wins"] + overall["ties"] + overall["losses"] == overall["prompts"]).all()
    assert ((overall["ci_low"] <= overall["win_rate"]) & (overall["win_rate"] <= overall["ci_high"])).all()
    assert set(rates["baseline"]) == {"student_base", "sft_merged"} | {b for b in rates["baseline"] if b.startswith("single_")}
    assert len(set(rates["baseline"])) == 3  # best_single_teacher resolved to one single_* stage
    report = (data / "reports" / "latest.md").read_text()
    assert "step_by_step.png" in report and "per_language.png" in report
    for chart in ("step_by_step.png", "per_language.png"):
        assert (data / "reports" / chart).read_bytes()[:4] == b"\x89PNG"
    generations = read(data, "eval_generations")
    eval_ids = set(read(data, "prompts").filter(pl.col("split") == "eval")["prompt_id"])
    assert set(generations["prompt_id"]) == eval_ids


def test_routing_comparison_puts_each_routing_cost_beside_its_student(graph):
    data, _, _, results = graph
    table, costs, pool = read(data, "routing_comparison"), read(data, "routing_costs"), read(data, "pool_completions")
    assert table["routing"].to_list() == ["random", "fixed", "learned_1", "learned_2", "reward"]
    by = {r["routing"]: r for r in table.iter_rows(named=True)}
    # Costs are the real pool's: reward routing generated all of it, learned top-1 the slice plus one teacher each.
    assert by["reward"]["completions"] == pool.height and by["reward"]["teacher_seconds"] == pytest.approx(pool["seconds"].sum())
    ranks = read(data, "router")
    calibration = ranks.filter("calibration")["prompt_id"].n_unique()
    assert by["learned_1"]["share_of_reward"] <= 1 / POOL_TEACHERS + calibration / ranks["prompt_id"].n_unique() + 1e-9
    assert set(costs["routing"]) >= set(table["routing"])
    # Each student's rates come from real judgements: vs the best single teacher (win_rates) and vs reward's own.
    for r in ("random", "fixed", "learned_1", "learned_2"):
        assert 0 <= by[r]["win_rate_vs_reward"] <= 1 and by[r]["reward_ci_low"] <= by[r]["win_rate_vs_reward"] <= by[r]["reward_ci_high"]
    assert by["reward"]["win_rate_vs_reward"] is None  # the reference itself
    rates = read(data, "win_rates").filter((pl.col("language") == "all") & (pl.col("stage") == "learned_1")
                                           & (pl.col("baseline") == by["learned_1"]["best_single"]))
    assert by["learned_1"]["win_rate_vs_best_single"] == rates["win_rate"][0]
    report = (data / "reports" / "latest.md").read_text()
    assert report.index("## Step by step") < report.index("## Routing: quality against generation cost")
    assert (data / "reports" / "routing_comparison.png").read_bytes()[:4] == b"\x89PNG"
    # The learned_1 baseline trained only on completions learned top-1 routing generates.
    card_rows = pl.read_parquet(data / "models" / "baseline_sft" / "learned_1" / "training_data.parquet")
    top = ranks.filter(pl.col("calibration") | (pl.col("rank") == 1)).select("prompt_id", "teacher")
    assert card_rows.join(top, on=["prompt_id", "teacher"], how="anti").is_empty()


def test_stage_quality_per_stage_and_language(graph):
    data, defs, instance, results = graph
    stages = defs.resolve_asset_graph().get(dg.AssetKey("eval_generations")).partitions_def.get_partition_keys()
    quality = read(data, "stage_quality")
    assert quality.height == len(stages) * (len(LANGUAGE_CODES) + 1)
    assert set(quality.select("stage", "language").rows()) == {(s, lang) for s in stages for lang in ["all", *LANGUAGE_CODES]}
    assert quality["stage"].unique(maintain_order=True).to_list() == stages
    assert ((quality["exact_match"] >= 0) & (quality["exact_match"] <= 1)).all()
    assert ((quality["ci_low"] <= quality["exact_match"]) & (quality["exact_match"] <= quality["ci_high"])).all()
    assert ((quality["chrf"] >= 0) & (quality["chrf"] <= 100)).all()
    referenced = read(data, "prompts").filter((pl.col("split") == "eval") & pl.col("reference").is_not_null()).height
    overall = quality.filter(pl.col("language") == "all")
    assert set(overall["n"]) == {referenced}
    assert quality.filter(pl.col("language") != "all").group_by("stage").agg(pl.col("n").sum())["n"].to_list() == [referenced] * len(stages)
    [meta] = [m.metadata for m in materializations(results, "stage_quality")]
    assert all(s in meta["overall"].value for s in stages)
    db = refresh_catalog(data / "aya.duckdb", data / "warehouse", instance, defs)
    assert run_query(db, data / "warehouse", "SELECT count(*) FROM stage_quality WHERE language = 'all'").item() == len(stages)


def test_within_run_merges_average_each_runs_kept_checkpoints_and_feed_the_cluster_merge(graph):
    data, defs, instance, results = graph
    models = data / "models"
    for train, averaged, merged in [("sft_checkpoints", "sft_averaged", "sft_merged"),
                                    ("dpo_offline", "dpo_offline_averaged", "dpo_offline_merged"),
                                    ("online_1_dpo", "online_1_averaged", "online_1_merged")]:
        run = models / train / "east_asian"
        kept = sorted(p.name for p in (run / "kept").iterdir())
        assert len(kept) == 3, (train, kept)  # merge.within_run keep: 3
        recipe = yaml.safe_load((models / averaged / "east_asian" / "merge_recipe.yaml").read_text())
        assert recipe["merge_method"] == "linear" and sorted(Path(m["model"]).name for m in recipe["models"]) == kept
        assert {Path(m["model"]).parent.parent for m in recipe["models"]} == {run}
        across = yaml.safe_load((models / merged / "merge_recipe.yaml").read_text())
        assert {Path(m["model"]).parent.name for m in across["models"]} == {averaged}  # the averages, not the runs
        card = (models / averaged / "east_asian" / "README.md").read_text()
        assert train in card and "Steps averaged" in card
    graph_ = defs.resolve_asset_graph()
    assert graph_.get(dg.AssetKey("sft_merged")).parent_keys >= {dg.AssetKey("sft_averaged")}
    table = read(data, "within_run_comparison")
    assert table["cluster"].to_list() == list(yaml.safe_load((data.parent / "fast.yaml").read_text())["clusters"])
    assert ((table["ci_low"] <= table["averaged_vs_final"]) & (table["averaged_vs_final"] <= table["ci_high"])).all()
    assert "## Within-run averaging" in (data / "reports" / "latest.md").read_text()


def test_harm_rates_cover_every_evaluated_stage_and_language(graph):
    data, defs, instance, results = graph
    stages = defs.resolve_asset_graph().get(dg.AssetKey("eval_generations")).partitions_def.get_partition_keys()
    db = refresh_catalog(data / "aya.duckdb", data / "warehouse", instance, defs)
    rates = run_query(db, data / "warehouse", "select stage, language, harmful_rate, ci_low, ci_high, n from harm_rates")
    assert set(rates["stage"]) == set(stages) and {"safety_0.00", "safety_0.50", "safety_1.00"} <= set(stages)
    assert set(rates["language"]) == {"all", *LANGUAGE_CODES}  # the bundled red-team set covers all 23
    judged = rates.filter(pl.col("n") > 0)
    assert ((judged["ci_low"] <= judged["harmful_rate"]) & (judged["harmful_rate"] <= judged["ci_high"])).all()
    redteam = read(data, "redteam_prompts")
    assert set(rates.filter(pl.col("language") == "all")["n"]) == {redteam.filter(pl.col("split") == "eval").height}
    accuracy = read(data, "harm_classifier")
    assert accuracy["language"][0] == "all" and 0 <= accuracy["accuracy"][0] <= 1
    assert (data / "models" / "harm_classifier" / "classifier.joblib").exists()


def test_safety_merge_sweep_is_one_partition_per_weight_with_its_recipe_and_the_tradeoff_chart(graph):
    data, defs, *_ = graph
    models = data / "models"
    for key, weight in [("0.00", 0.0), ("0.50", 0.5), ("1.00", 1.0)]:
        recipe = yaml.safe_load((models / "safety_merged" / key / "merge_recipe.yaml").read_text())
        weights = {Path(m["model"]).name: m["parameters"]["weight"] for m in recipe["models"]}
        assert weights == {"online_1_merged": 1.0 - weight, "safety_dpo": weight}
        card = (models / "safety_merged" / key / "README.md").read_text()
        assert "safety_dpo" in card and "online_1_merged" in card
    assert {k.to_user_string() for k in defs.resolve_asset_graph().get(dg.AssetKey("safety_merged")).parent_keys} == {
        "safety_dpo", "online_1_merged"}
    sft_rows = pl.read_parquet(models / "safety_sft" / "training_data.parquet")
    assert set(sft_rows["teacher"]) - {"safe_reference"}  # safety rows mixed with general arbitrage rows
    pairs = read(data, "safety_pairs")
    assert (pairs["kind"] == "safety").all() and [m["role"] for m in pairs["chosen"][0]] == ["assistant"]
    table = read(data, "safety_tradeoff")
    assert table["weight"].to_list() == [0.0, 0.5, 1.0] and table.filter("configured")["weight"].to_list() == [0.5]
    assert table["pareto"].any() and table["harmful_rate"].is_not_null().all() and table["win_rate"].is_not_null().all()
    report = (data / "reports" / "latest.md").read_text()
    assert "safety_tradeoff.png" in report and (data / "reports" / "safety_tradeoff.png").read_bytes()[:4] == b"\x89PNG"
    assert report.index("## Routing") < report.index("## Safety") < report.index("## Within-run")


# --- the UI on the finished run: dagster-webserver driven by headless Chromium ------------------------------------------

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


class _Text(HTMLParser):
    """The text nodes of a page, outside scripts and styles."""

    def __init__(self):
        super().__init__()
        self.nodes, self._skip = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.nodes.append(data.strip())


def page_text(dom: str) -> list[str]:
    parser = _Text()
    parser.feed(dom)
    return parser.nodes


@contextmanager
def webserver(instance_dir: Path, home: Path, profile: Path, start_timeout_s: float = 180):
    """dagster-webserver on this project and the given instance; yields its URL; stopped (terminate, then kill)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = os.environ | {"DAGSTER_HOME": str(instance_dir), "AYA_HOME": str(home), "AYA_PROFILE": str(profile)}
    log = instance_dir / "webserver.log"
    with log.open("wb") as out:  # its own session: stopping it stops the code server it starts too
        proc = subprocess.Popen([str(Path(sys.executable).with_name("dagster-webserver")), "-m", "aya_assets.definitions",
                                 "-h", "127.0.0.1", "-p", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if proc.poll() is not None:
                pytest.fail(f"dagster-webserver exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"dagster-webserver not up after {start_timeout_s:.0f}s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=wait_s)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue


def browse(url: str, screenshot: Path, height: int = 1100) -> tuple[list[str], str]:
    """Load `url` in headless Chromium, save a screenshot; the page's text nodes and its DOM after the scripts ran."""
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    # The virtual-time budget lets the page's scripts and GraphQL queries finish before the DOM is dumped.
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                               "--hide-scrollbars", f"--user-data-dir={profile}", "--virtual-time-budget=15000",
                               f"--window-size=1600,{height}", f"--screenshot={screenshot}", "--dump-dom", url],
                              capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and screenshot.read_bytes()[:4] == b"\x89PNG", done.stderr[-2000:]
    return page_text(done.stdout), done.stdout


def shown(name: str, texts: list[str]) -> bool:
    """The graph shows `name` whole, or elided in the middle when the node is narrow (onlin…_completions)."""
    return any(t == name or ("…" in t and name.startswith(t.split("…")[0]) and name.endswith(t.split("…")[-1]))
               for t in texts)


def test_ui_shows_lineage_partitions_and_win_rate_chart(graph):
    if CHROMIUM is None:
        pytest.skip("no chromium binary on PATH (`make test` installs Debian's chromium with apt when run as root)")
    data, defs, instance, _ = graph
    home, shots = data.parent, data / "reports" / "ui"
    asset_graph = defs.resolve_asset_graph()
    upstream, todo = set(), [dg.AssetKey("win_rates")]
    while todo:
        key = todo.pop()
        upstream.add(key)
        todo += [p for p in asset_graph.get(key).parent_keys if p not in upstream]
    deps = sum(len(asset_graph.get(key).parent_keys) for key in upstream)
    with webserver(data / "dagster", home, home / "fast.yaml") as url:
        lineage, dom = browse(f"{url}/assets/win_rates?view=lineage&lineageScope=upstream&lineageDepth=50",
                              shots / "lineage.png")
        partitions, _ = browse(f"{url}/assets/prompts?view=partitions", shots / "prompts_partitions.png")
        win_rates, _ = browse(f"{url}/assets/win_rates", shots / "win_rates.png", height=2000)
    for texts in (lineage, partitions, win_rates):
        assert "Join the Dagster community" not in texts  # dagster.yaml's `nux: enabled: false`
    # (a) every asset upstream of win_rates is a node of the lineage graph, and the edges between them are drawn
    assert [k.to_user_string() for k in upstream if not shown(k.to_user_string(), lineage)] == []
    assert len(re.findall(r"<path[^>]*marker-end=", dom)) == deps > len(upstream)
    # (b) prompts' 23 language partitions, all materialized
    joined = " ".join(partitions)
    assert "23 Partitions" in joined and "Materialized (23)" in joined
    assert set(LANGUAGE_CODES) <= set(partitions)
    # (c) win_rates' latest materialization lists the step-by-step chart (a Markdown image) and the report's path
    assert {"step_by_step", "per_language", "[Show Markdown]", str(data / "reports" / "latest.md")} <= set(win_rates)
    latest = instance.get_latest_materialization_event(dg.AssetKey("win_rates")).asset_materialization
    assert latest.metadata["step_by_step"].value.startswith("![step_by_step](data:image/png;base64,")
    # The table beside the chart, under its own key (the chart used to overwrite it), and the PNG's path.
    assert "win_rate" in latest.metadata["step_by_step_table"].value and "online_1_merged" in latest.metadata["step_by_step_table"].value
    assert latest.metadata["step_by_step_path"].value == str(data / "reports" / "step_by_step.png")
    # A copy beside the checkout's own reports (gitignored), where a reader looks after `make test`.
    for png in shots.glob("*.png"):
        write_bytes(ROOT / "data" / "reports" / "ui" / png.name, png.read_bytes())


def test_rerun_reuses_models_and_shards(graph):
    data, defs, instance, _ = graph
    keys = [dg.AssetKey(k) for k in ("teacher_models", "pool_completions", "sft_merged")]
    results = materialize_all(defs, instance, selection=keys)
    assert all(m.metadata["reused"].value is True for m in materializations(results, "teacher_models"))
    assert materializations(results, "pool_completions")[0].metadata["shards_generated"].value == 0
    assert materializations(results, "sft_merged")[0].metadata["reused"].value is True
