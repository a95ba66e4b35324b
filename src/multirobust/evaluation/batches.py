"""The data of an evaluation as checked batches: a DataLoader or a pair ``(x, y)``, cut to ``n``
examples and ``batch_size``, with clear errors for anything else; and the progress bar.

Examples:
    >>> import torch
    >>> chunks, total = _batches((torch.rand(5, 1, 2, 2), torch.zeros(5).long()), None, 2)
    >>> total, [int(x.shape[0]) for x, _ in chunks]
    (5, [2, 2, 1])
"""

import itertools
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from multirobust import _checks
from multirobust._fit import check_dataset, is_dataset


class _NoBar:
    def update(self, _: int) -> None: ...

    def set_description(self, _: str) -> None: ...

    def close(self) -> None: ...


def _progress_bar(progress: bool | None, total: int | None) -> Any:
    if progress is None:
        progress = sys.stderr.isatty()
        if progress:
            try:
                import tqdm
            except ImportError:  # pragma: no cover - tqdm is an optional extra
                progress = False
    if not progress:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError as e:  # pragma: no cover - tqdm is an optional extra
        raise ImportError('progress=True needs tqdm: pip install "multirobust[recipes]"') from e
    return tqdm(total=total, unit="ex", leave=False)


def _loader_size(loader: DataLoader) -> int | None:
    try:
        size = len(loader.sampler)  # type: ignore[arg-type]
    except TypeError:
        return None
    if loader.batch_size is not None and loader.drop_last:
        size = (size // loader.batch_size) * loader.batch_size
    return size


def _loader_batches(loader: DataLoader) -> Iterator[tuple[Tensor, Tensor]]:
    for item in loader:
        pair = isinstance(item, Sequence) and len(item) == 2
        if not pair or not all(isinstance(t, Tensor) for t in item):
            what = f" of length {len(item)}" if isinstance(item, Sequence) else ""
            if pair:
                what = " of " + ", ".join(type(t).__name__ for t in item)
            raise TypeError(
                "each batch of the DataLoader must be a pair (x, y) of tensors, got "
                f"{type(item).__name__}{what}"
            )
        x, y = item
        if y.dim() == 0:
            raise ValueError(
                "each batch of the DataLoader must hold labels y of shape [b], got a single "
                "label (shape []); a DataLoader with batch_size=None yields single examples: "
                "give it a batch_size"
            )
        yield x, y


def _array_like(t: object) -> bool:
    """Whether ``torch.as_tensor`` is the fix for ``t``: an array (``__array__``) or nested lists
    of numbers; not a tensor, and not a batch ``(x, y)`` of a list of batches."""
    if isinstance(t, Tensor):
        return False
    if hasattr(t, "__array__"):
        return True
    return isinstance(t, list) and bool(t) and not isinstance(t[0], Tensor | tuple)


def _batches(
    data: object, n: int | None, batch_size: int
) -> tuple[Iterator[tuple[Tensor, Tensor]], int | None]:
    """Batches of at most ``batch_size`` of the first ``n`` examples, and their number if known."""
    if isinstance(data, DataLoader):
        total = _loader_size(data)
        source: Iterator[tuple[Tensor, Tensor]] = _loader_batches(data)
    elif (
        isinstance(data, tuple | list)
        and len(data) == 2
        and all(isinstance(t, Tensor) for t in data)
    ):
        x, y = data
        if x.dim() == 0 or y.dim() == 0 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"data (x, y) must hold as many inputs as labels, got x {list(x.shape)} and "
                f"y {list(y.shape)}"
            )
        total = int(x.shape[0])
        source = iter([(x, y)])
    elif is_dataset(data):
        check_dataset(data, "data")  # type: ignore[arg-type]
        total = len(data)  # type: ignore[arg-type]
        source = _loader_batches(DataLoader(data, batch_size=batch_size))  # type: ignore[arg-type]
    elif isinstance(data, tuple | list) and len(data) == 2 and any(map(_array_like, data)):
        name, t = ("x", data[0]) if _array_like(data[0]) else ("y", data[1])
        raise TypeError(
            f"data must be a pair (x, y) of tensors, but {name} is of type {type(t).__name__}; "
            f"convert with torch.as_tensor({name})"
        )
    else:
        raise TypeError(
            "data must be a torch DataLoader of (x, y) batches, a Dataset of (x, y) examples or "
            "a pair (x, y) of tensors, got "
            f"{type(data).__name__}"
        )
    if n is not None:
        _checks.integer_at_least("n", n, 1)
        if total is not None and n > total:
            raise ValueError(f"n={n} is larger than the data, which has {total} examples")
    if total == 0:
        raise ValueError(
            "data is empty (0 examples); pass a DataLoader or a pair (x, y) holding at least "
            "one example"
        )
    limit = n if n is not None else total

    def chunks() -> Iterator[tuple[Tensor, Tensor]]:
        seen = 0
        for x, y in source:
            for i in range(0, x.shape[0], batch_size):
                if limit is not None and seen >= limit:
                    return
                take = batch_size if limit is None else min(batch_size, limit - seen)
                xb, yb = x[i : i + take], y[i : i + take]
                seen += xb.shape[0]
                yield xb, yb
        if n is not None and seen < n:
            raise ValueError(f"n={n} is larger than the data, which ran out after {seen} examples")

    return chunks(), limit


def _model_device(model: nn.Module) -> torch.device:
    for t in itertools.chain(model.parameters(), model.buffers()):
        return t.device
    return torch.device("cpu")
