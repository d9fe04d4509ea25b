"""Where the latest `make demo` spent its time: seconds per asset and the wall time, from the Dagster event log.

    .venv/bin/python -m bench.demo_times --dagster-home /tmp/demo/data/dagster   # default: aya's instance home

The latest demo is the newest run's `aya materialize` call: every run with its `aya/materialize` tag, whichever worker
process ran it (runs from before that tag: the newest run and the runs before it launched by the same process). An
asset's time is the sum of its steps' durations over those runs; the wall time, first run start to last run end.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from aya_assets import paths


def demo_times(dagster_home: Path) -> dict | None:
    """{wall_s, per_asset_s (slowest first), materialized, runs, finished}, or None when the instance has no run."""
    import dagster as dg

    if not dagster_home.is_dir():
        return None
    with paths.dagster_home(dagster_home), dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        return _times(instance)


def _times(instance) -> dict | None:
    from dagster._core.events import DagsterEventType

    from aya_assets.cli.runner import MATERIALIZE_TAG

    def launcher(run_id: str) -> int | None:
        starts = instance.all_logs(run_id, of_type=DagsterEventType.RUN_START)
        return starts[0].dagster_event.pid if starts else None

    records = sorted(instance.get_run_records(), key=lambda r: r.create_timestamp, reverse=True)
    if not records:
        return None
    call = records[0].dagster_run.tags.get(MATERIALIZE_TAG)
    if call is not None:
        demo = [r for r in records if r.dagster_run.tags.get(MATERIALIZE_TAG) == call]
    else:
        pid = launcher(records[0].dagster_run.run_id)
        demo = []
        for record in records:
            if launcher(record.dagster_run.run_id) != pid:
                break
            demo.append(record)
    per_asset: Counter[str] = Counter()
    everything: set[str] = set()
    for record in demo:
        run_id = record.dagster_run.run_id
        materialized: dict[str, set[str]] = {}
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
            materialized.setdefault(entry.step_key, set()).add(entry.dagster_event.asset_key.to_user_string())
        everything.update(*materialized.values())
        for step in instance.get_run_step_stats(run_id):
            if step.start_time is not None and step.end_time is not None:
                # A step that materialized nothing (a separate check) keeps its own name.
                per_asset[", ".join(sorted(materialized.get(step.step_key, {step.step_key})))] += step.end_time - step.start_time
    finished = all(r.end_time is not None for r in demo)
    end = max((r.end_time for r in demo if r.end_time is not None), default=None)
    start = min(r.start_time for r in demo if r.start_time is not None)
    return {"wall_s": None if end is None else end - start, "per_asset_s": dict(per_asset.most_common()),
            "materialized": sorted(everything), "runs": len(demo), "finished": finished}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dagster-home", type=Path, default=paths.instance_home())
    times = demo_times(parser.parse_args().dagster_home.resolve())
    if times is None:
        print("no run in this Dagster instance: run `make demo` first")
        return
    print("| asset | seconds |\n|---|---|")
    for asset, seconds in times["per_asset_s"].items():
        print(f"| {asset} | {seconds:.1f} |")
    state = "" if times["finished"] else " (still running: figures so far)"
    wall = "—" if times["wall_s"] is None else f"{times['wall_s']:.1f} s"
    print(f"\n{times['runs']} runs, wall time from first run start to last run end: {wall}{state}")


if __name__ == "__main__":
    main()
