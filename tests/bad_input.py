"""Bad-input tables: each module's tests hold a list ``BAD_INPUT`` of ``Row``s beside them.

A row is one call the library must refuse before doing any work: the exception type, a regex its
message must match (the argument, what was received, the fix), the class of bad input it belongs
to (``KINDS``, the sections of docs/bad-input.md) and a readable id. ``refuse`` runs a row;
``table`` parametrises a test over a table. tests/test_bad_input_doc.py checks docs/bad-input.md
against every table.

The test run type-checks the package (jaxtyping + beartype). Where an annotation answers before
our own check, a table has two rows: the type checker's error (``TYPECHECKED``), and our own
message with ``untyped=True`` (what users, who run without the type checker, see).
"""

import contextlib
import dataclasses
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

import multirobust as mr
from typechecking import untyped as _untyped

TYPECHECKED = hasattr(mr.pgd, "__wrapped__")  # the jaxtyping import hook wraps every function

KINDS = {
    "type": "a wrong type",
    "value": "a bad value",
    "data": "data that is not what it should be",
    "device": "tensors on different devices",
    "member": "a player, aggregator or policy missing a member",
    "run": "a resume into another run",
    "file": "a file that is not a checkpoint",
    "out": "an --out that is busy or unwritable",
}
"""The classes of bad input, as docs/bad-input.md names them (its ``## `` headings)."""


@dataclasses.dataclass(frozen=True)
class Row:
    """One refused call: ``call()`` raises ``error`` matching ``match`` (a call with a parameter
    named ``tmp_path`` gets the test's temporary folder)."""

    id: str
    kind: str
    call: Callable[..., object]
    error: type[BaseException] | tuple[type[BaseException], ...]
    match: str
    untyped: bool = False
    marks: tuple = ()

    def __post_init__(self) -> None:
        assert self.kind in KINDS, f"{self.id}: kind {self.kind!r} is not one of {list(KINDS)}"


def table(rows: Sequence[Row]) -> pytest.MarkDecorator:
    """``pytest.mark.parametrize`` over ``rows``, each with its id (ids must be unique)."""
    ids = [r.id for r in rows]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    assert not dupes, f"duplicate row ids: {dupes}"
    return pytest.mark.parametrize("row", [pytest.param(r, id=r.id, marks=r.marks) for r in rows])


def refuse(row: Row, tmp_path: Path) -> None:
    """Run ``row``: its call must raise its error with a message matching its regex."""
    args = (tmp_path,) if "tmp_path" in inspect.signature(row.call).parameters else ()
    checker = _untyped() if row.untyped else contextlib.nullcontext()
    with checker, pytest.raises(row.error, match=row.match):
        row.call(*args)
