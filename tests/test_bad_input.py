"""Bad input, one test per row: the exception type and a message that names the argument.

The test run type-checks the package (jaxtyping + beartype). Where an annotation rejects a value
before our own check can, the test says so and checks both: the type checker's error in the
test run, and our own message by calling the check directly (what users, who run without the
type checker, see).
"""

import math
import re

import pytest
import torch
from torch import nn

import multirobust as mr
from multirobust import _checks
from multirobust.attacks import PGD

TYPECHECKED = hasattr(mr.pgd, "__wrapped__")  # the jaxtyping import hook wraps every function
PLAYERS = {"linf": mr.linf, "l2": mr.l2, "l1": mr.l1}


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def batch(b: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(b, 1, 4, 4), torch.tensor([0, 1, 2, 0])[:b]


ATTACK = mr.pgd(mr.linf(eps=0.1, alpha=0.05, steps=2))


# ---------------------------------------------------------------------------------------------
# Players
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("field", ["eps", "alpha"])
@pytest.mark.parametrize("name", list(PLAYERS))
def test_player_budget_must_be_positive_and_finite(name: str, field: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"{name}\.{field} must be a finite number > 0"):
        PLAYERS[name](**{field: value})


@pytest.mark.parametrize("name", list(PLAYERS))
def test_player_budget_must_be_a_number(name: str) -> None:
    with pytest.raises(TypeError, match="eps"):
        PLAYERS[name](eps="0.1")
    # Our own message (the annotation `eps: float` catches it first in the test run):
    with pytest.raises(TypeError, match="eps must be a real number"):
        _checks.positive_finite("eps", "0.1")


@pytest.mark.parametrize("name", list(PLAYERS))
def test_player_steps_must_be_at_least_one(name: str) -> None:
    with pytest.raises(ValueError, match=rf"{name}\.steps must be an int >= 1"):
        PLAYERS[name](steps=0)


@pytest.mark.parametrize("name", list(PLAYERS))
def test_player_restarts_must_not_be_negative(name: str) -> None:
    with pytest.raises(ValueError, match=rf"{name}\.restarts must be an int >= 0"):
        PLAYERS[name](restarts=-1)


def test_l1_k_min_must_not_exceed_k_max() -> None:
    with pytest.raises(ValueError, match=r"l1\.k_min must be <= k_max"):
        mr.l1(k_min=6, k_max=5)


@pytest.mark.parametrize("field", ["k_min", "k_max"])
def test_l1_k_must_be_at_least_one(field: str) -> None:
    with pytest.raises(ValueError, match=rf"l1\.{field} must be an int >= 1"):
        mr.l1(**{field: 0})


def test_l1_gap_must_leave_a_band_free_both_ways() -> None:
    with pytest.raises(ValueError, match=r"^l1\.gap must be below 0\.5, got 0\.5: the blocked"):
        mr.l1(gap=0.5)
    with pytest.raises(ValueError, match=r"alpha / k_min = 3 / 5 = 0\.6 \(gap is None\)"):
        mr.l1(alpha=3.0, k_min=5)
    with pytest.raises(ValueError, match=r"l1\.gap must be a number >= 0"):
        mr.l1(gap=-0.1)


def test_l1_projection_must_be_known() -> None:
    with pytest.raises(ValueError, match=r"l1\.projection must be one of 'ball', 'ball-box'"):
        mr.l1(projection="box")


def test_l1_k_max_larger_than_the_input_is_rejected_when_attacking() -> None:
    x, y = batch()  # 16 coordinates per example, l1's default k_max is 20
    with pytest.raises(ValueError, match=r"l1\.k_max=20 is larger than the 16 coordinates"):
        mr.pgd(mr.l1(steps=1))(model(), x, y)


# ---------------------------------------------------------------------------------------------
# The attack's settings
# ---------------------------------------------------------------------------------------------


def test_pgd_steps_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        mr.pgd(mr.linf, steps=0)


def test_pgd_restarts_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="restarts must be an int >= 0"):
        mr.pgd(mr.linf, restarts=-1)


def test_pgd_keep_must_be_known() -> None:
    with pytest.raises(ValueError, match="keep must be one of 'max-loss', 'first-success'"):
        mr.pgd(mr.linf, keep="best")


def test_pgd_needs_a_player() -> None:
    if TYPECHECKED:  # the annotation `player: Player` answers before our own check
        with pytest.raises(TypeError, match="parameter 'player'"):
            mr.pgd("linf")
    else:
        with pytest.raises(TypeError, match="player must implement the Player protocol"):
            mr.pgd("linf")
    # Our own check, reached without the type checker's wrapper around PGD.__init__:
    attack = object.__new__(PGD)
    for field, value in (("player", "linf"), ("steps", None), ("restarts", None)):
        object.__setattr__(attack, field, value)
    object.__setattr__(attack, "keep", "max-loss")
    with pytest.raises(TypeError, match=r"player must implement the Player protocol.*got str"):
        attack.__post_init__()


def test_seed_and_generator_are_exclusive() -> None:
    x, y = batch()
    with pytest.raises(ValueError, match="either seed or generator"):
        ATTACK(model(), x, y, seed=0, generator=torch.Generator())


# ---------------------------------------------------------------------------------------------
# Budgets passed when attacking
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0.0, -0.1, math.nan, math.inf])
@pytest.mark.parametrize("field", ["eps", "alpha"])
def test_call_time_budget_must_be_positive_and_finite(field: str, value: float) -> None:
    x, y = batch()
    with pytest.raises(ValueError, match=rf"{field} must be a finite number > 0"):
        ATTACK(model(), x, y, **{field: value})
    per_example = torch.tensor([0.1, value, 0.1, 0.1])
    with pytest.raises(ValueError, match=rf"{field} must be finite and > 0 for every example"):
        ATTACK(model(), x, y, **{field: per_example})


@pytest.mark.parametrize("shape", [(3,), (5,), (4, 1)])
@pytest.mark.parametrize("field", ["eps", "alpha"])
def test_call_time_budget_tensor_of_wrong_shape(field: str, shape: tuple[int, ...]) -> None:
    x, y = batch()
    bad = torch.full(shape, 0.1)
    if TYPECHECKED:  # `Float[Tensor, " b"]` with b bound by x answers before our own check
        with pytest.raises(TypeError, match=f"parameter '{field}'"):
            ATTACK(model(), x, y, **{field: bad})
    else:
        with pytest.raises(ValueError, match=rf"{field} must be a number, a 0-d tensor"):
            ATTACK(model(), x, y, **{field: bad})
    # Our own message, which users (who run without the type checker) get:
    with pytest.raises(ValueError, match=rf"{field} must be .* shape \[batch\]=\[4\]"):
        _checks.budget_tensor(field, bad, x)


# ---------------------------------------------------------------------------------------------
# The batch
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool])
def test_x_must_be_floating_point(dtype: torch.dtype) -> None:
    x, y = batch()
    with pytest.raises(TypeError, match="x must be floating point"):
        ATTACK(model(), x.to(dtype), y)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_x_must_be_finite(bad: float) -> None:
    x, y = batch()
    x[1, 0, 2, 3] = bad
    with pytest.raises(ValueError, match="x contains NaN or infinite values"):
        ATTACK(model(), x, y)


@pytest.mark.parametrize("bad", [-1e-3, 1.001])
def test_x_must_lie_in_the_unit_box(bad: float) -> None:
    x, y = batch()
    x[2, 0, 0, 0] = bad
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\]"):
        ATTACK(model(), x, y)


def test_x_and_y_must_have_the_same_batch_size() -> None:
    x, y = batch()
    with pytest.raises(ValueError, match="x and y must have the same batch size"):
        ATTACK(model(), x, y[:3])


@pytest.mark.parametrize("label", [3, 7, -1])
def test_labels_must_be_classes_of_the_model(label: int) -> None:
    x, y = batch()
    y[1] = label
    with pytest.raises(ValueError, match=r"y must hold labels in \[0, 2\]"):
        ATTACK(model(), x, y)


@pytest.mark.parametrize(
    "dtype",
    [torch.float32, torch.float64, torch.bool, torch.int32, torch.int16, torch.uint8],
    ids=str,
)
def test_labels_must_be_long_integers(dtype: torch.dtype) -> None:
    x, y = batch()
    integer = dtype in (torch.int32, torch.int16, torch.uint8)
    fix = re.escape("; convert with y.long()") if integer else ""
    with pytest.raises(TypeError, match=rf"y must hold integer class labels.*{dtype}{fix}$"):
        ATTACK(model(), x, (y > 0).to(dtype) if dtype == torch.bool else y.to(dtype))


class Squeezed(nn.Module):
    """Returns logits of the wrong shape: ``[b]``, ``[b, C, 1]``, or one row for the batch."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor):
        z = self.net(x)
        if self.kind == "1d":
            return z[:, 0]
        if self.kind == "3d":
            return z[:, :, None]
        if self.kind == "one-row":
            return z.mean(0, keepdim=True)
        return (z,)


@pytest.mark.parametrize("kind", ["1d", "3d", "one-row"])
def test_model_must_return_b_by_classes(kind: str) -> None:
    x, y = batch()
    with pytest.raises(ValueError, match=r"the model must return logits of shape \[b, classes\]"):
        ATTACK(Squeezed(kind), x, y)


def test_model_must_return_a_tensor() -> None:
    x, y = batch()
    with pytest.raises(TypeError, match="the model must return a tensor of logits"):
        ATTACK(Squeezed("tuple"), x, y)


@pytest.mark.parametrize("shape", [(4,), (0, 16)])
def test_x_must_be_a_non_empty_batch(shape: tuple[int, ...]) -> None:
    x, y = torch.rand(shape), torch.zeros(shape[0], dtype=torch.long)
    with pytest.raises(ValueError, match=r"x must be a non-empty batch \[b, \.\.\.\]"):
        ATTACK(model(), x, y)


def test_x_and_y_must_be_tensors() -> None:
    x, y = batch()
    for args, argument in (((x.numpy(), y), "x"), ((x, y.tolist()), "y")):
        if TYPECHECKED:  # the annotations `x: Shaped[Tensor, ...]`, `y: ...` answer first
            with pytest.raises(TypeError, match=f"parameter '{argument}'"):
                ATTACK(model(), *args)
        else:
            with pytest.raises(TypeError, match=f"{argument} must be a torch.Tensor"):
                ATTACK(model(), *args)
        # Our own message, which users (who run without the type checker) get:
        with pytest.raises(TypeError, match=f"{argument} must be a torch.Tensor"):
            _checks.inputs(*args)


def test_y_must_be_one_dimensional() -> None:
    x, y = batch()
    if TYPECHECKED:  # the annotation `y: Shaped[Tensor, " n"]` answers first
        with pytest.raises(TypeError, match="parameter 'y'"):
            ATTACK(model(), x, y[:, None])
    else:
        with pytest.raises(ValueError, match=r"y must be a 1-d tensor of labels \[b\]"):
            ATTACK(model(), x, y[:, None])
    with pytest.raises(ValueError, match=r"y must be a 1-d tensor of labels \[b\]"):
        _checks.inputs(x, y[:, None])
