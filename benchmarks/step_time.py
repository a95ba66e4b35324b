"""Time per training step of each aggregator, with and without AdaptiveBudget, against a baseline.

The baseline (benchmarks/baseline.py: fp32, eager, one player at a time, a forward per MSD
candidate, a per-example loop in the l_1 projection) runs in the same process on the same model
and data, and every row prints its ratio to it. FLOPs of one library step are counted with
``torch.utils.flop_counter`` and compared with ``--peak-tflops``.

    python benchmarks/step_time.py                               # digits CNN on CPU
    python benchmarks/step_time.py --model preact --batch 128 --device cuda --amp --peak-tflops 800
"""

import argparse
import functools
import json
import platform
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import multirobust as mr
from baseline import baseline_step
from multirobust.experiment import make_game, paper_settings
from multirobust.models import DigitsCNN, PreActResNet18

DIGITS_PLAYERS = (
    mr.linf(eps=0.1, alpha=0.025, steps=10),
    mr.l2(eps=0.75, alpha=0.2, steps=10),
    mr.l1(eps=3.0, alpha=0.5, steps=10, k_min=2, k_max=8),
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("digits", "preact"), default="digits")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--methods", default="max,avg,msd")
    p.add_argument("--repeats", type=int, default=3, help="timed steps per row (median)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast for the library")
    p.add_argument("--compile", action="store_true", help="torch.compile each attack iteration")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=None, help="the device's dense peak")
    p.add_argument("--json", default=None, help="write the results here")
    return p.parse_args()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.model == "digits":
        shape, classes, players, msd_steps = (1, 8, 8), 10, DIGITS_PLAYERS, 10
        make_model = DigitsCNN
    else:
        s = paper_settings("cifar10")
        shape, classes, players, msd_steps = (3, 32, 32), 10, s.players, s.msd_steps
        make_model = PreActResNet18
    x = torch.rand(args.batch, *shape, device=device)
    y = torch.randint(0, classes, (args.batch,), device=device)
    machine = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    )
    print(
        f"model {args.model}, batch {args.batch}, device {device} ({machine}), "
        f"torch {torch.__version__}, amp {args.amp}"
    )
    rows = []
    for method in args.methods.split(","):
        model = make_model().to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        base = timed(
            functools.partial(baseline_step, model, opt, method, players, x, y, msd_steps),
            args.repeats,
            device,
        )
        for ab in ("none", "l2"):
            game = make_game(players, method, ab, msd_steps, timing="lagged")
            model = make_model().to(device)
            trainer = mr.Trainer(
                model,
                torch.optim.SGD(model.parameters(), lr=0.01),
                game,
                amp=args.amp,
                channels_last=args.channels_last,
                compile=args.compile,
            )
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t = timed(functools.partial(trainer.step, x, y), args.repeats, device)
            with FlopCounterMode(display=False) as counter:
                trainer.step(x, y)
            flops = counter.get_total_flops()
            row = {
                "method": method.upper() + ("" if ab == "none" else "+AB l2 (lagged)"),
                "ms_per_step": round(1e3 * t, 1),
                "baseline_ms": round(1e3 * base, 1),
                "speedup": round(base / t, 2),
                "tflop_per_step": round(flops / 1e12, 4),
            }
            if args.peak_tflops:
                row["fraction_of_peak"] = round(flops / t / (args.peak_tflops * 1e12), 3)
            if device.type == "cuda":
                row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
            rows.append(row)
            print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "args": vars(args), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
