"""The runtime type checker the test run applies to the whole package (jaxtyping + beartype).

``pytest`` loads it through ``--jaxtyping-packages=multirobust,typechecking.typechecker``.
It is beartype with the PEP 484 numeric tower on, so an ``int`` is accepted where a ``float`` is
annotated, as static type checkers accept it.
"""

from beartype import BeartypeConf, beartype

typechecker = beartype(conf=BeartypeConf(is_pep484_tower=True))
