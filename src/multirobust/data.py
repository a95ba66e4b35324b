"""Datasets as tensors in [0, 1]: scikit-learn's bundled digits (no download) and torchvision's.

Example:
    >>> train, test = digits(seed=0)
    >>> x, y = train[0]
    >>> x.shape, float(x.max()) <= 1.0
    (torch.Size([1, 8, 8]), True)
"""

import torch
from torch.utils.data import TensorDataset


def digits(test_fraction: float = 0.25, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """scikit-learn's 8x8 digits (1797 images, 10 classes) as ``[n, 1, 8, 8]`` floats in [0, 1].

    Args:
        test_fraction: share of the images held out for testing, stratified by class.
        seed: seed of the split.

    Returns:
        ``(train, test)`` TensorDatasets of ``(x, y)``.

    Raises:
        ImportError: if scikit-learn is missing (``pip install scikit-learn``).
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - exercised only without scikit-learn
        raise ImportError("digits() needs scikit-learn: pip install scikit-learn") from e
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    test_idx = []
    for c in range(10):
        idx = (y == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        test_idx.append(idx[: round(len(idx) * test_fraction)])
    test_mask = torch.zeros(len(y), dtype=torch.bool)
    test_mask[torch.cat(test_idx)] = True
    return TensorDataset(x[~test_mask], y[~test_mask]), TensorDataset(x[test_mask], y[test_mask])
