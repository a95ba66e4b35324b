"""Per-player gradients (multirobust.gradients): vmap equals separate backward passes, the CPU
loop, bf16 autocast on a BatchNorm model; bad input refused by name."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import multirobust as mr
from bad_input import Row, refuse, table
from multirobust import gradients
from test_aggregators import small_cnn


@pytest.mark.parametrize("norm", ["l2", "l1"])
def test_vmap_player_gradients_equal_separate_backward_passes(norm):
    """On a BatchNorm model in train mode; tolerance rtol 1e-5 (float32 summation order)."""
    model = small_cnn(batchnorm=True).train()
    g = torch.Generator().manual_seed(0)
    inputs, y = torch.rand(3, 10, 1, 6, 6, generator=g), torch.randint(0, 5, (10,), generator=g)
    before = copy.deepcopy(model.state_dict())
    got = mr.player_gradients(model, inputs, y, norm=norm, method="vmap")
    want_norm, want_loss = [], []
    for xp in inputs:
        m = copy.deepcopy(model)
        loss = F.cross_entropy(m(xp), y)
        grads = torch.autograd.grad(loss, list(m.parameters()))
        flat = torch.cat([gr.flatten() for gr in grads])
        want_norm.append(flat.abs().sum() if norm == "l1" else flat.norm())
        want_loss.append(loss.detach())
    torch.testing.assert_close(got.norm, torch.stack(want_norm), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(got.loss, torch.stack(want_loss), rtol=1e-5, atol=1e-7)
    for method in ("loop", "auto"):
        other = mr.player_gradients(model, inputs, y, norm, method)
        torch.testing.assert_close(other.norm, got.norm, rtol=1e-5, atol=1e-7)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # running statistics untouched


def test_player_gradients_loop_over_players_on_cpu(monkeypatch):
    """``method="auto"`` on CPU takes the loop: it measured faster there than vmap."""

    def refuse(*args, **kwargs):
        raise AssertionError("vmap path taken on CPU")

    monkeypatch.setattr(gradients, "_all_players", refuse)
    model = small_cnn(batchnorm=True).train()
    inputs, y = torch.rand(3, 4, 1, 6, 6), torch.randint(0, 5, (4,))
    assert mr.player_gradients(model, inputs, y).norm.shape == (3,)


def test_player_gradients_under_bf16_autocast_on_a_batchnorm_model():
    """vmap's BatchNorm rule fails on bf16 activations; under autocast the players loop instead.
    The bf16 norms stay within 5% of fp32's."""
    model = small_cnn(batchnorm=True).train()
    g = torch.Generator().manual_seed(0)
    inputs, y = torch.rand(3, 10, 1, 6, 6, generator=g), torch.randint(0, 5, (10,), generator=g)
    want = mr.player_gradients(model, inputs, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = mr.player_gradients(model, inputs, y)
        with pytest.raises(RuntimeError, match="BFloat16"):  # if torch fixes this, use vmap
            mr.player_gradients(model, inputs, y, method="vmap")
    torch.testing.assert_close(got.norm, want.norm, rtol=0.05, atol=0)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def _inputs(k: int = 2) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A 3-class linear model, ``k`` stacked copies of a batch of 4, and its labels."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 4, 4, generator=g)
    return net, torch.stack([x] * k) if k else x, torch.arange(4) % 3


BAD_INPUT = [
    Row(
        "unknown-norm",
        "value",
        lambda: mr.player_gradients(*_inputs(), norm="linf"),
        ValueError,
        "norm must be one of 'l1', 'l2'; got 'linf'",
    ),
    Row(
        "unknown-method",
        "value",
        lambda: mr.player_gradients(*_inputs(), method="jit"),
        ValueError,
        r"method must be one of .*'vmap', 'loop'; got 'jit'",
    ),
    Row(
        "inputs-not-k-by-b",
        "data",
        lambda: mr.player_gradients(*_inputs(0)),
        ValueError,
        r"inputs must be \[K, b, \.\.\.\]",
    ),
]


@table(BAD_INPUT)
def test_bad_input(row: Row, tmp_path) -> None:
    refuse(row, tmp_path)
