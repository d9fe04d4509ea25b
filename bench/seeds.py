"""How much the headline win rates move with the seed: the whole graph once per seed, each in its own AYA_HOME.

    .venv/bin/python -m bench.seeds                           # tiny.yaml, 3 seeds: three whole demos, one after another
    .venv/bin/python -m bench.seeds --profile small.yaml --seeds 2 --out /tmp/seeds   # smoke test: tests/conftest FAST on tiny, 6 min

Seed i runs the profile with `seed:` set to the profile's seed + i (seed 0 is the demo's own), written to a YAML of
its own, through `aya materialize` as `make demo` runs it. For every seed: final vs student_base, vs the best single
teacher (the one that seed's selection slice chose) and vs sft_merged, and sft_merged vs the best single teacher;
then their mean, min-max spread and mean 95% CI half-width over seeds. Prints the Markdown table and writes it to
bench/results_seeds.md, with the per-seed figures in bench/results_seeds.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import yaml

HERE = Path(__file__).parent
BEST = "best single"  # the headline rows' name for the seed's best_single_teacher
# (row name, stage, baseline); "final" and BEST are filled per seed.
HEADLINES = [("final vs student_base", "final", "student_base"), ("final vs best single", "final", BEST),
             ("final vs sft_merged", "final", "sft_merged"), ("sft_merged vs best single", "sft_merged", BEST)]
Rate = tuple[float, float, float] | None  # win rate, ci_low, ci_high; None where the seed has no such verdict


def headlines(result: pl.DataFrame, best: str | None, final: str) -> dict[str, Rate]:
    """The headline comparisons' overall (win rate, ci_low, ci_high) in one seed's win_rates table."""
    overall = {(r["stage"], r["baseline"]): r for r in result.filter(pl.col("language") == "all").iter_rows(named=True)}
    out = {}
    for name, stage, baseline in HEADLINES:
        row = overall.get(({"final": final}.get(stage, stage), {BEST: best}.get(baseline, baseline)))
        out[name] = None if row is None or row["win_rate"] is None else (row["win_rate"], row["ci_low"], row["ci_high"])
    return out


def aggregate(per_seed: dict[int, dict[str, Rate]]) -> pl.DataFrame:
    """One row per headline: each seed's rate, their mean, min, max, spread (max - min), mean CI half-width."""
    rows = []
    for name, *_ in HEADLINES:
        rates = {seed: h[name] for seed, h in per_seed.items()}
        found = [r for r in rates.values() if r is not None]
        values = [r[0] for r in found]
        rows.append({"headline": name, **{f"seed {seed}": r and r[0] for seed, r in rates.items()},
                     "mean": sum(values) / len(values) if values else None,
                     "min": min(values, default=None), "max": max(values, default=None),
                     "spread": max(values) - min(values) if values else None,
                     "mean_ci_half_width": sum((hi - lo) / 2 for _, lo, hi in found) / len(found) if found else None})
    return pl.DataFrame(rows, schema_overrides={c: pl.Float64 for c in rows[0] if c != "headline"})


def markdown(table: pl.DataFrame, best: dict[int, str | None]) -> str:
    cells = [["—" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in table.rows()]
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    chosen = ", ".join(f"{seed} {stage or '—'}" for seed, stage in best.items())
    return "\n".join(lines) + f"\n\nbest single teacher per seed: {chosen}\n"


def run_seed(profile: Path, seed: int, home: Path) -> dict:
    """One whole run of `profile` at `seed` under AYA_HOME=`home`: its headline rates, best single and wall time."""
    raw = yaml.safe_load(profile.read_text(encoding="utf-8")) | {"seed": seed}
    home.mkdir(parents=True, exist_ok=True)
    seeded = home / f"{profile.stem}_seed{seed}.yaml"
    seeded.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    # As `make demo` runs it; the instance under this AYA_HOME, whatever DAGSTER_HOME the caller has.
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"} | {
        "AYA_HOME": str(home), "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
        "TOKENIZERS_PARALLELISM": "false", "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    started = time.perf_counter()
    with open(home / "aya.log", "w") as log:
        code = subprocess.call([str(Path(sys.executable).with_name("aya")), "--profile", str(seeded), "materialize"],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"seed {seed}: aya materialize exited {code}; see {home / 'aya.log'}")
    return read_run(home, seeded, seed) | {"wall_s": wall}


def read_run(home: Path, profile: Path, seed: int) -> dict:
    """A finished run's headline rates, from its win_rates table and the best single teacher its metadata names."""
    import dagster as dg

    from aya_assets import paths
    from aya_assets.profile import load_profile
    from aya_assets.stages import Recipe

    result = pl.read_parquet(home / "data" / "warehouse" / "win_rates" / "*.parquet")
    instance_home = home / "data" / "dagster"
    with paths.dagster_home(instance_home), dg.DagsterInstance.from_config(str(instance_home)) as instance:
        meta = instance.get_latest_materialization_event(dg.AssetKey("win_rates")).asset_materialization.metadata
    best = meta["best_single_teacher"].value if "best_single_teacher" in meta else None
    final = Recipe(load_profile(str(profile))).final()
    return {"seed": seed, "best_single": best, "final": final, "headlines": headlines(result, best, final)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=Path, default=HERE.parent / "resources" / "tiny.yaml", help="a profile YAML")
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds (the profile's seed, +1, +2, ...)")
    parser.add_argument("--out", type=Path, default=None, help="where each seed's AYA_HOME goes (default: a temp dir)")
    args = parser.parse_args()

    base = yaml.safe_load(args.profile.read_text(encoding="utf-8")).get("seed", 0)
    out = args.out or Path(tempfile.mkdtemp(prefix="aya-seeds-"))
    runs = []
    for i in range(args.seeds):
        seed = base + i
        print(f"bench.seeds: seed {seed} ({i + 1}/{args.seeds}) under {out / f'seed_{seed}'} …", flush=True)
        runs.append(run_seed(args.profile.resolve(), seed, out / f"seed_{seed}"))
    table = aggregate({r["seed"]: r["headlines"] for r in runs})
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = (f"# Win rates over seeds ({args.profile.name}, {stamp})\n\n"
            f"{markdown(table, {r['seed']: r['best_single'] for r in runs})}\n"
            f"Final stage: {runs[0]['final']}. Each seed's own best single teacher; spread = max - min over seeds; "
            f"half-width = (ci_high - ci_low) / 2 of the bootstrap 95% interval. Runs under {out}; "
            f"wall {sum(r['wall_s'] for r in runs):.0f} s.\n")
    (HERE / "results_seeds.json").write_text(json.dumps({"profile": str(args.profile), "runs": runs}, indent=1) + "\n")
    (HERE / "results_seeds.md").write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
