"""Time per evaluated example of ``mr.apgd`` against pyautoattack's APGD, same model, same process.

Both attack the same batch, labelled with the model's own predictions so that every example is
attacked for every iteration (pyautoattack skips examples misclassified from the start), with the
same norm, budget, iterations and runs (pyautoattack's ``n_restarts`` is our ``restarts + 1``).
Each row prints milliseconds per example and the ratio ours / pyautoattack (below 1: ours is
faster), and a machine line heads the output.

    python benchmarks/eval_time.py                               # digits CNN on CPU, l_inf
    python benchmarks/eval_time.py --norms linf,l2,l1 --steps 100 --batch 256
    python benchmarks/eval_time.py --model preact --device cuda --batch 256 --compile
"""

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import multirobust as mr
from multirobust.apgd import apgd
from multirobust.models import DigitsCNN, PreActResNet18

NORMS = {"linf": ("Linf", mr.linf), "l2": ("L2", mr.l2), "l1": ("L1", mr.l1)}
DEFAULT_EPS = {
    "digits": {"linf": 0.1, "l2": 0.75, "l1": 2.0},
    "preact": {"linf": 8 / 255, "l2": 0.5, "l1": 12.0},
}
MODELS = {"digits": ((1, 8, 8), DigitsCNN), "preact": ((3, 32, 32), PreActResNet18)}


def machine(device: torch.device) -> str:
    """The device, the CPU's vector capability, native bf16 and torch's threads."""
    cpu = platform.processor() or platform.machine()
    capability = torch.backends.cpu.get_cpu_capability()
    bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    line = f"{cpu}, CPU capability {capability}, native bf16 {bf16}, "
    line += f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    if device.type == "cuda":
        line = f"{torch.cuda.get_device_name(device)}; host {line}"
    return line


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=tuple(MODELS), default="digits")
    p.add_argument("--norms", default="linf", help=f"comma list of {', '.join(NORMS)}")
    p.add_argument("--eps", type=float, default=None, help="budget (default: per model, norm)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--restarts", type=int, default=0, help="ours; pyautoattack runs one more")
    p.add_argument("--repeats", type=int, default=3, help="timed attacks per row (median)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--compile", action="store_true", help="our iterations via torch.compile")
    args = p.parse_args()
    for flag in ("batch", "steps", "repeats"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if args.restarts < 0:
        p.error(f"--restarts must be >= 0, got {args.restarts}")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    if args.eps is not None and not args.eps > 0:
        p.error(f"--eps must be > 0, got {args.eps}")
    unknown = [n for n in args.norms.split(",") if n not in NORMS]
    if unknown:
        p.error(f"--norms: unknown {unknown[0]!r}; choose from {', '.join(NORMS)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {args.device}: no CUDA device here; pass --device cpu")
    try:
        import pyautoattack  # noqa: F401
    except ImportError:
        p.error('pyautoattack is not installed: pip install "multirobust[eval]"')
    return args


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """The median seconds of ``repeats`` calls after one warm-up call."""
    fn()
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
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from pyautoattack.autopgd_base import APGDAttack

    device = torch.device(args.device)
    torch.manual_seed(0)
    shape, make_model = MODELS[args.model]
    model: nn.Module = make_model().to(device).eval()
    x = torch.rand(args.batch, *shape, device=device)
    with torch.no_grad():
        y = model(x).argmax(dim=1)  # every example correct: both attack all of them throughout
    print(
        f"model {args.model}, batch {args.batch}, {args.steps} steps, {args.restarts + 1} run(s), "
        f"device {device}: {machine(device)}",
        flush=True,
    )
    for norm in args.norms.split(","):
        aa_norm, player = NORMS[norm]
        eps = args.eps if args.eps is not None else DEFAULT_EPS[args.model][norm]
        ours = apgd(
            player(eps=eps), steps=args.steps, restarts=args.restarts, compiled=args.compile
        )
        theirs = APGDAttack(
            model, n_iter=args.steps, norm=aa_norm, n_restarts=args.restarts + 1, eps=eps, seed=0
        )
        rng = torch.random.get_rng_state()  # pyautoattack reseeds torch's global generator
        t_theirs = timed(lambda a=theirs: a.perturb(x, y), args.repeats, device)
        torch.random.set_rng_state(rng)
        t_ours = timed(lambda a=ours: a(model, x, y, seed=0), args.repeats, device)
        per = 1e3 / args.batch
        print(
            f"{norm} eps {eps:g}: ours {t_ours * per:.3f} ms/example, pyautoattack "
            f"{t_theirs * per:.3f} ms/example, ratio ours/pyautoattack {t_ours / t_theirs:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
