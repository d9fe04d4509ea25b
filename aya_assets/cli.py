"""`aya`: run the pipeline in-process and query its artifacts with SQL."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

from aya_assets import paths


def _instance():
    import dagster as dg

    os.environ.setdefault("DAGSTER_HOME", str(paths.PACKAGE_ROOT))
    os.chdir(paths.PACKAGE_ROOT)  # dagster.yaml's storage paths are relative to the checkout
    return dg.DagsterInstance.get()


def _catalog(defs, instance):
    from aya_assets.catalog.sql import refresh_catalog

    data = paths.data_dir()
    return refresh_catalog(data / "aya.duckdb", data / "warehouse", instance, defs)


def cmd_materialize(args) -> int:
    import dagster as dg

    from aya_assets.definitions import build_definitions
    from aya_assets.runner import materialize_all

    defs = build_definitions(args.profile)
    instance = _instance()
    selection = [dg.AssetKey.from_user_string(s) for s in args.select] if args.select else None
    materialize_all(defs, instance, selection)
    db = _catalog(defs, instance)
    if args.summary:
        from aya_assets.catalog.summary import summary
        from aya_assets.evaluation.stages import stage_keys
        from aya_assets.profile import load_profile

        print(summary(db, paths.data_dir() / "warehouse", stage_keys(load_profile(args.profile))))
    return 0


def cmd_sql(args) -> int:
    import polars as pl

    from aya_assets.catalog.sql import SqlRefused, run_query
    from aya_assets.definitions import build_definitions

    db = _catalog(build_definitions(args.profile), _instance())
    try:
        frame = run_query(db, paths.data_dir() / "warehouse", args.query)
    except SqlRefused as exc:
        print(f"aya sql: {exc}", file=sys.stderr)
        return 2
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aya", description=__doc__)
    parser.add_argument("--profile", default=None, help="profile name in resources/ or a YAML path (default: $AYA_PROFILE or tiny)")
    sub = parser.add_subparsers(dest="command", required=True)

    mat = sub.add_parser("materialize", help="materialize the graph (or --select assets), all partitions")
    mat.add_argument("--select", nargs="*", help="asset keys, e.g. prompts")
    mat.add_argument("--summary", action="store_true", help="print the summary tables afterwards")
    mat.set_defaults(func=cmd_materialize)

    sql = sub.add_parser("sql", help="read-only SQL over every table asset plus materializations and asset_deps")
    sql.add_argument("query")
    fmt = sql.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true")
    fmt.add_argument("--json", action="store_true")
    sql.set_defaults(func=cmd_sql)

    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", module="dagster")  # beta/preview notices are for us, not for users
    from aya_assets.models.checkpoint import CheckpointError
    from aya_assets.profile import ProfileError
    from aya_assets.prompts.sources import PromptSourceError

    try:
        return args.func(args)
    except (ProfileError, PromptSourceError, CheckpointError) as exc:
        # Bad input: the message names the file and row, key or tensor; the run's log above has the traceback.
        print(f"aya: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
