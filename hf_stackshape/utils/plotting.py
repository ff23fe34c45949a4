"""Figures (layer 0): every plot the package draws is written through :func:`save_figure`, atomically."""

from __future__ import annotations

import io
from pathlib import Path

from .io import atomic_write_bytes

__all__ = ["save_figure"]


def save_figure(fig, path, title: str = "") -> Path:
    """Title, lay out and close a matplotlib figure, and write it atomically as PNG; return the path."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")  # legends outside the axes included
    plt.close(fig)
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path
