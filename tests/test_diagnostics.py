"""Diagnostics (multirobust.diagnostics): domination streaks and trajectories; bad input refused
by name."""

import pytest

import multirobust as mr
from bad_input import Row, refuse, table
from multirobust import diagnostics


def test_streaks_on_the_paper_example():
    s = mr.diagnostics.streaks(["l1", "l1", "l2", "linf", "linf"])
    assert s.longest == {"l1": 2, "l2": 1, "linf": 2}
    assert s.mean == pytest.approx(5 / 3)
    assert s.count == 3
    assert s.dominated == {"l1": 2, "l2": 1, "linf": 2}


def test_streaks_skip_steps_without_gradients():
    s = mr.diagnostics.streaks(["a", None, "a", "a"])
    assert s.longest == {"a": 2} and s.count == 2
    assert mr.diagnostics.streaks([]).mean == 0.0


# -- bad input ---------------------------------------------------------------------------------


RECORDS = [{"loss": 1.0, "eps": {"linf": 0.1}}]

BAD_INPUT = [
    Row(
        "trajectory-of-a-scalar-key",
        "value",
        lambda: diagnostics.trajectory(RECORDS, "loss"),
        ValueError,
        "key 'loss' is not a per-player field",
    ),
    Row(
        "trajectory-unknown-key",
        "value",
        lambda: diagnostics.trajectory(RECORDS, "epss"),
        ValueError,
        "key 'epss' is in no record",
    ),
    Row(
        "streaks-of-one-string",  # it counted the letters as players
        "type",
        lambda: diagnostics.streaks("linf"),
        TypeError,
        r"got the string 'linf'; pass e\.g\.",
        untyped=True,
    ),
]


@table(BAD_INPUT)
def test_bad_input(row: Row, tmp_path) -> None:
    refuse(row, tmp_path)
