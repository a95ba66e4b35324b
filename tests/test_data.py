"""Data sets (multirobust.data): bad names and sizes refused by name before anything is read."""

import math

from bad_input import Row, refuse, table
from multirobust import data as mrdata

BAD_INPUT = [
    Row(
        "fake_dataset-imagenet",
        "value",
        lambda: mrdata.fake_dataset("imagenet", 4),
        ValueError,
        r"dataset must be one of '?mnist'?, '?cifar10'?",
    ),
    Row(
        "torchvision_dataset-svhn",
        "value",
        lambda: mrdata.torchvision_dataset("svhn", "data", train=True),
        ValueError,
        r"dataset must be one of '?mnist'?, '?cifar10'?",
    ),
    *(
        Row(
            f"fake_dataset-n-{n}",
            "value" if error is ValueError else "type",
            lambda n=n: mrdata.fake_dataset("mnist", n),
            error,
            "n must be an int >= 1",
            untyped=True,
        )
        for n, error in [(0, ValueError), (2.5, TypeError)]
    ),
    *(
        Row(
            f"digits-test_fraction-{fraction}",
            "value" if error is ValueError else "type",
            lambda f=fraction: mrdata.digits(test_fraction=f),
            error,
            r"test_fraction must be (in|a number in) \(0, 1\)",
            untyped=True,
        )
        for fraction, error in [
            (0, ValueError),
            (1.5, ValueError),
            (math.nan, ValueError),
            ("0.2", TypeError),
        ]
    ),
]


@table(BAD_INPUT)
def test_bad_input(row: Row, tmp_path) -> None:
    refuse(row, tmp_path)
