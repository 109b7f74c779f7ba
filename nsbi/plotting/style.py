"""The one style and file writer of nsbi's result plots (fits, intervals, limits)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["finish", "use_style"]


def use_style() -> None:
    """mplhep's ATLAS style (cosmetic: the plot is drawn without it if mplhep cannot load it)."""
    try:
        import mplhep

        plt.style.use(mplhep.style.ATLAS)
    except (ImportError, OSError, ValueError):  # pragma: no cover - cosmetic
        return


def finish(fig, path):
    """Write ``fig`` to ``path`` (its directory is created) and close it; without ``path`` return
    it open."""
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, bbox_inches="tight")
        plt.close(fig)
    return fig
