"""`aya sql` on an unchanged catalog against a bare `duckdb` query over the same Parquet files, each a whole process.

Both start a fresh interpreter, so the ratio is what a user feels: our fingerprint check, the locked in-memory
connection and the result table, on top of the imports and the scan that the bare query pays too. A refresh (the
warehouse changed) is timed as well, for scale.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench.measure import measure
from bench.table import Row, mib

QUERY = "SELECT language, count(*) AS n FROM prompts GROUP BY 1 ORDER BY 1"
BARE = ("import duckdb; duckdb.sql(\"SELECT language, count(*) AS n FROM read_parquet('{glob}') "
        "GROUP BY 1 ORDER BY 1\").pl()")


def _median(argv: list[str], env: dict, runs: int, log: Path) -> dict:
    results = [measure(argv, log, env) for _ in range(runs)]
    return {"wall_s": statistics.median(r["wall_s"] for r in results),
            "peak_rss_bytes": statistics.median(r["peak_rss_bytes"] for r in results), "runs": runs}


def run(quick: bool, work: Path) -> tuple[list[Row], dict]:
    home = work / "sql_home"
    env = {"AYA_HOME": str(home)}
    aya = str(Path(sys.executable).with_name("aya"))
    subprocess.run([aya, "materialize", "--select", "prompts"], env=os.environ | env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ours_argv = [aya, "sql", QUERY]
    subprocess.run(ours_argv, env=os.environ | env, check=True, stdout=subprocess.DEVNULL)  # the one refresh
    runs = 3 if quick else 5
    log = work / "sql.log"
    ours = _median(ours_argv, env, runs, log)
    glob = home / "data" / "warehouse" / "prompts" / "*.parquet"
    bare = _median([sys.executable, "-c", BARE.format(glob=glob)], env, runs, log)
    # A changed warehouse (a touched partition) makes the next query refresh the catalog first.
    refresh = []
    for _ in range(runs):
        (home / "data" / "warehouse" / "prompts" / "de.parquet").touch()
        refresh.append(measure(ours_argv, log, env)["wall_s"])
    ratio = ours["wall_s"] / bare["wall_s"]
    details = {"ours": ours, "bare_duckdb": bare, "refresh_wall_s": statistics.median(refresh)}
    rows = [
        Row("sql_vs_bare_duckdb", f"aya sql, unchanged catalog / bare duckdb (median of {runs})",
            f"{ours['wall_s']:.2f} s, {mib(ours['peak_rss_bytes'])}",
            f"duckdb {bare['wall_s']:.2f} s, {mib(bare['peak_rss_bytes'])}", ratio, "≤ 2×", ratio <= 2),
        Row(None, "aya sql after the warehouse changed (catalog refresh)", f"{details['refresh_wall_s']:.2f} s",
            f"unchanged {ours['wall_s']:.2f} s", details["refresh_wall_s"] / ours["wall_s"], "—", None),
    ]
    return rows, details
