"""Building blocks of the demo's report: PNG plots (curves, sample grid) and markdown (tables, sections)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from editrl.io import atomic_write_bytes

#: A named curve: (x values, y values).
Series = tuple[Sequence[float], Sequence[float]]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def plot_curves(path: str | Path, panels: Mapping[str, Mapping[str, Series]], *, xlabel: str = "step") -> Path:
    """One panel per title, each with its named curves (markers where a curve has few points)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.5), squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels.items()):
        for name, (xs, ys) in curves.items():
            ax.plot(list(xs), list(ys), label=name, marker="o" if len(xs) <= 20 else None, linewidth=1.2)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
        if len(curves) > 1:
            ax.legend(fontsize=8)
    return _save(fig, Path(path))


def plot_sample_grid(path: str | Path, rows: Sequence[tuple[str, Sequence[Image.Image]]], column_titles: Sequence[str]) -> Path:
    """A grid with one row per (caption, images) and one column per title (nearest-neighbour upscaled)."""
    plt = _pyplot()
    n_rows, n_cols = len(rows), len(column_titles)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.7 * n_cols, 1.75 * n_rows + 0.3), squeeze=False)
    for r, (caption, images) in enumerate(rows):
        if len(images) != n_cols:
            raise ValueError(f"row {r} has {len(images)} images for {n_cols} columns")
        for c, image in enumerate(images):
            ax = axes[r][c]
            ax.imshow(np.asarray(image.convert("RGB")), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(column_titles[c], fontsize=9)
        axes[r][0].set_ylabel(caption, fontsize=6, rotation=0, ha="right", va="center", wrap=True)
    return _save(fig, Path(path))


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-markdown table; floats with 3 decimals (scientific notation below 1e-3)."""

    def cell(value: object) -> str:
        if not isinstance(value, float):
            return str(value)
        return f"{value:.2e}" if 0.0 < abs(value) < 1e-3 else f"{value:.3f}"

    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_markdown(path: str | Path, title: str, sections: Sequence[tuple[str, str]]) -> Path:
    """``# title`` then one ``## heading`` + body per section."""
    text = f"# {title}\n\n" + "\n\n".join(f"## {heading}\n\n{body.strip()}" for heading, body in sections) + "\n"
    path = Path(path)
    atomic_write_bytes(path, text.encode())
    return path
