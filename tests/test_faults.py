"""Faults mid-run: a SIGKILL mid-epoch or mid-checkpoint loses at most the current epoch, and
``--resume`` then ends with the same weights as an uninterrupted run (CPU, same seed)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

import multirobust.checkpoint as ckpt

ROOT = Path(__file__).resolve().parents[1]
ARGS = [
    "--smoke",
    "--fake-data",
    "--device",
    "cpu",
    "--method",
    "avg",
    "--adaptive",
    "l2",
    "--epochs",
    "2",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

# Runs the MNIST recipe, but SIGKILLs itself while writing the second checkpoint: after the
# temporary file is written and before it is renamed over the first.
KILL_IN_SAVE = """
import os, signal, sys
sys.path.insert(0, "recipes")
import multirobust.checkpoint as c
real_replace, calls = os.replace, []
def dying_replace(src, dst):
    if os.path.basename(dst) == "checkpoint.pt":  # not config.json, written the same way
        calls.append(src)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)
c.os.replace = dying_replace
import paper
paper.main("mnist", sys.argv[1:])
"""

# Runs the MNIST recipe, but sleeps once its first checkpoint is saved (a run still under way).
SLEEP_AFTER_FIRST_SAVE = """
import sys, time
sys.path.insert(0, "recipes")
import multirobust.checkpoint as c
save = c.save
def save_then_sleep(path, state):
    save(path, state)
    time.sleep(600)
c.save = save_then_sleep
import paper
paper.main("mnist", sys.argv[1:])
"""


def recipe(out: Path, *extra: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "recipes/mnist.py", *ARGS, "--out", str(out), *extra]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(p: subprocess.Popen[str]) -> None:
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out[-3000:]


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    state = ckpt.load(out / "checkpoint.pt")
    assert state["trainer"]["epochs_done"] == 2
    return state["trainer"]["model"]


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_sigkill_mid_epoch_then_resume(tmp_path):
    finish(recipe(tmp_path / "full"))
    cut = tmp_path / "cut"
    p = recipe(cut)
    deadline = time.time() + 240
    while not (cut / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)  # the first epoch is saved; the second is under way
    p.wait()
    assert ckpt.load(cut / "checkpoint.pt")["trainer"]["epochs_done"] >= 1
    finish(recipe(cut, "--resume"))
    assert_same(final_weights(tmp_path / "full"), final_weights(cut))


def test_sigkill_while_writing_a_checkpoint_then_resume(tmp_path):
    finish(recipe(tmp_path / "full"))
    cut = tmp_path / "cut"
    p = subprocess.run(
        [sys.executable, "-c", KILL_IN_SAVE, *ARGS, "--out", str(cut)],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == -signal.SIGKILL
    leftovers = [f.name for f in cut.iterdir() if f.name.startswith(".tmp-")]
    assert leftovers, "the kill should have left the half-finished temporary file"
    assert ckpt.load(cut / "checkpoint.pt")["trainer"]["epochs_done"] == 1  # the last good one
    finish(recipe(cut, "--resume"))
    assert_same(final_weights(tmp_path / "full"), final_weights(cut))


def test_a_second_run_is_refused_until_the_first_is_killed(tmp_path):
    """Two runs into one --out: the second is refused by name (it used to interleave the first's
    metrics.jsonl and exit 0); once the first is SIGKILLed, the OS has dropped its lock."""
    out = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-c", SLEEP_AFTER_FIRST_SAVE, *ARGS, "--out", str(out)],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while not (out / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    assert (out / "run.lock").read_text().strip() == str(first.pid)
    second = subprocess.run(
        [sys.executable, "recipes/mnist.py", *ARGS, "--out", str(out), "--resume"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
    assert f"--out {out} is in use by another run (pid {first.pid})" in second.stderr
    first.send_signal(signal.SIGKILL)
    first.wait()
    finish(recipe(out, "--resume"))  # the folder is free again, and the run ends
    assert ckpt.load(out / "checkpoint.pt")["trainer"]["epochs_done"] == 2
