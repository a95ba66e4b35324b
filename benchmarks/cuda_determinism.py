"""Which parts of multirobust repeat bit for bit on a CUDA GPU, and which do not.

Runs each piece twice with the same seed and reports whether the results are bitwise equal (and
the largest difference), with torch's default settings and with
``torch.use_deterministic_algorithms(True)``. The findings are written up in docs/reliability.md.

    CUBLAS_WORKSPACE_CONFIG=:4096:8 python benchmarks/cuda_determinism.py
"""

import argparse
import copy

import torch

import multirobust as mr
from multirobust.models import PreActResNet18
from multirobust.paper.experiment import make_game, paper_settings


def players():
    return paper_settings("cifar10").players


def attack(player, x, y, net):
    return mr.pgd(player, steps=10, restarts=1)(net, x, y, seed=0)


def train(method: str, x, y, amp: bool, compile: bool | str):
    torch.manual_seed(0)
    net = PreActResNet18().cuda()
    game = make_game(
        tuple(p(steps=5) for p in players()), method, "l2", msd_steps=5, timing="lagged"
    )
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    t = mr.Trainer(net, opt, game, seed=0, amp=amp, compile=compile, channels_last=amp)
    losses = [t.step(x, y)["loss"] for _ in range(3)]
    return copy.deepcopy(net.state_dict()), losses


def compare(a, b) -> str:
    if isinstance(a, dict):
        diffs = [(a[k].float() - b[k].float()).abs().max().item() for k in a]
        same = all(torch.equal(a[k], b[k]) for k in a)
        return "bitwise" if same else f"max diff {max(diffs):.2e}"
    return "bitwise" if torch.equal(a, b) else f"max diff {(a - b).abs().max().item():.2e}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, 32, 32, generator=g).cuda()
    y = torch.randint(0, 10, (args.batch,), generator=g).cuda()
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    for deterministic in (False, True):
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
        mode = "deterministic algorithms" if deterministic else "defaults"
        torch.manual_seed(0)
        net = PreActResNet18().cuda().eval()
        for pl in players():
            same = compare(attack(pl, x, y, net), attack(pl, x, y, net))
            print(f"[{mode}] pgd {pl.name}: {same}", flush=True)
        for method in ("msd", "max"):
            for amp, compile in ((False, False), (True, False), (True, "reduce-overhead")):
                (w0, l0), (w1, l1) = (train(method, x, y, amp, compile) for _ in range(2))
                print(
                    f"[{mode}] train {method}+AB amp={amp} compile={compile}: weights "
                    f"{compare(w0, w1)}; losses equal {l0 == l1}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
