"""Datasets as tensors in [0, 1]: scikit-learn's bundled digits (no download) and torchvision's.

Examples:
    >>> train, test = digits(seed=0)
    >>> x, y = train[0]
    >>> x.shape, float(x.max()) <= 1.0
    (torch.Size([1, 8, 8]), True)
"""

import torch
from torch.utils.data import Dataset, TensorDataset

from multirobust import _checks


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
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, int | float):
        raise TypeError(
            f"test_fraction must be a number in (0, 1), got {type(test_fraction).__name__}"
        )
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


SHAPES = {"mnist": ((1, 28, 28), 10), "cifar10": ((3, 32, 32), 10), "cifar100": ((3, 32, 32), 100)}
"""Image shape and number of classes of each torchvision dataset the recipes use."""


def _dataset_name(name: str) -> str:
    if name not in SHAPES:
        raise ValueError(f"dataset must be one of {', '.join(SHAPES)}; got {name!r}")
    return name


def torchvision_dataset(
    name: str, root: str, *, train: bool, augment: bool = False, download: bool = True
) -> Dataset:
    """MNIST, CIFAR-10 or CIFAR-100 from torchvision, as tensors in [0, 1].

    Args:
        name: ``"mnist"``, ``"cifar10"`` or ``"cifar100"``.
        root: the data folder (torchvision's layout).
        train: the training split, else the test split.
        augment: CIFAR training augmentation (pad-4 random crop, horizontal flip, as the paper).
        download: let torchvision download missing files.

    Raises:
        ImportError: without torchvision (``pip install "multirobust[recipes]"``).
    """
    _dataset_name(name)
    try:
        import torchvision
        from torchvision import transforms
    except ImportError as e:  # pragma: no cover - exercised only without torchvision
        raise ImportError(
            'the torchvision datasets need: pip install "multirobust[recipes]"'
        ) from e
    steps: list[object] = []
    if augment and name != "mnist":
        steps += [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
    transform = transforms.Compose([*steps, transforms.ToTensor()])
    cls = {
        "mnist": torchvision.datasets.MNIST,
        "cifar10": torchvision.datasets.CIFAR10,
        "cifar100": torchvision.datasets.CIFAR100,
    }[name]
    return cls(root, train=train, transform=transform, download=download)


def fake_dataset(name: str, n: int, seed: int = 0) -> TensorDataset:
    """Random images of the dataset's shape and classes (no download): every shape and step of a
    recipe's pipeline, for smoke tests and benchmarks on machines without the data.

    Examples:
        >>> x, y = fake_dataset("cifar10", 4)[0]
        >>> x.shape, 0 <= int(y) < 10
        (torch.Size([3, 32, 32]), True)
    """
    shape, classes = SHAPES[_dataset_name(name)]
    _checks.integer_at_least("n", n, 1)
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(
        torch.rand(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)
    )
