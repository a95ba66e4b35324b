"""``Trainer.fit`` on datasets and loaders, with progress for terminals and for logs
(``multirobust._fit``)."""

import io

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import multirobust as mr
from bad_input import Row, refuse, table
from multirobust import _fit
from test_training import L2, LINF, batch4, data, small_trainer, tiny_model


def trainer(**kw) -> mr.Trainer:
    model = tiny_model()
    return mr.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.05), mr.max_(LINF, L2), **kw)


def test_fit_takes_a_dataset_of_examples_and_batches_it() -> None:
    """Before: ``y must be a 1-d tensor of labels [b], got shape []`` (a Dataset's examples were
    taken for batches)."""
    history = trainer(progress=False).fit(data(20), 2, batch_size=8)
    assert len(history) == 6  # ceil(20 / 8) = 3 batches per epoch
    assert {r["epoch"] for r in history} == {0, 1}


def test_a_dataset_resumes_into_the_same_batches() -> None:
    """The shuffled order depends on the seed and the epoch only: 1 + 1 epochs == 2 epochs."""
    whole = trainer(progress=False)
    whole.fit(data(20), 2, batch_size=8)
    first = trainer(progress=False)
    first.fit(data(20), 1, batch_size=8)
    resumed = trainer(progress=False)
    resumed.load_state_dict(first.state_dict())
    resumed.fit(data(20), 1, batch_size=8)
    for a, b in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("dataset", "match"),
    [
        (TensorDataset(torch.rand(4, 1, 6, 6)), r"first example is a tuple \(a float32 tensor"),
        (TensorDataset(torch.rand(4, 1, 6, 6), torch.rand(4)), "integer label"),
        (TensorDataset(torch.rand(0, 1, 6, 6), torch.zeros(0, dtype=torch.long)), "empty"),
    ],
    ids=["no labels", "float labels", "empty"],
)
def test_a_dataset_of_other_examples_is_refused_before_training(dataset, match) -> None:
    t = trainer(progress=False)
    with pytest.raises((TypeError, ValueError), match=match):
        t.fit(dataset, 1)
    assert t.steps_done == 0


def test_without_a_terminal_each_epoch_prints_one_plain_line(capsys) -> None:
    """Before: nothing at all in a log file for the whole run."""
    trainer().fit(DataLoader(data(16), batch_size=8), 2)
    lines = capsys.readouterr().err.strip().splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["epoch 1 of 2", "epoch 2 of 2"]
    assert "loss " in lines[0] and "eps linf 0.1 l2 0.5" in lines[0] and "ETA" in lines[0]


def test_progress_false_prints_nothing(capsys) -> None:
    trainer(progress=False).fit(DataLoader(data(16), batch_size=8), 1)
    assert capsys.readouterr().err == ""


def test_epoch_lines_name_the_dominant_player() -> None:
    out = io.StringIO()
    records = [{"loss": 1.0, "eps": {"a": 1.0}, "dominant": d} for d in ("a", "b", "b", "b")]
    _fit.EpochLines(3, out).epoch_end(1, mr.History(records))
    assert "dominant b (75% of steps)" in out.getvalue()


@pytest.mark.usefixtures("untyped")
def test_a_player_class_or_an_incomplete_player_is_named() -> None:
    """Before: ``apply() missing 1 required positional argument`` at the first step, and a
    message listing all ten members for an incomplete player."""
    with pytest.raises(TypeError, match=r"got the class Linf; pass an instance such as Linf\(\)"):
        mr.max_(mr.Linf, L2)

    class NoDraw:
        name, eps, alpha, steps, restarts = "x", 0.1, 0.1, 1, 0

        def init(self, x, eps, generator): ...
        def ascend(self, x, delta, grad, alpha, noise): ...
        def project(self, x, delta, eps): ...
        def size(self, delta): ...
        def apply(self, x, delta): ...

    with pytest.raises(TypeError, match=r"NoDraw lacks check_input, zero, draw\. Subclass"):
        mr.max_(NoDraw())


@pytest.mark.parametrize(
    "player", [mr.linf(eps=8.0), mr.l2(eps=6.0), mr.l1(eps=36.0, alpha=0.5, k_min=2, k_max=6)]
)
def test_a_budget_covering_the_whole_box_is_refused_at_the_first_step(player) -> None:
    """``mr.linf(eps=8.0)`` meant as 8/255 trained silently before (6x6 inputs: l_2 diameter 6,
    l_1 diameter 36)."""
    model = tiny_model()
    t = mr.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), mr.max_(player))
    with pytest.raises(ValueError, match=r"the diameter of the \[0, 1\] box"):
        t.step(*data(4).tensors)
    assert t.steps_done == 0


def test_fit_one_shot_iterator_for_several_epochs() -> None:
    x, y = batch4()
    t = small_trainer()
    with pytest.raises(TypeError, match="loader is a one-shot iterator"):
        t.fit(iter([(x, y)]), epochs=2)
    assert t.steps_done == 0


def test_fit_empty_dataloader() -> None:
    x, y = batch4()
    t = small_trainer()
    loader = DataLoader(TensorDataset(x[:0], y[:0]), batch_size=2)
    with pytest.raises(ValueError, match="loader yielded no batch; pass a non-empty DataLoader"):
        t.fit(loader, epochs=1)
    assert t.steps_done == 0


BAD_INPUT = [
    Row(
        "loader-a-number",
        "type",
        lambda: small_trainer().fit(5, epochs=1),
        TypeError,
        "loader must be an iterable of",
        untyped=True,
    ),
    *(
        Row(
            f"loader-of-{kind}",
            "data",
            lambda item=item: trainer().fit([item], epochs=1),
            TypeError,
            r"\(x, y\) pairs",
        )
        for kind, item in [
            ("tensors", torch.rand(8, 1, 6, 6)),
            ("1-tuples", (torch.rand(8, 1, 6, 6),)),
            ("dicts", {"x": 1}),
        ]
    ),
    Row("empty-list", "data", lambda: trainer().fit([], epochs=1), ValueError, "no batch"),
    Row(
        "epochs-0",
        "value",
        lambda: trainer().fit(DataLoader(data(), batch_size=8), epochs=0),
        ValueError,
        "epochs",
    ),
]


@table(BAD_INPUT)
def test_bad_input(row: Row, tmp_path) -> None:
    refuse(row, tmp_path)
