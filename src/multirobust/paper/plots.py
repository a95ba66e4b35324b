"""A PNG of a training run: each player's budget, weight and loss over the steps."""

import os
from collections.abc import Iterable

import multirobust as mr


def plot_history(
    history: mr.History, path: str | os.PathLike[str], players: Iterable[mr.Player] = ()
) -> None:
    """Write a PNG of a run: each player's budget, weight ``gamma`` and loss over the steps.

    Budgets are shown relative to each player's base budget, taken from ``players`` (by name),
    or in absolute units for players not given. A panel whose field no step recorded (the
    players' losses in MSD without ``track_domination``) says "not recorded".

    Raises:
        ImportError: without matplotlib (``pip install "multirobust[recipes]"``).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as e:
        raise ImportError('plots need matplotlib: pip install "multirobust[recipes]"') from e
    from multirobust.diagnostics import trajectory

    base = {p.name: float(p.eps) for p in players}
    fig = Figure(figsize=(11, 3))
    FigureCanvasAgg(fig)
    for ax, key, title in zip(
        fig.subplots(1, 3),
        ("eps", "gamma", "player_loss"),
        ("budget (/ base budget)", "gamma", "player loss"),
        strict=True,
    ):
        series = trajectory(history, key)
        for name, values in series.items():
            if key == "eps" and name in base:
                # Rounded: float32 budgets over float base budgets are off by ~1e-8, which
                # matplotlib would draw as an axis offset.
                values = [round(v / base[name], 6) for v in values]
            ax.plot(values, label=name, linewidth=0.8)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if series:
            ax.legend(fontsize=7)
        else:  # e.g. players' losses in MSD without track_domination
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=110)
