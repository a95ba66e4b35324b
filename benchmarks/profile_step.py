"""Where one MSD training step spends its time on a GPU: kernel time by op, and host overhead.

Profiles one step (after warm-up) of PreAct ResNet-18, batch 128, the paper's CIFAR-10 players,
for each variant given, and prints torch.profiler's table by device time, with the step's wall
time against the summed kernel time (what is left is host overhead and idle gaps).

    python benchmarks/profile_step.py --variants amp,amp+compile --out profile.txt
"""

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

import multirobust as mr
from multirobust.experiment import make_game, paper_settings
from multirobust.models import PreActResNet18
from step_time import VARIANTS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--method", default="msd")
    p.add_argument("--variants", default="amp,amp+compile")
    p.add_argument("--rows", type=int, default=25)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    s = paper_settings("cifar10")
    x = torch.rand(args.batch, 3, 32, 32, device="cuda")
    y = torch.randint(0, 10, (args.batch,), device="cuda")
    report = []
    for variant in args.variants.split(","):
        torch.manual_seed(0)
        net = PreActResNet18().cuda()
        game = make_game(s.players, args.method, "none", s.msd_steps)
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        options = dict(VARIANTS[variant])
        torch.backends.cudnn.benchmark = options.pop("cudnn_benchmark", False)
        trainer = mr.Trainer(net, opt, game, **options)
        for _ in range(2):
            trainer.step(x, y)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            start = time.perf_counter()
            trainer.step(x, y)
            torch.cuda.synchronize()
            wall = time.perf_counter() - start
        events = prof.key_averages()
        on_device = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
        kernel = sum(e.self_device_time_total for e in on_device) / 1e3
        head = (
            f"== {args.method} {variant}: wall {1e3 * wall:.1f} ms (under the profiler), "
            f"summed device time {kernel:.1f} ms, {len(prof.events())} events"
        )
        table = events.table(sort_by="self_device_time_total", row_limit=args.rows)
        report += [head, table]
        print(head, flush=True)
        print("\n".join(table.splitlines()[: args.rows + 4]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(report))


if __name__ == "__main__":
    main()
