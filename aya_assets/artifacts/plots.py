"""PNG charts for asset metadata: saved to a file and embedded in the Dagster UI as Markdown.

Dagster 1.13's asset page renders a Markdown entry inline only under 1,000 characters (ui-core MetadataEntry.tsx), so
an embedded PNG always sits behind [Show Markdown]; it has no metadata type that shows an image, and the webserver
serves no local files for a short Markdown image link. So each chart is the embedded image plus its PNG's path.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import dagster as dg
import matplotlib

matplotlib.use("Agg")  # no display on servers or CI
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from aya_assets.artifacts.atomic import write_bytes  # noqa: E402


def to_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def save_png(png: bytes, path: Path) -> Path:
    return write_bytes(path, png)


def markdown_image(png: bytes, title: str) -> str:
    return f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"


def chart_metadata(name: str, png: bytes, path: Path, title: str | None = None) -> dict[str, dg.MetadataValue]:
    """`name`: the chart embedded as Markdown (in the UI's [Show Markdown] dialog); `name`_path: the PNG on disk."""
    return {name: dg.MetadataValue.md(markdown_image(png, title or name)), f"{name}_path": dg.MetadataValue.path(str(path))}


def line_chart(series: dict[str, list[float]], title: str, xlabel: str = "logged step", ylabel: str = "loss") -> bytes:
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, values in series.items():
        ax.plot(range(1, len(values) + 1), values, label=name)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if len(series) > 1:
        ax.legend(fontsize=7)
    return to_png(fig)


def heatmap(frame: pl.DataFrame, row: str, column: str, value: str, title: str) -> bytes:
    """A row × column grid of `value` (e.g. language × teacher win share), annotated."""
    rows = sorted(frame[row].unique().to_list())
    cols = sorted(frame[column].unique().to_list())
    lookup = {(r, c): v for r, c, v in frame.select(row, column, value).iter_rows()}
    grid = [[lookup.get((r, c), 0.0) or 0.0 for c in cols] for r in rows]
    fig, ax = plt.subplots(figsize=(1.4 + 1.1 * len(cols), 0.8 + 0.3 * len(rows)))
    image = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for i, values in enumerate(grid):
        for j, v in enumerate(values):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.6 else "black")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.04)
    return to_png(fig)
