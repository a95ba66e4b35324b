"""Quickstart: every aggregator with and without AdaptiveBudget on scikit-learn's digits (CPU).

Trains a small CNN on the bundled 8x8 digits (real data, no download) with MAX, AVG and MSD, each
with fixed budgets and with AdaptiveBudget, evaluates each model with the PGD suite, and prints a
table in the paper's layout (clean, per-threat and All accuracy) and a player-domination summary
(the paper's Table 5 streaks).

    python recipes/digits.py                 # the full quickstart (minutes on 2 CPU cores)
    python recipes/digits.py --smoke         # a few seconds, for tests
"""

import argparse
import glob
import json
import os
import time

import torch
from torch.utils.data import DataLoader

import multirobust as mr
from multirobust.data import digits
from multirobust.models import DigitsCNN
from multirobust.paper.experiment import (
    ADAPTIVE,
    METHODS,
    changed_settings,
    claim_out,
    fit_with_checkpoints,
    make_game,
    plot_history,
    read_json,
    release_out,
    save_json,
)

# Budgets for 8x8 images in [0, 1] (64 coordinates): l_inf 0.1 is 1.6 of the 16 grey levels.
PLAYERS = (
    mr.linf(eps=0.1, alpha=0.025, steps=10),
    mr.l2(eps=0.75, alpha=0.2, steps=10),
    mr.l1(eps=3.0, alpha=0.5, steps=10, k_min=2, k_max=8),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/digits", help="output folder (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=6, help="training epochs per model")
    p.add_argument("--methods", default="max,avg,msd", help="comma-separated aggregators")
    p.add_argument("--adaptive", default="none,l2", help="comma-separated: none, l1, l2")
    p.add_argument("--msd-steps", type=int, default=10, help="MSD iterations")
    p.add_argument("--eval-steps", type=int, default=20, help="PGD iterations at evaluation")
    p.add_argument("--eval-restarts", type=int, default=1, help="PGD random restarts at evaluation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue unfinished runs in --out")
    p.add_argument("--smoke", action="store_true", help="tiny run for tests (seconds)")
    args = p.parse_args(argv)
    # Every flag is checked here, before the first of the six models trains.
    for flag, low in (("epochs", 1), ("msd_steps", 1), ("eval_steps", 1), ("eval_restarts", 0)):
        if getattr(args, flag) < low:
            p.error(f"--{flag.replace('_', '-')} must be >= {low}, got {getattr(args, flag)}")
    for flag, known in (("methods", METHODS), ("adaptive", ADAPTIVE)):
        unknown = [v for v in getattr(args, flag).split(",") if v not in known]
        if unknown:
            p.error(f"--{flag}: unknown {unknown[0]!r}; choose from {', '.join(known)}")
    if args.smoke:
        args.epochs, args.msd_steps, args.eval_steps, args.eval_restarts = 1, 2, 3, 0
    # --out is held for the whole run (a second run into it is refused), after its checks.
    problem = claim_out(args.out, lambda: out_problem(args))
    if problem:
        p.error(problem)
    return args


# What a run is: a resumed run must be started with the same values, so that the kept results and
# checkpoints are of its settings (--methods and --adaptive may change: a resume can add models).
RUN_IDENTITY = ("epochs", "msd_steps", "eval_steps", "eval_restarts", "seed", "smoke")


def out_problem(args: argparse.Namespace) -> str | None:
    """Why ``--out`` cannot take this run, or ``None``: a run there without ``--resume``,
    ``--resume`` with no run there, a run started with other settings, or unreadable results."""
    config = os.path.join(args.out, "config.json")
    results = os.path.join(args.out, "results.json")
    checkpoints = glob.glob(os.path.join(glob.escape(args.out), "*", "checkpoint.pt"))
    found = [n for n in (config, results) if os.path.exists(n)] + checkpoints
    if not args.resume:
        if found:
            return (
                f"--out {args.out} already holds a run ({os.path.relpath(found[0], args.out)}): "
                "pass --resume to continue it, or another --out for a new run"
            )
        return None
    if not os.path.exists(config):
        if found:
            return (
                f"--resume: {args.out} has no config.json to check its settings against; "
                "restore it, or delete the folder to start over"
            )
        return f"--resume: {args.out} holds no run (no config.json); drop --resume to start one"
    changed = changed_settings(config, vars(args), RUN_IDENTITY)
    if changed:
        return f"--resume: in {args.out}, {changed}; resume with them, or pick another --out"
    if os.path.exists(results):
        try:
            read_json(results, RESULTS_FIX.format(out=args.out))
        except ValueError as e:
            return f"--resume: {e}"
    return None


RESULTS_FIX = (
    "delete it (--resume then evaluates every model again from its checkpoint), or delete "
    "{out} to start over"
)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        return run(args)
    finally:
        release_out(args.out)


def run(args: argparse.Namespace) -> dict:
    """Train, evaluate and tabulate every model into ``args.out``, which ``parse_args`` claimed."""
    players = PLAYERS
    if args.smoke:
        players = tuple(p(steps=2) for p in PLAYERS)
    train, test = digits(seed=args.seed)
    if args.smoke:
        train, test = (
            torch.utils.data.Subset(train, range(96)),
            torch.utils.data.Subset(test, range(64)),
        )
    x_test, y_test = next(iter(DataLoader(test, batch_size=len(test))))
    config = {
        **vars(args),
        "players": [repr(p) for p in players],
        "threads": torch.get_num_threads(),
    }
    save_json(os.path.join(args.out, "config.json"), config)
    print("settings:", json.dumps(config, indent=2))

    # A resumed run keeps the finished models it is not asked to redo.
    path = os.path.join(args.out, "results.json")
    results = {}
    if args.resume and os.path.exists(path):
        results = read_json(path, RESULTS_FIX.format(out=args.out))
    for method in args.methods.split(","):
        for ab in args.adaptive.split(","):
            name = method.upper() + ("" if ab == "none" else f"+AB {ab}")
            run_dir = os.path.join(args.out, name.replace(" ", "_").replace("+", "-"))
            os.makedirs(run_dir, exist_ok=True)
            torch.manual_seed(args.seed)
            # The heart of a recipe: players -> game -> trainer -> fit -> evaluate.
            game = make_game(players, method, ab, msd_steps=args.msd_steps, track_domination=True)
            model = DigitsCNN()
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            trainer = mr.Trainer(
                model,
                optimizer,
                game,
                seed=args.seed,
                log_path=os.path.join(run_dir, "metrics.jsonl"),
            )
            loader = DataLoader(train, batch_size=64, shuffle=True)
            start = time.time()
            history = fit_with_checkpoints(
                trainer, loader, args.epochs, run_dir, resume=args.resume
            )
            report = mr.evaluate(
                model,
                (x_test, y_test),
                threats=PLAYERS,
                suite="pgd",
                steps=args.eval_steps,
                restarts=args.eval_restarts,
                seed=args.seed,
            )
            streaks = mr.diagnostics.domination(history)
            plot_history(history, os.path.join(run_dir, "trajectories.png"), players)
            results[name] = {
                "report": report.to_dict(),
                "longest_streak": streaks.longest,
                "mean_streak": streaks.mean,
                "final_eps": history[-1]["eps"],
                "seconds": round(time.time() - start, 1),
            }
            # Written after every model, so a run cut short keeps the finished models' results.
            save_json(path, results)
            print(f"\n== {name}: trained and evaluated in {results[name]['seconds']} s")
            print(report)
            print(streaks)

    print("\nAll results (accuracy %, PGD suite):")
    print(table(results))
    return results


def table(results: dict) -> str:
    """The paper's layout: one column per method, rows clean / per threat / All / streaks."""
    names = list(results)
    rows = ["clean", *[p.name for p in PLAYERS], "All"]
    lines = [f"{'':<14}" + "".join(f"{n:>12}" for n in names)]
    for row in rows:
        cells = []
        for n in names:
            r = results[n]["report"]
            value = (
                r["clean"] if row == "clean" else r["union"] if row == "All" else r["robust"][row]
            )
            cells.append(f"{100 * value:>12.1f}")
        lines.append(f"{row:<14}" + "".join(cells))
    for p in PLAYERS:
        cells = "".join(f"{results[n]['longest_streak'].get(p.name, 0):>12}" for n in names)
        lines.append(f"{'streak ' + p.name:<14}{cells}")
    lines.append(
        f"{'mean streak':<14}" + "".join(f"{results[n]['mean_streak']:>12.2f}" for n in names)
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
