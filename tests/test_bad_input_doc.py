"""docs/bad-input.md against the bad-input tables of the tests (``BAD_INPUT`` beside each module).

Every class of bad input the page names has rows, every row's class is on the page, the page's
examples run (with and without the test run's type checker) and each example's error is matched
by a row of the tables: the same exception and a message its pattern matches.
"""

import doctest
import importlib
import re
from functools import cache
from pathlib import Path

import pytest

from bad_input import KINDS, Row
from typechecking import untyped

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "bad-input.md"


@cache
def tables() -> dict[str, list[Row]]:
    """Every test module's ``BAD_INPUT``, by module name."""
    found = {}
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        if "\nBAD_INPUT = [" in path.read_text():
            found[path.stem] = importlib.import_module(path.stem).BAD_INPUT
    return found


def rows() -> list[Row]:
    return [row for table in tables().values() for row in table]


def page() -> str:
    return PAGE.read_text()


def sections() -> list[str]:
    return re.findall(r"^## (.+)$", page(), flags=re.MULTILINE)


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page(), flags=re.MULTILINE | re.DOTALL)


def examples() -> list[tuple[str, str]]:
    """Each example's ``(exception name, message)``: the doctests' and the console's."""
    found = re.findall(r"^([\w.]+(?:Error|Exception)): (.+)$", page(), flags=re.MULTILINE)
    console = re.findall(r"^\w+\.py: error: (.+)$", page(), flags=re.MULTILINE)
    return found + [("ParserError", message) for message in console]


def test_the_tables_are_many_and_cover_every_module_with_checks() -> None:
    names = set(tables())
    for module in ("test_players", "test_attacks", "test_aggregators", "test_budgets"):
        assert module in names, f"{module} has no BAD_INPUT table"
    assert len(rows()) >= 200, len(rows())


def test_every_class_on_the_page_has_rows_and_every_row_a_class_on_the_page() -> None:
    named = {title.lower() for title in sections()}
    kinds = {kind: text for kind, text in KINDS.items()}
    for kind, text in kinds.items():
        assert text.lower() in named, f"the page has no section for {text!r}"
        assert any(r.kind == kind for r in rows()), f"no row of class {text!r}"
    table = re.findall(r"^\| ([^|]+?) \| [^|]+ \|$", page(), flags=re.MULTILINE)[2:]
    assert [t.lower() for t in table] == [t.lower() for t in kinds.values()]


@pytest.mark.parametrize("typed", [True, False], ids=["type-checked", "as-users-run"])
def test_the_page_examples_run(typed: bool) -> None:
    """Each ``>>>`` example prints what the page says, as users run it (without the type
    checker) and in the test run (with it, as tests/test_docs.py runs the pages)."""
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    blocks = [b for b in python_blocks() if ">>>" in b]
    assert len(blocks) >= 7
    for i, block in enumerate(blocks):
        test = parser.get_doctest(block, {}, f"bad-input.md[{i}]", str(PAGE), 0)
        if typed:
            runner.run(test)
        else:
            with untyped():
                runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def matches(row: Row, name: str, message: str) -> bool:
    """``row`` raises the exception ``name`` with a message its pattern finds in ``message``
    (the page's ``...`` stand for parts that vary: numbers, paths)."""
    errors = row.error if isinstance(row.error, tuple) else (row.error,)
    return any(e.__name__ == name.rsplit(".", 1)[-1] for e in errors) and bool(
        re.search(row.match, message)
    )


@pytest.mark.parametrize("example", examples(), ids=lambda e: e[0])
def test_each_example_is_a_row_of_the_tables(example: tuple[str, str]) -> None:
    name, message = example
    assert any(matches(r, name, message) for r in rows()), f"no row produces {name}: {message}"
