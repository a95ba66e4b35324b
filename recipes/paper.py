"""The paper's MNIST / CIFAR-10 / CIFAR-100 experiments, run by mnist.py, cifar10.py, cifar100.py.

Trains the paper's model with one aggregator (MAX, AVG or MSD), with fixed budgets or
AdaptiveBudget, checkpointing every epoch, then evaluates with the PGD suite (and AutoAttack when
pyautoattack is installed). Runs unchanged under ``torchrun --nproc_per_node=N`` (DDP: each rank
attacks its own shard of every batch; ``--batch-size`` is per rank, so the effective batch is
N times larger than the paper's unless you divide it).
"""

import argparse
import json
import os
import sys
import time
import weakref

import torch
from torch.utils.data import DataLoader, Subset
from torch.utils.data.distributed import DistributedSampler

import multirobust as mr
from multirobust.data import fake_dataset, torchvision_dataset
from multirobust.paper import experiment as ex


def parse_args(dataset: str, argv: list[str] | None) -> argparse.Namespace:
    s = ex.paper_settings(dataset)
    p = argparse.ArgumentParser(description=f"The paper's {dataset} experiment.")
    p.add_argument("--method", choices=ex.METHODS, default="msd", help="aggregator")
    p.add_argument("--adaptive", choices=ex.ADAPTIVE, default="none", help="AdaptiveBudget norm")
    p.add_argument(
        "--timing",
        choices=("same-batch", "lagged"),
        default="same-batch",
        help="AdaptiveBudget's timing: same-batch (the paper's: budgets from this batch's "
        "attacks) or lagged (budgets from the previous batch: faster); default: %(default)s",
    )
    p.add_argument("--data-dir", default="data", help="torchvision data folder")
    p.add_argument("--fake-data", action="store_true", help="random tensors of the right shapes")
    p.add_argument("--out", default=f"runs/{dataset}", help="output folder")
    p.add_argument(
        "--epochs",
        type=int,
        default=s.epochs,
        help="training epochs (default: the paper's %(default)s); the learning-rate schedule's "
        "knots are scaled to them",
    )
    p.add_argument("--batch-size", type=int, default=s.batch_size, help="per rank")
    p.add_argument("--eval-n", type=int, default=None, help="test images to evaluate (all)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast")
    p.add_argument(
        "--channels-last", action="store_true", help="channels-last memory format (GPU speed)"
    )
    p.add_argument(
        "--compile",
        choices=("none", "default", "reduce-overhead"),
        default="none",
        help="torch.compile the attack iterations and the training step "
        "(reduce-overhead: and replay the iterations as CUDA graphs)",
    )
    p.add_argument(
        "--fast",
        action="store_true",
        help="the measured fast path on a GPU: --amp --channels-last --compile reduce-overhead "
        "(unless --compile is given), cudnn.benchmark, and only the first batch's values checked "
        "(docs/performance.md)",
    )
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the model, data order and attacks (default 0)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its checkpoint.pt; pass the settings it was started "
        "with",
    )
    p.add_argument("--smoke", action="store_true", help="tiny data and attacks (a minute on CPU)")
    args = p.parse_args(argv)
    if (args.fast or (args.device or "").startswith("cuda")) and not torch.cuda.is_available():
        flag = "--fast" if args.fast else f"--device {args.device}"
        p.error(
            f"{flag} needs a CUDA GPU and this machine has none (it would compile for minutes on "
            "the CPU); on a CPU leave it out, or pass --compile default for compiled fp32"
        )
    for flag in ("epochs", "batch_size", "eval_n"):  # checked before any download or step
        value = getattr(args, flag)
        if value is not None and value < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    if args.smoke:
        if args.epochs > 2 and args.epochs != p.get_default("epochs"):
            print(f"--smoke: training 2 epochs, not the {args.epochs} of --epochs", file=sys.stderr)
        args.epochs, args.batch_size, args.eval_n = min(args.epochs, 2), 8, args.eval_n or 16
    # The rank that writes holds --out for the whole run: a second run into it is refused.
    if os.environ.get("RANK", "0") == "0":
        problem = ex.claim_out(args.out, lambda: out_problem(args, dataset))
    else:
        problem = out_problem(args, dataset)
    if problem:
        p.error(problem)
    return args


# What a run is: a resumed run must be started with the same values (the rest, such as --device,
# --compile or --eval-n, may change between the two halves). The number of torchrun ranks is one:
# the effective batch, and so the schedule, depend on it.
RUN_IDENTITY = ("dataset", "method", "adaptive", "timing", "epochs", "batch_size", "seed")
RUN_IDENTITY += ("smoke", "fake_data", "world_size")


def out_problem(args: argparse.Namespace, dataset: str) -> str | None:
    """Why ``--out`` cannot take this run, or ``None``: a file, a run with a checkpoint but no
    ``--resume``, ``--resume`` with no run there, or a run started with other settings."""
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        return f"--out {args.out} is a file, not a folder"
    has_checkpoint = os.path.exists(os.path.join(args.out, "checkpoint.pt"))
    config_path = os.path.join(args.out, "config.json")
    if not args.resume:
        if has_checkpoint:
            return (
                f"--out {args.out} already holds a run (checkpoint.pt): pass --resume to "
                "continue it, or another --out for a new run"
            )
        return None
    if not os.path.exists(config_path):
        if has_checkpoint:  # a checkpoint copied in from a backup: nothing to compare it with
            return None
        return f"--resume: {args.out} holds no run (no config.json); drop --resume to start one"
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    asked = {"dataset": dataset, **vars(args), "world_size": world_size}
    changed = ex.changed_settings(config_path, asked, RUN_IDENTITY)
    if changed:
        return (
            f"--resume: in {args.out}, {changed}; resume it with its own settings, or pick "
            "another --out for a new run"
        )
    if not has_checkpoint and os.environ.get("RANK", "0") == "0":
        print(
            f"--resume: {args.out} has no checkpoint yet (stopped in its first epoch): "
            "training from the start"
        )
    return None


def main(dataset: str, argv: list[str] | None = None) -> dict:
    args = parse_args(dataset, argv)
    try:
        return run(dataset, args)
    finally:
        ex.release_out(args.out)


def run(dataset: str, args: argparse.Namespace) -> dict:
    """Train and evaluate one run into ``args.out``, which ``parse_args`` has claimed."""
    dist = ex.init_distributed(args.device)
    if args.fast:
        args.amp, args.channels_last = True, True
        if args.compile == "none":  # an explicit --compile wins
            args.compile = "reduce-overhead"
        torch.backends.cudnn.benchmark = True
    settings = ex.paper_settings(dataset)
    players, msd_steps = settings.players, settings.msd_steps
    eval_steps, eval_restarts = settings.eval_steps, settings.eval_restarts
    if args.smoke:
        players = tuple(p(steps=2, restarts=0) for p in players)
        msd_steps, eval_steps, eval_restarts = 2, {p.name: 2 for p in players}, 0
    if args.fake_data:
        train, test = (
            fake_dataset(dataset, 32 if args.smoke else 50_000),
            fake_dataset(dataset, 16 if args.smoke else 10_000, seed=1),
        )
    else:
        try:
            train = torchvision_dataset(dataset, args.data_dir, train=True, augment=True)
            test = torchvision_dataset(dataset, args.data_dir, train=False)
        except (OSError, RuntimeError) as e:  # urllib's URLError is an OSError
            raise SystemExit(
                f"{dataset}: the data is not in --data-dir {args.data_dir} and could not be "
                f"downloaded ({type(e).__name__}: {str(e).splitlines()[0][:120]}); put "
                "torchvision's files for it there, or pass --fake-data to run on random images"
            ) from None
        if args.smoke:
            train = Subset(train, range(min(32, len(train))))
            test = Subset(test, range(min(16, len(test))))
    config = {
        "dataset": dataset,
        **vars(args),
        "world_size": dist.world_size,
        "players": [repr(p) for p in players],
        "msd_steps": msd_steps,
        "settings": repr(settings),
    }
    config_path = os.path.join(args.out, "config.json")
    if dist.is_main:
        os.makedirs(args.out, exist_ok=True)
        if not args.resume:  # a resumed run's, once its checkpoint has loaded (after training)
            ex.save_json(config_path, config)
        print("settings:", json.dumps(config, indent=2))

    torch.manual_seed(args.seed)
    sampler = DistributedSampler(train, seed=args.seed) if dist.world_size > 1 else None
    loader = DataLoader(
        train,
        batch_size=args.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=True,
        num_workers=0 if args.smoke else 4,
    )
    # The heart: players -> game -> trainer -> fit (checkpointed) -> evaluate.
    game = ex.make_game(players, args.method, args.adaptive, msd_steps, timing=args.timing)
    model = ex.paper_model(dataset).to(dist.device)
    optimizer = ex.make_optimizer(model, settings)
    schedule = ex.paper_schedule(optimizer, settings, args.epochs, len(loader))
    if dist.world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    trainer = mr.Trainer(
        model,
        optimizer,
        game,
        scheduler=schedule,
        amp=args.amp,
        channels_last=args.channels_last,
        compile=False if args.compile == "none" else args.compile,
        validate="first" if args.fast else "every",
        seed=args.seed + dist.rank,
        log_path=os.path.join(args.out, "metrics.jsonl") if dist.is_main else None,
    )
    start = time.time()
    history = ex.fit_with_checkpoints(
        trainer,
        loader,
        args.epochs,
        args.out,
        resume=args.resume,
        is_main=dist.is_main,
        sampler=sampler,
    )
    seconds = time.time() - start
    if dist.is_main:
        if args.resume:
            ex.save_json(config_path, config)
        ex.plot_history(history, os.path.join(args.out, "trajectories.png"), players)

    results: dict = {
        "train_seconds": round(seconds, 1),
        "steps": len(history),
        "skipped_steps": history.skipped,
        "domination": vars(mr.diagnostics.domination(history)),
    }
    if torch.cuda.is_available() and dist.device.type == "cuda":
        results["peak_gpu_memory_gib"] = round(
            torch.cuda.max_memory_allocated(dist.device) / 2**30, 2
        )
        results["gpu"] = torch.cuda.get_device_name(dist.device)
    net = trainer.module
    if dist.world_size > 1:
        digests = [None] * dist.world_size
        torch.distributed.all_gather_object(digests, ex.weights_digest(net))
        results["ranks_identical"] = len(set(digests)) == 1
        wrapper = weakref.ref(model)
        del trainer, model  # the DDP wrapper holds the process group: drop it before leaving
        dist.close(wrapper)  # every rank together, before rank 0 evaluates alone
    if dist.is_main:
        # The training's results first, in case the evaluation is cut short.
        ex.save_json(os.path.join(args.out, "results.json"), results)
        n = min(args.eval_n or len(test), len(test))
        x, y = next(iter(DataLoader(Subset(test, range(n)), batch_size=n)))
        eval_players = tuple(p(steps=eval_steps[p.name]) for p in settings.players)
        report = mr.evaluate(
            net,
            (x, y),
            threats=eval_players,
            suite="pgd",
            restarts=eval_restarts,
            seed=args.seed,
        )
        results["pgd"] = report.to_dict()
        print(report)
        if not args.smoke:
            try:
                aa = mr.evaluate(net, (x, y), threats=settings.players, suite="autoattack")
                results["autoattack"] = aa.to_dict()
                print(aa)
            except ImportError as e:
                print(f"AutoAttack skipped: {e}")
        ex.save_json(os.path.join(args.out, "results.json"), results)
        print(
            json.dumps(
                {k: v for k, v in results.items() if k not in ("pgd", "autoattack")}, indent=2
            )
        )
    return results
