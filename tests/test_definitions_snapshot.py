"""The tiny profile's asset graph as a committed snapshot (tests/snapshots/definitions.json): keys, partitions, deps
with their partition mappings, group, kinds, pool, code version, IO manager, checks and jobs. A change to any of them
shows up here as a diff to review. After an intended change, rewrite the snapshot and commit it:

    AYA_UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest tests/test_definitions_snapshot.py
"""

import difflib
import json
import os
from pathlib import Path

import dagster as dg
import pytest

from aya_assets.definitions import build_definitions

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"
UPDATE = "AYA_UPDATE_SNAPSHOT"


def partitions(pdef: dg.PartitionsDefinition | None) -> dict | None:
    """The partitions definition's class and its keys, where the keys do not depend on an instance or the clock."""
    if pdef is None:
        return None
    out = {"type": type(pdef).__name__}
    if isinstance(pdef, dg.StaticPartitionsDefinition):
        out["keys"] = pdef.get_partition_keys()
    elif isinstance(pdef, dg.MultiPartitionsDefinition):
        out["dimensions"] = {d.name: partitions(d.partitions_def) for d in pdef.partitions_defs}
    return out


def graph_snapshot(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys()):
        node = graph.get(key)
        pools = sorted(node.pools or ())
        assets[key.to_user_string()] = {
            "partitions": partitions(node.partitions_def),
            "deps": {parent.to_user_string(): type(graph.get_partition_mapping(key, parent)).__name__
                     for parent in sorted(node.parent_keys)},
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "pool": pools[0] if len(pools) == 1 else (pools or None),
            "code_version": node.code_version,
            "io_manager_key": node.io_manager_key,
            "checks": sorted(({"name": check.name, "blocking": graph.get_check_spec(check).blocking}
                              for check in node.check_keys), key=lambda c: c["name"]),
        }
    return {"assets": assets, "jobs": sorted(job.name for job in defs.jobs or [])}


def render(snapshot: dict) -> str:
    """Sorted JSON with one line per asset field, so that a diff names the asset and the field that changed."""
    lines = ["{", '  "assets": {']
    for i, (name, fields) in enumerate(snapshot["assets"].items()):
        lines.append(f"    {json.dumps(name)}: {{")
        items = sorted(fields.items())
        lines += [f"      {json.dumps(k)}: {json.dumps(v, sort_keys=True, ensure_ascii=False)}" + ("," if j < len(items) - 1 else "")
                  for j, (k, v) in enumerate(items)]
        lines.append("    }" + ("," if i < len(snapshot["assets"]) - 1 else ""))
    lines += ["  },", f'  "jobs": {json.dumps(snapshot["jobs"])}', "}", ""]
    return "\n".join(lines)


def test_render_is_the_json_it_stands_for():
    snapshot = {"assets": {"a": {"kinds": ["x"], "deps": {}}, "b": {"pool": None}}, "jobs": ["j"]}
    assert json.loads(render(snapshot)) == snapshot


def test_tiny_definitions_match_the_snapshot():
    current = render(graph_snapshot(build_definitions("tiny")))
    if os.environ.get(UPDATE) == "1":
        SNAPSHOT.write_text(current, encoding="utf-8")
    committed = SNAPSHOT.read_text(encoding="utf-8") if SNAPSHOT.exists() else ""
    diff = "".join(difflib.unified_diff(committed.splitlines(keepends=True), current.splitlines(keepends=True),
                                        "tests/snapshots/definitions.json (committed)", "build_definitions('tiny') (now)", n=1))
    if diff:
        pytest.fail(f"the asset graph changed; if that is intended, rerun with {UPDATE}=1 and commit the file:\n{diff}",
                    pytrace=False)
    assert json.loads(committed) == json.loads(current)
