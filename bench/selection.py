"""Pair selection at scale: the project's reward routing against pandas and DuckDB on the same Parquet file.

Each contender reads the file and keeps one row per prompt: the highest score, ties to the first teacher, then
sample. Run as a module, it is one contender's worker: `python -m bench.selection CONTENDER IN.parquet OUT.parquet`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from bench.measure import measure, python_worker, report
from bench.table import Row, run_summary

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
    from aya_assets.arbitrage.routing import route

    return route(pl.scan_parquet(path), "reward")


def select_pandas(path: str) -> pl.DataFrame:
    import pandas as pd

    frame = pd.read_parquet(path)
    ranked = frame.sort_values(["prompt_id", "score", "teacher", "sample"], ascending=[True, False, True, True])
    return ranked.groupby("prompt_id", sort=False).head(1)


def select_duckdb(path: str) -> pl.DataFrame:
    import duckdb

    return duckdb.sql(DUCKDB_QUERY.format(path=path)).to_arrow_table()


CONTENDERS = {"ours": select_ours, "pandas": select_pandas, "duckdb": select_duckdb}


def worker(contender: str, path: str, out: str) -> None:
    """Time reading and selecting; write the chosen keys (untimed) for the cross-check."""
    started = time.perf_counter()
    chosen = CONTENDERS[contender](path)
    seconds = time.perf_counter() - started
    pl.DataFrame(chosen)[KEYS].write_parquet(out)
    report(seconds=seconds, rows=len(chosen))


def contend(contender: str, path: Path, work: Path) -> dict:
    """One contender in its own process, with the keys it chose."""
    out = work / f"{path.stem}.{contender}.parquet"
    result = measure(python_worker("bench.selection", contender, path, out))
    return result | {"chosen": pl.read_parquet(out).sort("prompt_id")}


def run(quick: bool, work: Path) -> tuple[list[Row], dict]:
    from aya_assets.languages import LANGUAGES

    languages = list(LANGUAGES)
    sizes = [1_000_000] if quick else [1_000_000, 10_000_000]
    rows, details = [], {}
    for size in sizes:
        path = work / f"completions_{size}.parquet"
        write_completions(path, size, languages)
        results = {name: contend(name, path, work) for name in CONTENDERS}
        for name in ("pandas", "duckdb"):
            if not results[name].pop("chosen").equals(results["ours"]["chosen"]):
                raise AssertionError(f"{name} chose other completions than ours at {size} rows")
        results["ours"].pop("chosen")
        details[f"select_{size}_rows"] = results
        label, headline = f"{size / 1e6:g}M rows", size == sizes[-1]
        ours, pandas, duck = results["ours"], results["pandas"], results["duckdb"]
        rows += [
            Row("select_vs_pandas" if headline else None, f"select vs pandas ({label}), pandas/ours", run_summary(ours),
                run_summary(pandas), pandas["seconds"] / ours["seconds"], "≥ 10×", pandas["seconds"] / ours["seconds"] >= 10),
            Row("select_vs_duckdb" if headline else None, f"select vs DuckDB ({label}), ours/duckdb", run_summary(ours),
                run_summary(duck), ours["seconds"] / duck["seconds"], "≤ 1.5×", ours["seconds"] / duck["seconds"] <= 1.5),
        ]
    # Same rows, 5 languages instead of 23: ours' peak memory should not depend on how many languages there are.
    few = work / f"completions_{sizes[-1]}_5_languages.parquet"
    write_completions(few, sizes[-1], languages[:5])
    ours_few = contend("ours", few, work)
    ours_few.pop("chosen")
    details["select_5_languages"] = ours_few
    ratio = details[f"select_{sizes[-1]}_rows"]["ours"]["peak_rss_bytes"] / ours_few["peak_rss_bytes"]
    rows.append(Row(None, f"select peak RSS, 23 / 5 languages ({label})", run_summary(details[f"select_{sizes[-1]}_rows"]["ours"]),
                    run_summary(ours_few), ratio, "≤ 1.1×", ratio <= 1.1))
    return rows, details


if __name__ == "__main__":
    worker(*sys.argv[1:])
