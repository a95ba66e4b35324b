"""How short can MSD's lagged AdaptiveBudget probes be? Their budgets against full attacks'.

With ``timing="lagged"``, MSD gets its per-player gradient norms from short probe attacks
(``probe_steps``) instead of each player's full PGD. This trains a digits CNN with MSD +
AdaptiveBudget and, at a few points of training, compares on fixed batches the AdaptiveBudget
factors (``eps / eps0``) and the dominant player given by probes of s steps with those given by
the players' full attacks (what ``timing="same-batch"`` uses). Probes run with the players' own
step sizes, and with the library's probe step size ``max(alpha, eps / s)``. A second full attack
with another seed gives the noise floor (how far the reference disagrees with itself), and the
spread of the full attacks' factors gives the scale of the signal.

    python benchmarks/probe_fidelity.py                   # about a minute on a 2-core CPU
    python benchmarks/probe_fidelity.py --probe-steps 1,2,5 --epochs 1,3,6 --batches 10
"""

import argparse

import torch

import multirobust as mr
from multirobust.attacks import frozen_model
from multirobust.budgets import probe_step_sizes
from multirobust.data import digits
from multirobust.models import DigitsCNN
from step_time import DIGITS_PLAYERS, check_flags, machine


def norms(model, agg, x, y, steps, seed: int, reach: bool = False) -> torch.Tensor:
    """Per-player gradient norms after each player's PGD of ``steps`` (None: its own) at the base
    budgets; with ``reach``, step sizes ``max(alpha, eps / steps)`` (the library's probes)."""
    eps0, alpha0 = agg.base_budgets()
    if reach:
        alpha0 = probe_step_sizes(eps0, alpha0, steps)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad(), frozen_model(model):
        inputs, _ = agg.each_player(model, x, y, eps0, alpha0, g, steps=steps)
    return mr.player_gradients(model, inputs, y).norm


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--probe-steps", default="1,2,3,5", help="comma list of probe lengths")
    p.add_argument("--epochs", default="1,3,6", help="compare after these training epochs")
    p.add_argument("--batches", type=int, default=20, help="batches of 64 per point")
    p.add_argument("--msd-steps", type=int, default=10)
    args = p.parse_args()
    check_flags(p, args, ("batches", "msd_steps"))
    probes, points = [], []
    for flag, into in (("probe_steps", probes), ("epochs", points)):
        text = getattr(args, flag)
        try:
            into += sorted({int(s) for s in text.split(",")})
        except ValueError:
            p.error(f"--{flag.replace('_', '-')} must be a comma list of ints, got {text!r}")
        if into[0] < 1:
            p.error(f"--{flag.replace('_', '-')} must hold ints >= 1, got {text!r}")
    torch.manual_seed(0)
    train, test = digits(seed=0)
    model = DigitsCNN()
    agg = mr.msd(*DIGITS_PLAYERS, steps=args.msd_steps)
    game = mr.adaptive(agg, timing="lagged", probe_steps=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    trainer = mr.Trainer(model, opt, game, seed=0)
    loader = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True)
    every = torch.utils.data.ConcatDataset([test, train])  # attacks on a fixed model: any data
    held_out = list(torch.utils.data.DataLoader(every, batch_size=64))[: args.batches]
    own = max(p.steps for p in DIGITS_PLAYERS)
    print(
        f"digits CNN, MSD + AdaptiveBudget, players' own attacks {own} steps, "
        f"{len(held_out)} batches of 64 per row (the test split first); "
        f"{machine(torch.device('cpu'))}, torch {torch.__version__}"
    )
    print(
        "| epochs | probe | mean abs log-ratio of factors to full attacks' | max | "
        "same dominant player | spread: mean abs log factor |"
    )
    print("|---|---|---|---|---|---|")
    done = 0
    for point in points:
        trainer.fit(loader, epochs=point - done)
        done = point
        model.train()
        full = [norms(model, agg, x, y, None, seed=i) for i, (x, y) in enumerate(held_out)]
        spread = torch.stack([mr.adaptive_factors(n)[0].log().abs().mean() for n in full]).mean()
        rows = {"full, other seed": (None, False)}
        rows |= {f"{s} step(s), own step sizes": (s, False) for s in probes}
        rows |= {f"{s} step(s), max(alpha, eps/{s})": (s, True) for s in probes}
        for name, (steps, reach) in rows.items():
            gaps, same = [], 0
            for i, (x, y) in enumerate(held_out):
                n = norms(model, agg, x, y, steps, seed=1000 + i, reach=reach)
                f, want = mr.adaptive_factors(n)[0], mr.adaptive_factors(full[i])[0]
                gaps.append((f.log() - want.log()).abs().mean())
                same += int(n.argmax() == full[i].argmax())
            gap = torch.stack(gaps)
            print(
                f"| {point} | {name} | {gap.mean():.3f} | {gap.max():.3f} | "
                f"{same}/{len(held_out)} | {spread:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
