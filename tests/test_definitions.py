import dagster as dg

from aya_assets.definitions import build_definitions, defs
from aya_assets.languages import LANGUAGE_CODES


def test_definitions_load_and_validate():
    loaded = defs()  # what `dagster dev -m aya_assets.definitions` builds, lazily
    dg.Definitions.validate_loadable(loaded)
    graph = loaded.resolve_asset_graph()
    assert dg.AssetKey("prompts") in graph.get_all_asset_keys()


def test_prompts_partitioned_by_all_23_languages():
    pdef = build_definitions().resolve_asset_graph().get(dg.AssetKey("prompts")).partitions_def
    assert pdef.get_partition_keys() == LANGUAGE_CODES
    assert len(LANGUAGE_CODES) == 23
