"""Time of the per-player parameter gradients (AdaptiveBudget's extra work), vmap against a loop.

``mr.player_gradients(method="auto")`` picks one of its two ways: ``"vmap"`` (one vectorised pass
over the player axis) or ``"loop"`` (K passes). This times both, eager and compiled, in one
process on the same model, players' batches and labels, and prints each row's ratio to the eager
loop. bf16 rows run the loop only (torch's vmap rule for BatchNorm fails on bf16 activations).

    python benchmarks/player_gradients.py                              # digits CNN, CPU
    python benchmarks/player_gradients.py --model preact --batch 128 --device cuda \
        --compile default,reduce-overhead --amp both
"""

import argparse
import contextlib

import torch

import multirobust as mr
from multirobust.attacks import COMPILE_MODES
from step_time import check_flags, machine, timed, workload


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("digits", "preact"), default="digits")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--players", type=int, default=3, help="K")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--compile", default="default", help="comma list of compile modes to add")
    p.add_argument("--amp", choices=("off", "on", "both"), default="off", help="bf16 autocast")
    p.add_argument("--repeats", type=int, default=21, help="timed calls per row (median)")
    args = p.parse_args()
    lists = {"compile": ("", *COMPILE_MODES)}  # "": no compiled rows
    check_flags(p, args, ("batch", "players", "repeats"), lists)
    device = torch.device(args.device)
    torch.manual_seed(0)
    shape, _, _, make_model = workload(args.model)
    model = make_model().to(device).train()
    inputs = torch.rand(args.players, args.batch, *shape, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    setting = f"{args.model}, K={args.players}, batch {args.batch}"
    print(f"{setting}, {machine(device)}, torch {torch.__version__}", flush=True)
    torch._dynamo.config.recompile_limit = 64
    compiles: list[bool | str] = [False] + [
        True if c == "default" else c for c in args.compile.split(",") if c
    ]
    precisions = {"off": [False], "on": [True], "both": [False, True]}[args.amp]
    reference = None
    print("| method | compiled | bf16 | ms | vs eager loop |")
    print("|---|---|---|---|---|")
    for amp in precisions:
        for compiled in compiles:
            for method in ("loop", "vmap"):
                if amp and method == "vmap":
                    continue
                autocast = (
                    torch.autocast(device.type, dtype=torch.bfloat16)
                    if amp
                    else contextlib.nullcontext()
                )

                def call(method=method, compiled=compiled, autocast=autocast) -> None:
                    with autocast:
                        mr.player_gradients(model, inputs, y, method=method, compiled=compiled)

                t = timed(call, args.repeats, device)
                if reference is None:
                    reference = t
                print(f"| {method} | {compiled} | {amp} | {1e3 * t:.2f} | {reference / t:.2f} |")


if __name__ == "__main__":
    main()
