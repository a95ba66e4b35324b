"""docs/bad-input.md and the bad-input tests stay in step.

Every row of the page's tables names at least one test, and every test it names exists (read with
``ast``, nothing imported or run); every test of tests/test_bad_input.py and
tests/test_bad_input_api.py has a row; a row marked **Gap** names a strict xfail test, and every
xfail test of those files is named in a Gap row (so a check that lands updates the page too).
"""

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "bad-input.md"
COLUMNS = ["What is passed", "Where", "What you get", "Test"]
COVERED = ("tests/test_bad_input.py", "tests/test_bad_input_api.py")
NODE_ID = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def tables() -> list[tuple[list[str], list[list[str]]]]:
    """Every table of the page: ``(header, body rows)``, each row a list of cells."""
    lines = PAGE.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        is_table = lines[i].lstrip().startswith("|") and i + 1 < len(lines)
        if is_table and re.fullmatch(r"\s*\|(\s*:?-+:?\s*\|)+\s*", lines[i + 1]):
            header, body, i = _cells(lines[i]), [], i + 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                body.append(_cells(lines[i]))
                i += 1
            found.append((header, body))
        else:
            i += 1
    return found


def rows() -> list[list[str]]:
    return [row for _, body in tables() for row in body]


@cache
def functions_of(path: str) -> dict[str, bool]:
    """Top-level test functions of a test file: name -> whether it is marked xfail."""
    tree = ast.parse((ROOT / path).read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
            "test"
        ):
            out[node.name] = any("xfail" in ast.unparse(d) for d in node.decorator_list)
    return out


def named(row: list[str]) -> list[tuple[str, str]]:
    return NODE_ID.findall(row[-1])


def test_the_page_has_tables_with_the_four_columns() -> None:
    found = tables()
    assert len(found) >= 5, "docs/bad-input.md should hold one table per area of the API"
    for header, body in found:
        assert header == COLUMNS, f"table header {header}, expected {COLUMNS}"
        for row in body:
            assert len(row) == len(COLUMNS), f"row with {len(row)} cells: {row}"
            assert all(row), f"row with an empty cell: {row}"


def test_every_row_names_a_test_that_exists() -> None:
    missing = []
    for row in rows():
        tests = named(row)
        assert tests, f"row names no test (write `tests/<file>.py::<test>`): {row[0]}"
        for path, name in tests:
            if not (ROOT / path).is_file() or name not in functions_of(path):
                missing.append(f"{path}::{name}")
    assert not missing, f"docs/bad-input.md names tests that do not exist: {missing}"


@pytest.mark.parametrize("path", COVERED)
def test_every_bad_input_test_is_in_the_table(path: str) -> None:
    in_table = {name for row in rows() for p, name in named(row) if p == path}
    missing = sorted(set(functions_of(path)) - in_table)
    assert not missing, f"tests of {path} without a row in docs/bad-input.md: {missing}"


def test_gap_rows_and_xfail_tests_match() -> None:
    gap_tests = set()
    for row in rows():
        if "**Gap**" in row[2]:
            tests = named(row)
            assert any(functions_of(p).get(n) for p, n in tests), (
                f"a Gap row names no xfail test (the check landed? then update the row): {row[0]}"
            )
            gap_tests |= set(tests)
    for path in COVERED:
        for name, xfail in functions_of(path).items():
            if xfail:
                assert (path, name) in gap_tests, (
                    f"{path}::{name} is an xfail, but no **Gap** row of docs/bad-input.md names it"
                )
