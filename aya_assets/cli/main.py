"""`aya`: run the pipeline in-process and query its artifacts with SQL."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path

from aya_assets import paths
from aya_assets.catalog.sql import QueryLimits

QUERY_DEFAULTS = QueryLimits()


@contextmanager
def _instance():
    import dagster as dg

    with paths.dagster_home(), dg.DagsterInstance.get() as instance:
        yield instance


def _fingerprint(profile: str | None) -> str | None:
    from aya_assets.catalog.sql import fingerprint

    storage = paths.instance_home() / "storage"
    sqlite = storage if (storage / "history" / "runs.db").is_file() else None  # another instance: always refresh
    return fingerprint(paths.data_dir() / "warehouse", sqlite, paths.profile_path(profile), Path(__file__).parents[1])


def _catalog(defs, instance, stamp: str | None) -> Path:
    """Rebuild the catalog; `stamp` is the fingerprint taken before it reads its inputs (a change meanwhile
    makes the next query refresh again)."""
    from aya_assets.catalog.refresh import refresh_catalog

    data = paths.data_dir()
    return refresh_catalog(data / "aya.duckdb", data / "warehouse", instance, defs, stamp)


def _fresh_catalog(profile: str | None, force: bool = False) -> Path:
    """The catalog, refreshed only when the warehouse, the instance, the profile or the code changed."""
    from aya_assets.catalog.sql import stored_fingerprint

    db = paths.data_dir() / "aya.duckdb"
    stamp = _fingerprint(profile)
    if not force and stamp is not None and stamp == stored_fingerprint(db):
        return db
    from aya_assets.definitions import build_definitions

    with _instance() as instance:
        return _catalog(build_definitions(profile), instance, stamp)


def worker_definitions(profile: str, verbose: bool):
    """The definitions in one of `aya materialize`'s worker processes, built as the command built its own."""
    from aya_assets.definitions import build_definitions

    _hide_dagster_notices()
    if not verbose:
        from aya_assets.console import quiet_libraries

        quiet_libraries()
    return build_definitions(profile)


def cmd_materialize(args) -> int:
    import functools

    import dagster as dg

    from aya_assets.cli.runner import check_failures, materialize_all
    from aya_assets.definitions import build_definitions
    from aya_assets.profile import load_profile

    if not args.verbose:
        from aya_assets.console import quiet_libraries

        quiet_libraries()
    profile = load_profile(args.profile)
    defs = build_definitions(profile)
    selection = [dg.AssetKey.from_user_string(s) for s in args.select] if args.select else None
    # As many steps at once as the busiest pool has slots: 2 on the CPU profile (one per core), 1 per GPU.
    workers = args.jobs or max(profile.pools.values(), default=1)
    build = functools.partial(worker_definitions, str(paths.profile_path(args.profile)), args.verbose)
    with _instance() as instance:
        results = materialize_all(defs, instance, selection, verbose=args.verbose, workers=workers,
                                  pools=profile.pools, build=build)
        db = _catalog(defs, instance, _fingerprint(args.profile))
    if args.summary:
        from aya_assets.catalog.summary import summary
        from aya_assets.stages import Recipe

        print(summary(db, paths.data_dir() / "warehouse", Recipe(profile).evaluated_keys()))
    # Checks that warn (they do not stop the run) are easy to miss in a long run: list them at the end.
    for line in check_failures(e for result in results for e in result.get_asset_check_evaluations()):
        print(f"check failed (warning): {line}")
    return 0


def cmd_sql(args) -> int:
    import polars as pl

    from aya_assets.catalog.sql import QueryLimits, SqlLimitHit, SqlRefused, run_query

    db = _fresh_catalog(args.profile, force=args.refresh)
    limits = QueryLimits(memory_limit=args.memory_limit, timeout_s=args.timeout)
    try:
        frame = run_query(db, paths.data_dir() / "warehouse", args.query, limits)
    except SqlRefused as exc:
        print(f"aya sql: {exc}", file=sys.stderr)
        return 2
    except SqlLimitHit as exc:
        print(f"aya sql: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # duckdb's own errors (unknown table, permission) reach the user verbatim
        print(f"aya sql: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.csv:
        # CSV has no lists or structs (json_keys, messages): such cells are written as JSON text.
        nested = [name for name, dtype in frame.schema.items() if dtype.is_nested()]
        frame = frame.with_columns(pl.Series(name, [json.dumps(v, default=str, ensure_ascii=False) for v in frame[name].to_list()],
                                             dtype=pl.String) for name in nested)
        sys.stdout.write(frame.write_csv())
    elif args.json:
        print(json.dumps(frame.to_dicts(), default=str, ensure_ascii=False, indent=1))
    else:
        with pl.Config(tbl_rows=200, tbl_cols=30, fmt_str_lengths=60, tbl_hide_dataframe_shape=False):
            print(frame)
    return 0


def cmd_ui(args) -> int:
    """`dagster dev` on this project, with the instance home and the profile that `aya` uses."""
    import subprocess

    from aya_assets.cli.runner import set_pool_limits
    from aya_assets.profile import load_profile

    env = os.environ | ({"AYA_PROFILE": args.profile} if args.profile else {})
    pools = load_profile(args.profile).pools
    with _instance() as instance:  # the UI's runs claim the profile's pool limits, as `aya materialize`'s do
        set_pool_limits(instance, pools)
    with paths.dagster_home():
        dagster = Path(sys.executable).with_name("dagster")
        extra = args.dagster_args[1:] if args.dagster_args[:1] == ["--"] else args.dagster_args
        return subprocess.call([str(dagster), "dev", "-m", "aya_assets.definitions", *extra],
                               env=env | {"DAGSTER_HOME": os.environ["DAGSTER_HOME"]})


def _hide_dagster_notices() -> None:
    warnings.filterwarnings("ignore", module="dagster")  # beta/preview notices are for us, not for users


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aya", description=__doc__)
    parser.add_argument("--verbose", action="store_true", help="Dagster's event log, library logs and an error's traceback on the console")
    parser.add_argument("--profile", default=None, help="profile name in resources/ or a YAML path (default: $AYA_PROFILE or tiny)")
    sub = parser.add_subparsers(dest="command", required=True)

    mat = sub.add_parser("materialize", help="materialize the graph (or --select assets), all partitions")
    mat.add_argument("--select", nargs="*", help="asset keys, e.g. prompts")
    mat.add_argument("--summary", action="store_true", help="print the summary tables afterwards")
    mat.add_argument("--jobs", type=_positive, default=None,
                     help="steps run side by side, each in its own process (default: the profile's largest pool)")
    mat.set_defaults(func=cmd_materialize)

    sql = sub.add_parser("sql", help="read-only SQL over every table asset plus materializations and asset_deps")
    sql.add_argument("query")
    fmt = sql.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true")
    fmt.add_argument("--json", action="store_true")
    sql.add_argument("--refresh", action="store_true", help="rebuild the catalog even if nothing seems to have changed")
    sql.add_argument("--memory-limit", default=os.environ.get("AYA_SQL_MEMORY_LIMIT", QUERY_DEFAULTS.memory_limit),
                     help="DuckDB memory limit per query, e.g. 2GB (default: $AYA_SQL_MEMORY_LIMIT or %(default)s)")
    sql.add_argument("--timeout", type=float, default=float(os.environ.get("AYA_SQL_TIMEOUT", QUERY_DEFAULTS.timeout_s)),
                     help="seconds a query may run (default: $AYA_SQL_TIMEOUT or %(default)s)")
    sql.set_defaults(func=cmd_sql)

    ui = sub.add_parser("ui", help="the Dagster webserver on this project (dagster dev); extra arguments go to it")
    ui.add_argument("dagster_args", nargs=argparse.REMAINDER)
    ui.set_defaults(func=cmd_ui)

    args = parser.parse_args(argv)
    _hide_dagster_notices()
    try:
        return args.func(args)
    except Exception as exc:
        # Imported here: the error classes' modules pull in torch, which `aya sql` never needs.
        from aya_assets.checkpoints.files import CheckpointError
        from aya_assets.profile import ProfileError
        from aya_assets.prompts.sources import PromptSourceError
        from aya_assets.cli.runner import MaterializeFailed

        failed = exc if isinstance(exc, MaterializeFailed) else None
        cause = exc.__cause__ if failed and exc.__cause__ is not None else exc
        bad_input = isinstance(cause, (ProfileError, PromptSourceError, CheckpointError))
        if not (bad_input or failed):
            raise
        if args.verbose:
            traceback.print_exception(cause)
        # One line: where, what (the message names the file and row, key or tensor, and what to change), the log.
        where = f"{failed.where}: " if failed else ""
        log = f" (the run's log: {failed.run_id}, in `make ui` under Runs; --verbose for the traceback)" if failed else ""
        message = " ".join(str(cause).split())  # Dagster's check failures span lines
        if failed and failed.failed_checks:
            message = "failed checks: " + " | ".join(failed.failed_checks)
        print(f"aya: {where}{type(cause).__name__}: {message}{log}", file=sys.stderr)
        return 2 if bad_input else 1


if __name__ == "__main__":
    sys.exit(main())
