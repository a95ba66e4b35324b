"""The documentation: the site builds strictly, the API reference covers every public name, every
public name has a docstring, the pages' examples run, and the new-player guide's example trains."""

import ast
import doctest
import importlib.util
import inspect
import itertools
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import multirobust as mr

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PACKAGE = ROOT / "src" / "multirobust"
EXAMPLE = DOCS / "examples" / "l0_player.py"


# -- the site ----------------------------------------------------------------------------------


def test_mkdocs_build_is_strict_clean(tmp_path: Path) -> None:
    """``mkdocs build --strict``: no broken link, anchor, snippet or docstring warning."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    pytest.importorskip("material")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "site" / "reference" / "players" / "index.html").is_file()


# -- the API reference ----------------------------------------------------------------------


def _documented_paths() -> set[str]:
    """Every ``::: path`` directive of the API reference pages."""
    paths = set()
    for page in (DOCS / "reference").glob("*.md"):
        paths |= set(re.findall(r"^:::\s+([\w.]+)\s*$", page.read_text(), flags=re.MULTILINE))
    return paths


def test_every_public_name_is_in_the_api_reference() -> None:
    documented = _documented_paths()
    missing = [name for name in mr.__all__ if f"multirobust.{name}" not in documented]
    assert not missing, (
        f"public names missing from docs/reference/*.md: {missing}; "
        "add a '::: multirobust.<name>' line to the right page"
    )


def test_every_reference_directive_names_something_that_exists() -> None:
    for path in _documented_paths():
        module, *attrs = path.split(".")
        obj = importlib.import_module(module)
        for i, attr in enumerate(attrs):
            if not hasattr(obj, attr):
                obj = importlib.import_module(".".join([module, *attrs[: i + 1]]))
            else:
                obj = getattr(obj, attr)


def _attribute_docstrings() -> dict[str, str]:
    """Docstrings of module-level assignments (``x = ...`` then a string), read from the source."""
    docs: dict[str, str] = {}
    for file in PACKAGE.rglob("*.py"):
        body = ast.parse(file.read_text()).body
        for node, after in itertools.pairwise(body):
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, ast.AnnAssign)
                else []
            )
            is_doc = (
                isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            )
            for target in targets:
                if is_doc and isinstance(target, ast.Name):
                    docs[target.id] = after.value.value
    return docs


@pytest.mark.parametrize("name", mr.__all__)
def test_every_public_name_has_a_docstring(name: str) -> None:
    obj = getattr(mr, name)
    if inspect.ismodule(obj) or inspect.isclass(obj) or inspect.isroutine(obj):
        doc = inspect.getdoc(obj)
    else:
        # A module-level value (mr.linf, mr.Budget): its own attribute docstring, else the
        # docstring of its class when that class is ours.
        doc = _attribute_docstrings().get(name)
        if not doc and type(obj).__module__.startswith("multirobust"):
            doc = inspect.getdoc(type(obj))
    assert doc and doc.strip(), f"multirobust.{name} has no docstring"


# -- examples in the pages ----------------------------------------------------------------------


def _fenced_python(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize(
    "page", sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")), ids=str
)
def test_interactive_examples_in_the_pages_are_right(page: str, untyped) -> None:
    """Every fenced ``>>>`` session in a page runs and prints what the page says, as users (who
    run without the test run's type checker) see it."""
    parser, runner = doctest.DocTestParser(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for i, block in enumerate(b for b in _fenced_python(DOCS / page) if ">>>" in b):
        test = parser.get_doctest(block, {}, f"{page}[{i}]", page, 0)
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


# -- the new-player guide's example --------------------------------------------------------------


@pytest.fixture(scope="module")
def example():
    """``docs/examples/l0_player.py``, imported as the module ``l0_player`` (as the guide does)."""
    spec = importlib.util.spec_from_file_location("l0_player", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["l0_player"] = module
    dont_write = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # no __pycache__ inside docs/
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.dont_write_bytecode = dont_write
        sys.modules.pop("l0_player", None)


def test_guide_code_that_uses_the_example_runs(example) -> None:
    page = _fenced_python(DOCS / "guide" / "new-player.md")
    blocks = [b for b in page if "from l0_player import" in b and "--8<--" not in b]
    assert len(blocks) >= 2
    for block in blocks:
        torch.manual_seed(0)
        exec(compile(block, "new-player.md", "exec"), {})


def test_l0_player_is_a_feasible_frozen_player(example) -> None:
    l0 = example.l0
    assert isinstance(l0, mr.Player)
    assert l0(eps=3) == example.L0(eps=3.0) and isinstance(l0(eps=3).eps, float)
    assert pickle.loads(pickle.dumps(l0)) == l0
    with pytest.raises(ValueError, match="eps"):
        example.L0(eps=0)
    with pytest.raises(ValueError, match="images"):
        l0.check_input(torch.rand(2, 5))

    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 5, 5, generator=g)
    x[:, :, 0] = 0.0  # saturated pixels, as in digits and MNIST
    x[:, :, -1] = 1.0
    delta = 2 * torch.randn(6, 3, 5, 5, generator=g)
    for eps in (4.0, torch.tensor(2.7), torch.tensor([0.5, 1.0, 2.5, 4.0, 10.4, 25.0])):
        projected = l0.project(x, delta, eps)
        allowed = torch.as_tensor(eps).floor().expand(6)
        assert (l0.size(projected) <= allowed).all()
        assert ((x + projected >= 0) & (x + projected <= 1)).all()
        torch.testing.assert_close(l0.project(x, projected, eps), projected)  # idempotent
        start = l0.init(x, eps, g)
        assert (l0.size(start) <= allowed).all()
        assert ((x + start >= 0) & (x + start <= 1)).all()

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(75, 4))
    y = torch.randint(0, 4, (6,), generator=g)
    result = mr.pgd(l0(eps=3.0, steps=5), keep="first-success").run(model, x, y, seed=0)
    changed = (result.delta - x).abs().amax(dim=1).flatten(1) > 1e-6
    assert (changed.sum(dim=1) <= 3).all()


@pytest.mark.parametrize(
    ("aggregator", "adaptive"), [("msd", True), ("max", False)], ids=["msd+adaptive", "max"]
)
def test_l0_example_trains_and_evaluates(example, aggregator: str, adaptive: bool) -> None:
    pytest.importorskip("sklearn")
    out = example.demo(aggregator, adaptive, n_train=128, n_test=32, steps=2)
    history = out["history"]
    assert len(history) == 2 and history.skipped == 0
    assert set(out["eps"]) == {"linf", "l0"}
    if adaptive:
        assert 2.0 - 1e-5 <= out["eps"]["l0"] <= 8.0 + 1e-5  # clamp [0.5, 2] x base 4 pixels
        assert history[-1]["dominant"] in {"linf", "l0"}
    acc = out["accuracy"]
    assert set(acc) == {"clean", "linf", "l0", "all"}
    assert 0.0 <= acc["all"] <= min(acc["linf"], acc["l0"]) <= max(acc["linf"], acc["l0"])
    assert max(acc["linf"], acc["l0"]) <= acc["clean"] <= 1.0
