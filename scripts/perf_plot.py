"""Figures of the performance scripts (matplotlib, from the optional `bench` dependencies)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent.parent / "docs"


def pyplot() -> Any:
    """matplotlib.pyplot without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def ecdf(ax: Any, series: Mapping[str, Sequence[float]], xlabel: str, title: str) -> None:
    """One cumulative distribution per series (values in seconds, shown in ms on a log axis)."""
    for label, values in series.items():
        if not values:
            continue
        ordered = sorted(v * 1000 for v in values)
        n = len(ordered)
        ax.step(ordered, [(i + 1) / n for i in range(n)], where="post", label=f"{label} (n={n})")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction at or below")
    ax.axhline(0.95, color="grey", linewidth=0.5, linestyle=":")
    ax.grid(True, which="both", linewidth=0.3)
    ax.set_title(title)
    ax.legend(fontsize="small")


def save(fig: Any, name: str) -> Path:
    DOCS.mkdir(exist_ok=True)
    path = DOCS / name
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
