"""Merge weights and mergekit recipes as pure functions (test_merge.py runs the merges and the recipe's refusals)."""

import pytest

from aya_assets.merge.merging import merge_recipe, merge_weights


@pytest.mark.parametrize("configured, sizes, weights", [
    ({"a": 0.3, "b": 0.7}, {"a": 10, "b": 10}, {"a": 0.3, "b": 0.7}),  # configured wins over the data sizes
    ({"a": 2.0}, {}, {"a": 2.0}),  # as given: mergekit normalises
    ({"a": 1.0}, {"a": 0, "b": 0}, {"a": 1.0}),  # sizes are not consulted at all
    (None, {"a": 1, "b": 3}, {"a": 0.25, "b": 0.75}),  # 1/4, 3/4
    (None, {"a": 0, "b": 2, "c": 6}, {"a": 0.0, "b": 0.25, "c": 0.75}),  # a skipped cluster weighs nothing
    (None, {"a": 5}, {"a": 1.0}),
])
def test_merge_weights(configured, sizes, weights):
    assert merge_weights(configured, sizes) == pytest.approx(weights)


def test_merge_weights_copy_the_configured_mapping():
    configured = {"a": 1.0}
    weights = merge_weights(configured, {})
    weights["a"] = 0.0
    assert configured == {"a": 1.0}


@pytest.mark.parametrize("sizes, skipped", [({}, set()), ({"a": 0, "b": 0}, set()), ({"a": 0, "b": 0}, {"a"})])
def test_merge_weights_without_training_rows_is_an_error(sizes, skipped):
    with pytest.raises(ValueError, match="cannot weight a merge by data size: no training rows recorded in"):
        merge_weights(None, sizes, skipped)


def test_a_merge_of_clusters_that_all_were_skipped_weighs_them_equally():
    # Each is the round's input passed on unchanged (no pairs anywhere): any weights give that input back.
    assert merge_weights(None, {"a": 0, "b": 0}, {"a", "b"}) == {"a": 0.5, "b": 0.5}


HEAD = {"dtype": "float32"}


@pytest.mark.parametrize("method, kwargs, recipe", [
    ("linear", {}, {"merge_method": "linear", "parameters": {"normalize": True},
                    "models": [{"model": "/m/a", "parameters": {"weight": 1.0}}, {"model": "/m/b", "parameters": {"weight": 3.0}}]}),
    ("slerp", {"slerp_t": 0.25}, {"merge_method": "slerp", "base_model": "/m/a", "parameters": {"t": 0.25},
                                  "models": [{"model": "/m/a"}, {"model": "/m/b"}]}),
    ("ties", {"base_model": "/m/base", "density": 0.4}, {
        "merge_method": "ties", "base_model": "/m/base", "parameters": {"normalize": True, "rescale": False, "lambda": 1.0},
        "models": [{"model": "/m/a", "parameters": {"weight": 1.0, "density": 0.4}},
                   {"model": "/m/b", "parameters": {"weight": 3.0, "density": 0.4}}]}),
    ("dare_ties", {"base_model": "/m/base"}, {  # DARE rescales what survives the drop-out; density defaults to 0.5
        "merge_method": "dare_ties", "base_model": "/m/base", "parameters": {"normalize": True, "rescale": True, "lambda": 1.0},
        "models": [{"model": "/m/a", "parameters": {"weight": 1.0, "density": 0.5}},
                   {"model": "/m/b", "parameters": {"weight": 3.0, "density": 0.5}}]}),
])
def test_merge_recipe_shapes(method, kwargs, recipe):
    assert merge_recipe(["/m/a", "/m/b"], [1, 3], method, **kwargs) == HEAD | recipe


def test_merge_recipe_paths_are_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = merge_recipe(["a", "b"], [1, 1], dtype="bfloat16")
    assert [m["model"] for m in recipe["models"]] == [str((tmp_path / n).resolve()) for n in "ab"]
    assert recipe["dtype"] == "bfloat16"
