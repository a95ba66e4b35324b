"""The benchmark scripts run end to end (CPU, tiny settings): a broken script would otherwise be
found only on a lent GPU, where every minute counts. The figures themselves are not checked."""

import json
import os
import pathlib
import runpy
import subprocess
import sys

import pytest
import torch

BENCHMARKS = pathlib.Path(__file__).parents[1] / "benchmarks"


def run(script: str, *args: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a benchmark script in this process; the global torch settings it changes are
    restored afterwards."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setattr(sys, "argv", [script, *args])
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
    limit = torch._dynamo.config.recompile_limit
    with torch._dynamo.config.patch(recompile_limit=limit), torch.random.fork_rng():
        runpy.run_path(str(BENCHMARKS / script), run_name="__main__")


def test_step_time_prints_and_writes_every_row(tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "bench" / "rows.json"  # a folder made before the timing
    args = ("--methods", "avg,msd", "--batch", "8", "--repeats", "1", "--probe-steps", "1")
    threads = torch.get_num_threads()
    try:
        run("step_time.py", *args, "--clock", "cpu", "--json", str(out), monkeypatch=monkeypatch)
    finally:
        torch.set_num_threads(threads)
    rows = json.loads(out.read_text())["rows"]
    assert [r["method"] for r in rows] == [
        "AVG",
        "AVG+AB l2 (lagged)",
        "MSD",
        "MSD+AB l2 (lagged)",
    ]
    assert all(r["speedup"] > 0 and r["tflop_per_step"] > 0 for r in rows)
    printed = capsys.readouterr().out
    assert "| method | variant | ms_per_step |" in printed
    capability = torch.backends.cpu.get_cpu_capability()
    header = printed.splitlines()[0]
    assert f"{capability}, bf16 " in header and header.endswith("cpu clock")  # the CPU's kind


MACHINE = """
import sys, torch
sys.path.insert(0, sys.argv[1])
from step_time import machine
print(machine(torch.device("cpu")))
"""


def test_machine_line_says_when_bf16_is_emulated() -> None:
    """Capped at AVX2 (the emulation of an AVX2-only CPU), the line says so and calls bf16
    emulated: amp figures from such a CPU are several times slower than fp32."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    run = subprocess.run(
        [sys.executable, "-c", MACHINE, str(BENCHMARKS)], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0, run.stderr[-2000:]
    line = run.stdout.strip()
    assert line.endswith(("AVX2, bf16 emulated", "DEFAULT, bf16 emulated")), line
    assert " threads, " in line


@pytest.mark.parametrize(
    ("script", "flags", "message"),
    [
        ("step_time.py", ("--repeats", "0"), "--repeats must be >= 1, got 0"),
        ("step_time.py", ("--threads", "0"), "--threads must be >= 1, got 0"),
        ("step_time.py", ("--clock", "cycles"), "argument --clock: invalid choice"),
        ("step_time.py", ("--adaptive", "none,foo"), "--adaptive: unknown 'foo'; choose from"),
        ("profile_step.py", ("--variants", "fp32,fats"), "--variants: unknown 'fats'"),
        ("profile_step.py", ("--out", "."), "--out . is a folder"),
        ("player_gradients.py", ("--repeats", "0"), "--repeats must be >= 1, got 0"),
        ("player_gradients.py", ("--compile", "defualt"), "--compile: unknown 'defualt'"),
        ("profile_step.py", ("--method", "max,msd"), "argument --method: invalid choice"),
        ("probe_fidelity.py", ("--epochs", "0,1"), "--epochs must hold ints >= 1, got '0,1'"),
        ("probe_fidelity.py", ("--batches", "0"), "--batches must be >= 1, got 0"),
    ],
)
def test_bad_flags_fail_before_any_work(script, flags, message, monkeypatch, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        run(script, *flags, monkeypatch=monkeypatch)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_profile_step_reports_the_phases_of_a_step(monkeypatch, capsys) -> None:
    args = ("--model", "digits", "--batch", "8", "--device", "cpu", "--variants", "fp32")
    run("profile_step.py", *args, "--adaptive", "l2", "--probe-steps", "1", monkeypatch=monkeypatch)
    printed = capsys.readouterr().out
    for phase in ("attack", "player_attacks", "player_gradients", "budgets", "loss", "update"):
        assert f"| multirobust.{phase} | " in printed


def test_player_gradients_times_both_methods(monkeypatch, capsys) -> None:
    args = ("--batch", "8", "--repeats", "1", "--compile", "")
    run("player_gradients.py", *args, monkeypatch=monkeypatch)
    printed = capsys.readouterr().out
    assert "| loop | False | False |" in printed and "| vmap | False | False |" in printed


def test_probe_fidelity_compares_probes_with_full_attacks(monkeypatch, capsys) -> None:
    args = ("--probe-steps", "2", "--epochs", "1", "--batches", "1", "--msd-steps", "1")
    run("probe_fidelity.py", *args, monkeypatch=monkeypatch)
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| 1 |")]
    assert [r.split(" | ")[1] for r in rows] == [
        "full, other seed",
        "2 step(s), own step sizes",
        "2 step(s), max(alpha, eps/2)",
    ]


def test_gpu_script_refuses_an_unknown_part_before_the_gpu(tmp_path) -> None:
    out = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu.sh"), "tests", "bench_msd"],
        env={**os.environ, "OUT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "unknown part 'bench_msd'; parts: tests bench-ab" in out.stderr
    assert not (tmp_path / "gpu.txt").exists()  # nvidia-smi never ran
