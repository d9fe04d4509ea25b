"""Benchmarks, each against a baseline in the same run, reported as ratios (issue 7).

    make bench                                         # full sizes: about 15 minutes on 2 cores
    .venv/bin/python -m bench.run --quick              # small sizes, for development
    .venv/bin/python -m bench.run --quick --only selection dpo

Every contender runs in its own process, so each peak RSS is its own. The model workers use one torch thread, as
the tests do: on a shared 2-core machine two OpenMP threads stall each other and swamp what is being compared.
Writes bench/results.json and bench/results.md and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

from aya_assets.paths import instance_home
from bench import demo_times, dpo, generation, merge, selection, sql
from bench.table import Row, markdown

BENCHMARKS = {"selection": selection.run, "merge": merge.run, "generation": generation.run, "dpo": dpo.run,
              "sql": sql.run}
RESULT_KEYS = ["select_vs_pandas", "select_vs_duckdb", "merge_vs_mergekit", "merge_peak_rss_over_model_bytes",
               "batched_vs_loop_tokens_per_s", "dpo_precompute_step_ratio", "sql_vs_bare_duckdb"]
HERE = Path(__file__).parent


def demo(dagster_home: Path) -> tuple[Row, dict]:
    """The latest finished `make demo` in `dagster_home`, or a note saying why there is none."""
    warnings.filterwarnings("ignore", module="dagster")  # beta notices on loading the definitions
    from aya_assets.definitions import build_definitions

    times = demo_times.demo_times(dagster_home)
    graph = {key.to_user_string() for key in build_definitions().resolve_asset_graph().materializable_asset_keys}
    if times is None:
        note = f"no run in the Dagster instance at {dagster_home}: run `make demo` first"
    elif not times["finished"]:
        note = f"the latest runs in {dagster_home} are still going"
    elif missing := graph - set(times["materialized"]):
        note = f"the latest runs in {dagster_home} materialized {len(graph) - len(missing)} of {len(graph)} assets: not a whole demo"
    else:
        slowest = ", ".join(f"{asset} {seconds:.0f} s" for asset, seconds in list(times["per_asset_s"].items())[:3])
        return Row(None, f"demo wall time ({times['runs']} runs)", f"{times['wall_s']:.0f} s; slowest: {slowest}", "—",
                   None, "—", None), times
    return Row(None, "demo wall time", "—", note, None, "—", None), {"note": note}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a few minutes")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    parser.add_argument("--dagster-home", type=Path, default=instance_home(),
                        help="the instance whose latest demo is reported (default: aya's, data/dagster or $DAGSTER_HOME)")
    args = parser.parse_args()

    started = time.perf_counter()
    details = {"quick": args.quick, "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()}
    rows: list[Row] = []
    work = Path(tempfile.mkdtemp(prefix="aya-bench-"))
    try:
        for name in args.only:
            print(f"bench: {name} …", flush=True)
            bench_started = time.perf_counter()
            new_rows, details[name] = BENCHMARKS[name](args.quick, work)
            details[name]["bench_wall_s"] = time.perf_counter() - bench_started
            rows += new_rows
    finally:
        shutil.rmtree(work, ignore_errors=True)
    demo_row, details["demo"] = demo(args.dagster_home.resolve())
    rows.append(demo_row)
    details |= {"load_average_at_end": os.getloadavg(), "wall_s": time.perf_counter() - started}

    results = dict.fromkeys(RESULT_KEYS) | {row.key: row.ratio for row in rows if row.key}
    results |= {"demo_wall_s": details["demo"].get("wall_s"), "demo_per_asset_s": details["demo"].get("per_asset_s"),
                "details": details}
    (HERE / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = ", ".join(f"{x:.1f}" for x in details["load_average_at_start"])
    table = (f"# Benchmarks ({'quick' if args.quick else 'full'}, {stamp})\n\n{markdown(rows)}\n"
             f"{details['cpus']} CPUs, load average at start {load}; whole run {details['wall_s']:.0f} s.\n")
    (HERE / "results.md").write_text(table)
    print("\n" + table)


if __name__ == "__main__":
    main()
