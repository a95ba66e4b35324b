"""The runtime type checker the test run applies to the whole package (jaxtyping + beartype).

``pytest`` loads it through ``--jaxtyping-packages=multirobust,typechecking.typechecker``.
It is beartype with the PEP 484 numeric tower on, so an ``int`` is accepted where a ``float`` is
annotated, as static type checkers accept it. ``untyped()`` turns it off for a block: to see
what users, who run without it, get, and because ``torch.compile`` cannot trace its wrappers.
"""

import contextlib
from collections.abc import Iterator

import jaxtyping
from beartype import BeartypeConf, beartype

typechecker = beartype(conf=BeartypeConf(is_pep484_tower=True))


@contextlib.contextmanager
def untyped() -> Iterator[None]:
    """Run the block without the test run's type checker (jaxtyping's own switch)."""
    before = jaxtyping.config.jaxtyping_disable
    jaxtyping.config.update("jaxtyping_disable", True)
    try:
        yield
    finally:
        jaxtyping.config.update("jaxtyping_disable", before)
