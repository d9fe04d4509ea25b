"""The runner's plan and what it says about failed checks."""

import dagster as dg
import pytest

from aya_assets.definitions import build_definitions
from aya_assets.cli.runner import check_failures, plan


def evaluation(passed: bool, description=None, **metadata) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(asset_key=dg.AssetKey("prompts"), check_name="language_id", passed=passed,
                                   description=description, metadata=metadata)


@pytest.mark.parametrize("evaluations, said", [
    ([evaluation(True)], []),
    ([evaluation(False, "el: 29% of rows read as another language")],
     ["prompts/language_id: el: 29% of rows read as another language"]),
    # Without a description, the short scalars only: tables and long lists stay in the UI.
    ([evaluation(False, failing=dg.MetadataValue.text("el (29%)"), rows=dg.MetadataValue.int(10),
                 table=dg.MetadataValue.md("| a |\n|---|"), long=dg.MetadataValue.text("x" * 61))],
     ["prompts/language_id: failing: el (29%); rows: 10"]),
    ([evaluation(False)], ["prompts/language_id"]),
])
def test_check_failures_say_what_failed_in_one_line_each(evaluations, said):
    assert check_failures(evaluations) == said


def test_plan_counts_every_run_of_the_tiny_graph_once():
    steps = plan(build_definitions())
    labels = [s.label for s in steps]
    assert labels[0] == "prompts" and steps[0].note == " (23 partitions, one run)"
    assert len(labels) == len(set(labels))  # each step's label is its key for the next run's time estimate
    assert labels[-1] == "stage_quality, win_rates"  # both unpartitioned over eval_generations: one run
