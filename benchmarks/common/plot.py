"""PNG plots of benchmark time series (matplotlib, headless)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

Series = tuple[str, Sequence[float], Sequence[float | None]]
"""(label, x values, y values); ``None`` values are gaps."""


def plot_panels(
    path: Path, title: str, panels: Sequence[tuple[str, Sequence[Series]]], xlabel: str = "s"
) -> Path:
    """Write a PNG with one stacked panel per ``(y label, series)`` entry.

    Args:
        path: Output PNG path (parents are created).
        title: Figure title.
        panels: Each panel's y-axis label and its series.
        xlabel: Label of the shared x axis.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(10, 2.6 * len(panels)), sharex=True, squeeze=False
    )
    for ax, (ylabel, series) in zip(axes[:, 0], panels, strict=True):
        for label, xs, ys in series:
            ax.plot(list(xs), [float("nan") if y is None else y for y in ys], label=label, lw=1.2)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel(xlabel)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    logger.info("plot written to %s", path)
    return path
