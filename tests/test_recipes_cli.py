"""The paper recipes' command lines say what they do: help for every flag, the smoke run's
epoch cap, and a dataset that is neither there nor downloadable."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def recipe(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the MNIST recipe with every download sent to a closed local port (never the network)."""
    cmd = [sys.executable, "recipes/mnist.py", *args]
    closed = "http://127.0.0.1:9"
    env = {**os.environ, "http_proxy": closed, "https_proxy": closed, "no_proxy": ""}
    env |= {"HTTP_PROXY": closed, "HTTPS_PROXY": closed, "NO_PROXY": ""}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_every_flag_has_help() -> None:
    """Before: --timing, --seed and --channels-last had none."""
    out = recipe("--help")
    for flag in ("--timing", "--seed", "--channels-last"):
        line = next(ln for ln in out.stdout.splitlines() if ln.strip().startswith(flag))
        text = out.stdout[out.stdout.index(line) :].split("\n  -")[0]
        assert len(text.split()) > 3, f"{flag} has no help: {text!r}"


def test_a_missing_dataset_offline_names_the_folder_and_fake_data(tmp_path) -> None:
    """Before: a 40-line URLError traceback."""
    out = recipe(
        "--smoke",
        "--epochs",
        "5",
        "--data-dir",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "run"),
    )
    assert out.returncode != 0
    assert f"--data-dir {tmp_path / 'data'}" in out.stderr and "--fake-data" in out.stderr
    assert "Traceback" not in out.stderr
    assert "--smoke: training 2 epochs, not the 5 of --epochs" in out.stderr
