"""``plot_curves``: robustness curves as a PNG (paper Fig. 6); matplotlib is imported only here,
when a plot is written, without touching pyplot's global backend.

Examples:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> c = Curve("l2", "pgd", (0.5, 1.0), torch.tensor([0, 1]), torch.tensor([True, True]),
    ...           torch.tensor([[True, False], [False, False]]))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     plot_curves({"MSD": c}, Path(folder) / "l2.png").name
    'l2.png'
"""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from multirobust.evaluation.curves import Curve


def _matplotlib() -> tuple[Any, Any]:
    """matplotlib's Agg canvas and Figure, or an ImportError that says how to install it."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - matplotlib is an optional extra
        raise ImportError(
            'plotting curves needs matplotlib: pip install matplotlib (or "multirobust[recipes]")'
        ) from e
    return FigureCanvasAgg, Figure


def plot_curves(
    curves: Curve | Sequence[Curve] | Mapping[str, Curve | Sequence[Curve]],
    path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    """Plot robustness curves as a PNG: one panel per threat, one line per model (paper Fig. 6).

    Args:
        curves: a curve, curves, or label -> curve(s) to compare models (say "MAX", "MSD").
        path: where to write the PNG.
        title: the figure's title.

    Returns:
        The path written.

    Raises:
        ImportError: without matplotlib (``pip install "multirobust[recipes]"``).
    """
    FigureCanvasAgg, Figure = _matplotlib()
    if isinstance(curves, Curve):
        curves = [curves]
    if not isinstance(curves, Mapping):
        curves = {"": curves}
    groups = {k: [v] if isinstance(v, Curve) else list(v) for k, v in curves.items()}
    threats = list(dict.fromkeys(c.threat for cs in groups.values() for c in cs))
    if not threats:
        raise ValueError("no curves to plot")
    fig = Figure(figsize=(4 * len(threats), 3.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(threats), squeeze=False)[0]
    for ax, name in zip(axes, threats, strict=True):
        for label, cs in groups.items():
            for c in cs:
                if c.threat != name:
                    continue
                xs = [0.0, *c.budgets]
                ys = [100 * c.clean_accuracy, *(100 * a for a in c.accuracy)]
                ax.plot(xs, ys, marker="o", label=label or c.suite)
        ax.set_title(name)
        ax.set_xlabel("eps")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png", dpi=120)
    return path


__all__ = ["plot_curves"]
