"""Where one training step spends its time: by phase of the step, and by op.

Profiles one step (after warm-up) for each variant given and prints two tables:

- the step's phases, from the ranges ``Trainer.step`` marks (``multirobust.check``, ``.attack``,
  ``.player_attacks`` (same-batch attacks or lagged MSD probes), ``.player_gradients``,
  ``.budgets``, ``.loss``, ``.update``): host time, and on CUDA the device time of the kernels
  launched inside each;
- torch.profiler's op table, by device time on CUDA and by host time on CPU.

On CUDA the header gives the step's wall time against the summed kernel time: what is left is
host overhead and idle gaps.

    python benchmarks/profile_step.py --variants amp,amp+compile --out profile.txt     # CUDA
    python benchmarks/profile_step.py --adaptive l2 --probe-steps 2 --variants fast
    python benchmarks/profile_step.py --model digits --batch 64 --device cpu --variants compile
"""

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

import multirobust as mr
from multirobust.paper.experiment import ADAPTIVE, METHODS
from step_time import VARIANTS, check_flags, lagged_game, machine, workload


def phases(prof: profile, cuda: bool) -> list[str]:
    """A Markdown table of the ``multirobust.*`` ranges: calls, host ms and the device time of
    the kernels launched inside (on CUDA the profiler also lists each range's span on the GPU as
    a row of its own, left out here)."""
    rows = ["| phase | calls | host ms | device ms |", "|---|---|---|---|"]
    for e in sorted(prof.key_averages(), key=lambda e: -e.cpu_time_total):
        if e.key.startswith("multirobust.") and e.device_type == torch.autograd.DeviceType.CPU:
            device = f"{e.device_time_total / 1e3:.1f}" if cuda else ""
            rows.append(f"| {e.key} | {e.count} | {e.cpu_time_total / 1e3:.1f} | {device} |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("digits", "preact"), default="preact")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--method", choices=METHODS, default="msd")
    p.add_argument(
        "--adaptive", choices=ADAPTIVE, default="none", help="none (fixed budgets), or lagged l2/l1"
    )
    p.add_argument("--probe-steps", type=int, default=10, help="MSD's lagged AdaptiveBudget probes")
    p.add_argument("--variants", default="amp,amp+compile")
    p.add_argument("--rows", type=int, default=25)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    check_flags(p, args, ("batch", "probe_steps", "rows"), {"variants": tuple(VARIANTS)}, ("out",))
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    shape, players, msd_steps, make_model = workload(args.model)
    x = torch.rand(args.batch, *shape, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    name, game = lagged_game(players, args.method, args.adaptive, msd_steps, args.probe_steps)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sort = "self_device_time_total" if cuda else "self_cpu_time_total"
    report = []
    for variant in args.variants.split(","):
        torch.manual_seed(0)
        net = make_model().to(device)
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        options = dict(VARIANTS[variant])
        torch.backends.cudnn.benchmark = options.pop("cudnn_benchmark", False)
        trainer = mr.Trainer(net, opt, game, **options)
        for _ in range(2):
            trainer.step(x, y)
        if cuda:
            torch.cuda.synchronize()
        with profile(activities=activities) as prof:
            start = time.perf_counter()
            trainer.step(x, y)
            if cuda:
                torch.cuda.synchronize()
            wall = time.perf_counter() - start
        events = prof.key_averages()
        head = (
            f"== {name} {variant}, {args.model} batch {args.batch} on {device} "
            f"({machine(device)}, torch {torch.__version__}): wall "
            f"{1e3 * wall:.1f} ms (under the profiler), {len(prof.events())} events"
        )
        if cuda:  # kernels only: not the spans of the user ranges (pytorch issue 130730)
            on_device = [
                e
                for e in events
                if e.device_type == torch.autograd.DeviceType.CUDA and not e.is_user_annotation
            ]
            kernel = sum(e.self_device_time_total for e in on_device) / 1e3
            head += f", summed kernel time {kernel:.1f} ms"
        table = events.table(sort_by=sort, row_limit=args.rows)
        phase_rows = phases(prof, cuda)
        report += [head, *phase_rows, table]
        print(head, *phase_rows, sep="\n", flush=True)
        print("\n".join(table.splitlines()[: args.rows + 4]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(report))


if __name__ == "__main__":
    main()
