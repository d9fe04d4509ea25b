"""Pair selection at scale: the project's reward routing against pandas and DuckDB on the same Parquet file.

Each contender reads the file and keeps one row per prompt: the highest score, ties to the first teacher, then
sample. Run as a module, it is one contender's worker: `python -m bench.selection CONTENDER IN.parquet OUT.parquet`.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from bench.measure import measure, python_worker, report
from bench.table import Row, run_summary

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

TEACHERS = [f"teacher_{i}" for i in range(5)]
SAMPLES = 4
KEYS = ["prompt_id", "teacher", "sample"]
DUCKDB_QUERY = """
    SELECT * FROM read_parquet('{path}')
    QUALIFY row_number() OVER (PARTITION BY prompt_id ORDER BY score DESC, teacher, sample) = 1
    ORDER BY prompt_id
"""


def write_completions(path: Path, rows: int, languages: list[str], seed: int = 0) -> None:
    """`rows` shuffled completions: rows / 20 prompts x 5 teachers x 4 samples, scores rounded so that ties happen."""
    rng = np.random.default_rng(seed)
    prompts = rows // (len(TEACHERS) * SAMPLES)
    ids = pl.Series([f"{x:016x}" for x in rng.integers(0, 2**64, prompts, dtype=np.uint64).tolist()])
    # The same draw for any language list, so two files differ only in their language column.
    language = pl.Series(languages)[rng.integers(0, 23, prompts) % len(languages)]
    prompt = np.repeat(np.arange(prompts), len(TEACHERS) * SAMPLES)
    order = rng.permutation(prompt.size)
    prompt = prompt[order]
    pl.DataFrame({
        "prompt_id": ids.gather(prompt),
        "language": language.gather(prompt),
        "teacher": pl.Series(TEACHERS).gather(np.tile(np.repeat(np.arange(len(TEACHERS)), SAMPLES), prompts)[order]),
        "sample": np.tile(np.arange(SAMPLES, dtype=np.int32), prompts * len(TEACHERS))[order],
        "score": rng.random(prompt.size).round(2),
    }).write_parquet(path)


def select_ours(path: str) -> pl.DataFrame:
    """The pipeline's reward routing over a lazy scan."""
    from aya_assets.arbitrage.routing import route

    return route(pl.scan_parquet(path), "reward")


def select_pandas(path: str) -> pd.DataFrame:
    """Sort by prompt, then score descending and the tie-breakers; keep each prompt's first row."""
    import pandas as pd

    frame = pd.read_parquet(path)
    ranked = frame.sort_values(["prompt_id", "score", "teacher", "sample"], ascending=[True, False, True, True])
    return ranked.groupby("prompt_id", sort=False).head(1)


def select_duckdb(path: str) -> pa.Table:
    """One window query, fetched as Arrow."""
    import duckdb

    return duckdb.sql(DUCKDB_QUERY.format(path=path)).to_arrow_table()


CONTENDERS = {"ours": select_ours, "pandas": select_pandas, "duckdb": select_duckdb}


# Imported before the clock starts, so that no contender pays for its imports inside the timing.
IMPORTS = {"ours": "aya_assets.arbitrage.routing", "pandas": "pandas", "duckdb": "duckdb"}


def worker(contender: str, path: str, out: str) -> None:
    """Time reading and selecting; write the chosen keys (untimed) for the cross-check."""
    importlib.import_module(IMPORTS[contender])
    started = time.perf_counter()
    chosen = CONTENDERS[contender](path)
    seconds = time.perf_counter() - started
    pl.DataFrame(chosen)[KEYS].write_parquet(out)
    report(seconds=seconds, rows=len(chosen))


def contend(contender: str, path: Path, work: Path) -> tuple[dict, pl.DataFrame]:
    """One contender in its own process: its measurements and the keys it chose, by prompt."""
    out = work / f"{path.stem}.{contender}.parquet"
    result = measure(python_worker("bench.selection", contender, path, out), log=work / "selection.log")
    return result, pl.read_parquet(out).sort("prompt_id")


def compare(path: Path, work: Path) -> dict:
    """Every contender on one file; AssertionError unless they all chose the same completions."""
    results, chosen = {}, {}
    for name in CONTENDERS:
        results[name], chosen[name] = contend(name, path, work)
        if not chosen[name].equals(chosen["ours"]):
            raise AssertionError(f"{name} chose other completions than ours in {path.name}")
    return results


def run(quick: bool, work: Path) -> tuple[list[Row], dict]:
    from aya_assets.languages import LANGUAGES

    sizes = [1_000_000] if quick else [1_000_000, 10_000_000]
    rows, details = [], {}
    for size in sizes:
        path = work / f"completions_{size}.parquet"
        write_completions(path, size, list(LANGUAGES))
        details[f"{size}_rows"] = results = compare(path, work)
        ours, pandas, duck = results["ours"], results["pandas"], results["duckdb"]
        label, headline = f"{size / 1e6:g}M rows", size == sizes[-1]
        vs_pandas, vs_duckdb = pandas["seconds"] / ours["seconds"], ours["seconds"] / duck["seconds"]
        rows += [
            Row("select_vs_pandas" if headline else None, f"select, pandas/ours ({label})", run_summary(ours),
                f"pandas {run_summary(pandas)}", vs_pandas, "≥ 10×", vs_pandas >= 10),
            Row("select_vs_duckdb" if headline else None, f"select, ours/DuckDB ({label})", run_summary(ours),
                f"DuckDB {run_summary(duck)}", vs_duckdb, "≤ 1.5×", vs_duckdb <= 1.5),
        ]
    # The same rows with 5 languages instead of 23: ours' peak memory should not depend on the number of languages.
    few = work / f"completions_{sizes[-1]}_5_languages.parquet"
    write_completions(few, sizes[-1], list(LANGUAGES)[:5])
    details["5_languages"] = ours_few = contend("ours", few, work)[0]
    rss_ratio = ours["peak_rss_bytes"] / ours_few["peak_rss_bytes"]
    rows.append(Row(None, f"select peak RSS, 23 / 5 languages ({label})", f"23: {run_summary(ours)}",
                    f"5: {run_summary(ours_few)}", rss_ratio, "≤ 1.1×", rss_ratio <= 1.1))
    return rows, details


if __name__ == "__main__":
    worker(*sys.argv[1:])
