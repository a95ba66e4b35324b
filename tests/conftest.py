"""Shared test settings: deterministic torch, hypothesis profiles sized for 2 CPU cores."""

import os

import jaxtyping
import pytest
import torch
from hypothesis import settings

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


@pytest.fixture
def untyped():
    """Turn off the test run's jaxtyping + beartype checks for one test: ``torch.compile`` cannot
    trace the checking wrappers (users, who run without them, never meet this)."""
    before = jaxtyping.config.jaxtyping_disable
    jaxtyping.config.update("jaxtyping_disable", True)
    yield
    jaxtyping.config.update("jaxtyping_disable", before)
