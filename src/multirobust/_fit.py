"""What ``Trainer.fit`` does around its steps: turning data into batches, and progress reports."""

import inspect
import io
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset

from multirobust.history import History

BATCH_SIZE = 128
"""The batch size ``fit`` uses for a ``Dataset`` given without one."""


def is_dataset(data: object) -> bool:
    """Whether ``data`` is a map-style ``Dataset`` of ``(x, y)`` examples (not batches)."""
    return isinstance(data, Dataset) and not isinstance(data, IterableDataset)


def check_dataset(data: Dataset, name: str = "data") -> None:
    """Refuse a dataset whose first example is not an ``(x, y)`` pair of a tensor and a label,
    before any training."""
    if len(data) == 0:  # type: ignore[arg-type]
        raise ValueError(f"{name} is an empty Dataset; pass one with examples")
    item = data[0]
    ok = isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], Tensor)
    label = item[1] if ok else None
    if ok and isinstance(label, Tensor):
        ok = label.dim() == 0 and not label.is_floating_point()
    elif ok:
        ok = isinstance(label, int) and not isinstance(label, bool)
    if not ok:
        raise TypeError(
            f"{name} is a Dataset whose examples must be (x, y) pairs of an input tensor and an "
            f"integer label; its first example is {_describe(item)}"
        )


def epoch_batches(data: Dataset, batch_size: int, seed: int, epoch: int) -> DataLoader:
    """One epoch of shuffled batches of a dataset; the order depends only on ``seed`` and
    ``epoch``, so a resumed run sees the batches an uninterrupted one would."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**63)
    return DataLoader(data, batch_size=batch_size, shuffle=True, generator=g)


def one_shot(loader: Any) -> bool:
    """A generator or a built-in iterator (``iter([...])``, ``zip``, ``map``): spent after one pass.
    Other iterators may reset themselves in ``__iter__`` (prefetchers), so they are trusted."""
    return inspect.isgenerator(loader) or (
        isinstance(loader, Iterator) and type(loader).__module__ == "builtins"
    )


def unpack(item: Any) -> tuple[Tensor, Tensor]:
    """A batch as ``(x, y)``."""
    if not isinstance(item, tuple | list) or len(item) != 2:
        size = f" of length {len(item)}" if isinstance(item, tuple | list) else ""
        raise TypeError(
            f"the loader must yield (x, y) pairs of tensors, got {type(item).__name__}{size}"
        )
    return item[0], item[1]


def length(loader: Iterable[Any]) -> int | None:
    """``len(loader)``, or ``None`` when it has none."""
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None


def _describe(item: object) -> str:
    if isinstance(item, tuple | list):
        inner = ", ".join(_describe(i) for i in item)
        return f"a {type(item).__name__} ({inner})"
    if isinstance(item, Tensor):
        return f"a {str(item.dtype).removeprefix('torch.')} tensor of shape {list(item.shape)}"
    return f"a {type(item).__name__}"


class EpochLines:
    """One plain line per epoch, for logs without a terminal (files, nohup, CI).

    Examples:
        >>> import io
        >>> out = io.StringIO()
        >>> lines = EpochLines(2, out)
        >>> lines.epoch_end(1, History([{"loss": 2.0, "eps": {"linf": 0.1}, "dominant": "linf"}]))
        >>> out.getvalue().split(",")[0]
        'epoch 1 of 2: loss 2.000'
    """

    def __init__(self, epochs: int, stream: io.TextIOBase | None = None) -> None:
        self.epochs, self.stream, self.start = epochs, stream or sys.stderr, time.monotonic()
        self.done = 0

    def epoch_end(self, epoch: int, records: History) -> None:
        """Print the epoch's mean loss, last budgets, most dominant player, elapsed time, ETA."""
        self.done += 1
        losses = [r["loss"] for r in records if r["loss"] == r["loss"]]  # NaN-free
        parts = [f"epoch {epoch} of {self.epochs}: loss {sum(losses) / max(len(losses), 1):.3f}"]
        eps = records[-1].get("eps") if len(records) else None
        if eps:
            parts.append("eps " + " ".join(f"{n} {v:.4g}" for n, v in eps.items()))
        dominant = [r.get("dominant") for r in records if r.get("dominant")]
        if dominant:
            top = max(set(dominant), key=dominant.count)
            parts.append(
                f"dominant {top} ({100 * dominant.count(top) / len(records):.0f}% of steps)"
            )
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.done * (self.epochs - self.done)
        parts.append(f"{_clock(elapsed)} elapsed, ETA {_clock(eta)}")
        print(", ".join(parts), file=self.stream, flush=True)


def _clock(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"
