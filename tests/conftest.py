"""Shared test settings: deterministic torch, hypothesis profiles sized for 2 CPU cores."""

import os

import pytest
import torch
from hypothesis import settings

from typechecking import untyped

settings.register_profile("default", max_examples=40, deadline=None)
settings.register_profile("thorough", max_examples=400, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` cleanly when no CUDA device is present."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(name="untyped")
def untyped_fixture():
    """The test runs without the type checker (see ``typechecking.untyped``)."""
    with untyped():
        yield
