"""Learning-rate schedules (multirobust.schedules): the paper's piecewise-linear knots; bad knots
refused by name."""

import math

import pytest
import torch

import multirobust as mr
from bad_input import Row, refuse, table


def test_piecewise_linear_schedule_matches_the_paper_knots():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=123.0)
    sched = mr.piecewise_linear(opt, [0, 20, 40, 50], [0, 0.1, 0.005, 0], steps_per_epoch=10)
    lrs = []
    for _ in range(500):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[199] == pytest.approx(0.1) and lrs[399] == pytest.approx(0.005)
    assert lrs[-1] == pytest.approx(0.0) and lrs[99] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="increase strictly"):
        mr.piecewise_linear(opt, [0, 0], [0, 1], steps_per_epoch=1)


def _schedule(epochs: list, values: list, steps: int) -> object:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    return mr.piecewise_linear(opt, epochs, values, steps_per_epoch=steps)


BAD_INPUT = [
    Row(
        f"knots-{i}",
        "value",
        lambda e=epochs, v=values, s=steps: _schedule(e, v, s),
        ValueError,
        match,
    )
    for i, (epochs, values, steps, match) in enumerate(
        [
            ([0, 1], [1.0], 1, "epochs and values must be lists of the same length >= 2"),
            ([0, 1], [1.0, -1.0], 1, r"values must be finite and >= 0"),
            ([0, 1], [1.0, math.nan], 1, r"values must be finite and >= 0"),
            ([0, 1], [1.0, 0.0], 0, "steps_per_epoch must be an int >= 1"),
        ]
    )
]


@table(BAD_INPUT)
def test_bad_input(row: Row, tmp_path) -> None:
    refuse(row, tmp_path)
