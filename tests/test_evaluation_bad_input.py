"""evaluate, robustness_curve, Report, Curve, table, combine, plot_curves: random valid input
gives shares with robust accuracy at most clean (hypothesis), and bad input is refused by name
before any attack."""

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

import fuzzing as fz
import multirobust as mr
from bad_input import TYPECHECKED, Row, refuse, table
from multirobust.evaluation import Curve, Report, combine, plot_curves, union_accuracy


@st.composite
def evaluate_cases(draw: st.DrawFn) -> dict:
    shape = draw(fz.image_shapes())
    n = math.prod(shape[1:])
    kinds = draw(st.lists(st.sampled_from(fz.KINDS), min_size=1, max_size=3, unique=True))
    b = shape[0]
    return {
        "shape": shape,
        "dtype": draw(st.sampled_from(fz.DTYPES)),
        "kinds": kinds,
        # Budgets below the box's diameter: evaluate rejects the others (a test below).
        "players": [draw(fz.player_settings(k, n, high=0.9)) for k in kinds],
        "suite": draw(st.sampled_from(["pgd", "pgd-strong"])),
        "restarts": draw(st.integers(0, 1)),
        "steps": draw(st.one_of(st.none(), st.integers(1, 3), st.just("per-threat"))),
        "n": draw(st.one_of(st.none(), st.integers(1, b))),
        "batch_size": draw(st.integers(1, b)),
        "loader": draw(st.one_of(st.none(), st.integers(1, b))),
        "checks": draw(st.booleans()),
        "classes": draw(st.integers(2, 4)),
        "hidden": draw(st.sampled_from([0, 8])),
        "seed": draw(fz.SEEDS),
    }


@pytest.mark.filterwarnings("ignore::multirobust.RobustnessWarning")
@settings(max_examples=fz.examples(25), deadline=None)
@given(evaluate_cases())
def test_evaluate_reports_shares_with_robust_at_most_clean(case: dict) -> None:
    shape, dtype, classes, seed = case["shape"], case["dtype"], case["classes"], case["seed"]
    threats = [
        fz.make_player(k, p, name=k) for k, p in zip(case["kinds"], case["players"], strict=True)
    ]
    model = fz.tiny_model(math.prod(shape[1:]), classes, dtype, seed, case["hidden"])
    x, y = fz.random_x(shape, dtype, seed, 0.3), fz.labels(shape[0], classes, seed)
    data = (x, y) if case["loader"] is None else DataLoader(TensorDataset(x, y), case["loader"])
    steps = case["steps"]
    if steps == "per-threat":
        steps = {t.name: 1 + i % 2 for i, t in enumerate(threats)}
    report = mr.evaluate(
        model,
        data,
        threats,
        case["suite"],
        restarts=case["restarts"],
        steps=steps,
        n=case["n"],
        batch_size=case["batch_size"],
        seed=seed,
        progress=False,
        checks=case["checks"],
    )
    count = case["n"] or shape[0]
    assert report.n == count and torch.equal(report.labels, y[:count])
    assert report.threats == tuple(t.name for t in threats)
    with torch.no_grad():
        correct = model(x[:count]).argmax(1) == y[:count]
    assert torch.equal(report.correct_clean, correct)
    accuracy = report.accuracy
    assert list(accuracy) == ["clean", *report.threats, "All"]
    assert all(0 <= v <= 1 for v in accuracy.values()), accuracy
    assert accuracy["clean"] == int(correct.sum()) / count
    for name in report.threats:
        assert accuracy[name] <= accuracy["clean"]
        assert accuracy["All"] <= accuracy[name]


# ---------------------------------------------------------------------------------------------
# Bad values: only our own TypeError / ValueError, naming the argument
# ---------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::multirobust.RobustnessWarning")
@settings(max_examples=fz.examples(20), deadline=None)
@given(fz.bad_batches("eval"))
def test_evaluate_rejects_bad_batches_naming_the_argument(case: dict) -> None:
    fz.check_bad_batch(case)


@pytest.mark.filterwarnings("ignore::multirobust.RobustnessWarning")
@settings(max_examples=fz.examples(15), deadline=None)
@given(
    target=st.sampled_from([s for s in fz.SETTINGS if s.startswith("evaluate.")]),
    value=st.one_of(st.integers(-10, 0), st.sampled_from([1.5, "2", None, math.nan, True])),
    word=st.sampled_from(["fgsm", "", "L2", None, 2]),
)
def test_bad_evaluate_settings_are_rejected_naming_the_argument(
    target: str, value: object, word: object
) -> None:
    fz.check_bad_setting(target, value, word, None)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------

LINF1 = mr.linf(eps=0.1, alpha=0.05, steps=1)


def model16() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def batch4(b: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, 1, 4, 4, generator=g), torch.arange(b) % 3


def evaluate(data: object = None, threats: object = (LINF1,), **kw) -> object:
    return mr.evaluate(model16(), batch4() if data is None else data, threats, **kw)


def curve(threat: object = LINF1, budgets: object = (0.1,), **kw) -> object:
    return mr.robustness_curve(model16(), batch4(), threat, budgets, **kw)


class _NoItems(IterableDataset):
    def __iter__(self):
        return iter(())


class _Dicts(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict:
        x, y = batch4()
        return {"x": x[i], "y": y[i]}


def empty(kind: str) -> object:
    x, y = batch4()
    return {
        "loader": DataLoader(TensorDataset(x[:0], y[:0]), batch_size=2),
        "pair": (x[:0], y[:0]),
        "iterable": DataLoader(_NoItems(), batch_size=2),
    }[kind]


def unwritable(tmp_path: Path) -> Path:
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    return tmp_path / "notes.txt" / "curves" / "l2"


Y2, OK2 = torch.tensor([0, 1]), torch.tensor([True, True])
X4, YY = batch4()


def typed(own: str, parameter: str) -> str:
    return f"parameter '{parameter}'" if TYPECHECKED else own


BAD_INPUT = [
    *(
        Row(
            f"evaluate-{key}-{value}",
            "value" if error is ValueError else "type",
            lambda kw={key: value}: evaluate(**kw),
            error,
            match,
        )
        for key, value, error, match in [
            ("batch_size", 0, ValueError, "batch_size must be an int >= 1, got 0"),
            ("n", 0, ValueError, "n must be an int >= 1, got 0"),
            ("steps", 0, ValueError, "steps must be an int >= 1, got 0"),
            ("steps", {"linf": 0}, ValueError, r"steps\['linf'\] must be an int >= 1, got 0"),
            ("restarts", True, TypeError, "restarts must be an int >= 0, got bool True"),
            ("suite", "PGD", ValueError, "suite must be one of 'pgd', 'pgd-strong'"),
        ]
    ),
    Row(
        "evaluate-seed-a-string",
        "type",
        lambda: evaluate(seed="0"),
        TypeError,
        typed("seed must be an int or None, got str", "seed"),
    ),
    Row(
        "evaluate-seed-a-string-untyped",
        "type",
        lambda: evaluate(seed="0"),
        TypeError,
        "seed must be an int or None, got str",
        untyped=True,
    ),
    Row(
        "curve-seed-a-string",
        "type",
        lambda: curve(seed="0"),
        TypeError,
        typed("seed must be an int or None, got str", "seed"),
    ),
    Row(
        "curve-seed-a-string-untyped",
        "type",
        lambda: curve(seed="0"),
        TypeError,
        "seed must be an int or None, got str",
        untyped=True,
    ),
    Row(
        "threats-a-string",
        "type",
        lambda: evaluate(threats="linf"),
        TypeError,
        "threats must be a sequence of players, got str",
    ),
    Row(
        "threats-a-dict",
        "type",
        lambda: evaluate(threats={"linf": LINF1}),
        TypeError,
        "threats must be a sequence of players, got dict",
    ),
    Row(
        "threats-with-a-string",
        "member",
        lambda: evaluate(threats=[LINF1, "l2"]),
        TypeError,
        "every threat must implement the Player protocol",
    ),
    *(
        Row(
            f"threat-named-{name}",
            "value",
            lambda n=name: evaluate(threats=[LINF1(name=n)]),
            ValueError,
            r"'clean' and 'All' are reserved.*rename with",
        )
        for name in ("clean", "All")
    ),
    Row(
        "model-a-function",
        "type",
        lambda: mr.evaluate(lambda t: t, batch4(), [LINF1]),
        TypeError,
        typed(r"model must be a torch.nn.Module, got function", "model"),
    ),
    Row(
        "model-a-function-untyped",
        "type",
        lambda: mr.evaluate(lambda t: t, batch4(), [LINF1]),
        TypeError,
        r"model must be a torch.nn.Module, got function",
        untyped=True,
    ),
    *(
        Row(
            f"empty-{kind}",
            "data",
            lambda k=kind: evaluate(empty(k)),
            ValueError,
            f"{start}.*pass a DataLoader or a pair",
        )
        for kind, start in [
            ("loader", "data is empty"),
            ("pair", "data is empty"),
            ("iterable", "data yielded no examples"),
        ]
    ),
    Row(
        "loader-of-dicts",
        "data",
        lambda: evaluate(DataLoader(_Dicts(), batch_size=2)),
        TypeError,
        r"each batch of the DataLoader must be a pair \(x, y\)",
    ),
    Row(
        "loader-of-triples",
        "data",
        lambda: evaluate(DataLoader(TensorDataset(X4, X4, YY), batch_size=2)),
        TypeError,
        r"pair \(x, y\) of tensors, got list of length 3$",
    ),
    Row(
        "loader-without-batches",
        "data",
        lambda: evaluate(DataLoader(TensorDataset(X4, YY), batch_size=None)),
        ValueError,
        r"got a single label.*batch_size=None.*give it a batch",
    ),
    Row(
        "pair-of-a-tensor-and-an-array",
        "type",
        lambda: evaluate((X4, YY.numpy())),
        TypeError,
        r"but y is of type ndarray; .*torch\.as_tensor\(y\)$",
    ),
    Row(
        "pair-of-a-list-and-a-tensor",
        "type",
        lambda: evaluate([X4.tolist(), YY]),
        TypeError,
        r"but x is of type list; .*torch\.as_tensor\(x\)$",
    ),
    Row(
        "two-batches-in-a-list",
        "type",
        lambda: evaluate([(X4, YY), (X4, YY)]),
        TypeError,
        r"^data must be a torch DataLoader .* got list$",
    ),
    *(
        Row(
            f"curve-budgets-{bid}",
            "value",
            lambda b=budgets: curve(budgets=b, restarts=0),
            ValueError,
            match,
            untyped=True,
        )
        for bid, budgets, match in [
            ("empty", [], "budgets must be a non-empty sequence of numbers > 0"),
            ("scalar", 0.1, "budgets must be a non-empty sequence of numbers > 0"),
            ("negative", [0.1, -1.0], r"budgets\[1\] must be a finite number > 0, got -1\.0"),
            ("nan", [0.1, math.nan], r"budgets\[1\] must be a finite number > 0, got nan"),
            ("beyond-the-box", [0.1, 2.0], r"eps=2 is >= 1 \(the whole box\).*pass a smaller eps"),
        ]
    ),
    Row(
        "curve-of-a-list-of-threats",
        "type",
        lambda: curve([LINF1]),
        TypeError,
        typed(r"threat must be one player.*once per threat", "threat"),
    ),
    Row(
        "curve-of-a-list-of-threats-untyped",
        "type",
        lambda: curve([LINF1]),
        TypeError,
        r"threat must be one player.*once per threat",
        untyped=True,
    ),
    Row(
        "curve-path-under-a-file",
        "out",
        lambda tmp_path: curve(path=unwritable(tmp_path)),
        ValueError,
        r"cannot be written: .*notes\.txt is not a writable",
    ),
    Row(
        "curve-steps-a-dict",
        "type",
        lambda: curve(steps={"linf": 5}),
        TypeError,
        r"^steps must be an int >= 1, got dict",
        untyped=True,
    ),
    Row(
        "report-from-foreign-json",
        "file",
        lambda: Report.from_json('{"format": "other/1"}'),
        ValueError,
        "not a multirobust report",
    ),
    Row(
        "curve-from-foreign-json",
        "file",
        lambda: Curve.from_json('{"format": "other/1"}'),
        ValueError,
        "not a multirobust curve",
    ),
    Row(
        "report-of-another-shape",
        "type" if TYPECHECKED else "data",
        lambda: Report("pgd", Y2, OK2, {"linf": torch.tensor([True])}),
        TypeError if TYPECHECKED else ValueError,
        typed(r"linf must be a bool tensor of shape \[2\]", "correct"),
    ),
    Row(
        "report-of-another-shape-untyped",
        "data",
        lambda: Report("pgd", Y2, OK2, {"linf": torch.tensor([True])}),
        ValueError,
        r"linf must be a bool tensor of shape \[2\]",
        untyped=True,
    ),
    Row(
        "report-threat-named-All",
        "value",
        lambda: Report("pgd", Y2, OK2, {"All": OK2}),
        ValueError,
        "'clean' and 'All' are reserved names",
    ),
    Row(
        "curve-of-another-shape",
        "data",
        lambda: Curve("l2", "pgd", (0.5,), Y2, OK2, torch.ones(2, 2, dtype=torch.bool)),
        ValueError,
        r"correct must have shape \[budgets, n\] = \[1, 2\]",
    ),
    Row(
        "table-of-two-untitled-reports",
        "value",
        lambda: mr.table(
            [Report("pgd", Y2, OK2, {"linf": OK2}), Report("pgd", Y2, OK2, {"linf": ~OK2})]
        ),
        ValueError,
        r"^reports: 2 reports of suite 'pgd' would share one",
    ),
    Row(
        "combine-nothing",
        "value",
        lambda: combine(),
        ValueError,
        "combine needs at least one report",
    ),
    Row(
        "union-of-nothing",
        "value",
        lambda: union_accuracy({}),
        ValueError,
        "union_accuracy needs at least one threat",
    ),
    Row(
        "plot-no-curves",
        "value",
        lambda tmp_path: plot_curves([], tmp_path / "curves.png"),
        ValueError,
        "no curves to plot",
    ),
]


@pytest.mark.filterwarnings("ignore::multirobust.RobustnessWarning")
@table(BAD_INPUT)
def test_bad_input(row: Row, tmp_path) -> None:
    refuse(row, tmp_path)


def test_a_table_of_titled_reports_shows_each() -> None:
    r1, r2 = Report("pgd", Y2, OK2, {"linf": OK2}), Report("pgd", Y2, OK2, {"linf": ~OK2})
    assert mr.table({"MAX": r1, "MSD": r2}).splitlines()[2].split() == ["linf", "100.0", "0.0"]
    assert mr.table(r for r in [r1]) == mr.table([r1])  # any iterable of reports
