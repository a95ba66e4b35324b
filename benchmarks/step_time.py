"""Time per training step of each aggregator, with and without AdaptiveBudget, against a baseline.

The baseline (benchmarks/baseline.py: fp32, eager, one player at a time, a forward per MSD
candidate, a per-example loop in the l_1 projection) runs in the same process on the same model
and data, and every row prints its ratio to it. FLOPs of one library step are counted with
``torch.utils.flop_counter`` and compared with ``--peak-tflops``.

    python benchmarks/step_time.py                                  # digits CNN on CPU
    python benchmarks/step_time.py --variants fp32,compile          # ... and compiled
    python benchmarks/step_time.py --threads 1 --clock cpu          # on a busy machine
    python benchmarks/step_time.py --model preact --batch 128 --device cuda \
        --variants fp32,amp,amp+compile,amp+cudagraphs --peak-tflops 800

A variant says how the library's step runs: ``fp32`` (eager), ``compile`` (each attack iteration
through ``torch.compile``), ``amp`` (bf16 autocast + channels-last), ``amp+compile``, and
``amp+cudagraphs`` (compiled with ``mode="reduce-overhead"``: replayed as CUDA graphs), and
``amp+cudagraphs+cudnn-benchmark`` (the same with ``torch.backends.cudnn.benchmark = True``: cuDNN
times its convolution algorithms once per shape and keeps the fastest), and ``fast``: all of that
with ``Trainer(validate="first")`` (only the first batch's values are checked).
"""

import argparse
import dataclasses
import functools
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import multirobust as mr
from baseline import baseline_step
from multirobust.models import DigitsCNN, PreActResNet18
from multirobust.paper.experiment import ADAPTIVE, METHODS, make_game, paper_settings, save_json

DIGITS_PLAYERS = (
    mr.linf(eps=0.1, alpha=0.025, steps=10),
    mr.l2(eps=0.75, alpha=0.2, steps=10),
    mr.l1(eps=3.0, alpha=0.5, steps=10, k_min=2, k_max=8),
)


VARIANTS = {
    "fp32": {"amp": False, "channels_last": False, "compile": False},
    "compile": {"amp": False, "channels_last": False, "compile": True},
    "amp": {"amp": True, "channels_last": True, "compile": False},
    "amp+compile": {"amp": True, "channels_last": True, "compile": True},
    "amp+cudagraphs": {"amp": True, "channels_last": True, "compile": "reduce-overhead"},
    "amp+cudagraphs+cudnn-benchmark": {
        "amp": True,
        "channels_last": True,
        "compile": "reduce-overhead",
        "cudnn_benchmark": True,
    },
    "fast": {
        "amp": True,
        "channels_last": True,
        "compile": "reduce-overhead",
        "cudnn_benchmark": True,
        "validate": "first",
    },
}


def workload(
    model: str,
) -> tuple[tuple[int, ...], tuple[mr.Player, ...], int, Callable[[], nn.Module]]:
    """``--model``'s input shape, players, MSD iterations and model class (10 classes): the
    digits CNN with ``DIGITS_PLAYERS``, or PreAct ResNet-18 with the paper's CIFAR-10 settings."""
    if model == "digits":
        return (1, 8, 8), DIGITS_PLAYERS, 10, DigitsCNN
    s = paper_settings("cifar10")
    return (3, 32, 32), s.players, s.msd_steps, PreActResNet18


def machine(device: torch.device) -> str:
    """The GPU's name, or the CPU with its torch threads, vector capability and whether its bf16
    is native: every figure names its machine (a bf16 step on a CPU without native bf16 runs
    emulated, several times slower than fp32).

    ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` makes an AVX-512 CPU run as an AVX2 one;
    the line then says ``AVX2, bf16 emulated``.
    """
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    bf16 = "native" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "emulated"
    return (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"{torch.backends.cpu.get_cpu_capability()}, bf16 {bf16}"
    )


def lagged_game(
    players: tuple[mr.Player, ...], method: str, adaptive: str, msd_steps: int, probe_steps: int
) -> tuple[str, mr.Fixed | mr.Adaptive]:
    """A row's name and game: ``method`` with fixed budgets (``adaptive="none"``), or with the
    lagged AdaptiveBudget of norm ``adaptive`` (MSD probing ``probe_steps`` steps)."""
    game = make_game(players, method, adaptive, msd_steps, timing="lagged")
    if adaptive == "none":
        return method.upper(), game
    return f"{method.upper()}+AB {adaptive} (lagged)", dataclasses.replace(
        game, probe_steps=probe_steps
    )


def check_flags(
    p: argparse.ArgumentParser,
    args: argparse.Namespace,
    counts: tuple[str, ...] = (),
    lists: dict[str, tuple[str, ...]] | None = None,
    files: tuple[str, ...] = (),
) -> None:
    """Refuse bad flags before any timing: ``counts`` must be >= 1, every item of the comma
    lists ``lists`` one of its choices; the folders of ``files`` are made."""
    for flag in counts:
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    for flag, known in (lists or {}).items():
        unknown = [v for v in getattr(args, flag).split(",") if v not in known]
        if unknown:
            p.error(f"--{flag}: unknown {unknown[0]!r}; choose from {', '.join(known)}")
    for flag in files:
        path = getattr(args, flag)
        if path is not None:
            if os.path.isdir(path):
                p.error(f"--{flag} {path} is a folder; pass a file's path")
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("digits", "preact"), default="digits")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--methods", default="max,avg,msd")
    p.add_argument("--repeats", type=int, default=3, help="timed steps per row (median)")
    p.add_argument("--variants", default="fp32", help=f"comma list of {', '.join(VARIANTS)}")
    p.add_argument("--adaptive", default="none,l2", help="comma list: none (fixed budgets), l2")
    p.add_argument("--probe-steps", type=int, default=10, help="MSD's lagged AdaptiveBudget probes")
    p.add_argument("--no-baseline", action="store_true", help="skip the baseline rows")
    p.add_argument("--peak-tflops", type=float, default=None, help="the device's dense peak")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time, or the process's CPU time: with --threads 1 it barely moves when other "
        "processes share the cores (with more threads it counts their spin-waits too)",
    )
    args = p.parse_args()
    lists = {"methods": METHODS, "adaptive": ADAPTIVE, "variants": tuple(VARIANTS)}
    check_flags(p, args, ("batch", "repeats", "probe_steps"), lists, ("json",))
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    return args


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, repeats: int, device: torch.device, clock=time.perf_counter) -> float:
    """The median over ``repeats`` calls of ``fn`` (after one warm-up) by ``clock``."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        sync(device)
        start = clock()
        fn()
        sync(device)
        times.append(clock() - start)
    return statistics.median(times)


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.manual_seed(0)
    shape, players, msd_steps, make_model = workload(args.model)
    x = torch.rand(args.batch, *shape, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    variants = args.variants.split(",")
    torch._dynamo.config.recompile_limit = 64  # many models and players in one process
    print(
        f"model {args.model}, batch {args.batch}, device {device} ({machine(device)}), "
        f"torch {torch.__version__}, {args.clock} clock",
        flush=True,
    )
    rows = []
    for method in args.methods.split(","):
        base = None
        if not args.no_baseline:
            model = make_model().to(device)
            opt = torch.optim.SGD(model.parameters(), lr=0.01)
            step = functools.partial(baseline_step, model, opt, method, players, x, y, msd_steps)
            base = timed(step, args.repeats, device, clock)
            print(f"baseline {method.upper()}: {1e3 * base:.1f} ms per step", flush=True)
        for ab in args.adaptive.split(","):
            name, game = lagged_game(players, method, ab, msd_steps, args.probe_steps)
            flops = None
            for variant in variants:
                model = make_model().to(device)
                opt = torch.optim.SGD(model.parameters(), lr=0.01)
                options = dict(VARIANTS[variant])
                torch.backends.cudnn.benchmark = options.pop("cudnn_benchmark", False)
                trainer = mr.Trainer(model, opt, game, **options)
                if flops is None:  # the same work in every variant: count it once, eagerly
                    with FlopCounterMode(display=False) as counter:
                        counted = make_model().to(device)
                        sgd = torch.optim.SGD(counted.parameters(), lr=0.01)
                        mr.Trainer(counted, sgd, game).step(x, y)
                    flops = counter.get_total_flops()
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                start = time.perf_counter()
                trainer.step(x, y)  # the first step compiles
                first = time.perf_counter() - start
                t = timed(functools.partial(trainer.step, x, y), args.repeats, device, clock)
                row = {"method": name, "variant": variant, "ms_per_step": round(1e3 * t, 1)}
                if base is not None:
                    row["baseline_ms"] = round(1e3 * base, 1)
                    row["speedup"] = round(base / t, 2)
                row["first_step_s"] = round(first, 1)
                row["tflop_per_step"] = round(flops / 1e12, 4)
                if args.peak_tflops:
                    row["fraction_of_peak"] = round(flops / t / (args.peak_tflops * 1e12), 3)
                if device.type == "cuda":
                    peak = torch.cuda.max_memory_allocated(device)
                    row["peak_memory_gib"] = round(peak / 2**30, 2)
                rows.append(row)
                print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    print()
    keys = list(dict.fromkeys(k for r in rows for k in r))
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r.get(k, "")) for k in keys) + " |")
    if args.json:
        save_json(args.json, {"machine": machine(device), "args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
