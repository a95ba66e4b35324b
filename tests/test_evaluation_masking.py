"""The masking checks of the PGD suites against three models that decide exactly as a clean-trained
digits CNN but mask their input gradients: logits scaled by 150 (a saturated softmax), gradients
scaled by 1e-30 in the backward pass, and a reversed input gradient. Before these checks the
``pgd`` suite reported them far more robust than the model they wrap, silently or with a warning
that did not change the numbers.

Run as a script for the before/after table: ``python tests/test_evaluation_masking.py``.
"""

import dataclasses
import time
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import multirobust as mr
from multirobust.data import digits
from multirobust.evaluation import RobustnessWarning, evaluate, masking, suites
from multirobust.evaluation.masking import dlr_loss
from multirobust.models import DigitsCNN

LINF, L2, L1 = 0.1, 0.5, 2.0
N = 64  # = masking.SAMPLE: every example is in the checks' sample
FIX = "suite='autoattack'"


def train_digits(n: int = N) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A clean-trained DigitsCNN (5 epochs of Adam, seeded) and ``n`` test digits; also
    tests/test_evaluation.py's fixture."""
    torch.manual_seed(0)
    train, test = digits(seed=0)
    x, y = train.tensors
    model = DigitsCNN(width=16)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 64):
            idx = perm[i : i + 64]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval().requires_grad_(False)
    xt, yt = test.tensors
    return model, xt[:n], yt[:n]


@pytest.fixture(scope="module")
def digits_model() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    return train_digits()


class Scaled(nn.Module):
    """The logits times ``k``: the same decisions; at k = 150 the float32 softmax saturates, so
    cross-entropy gradients vanish (exactly zero, or too small to matter) on confident inputs."""

    def __init__(self, net: nn.Module, k: float = 150.0) -> None:
        super().__init__()
        self.net, self.k = net, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * self.k


class _Shrink(torch.autograd.Function):
    """Identity forward; the backward pass multiplies the gradient by 1e-30."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        pass

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad * 1e-30


class Tiny(nn.Module):
    """The same values, input gradients scaled by 1e-30 (their float32 squares underflow)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(_Shrink.apply(x))


class Reversed(nn.Module):
    """``net(2 * x.detach() - x)``: the same values (exactly), the input gradient negated."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(2 * x.detach() - x)


THREATS = (
    mr.linf(eps=LINF, alpha=LINF / 5, steps=10),
    mr.l2(eps=L2, alpha=L2 / 5, steps=10),
    mr.l1_eval(eps=L1, steps=10),
)


def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threats=THREATS, **kw) -> mr.Report:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RobustnessWarning)
        return evaluate(model, (x, y), threats, restarts=1, seed=0, **kw)


@pytest.fixture(scope="module")
def plain(digits_model) -> mr.Report:
    model, x, y = digits_model
    return run(model, x, y)


def warned(report: mr.Report, *parts: str) -> list[str]:
    return [w for w in report.warnings if all(p in w for p in parts)]


def test_dlr_loss_is_scale_invariant_and_positive_once_misclassified() -> None:
    z = torch.tensor([[3.0, 1.0, 0.0, -1.0], [0.0, 2.0, 1.0, 0.5]])
    y = torch.tensor([0, 0])
    torch.testing.assert_close(dlr_loss(z, y), torch.tensor([-2 / 3, 2 / 1.5]))
    torch.testing.assert_close(dlr_loss(150 * z, y), dlr_loss(z, y))
    two = torch.tensor([[1.0, 3.0]])  # < 3 classes: the plain margin
    assert dlr_loss(two, torch.tensor([0])).item() == 2.0


def test_saturated_logits_are_cross_checked_and_counted_as_broken(digits_model, plain) -> None:
    """Before: linf 92.2, l2 95.3, All 92.2 (plain: 43.8, 51.6, 35.9), and only the zero-gradient
    warning, which left the numbers as they were."""
    model, x, y = digits_model
    r = run(Scaled(model), x, y)
    assert torch.equal(r.correct_clean, plain.correct_clean)  # the same decisions
    for name in ("linf", "l2"):
        found = warned(r, f"{name} (eps", "DLR loss broke", FIX, "counted as broken")
        assert len(found) == 1, r.warnings
        assert r.robust[name] <= plain.robust[name] + 0.15
    assert r.union <= plain.union + 0.15
    counts = r.settings["masking_checks"]["counts"]["linf"]
    assert counts["broken"] >= 10 and counts["sampled"] == int(plain.correct_clean.sum())
    # The union is per example: with the checks off the same examples stand, and more of them.
    off = run(Scaled(model), x, y, checks=False)
    for name in r.correct:
        assert bool((r.correct[name] <= off.correct[name]).all())
        assert r.robust[name] == pytest.approx(r.correct[name].float().mean().item())
    assert off.robust["linf"] > 0.8


def test_vanishing_gradients_give_the_unscaled_accuracy(digits_model, plain) -> None:
    """Before the l_2 step was made scale-invariant: l2 95.3 (no attack moved), silently."""
    model, x, y = digits_model
    r = run(Tiny(model), x, y)
    for name in r.robust:
        assert abs(r.robust[name] - plain.robust[name]) <= 1 / N + 1e-9, (r.robust, plain.robust)


@dataclasses.dataclass(frozen=True)
class NaiveL2(mr.L2):
    """l_2 steps normalised by the float32 norm, as multirobust's were: a gradient whose squares
    underflow has norm 0 and gives a zero step."""

    name: str = "naive-l2"

    def ascend(self, x, delta, grad, alpha, noise=None):
        norm = torch.linalg.vector_norm(grad.flatten(1), dim=1)
        scale = alpha / torch.where(norm > 0, norm, 1.0)
        return delta + scale.reshape(-1, *[1] * (x.dim() - 1)) * grad


def test_a_step_that_cannot_move_is_flagged(digits_model) -> None:
    model, x, y = digits_model
    r = run(Tiny(model), x, y, threats=(NaiveL2(eps=L2, alpha=L2 / 10, steps=5),))
    assert len(warned(r, "naive-l2", "did not move", FIX)) == 1, r.warnings
    healthy = run(model, x, y, threats=(NaiveL2(eps=L2, alpha=L2 / 10, steps=5),))
    assert not warned(healthy, "did not move")


def test_reversed_gradients_are_flagged_and_attacked_the_other_way(digits_model, plain) -> None:
    """Before: 95.3 under every threat (clean accuracy: PGD descended), no warning."""
    model, x, y = digits_model
    r = run(Reversed(model), x, y)
    for name in ("linf", "l2", "l1"):
        assert len(warned(r, f"{name} (eps", "lowered the loss", FIX)) == 1, r.warnings
        assert r.robust[name] <= plain.robust[name] + 0.15
    assert r.settings["masking_checks"]["counts"]["l2"]["against"] is True


def test_an_unmasked_model_gets_no_masking_warning(digits_model, plain) -> None:
    model, x, y = digits_model
    assert plain.warnings == (), plain.warnings
    counts = plain.settings["masking_checks"]["counts"]
    assert all(c["downhill"] <= 1 and c["stalled"] == 0 for c in counts.values()), counts
    with warnings.catch_warnings():
        warnings.simplefilter("error", RobustnessWarning)
        evaluate(model, (x, y), THREATS[:1], restarts=0, seed=1, batch_size=16)


def test_the_sample_is_capped_and_seeded(digits_model) -> None:
    model, x, y = digits_model
    xs, ys = x.repeat(3, 1, 1, 1), y.repeat(3)  # 192 examples in batches of 50
    kw = {"threats": (mr.linf(eps=LINF, alpha=LINF / 5, steps=5),), "batch_size": 50}
    a, b = run(model, xs, ys, **kw), run(model, xs, ys, **kw)
    assert a == b
    counts = a.settings["masking_checks"]
    assert counts["sample"] == masking.SAMPLE
    assert counts["counts"]["linf"]["sampled"] <= masking.SAMPLE


def test_checks_off_run_no_cross_check(digits_model) -> None:
    model, x, y = digits_model
    off = run(Scaled(model), x[:16], y[:16], threats=THREATS[:1], checks=False)
    assert "masking_checks" not in off.settings and off.warnings == ()


def main() -> None:
    """The before/after table of docs/evaluation.md (accuracy %, warnings), and the cost of the
    sampled checks on the plain model (the fastest of 3 runs with and without them)."""
    model, x, y = train_digits()
    models = {"plain": model, "logits*150": Scaled(model), "grad*1e-30": Tiny(model)}
    models["reversed"] = Reversed(model)
    for name, m in models.items():
        r = run(m, x, y)
        row = "  ".join(f"{k} {100 * v:5.1f}" for k, v in r.accuracy.items())
        print(f"{name:11} {row}")
        for w in r.warnings:
            print(f"    warning: {w[:100]}...")
    # The cost, on 200 test digits: examples through the model (exact) and CPU time (noisy on
    # a shared machine: the least of 3 runs).
    model, x, y = train_digits(200)
    counted = Counted(model)
    sample = masking.SAMPLE
    for label, size in (("with the sampled checks", sample), ("without them", 0)):
        masking.SAMPLE = suites.SAMPLE = size
        took = []
        for _ in range(3):
            counted.examples = 0
            start = time.process_time()
            run(counted, x, y)
            took.append(time.process_time() - start)
        print(
            f"evaluate, plain model, 200 digits, {label}: {counted.examples} examples through "
            f"the model, {min(took):.2f} s of CPU"
        )
    masking.SAMPLE = suites.SAMPLE = sample


class Counted(nn.Module):
    """Counts the examples of every forward pass."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.examples = net, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.examples += int(x.shape[0])
        return self.net(x)


if __name__ == "__main__":
    main()
