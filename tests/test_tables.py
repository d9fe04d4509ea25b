"""The warehouse's pure helpers: one frame per partition key, and the Markdown preview."""

import polars as pl
import pytest

from aya_assets.artifacts.tables import markdown_table, split_by_partition

ROWS = pl.DataFrame({"language": ["en", "fr", "en"], "text": ["a", "b", "c"]})


@pytest.mark.parametrize("frame, keys, expected", [
    (ROWS, ["en", "fr"], {"en": ["a", "c"], "fr": ["b"]}),
    (ROWS, ["fr", "en", "de"], {"fr": ["b"], "en": ["a", "c"], "de": []}),  # a key with no rows: an empty frame
    (ROWS.head(0), ["en", "fr"], {"en": [], "fr": []}),
    (ROWS.drop("language"), ["en"], {"en": ["a", "b", "c"]}),  # one key and no column: the frame is that partition
    (ROWS.drop("language").head(0), ["en"], {"en": []}),
])
def test_split_by_partition(frame, keys, expected):
    parts = split_by_partition(frame, "language", keys)
    assert list(parts) == keys
    assert {key: part["text"].to_list() for key, part in parts.items()} == expected
    assert all(part.columns == frame.columns for part in parts.values())


@pytest.mark.parametrize("frame, keys, message", [
    (ROWS, ["en"], r"rows for language=\['fr'\], outside the partitions being written \['en'\]"),
    (ROWS.drop("language"), ["en", "fr"], r"spans partitions \['en', 'fr'\] but has no 'language' column"),
    (ROWS.head(0).drop("language"), ["en", "fr"], r"has no 'language' column"),
])
def test_split_by_partition_refuses(frame, keys, message):
    with pytest.raises(ValueError, match=message):
        split_by_partition(frame, "language", keys)


@pytest.mark.parametrize("frame, rows, table", [
    # GitHub tables: numbers right-aligned; a pipe escaped and a newline flattened so that a cell stays one cell.
    (pl.DataFrame({"lang": ["en", "fr"], "n": [1, 22], "text": ["a|b", "x\ny"]}), 5,
     "| lang   |   n | text   |\n"
     "|--------|-----|--------|\n"
     "| en     |   1 | a\\|b   |\n"
     "| fr     |  22 | x y    |"),
    (pl.DataFrame({"a": [1, 2, 3]}), 2, "|   a |\n|-----|\n|   1 |\n|   2 |"),  # the first `rows` rows only
    (pl.DataFrame({"a": []}, schema={"a": pl.Int64}), 5, "| a   |\n|-----|"),
])
def test_markdown_table(frame, rows, table):
    assert markdown_table(frame, rows=rows) == table


def test_markdown_table_cuts_long_cells_to_60_characters():
    [_, _, row] = markdown_table(pl.DataFrame({"t": ["z" * 70]})).splitlines()
    assert row == "| " + "z" * 59 + "… |"
