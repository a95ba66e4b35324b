"""Resume stays in the same run: ``Trainer.load_state_dict`` refuses another game, optimiser,
scheduler, model or a corrupted budget state before restoring anything (``multirobust._state``)."""

import copy

import pytest
import torch
from torch import nn

import multirobust as mr
from bad_input import Row, refuse, table
from multirobust import _state
from test_training import L1, L2, LINF, data, model16, tiny_model


def trained(game, optimizer=torch.optim.SGD, scheduler: bool = False, **kw) -> mr.Trainer:
    model = tiny_model()
    opt = optimizer(model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.StepLR(opt, 10) if scheduler else None
    t = mr.Trainer(model, opt, game, scheduler=sched, **kw)
    x, y = data(8).tensors
    t.step(x, y)
    return t


def fresh(game, optimizer=torch.optim.SGD, scheduler: bool = False) -> mr.Trainer:
    model = tiny_model()
    torch.nn.init.zeros_(model[0].weight)  # differs from the saved weights
    opt = optimizer(model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.StepLR(opt, 10) if scheduler else None
    return mr.Trainer(model, opt, game, scheduler=sched)


def refused(target: mr.Trainer, state: dict, match: str) -> None:
    """``load_state_dict`` raises naming ``match`` and restores nothing."""
    before = copy.deepcopy(target.state_dict())
    with pytest.raises(ValueError, match=match):
        target.load_state_dict(state)
    after = target.state_dict()
    for key in ("model", "budgets"):
        for name, t in before[key].items():
            assert torch.equal(after[key][name], t), f"{key}.{name} changed"
    assert after["steps_done"] == before["steps_done"]


def test_players_in_another_order_are_refused() -> None:
    """Before: the budgets were matched by position, so l_inf attacked with l_1's budget 2.0."""
    saved = trained(mr.max_(LINF, L2, L1)).state_dict()
    refused(fresh(mr.max_(L1, L2, LINF)), saved, r"players\[l1\].*saved 'linf'")


def test_a_changed_budget_is_refused_by_name() -> None:
    """Before: linf(eps=0.1) -> 0.3 silently kept the saved 0.1."""
    saved = trained(mr.max_(LINF, L2)).state_dict()
    refused(
        fresh(mr.max_(LINF(eps=0.3), L2)), saved, r"players\[linf\]\.eps: saved 0\.1, here 0\.3"
    )


def test_another_aggregator_or_policy_is_refused() -> None:
    saved = trained(mr.adaptive(mr.msd(LINF, L2, steps=2))).state_dict()
    refused(fresh(mr.adaptive(mr.max_(LINF, L2))), saved, r"aggregator\.type")
    refused(fresh(mr.msd(LINF, L2, steps=2)), saved, r"game\.type")
    refused(fresh(mr.adaptive(mr.msd(LINF, L2, steps=2), clamp=(0.25, 4))), saved, r"clamp")


def test_scheduler_presence_and_optimiser_class_are_checked() -> None:
    """Before: a state without a scheduler restarted the schedule at 0; Adam's state loaded into
    SGD and failed later inside torch (KeyError: 'momentum')."""
    game = mr.max_(LINF, L2)
    refused(fresh(game, scheduler=True), trained(game).state_dict(), r"scheduler: saved None")
    adam = trained(game, optimizer=torch.optim.Adam).state_dict()
    refused(fresh(game), adam, r"optimizer: saved 'Adam', here 'SGD'")
    with pytest.raises(ValueError, match="optimizer"):  # new_game does not cover the optimiser
        fresh(game).load_state_dict(adam, new_game=True)


@pytest.mark.parametrize("bad", [float("nan"), -0.1, float("inf")])
def test_a_budget_state_that_is_not_finite_and_positive_is_refused(bad) -> None:
    state = trained(mr.adaptive(mr.max_(LINF, L2))).state_dict()
    state["budgets"]["eps"] = torch.tensor([bad, 0.5])
    refused(fresh(mr.adaptive(mr.max_(LINF, L2))), state, r"eps must be finite and > 0")


def test_new_game_changes_the_game_on_purpose_and_starts_its_policy_state() -> None:
    source = trained(mr.adaptive(mr.max_(LINF, L2)))
    target = fresh(mr.max_(LINF(eps=0.3), L2))
    target.load_state_dict(source.state_dict(), new_game=True)
    assert torch.equal(target.model[0].weight, source.model[0].weight)
    assert target.steps_done == 1
    torch.testing.assert_close(target.budgets.eps, torch.tensor([0.3, 0.5]))


def test_a_state_without_identity_needs_new_game() -> None:
    """States saved before ``identity`` existed say nothing of their game."""
    state = trained(mr.max_(LINF, L2)).state_dict()
    del state["identity"]
    refused(fresh(mr.max_(LINF, L2)), state, "new_game=True")
    fresh(mr.max_(LINF, L2)).load_state_dict(state, new_game=True)


def test_the_same_game_resumes_exactly() -> None:
    game = mr.adaptive(mr.msd(LINF, L2, L1, steps=2), timing="lagged", probe_steps=2)
    x, y = data(16).tensors
    whole = trained(game)
    half = trained(game)
    resumed = fresh(game)
    resumed.load_state_dict(half.state_dict())
    for t in (whole, resumed):
        t.step(x[8:], y[8:])
    for (_, a), (_, b) in zip(
        whole.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b)
    assert torch.equal(whole.budgets.eps, resumed.budgets.eps)


def test_differences_name_every_change() -> None:
    a = _state.describe(mr.max_(LINF, L2))
    b = _state.describe(mr.max_(LINF(eps=0.2, steps=3), L2))
    diffs = _state.differences(a, b, "game")
    assert diffs == [
        "game.players[linf].eps: saved 0.1, here 0.2",
        "game.players[linf].steps: saved 2, here 3",
    ]
    assert _state.differences(a, a, "game") == []
    fewer = _state.differences(a, _state.describe(mr.max_(LINF)), "game")
    assert fewer == ["game.players: saved 2 ['linf', 'l2'], here 1 ['linf']"]


@pytest.mark.parametrize("seed", [2**64, -(2**63) - 1])
def test_a_seed_torch_cannot_take_is_refused_by_name(seed) -> None:
    """Before: 'Overflow when unpacking long long', naming nothing."""
    model = tiny_model()
    with pytest.raises(ValueError, match=r"seed must be in \[-2\*\*63, 2\*\*64\)"):
        mr.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), mr.max_(LINF), seed=seed)


def test_a_model_without_trainable_parameters_is_refused_at_construction() -> None:
    """Before: autograd's 'element 0 of tensors does not require grad' at the first step."""
    model = torch.nn.Sequential(torch.nn.Flatten())
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match="no trainable parameters"):
        mr.Trainer(model, opt, mr.max_(LINF))


def small(game) -> mr.Trainer:
    net = model16()
    return mr.Trainer(net, torch.optim.SGD(net.parameters(), lr=0.1), game)


LIN1, L2_1 = mr.linf(eps=0.1, alpha=0.05, steps=1), mr.l2(eps=0.5, alpha=0.25, steps=1)


def test_another_model_is_refused_before_anything_is_loaded() -> None:
    """Another model whose first layer matches the saved one: torch would copy that layer before
    raising for the rest; the check refuses before anything is loaded."""
    saved = small(mr.max_(LIN1, L2_1)).state_dict()
    torch.manual_seed(1)
    deeper = nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.Linear(3, 3))
    other = mr.Trainer(deeper, torch.optim.SGD(deeper.parameters(), lr=0.1), mr.max_(LIN1, L2_1))
    before = copy.deepcopy(deeper.state_dict())
    with pytest.raises(ValueError, match=r"another model .*: 2 of its tensors missing, 0 unknown"):
        other.load_state_dict(saved)
    assert all(torch.equal(v, deeper.state_dict()[k]) for k, v in before.items())


BAD_INPUT = [
    Row(
        "a-model-state-for-a-trainer-state",
        "run",
        lambda: small(mr.max_(LIN1, L2_1)).load_state_dict(
            small(mr.max_(LIN1, L2_1)).state_dict()["model"]
        ),
        ValueError,
        r"state must be a Trainer.state_dict\(\), got missing",
    ),
    Row(
        "a-game-of-2-players-into-1",
        "run",
        lambda: small(mr.max_(LIN1)).load_state_dict(small(mr.max_(LIN1, L2_1)).state_dict()),
        ValueError,
        r"saved by another run: game\.aggregator\.players: saved 2 \['linf', 'l2'\], here 1",
    ),
]


@table(BAD_INPUT)
def test_bad_input(row: Row, tmp_path) -> None:
    refuse(row, tmp_path)
