"""What the recipes share: the paper's settings, games by name, checkpointed runs, and DDP.

Examples:
    >>> s = paper_settings("cifar10")
    >>> [p.name for p in s.players], s.msd_steps, s.batch_size
    (['linf', 'l2', 'l1'], 50, 128)
    >>> make_game(s.players, method="msd", adaptive="l2", msd_steps=s.msd_steps).norm
    'l2'
"""

import dataclasses
import gc
import hashlib
import json
import os
import weakref
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from multirobust import _checks, checkpoint
from multirobust.aggregators import avg, max_, msd
from multirobust.budgets import TIMINGS, Adaptive, Fixed, fixed
from multirobust.budgets import adaptive as adaptive_policy
from multirobust.models import MnistCNN, PreActResNet18
from multirobust.players import Player, l1, l2, linf
from multirobust.training import History, Trainer, piecewise_linear

METHODS = ("max", "avg", "msd")
ADAPTIVE = ("none", "l1", "l2")


@dataclasses.dataclass(frozen=True)
class Settings:
    """A dataset's training and evaluation settings (the paper's; docs/recipes/index.md).

    Attributes:
        players: the training players (budgets, step sizes, iterations, restarts).
        msd_steps: MSD iterations.
        eval_steps: PGD iterations per player name at evaluation.
        eval_restarts: PGD restarts at evaluation.
        batch_size: training batch size.
        epochs: training epochs.
        optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9).
        weight_decay: the optimiser's weight decay.
        lr_epochs: epochs of the knots of the piecewise-linear learning-rate schedule.
        lr_values: learning rates at those knots.
    """

    players: tuple[Player, ...]
    msd_steps: int
    eval_steps: dict[str, int]
    eval_restarts: int
    batch_size: int
    epochs: int
    optimizer: str
    weight_decay: float
    lr_epochs: tuple[float, ...]
    lr_values: tuple[float, ...]


def paper_settings(dataset: str) -> Settings:
    """The paper's settings for ``"mnist"``, ``"cifar10"`` or ``"cifar100"`` (docs/recipes/index.md;
    where the paper is silent, our choices: docs/concepts.md).

    MNIST trains with 2 runs per player (one from zero, one random restart), CIFAR with none, as the
    MSD code. The l_1 player's k range is ``[5, 20]`` on every dataset (the MSD code's CIFAR-10
    value; the paper gives none for MNIST).
    """
    if dataset == "mnist":
        return Settings(
            players=(
                linf(eps=0.3, alpha=0.01, steps=50, restarts=1),
                l2(eps=2.0, alpha=0.1, steps=100, restarts=1),
                l1(eps=10.0, alpha=0.8, steps=50, restarts=1),
            ),
            msd_steps=100,
            eval_steps={"linf": 100, "l2": 200, "l1": 100},
            eval_restarts=10,
            batch_size=100,
            epochs=15,
            optimizer="adam",
            weight_decay=0.0,
            lr_epochs=(0, 6, 15),
            lr_values=(0.0, 1e-3, 0.0),
        )
    if dataset in ("cifar10", "cifar100"):
        return Settings(
            players=(linf, l2, l1),
            msd_steps=50,
            eval_steps={"linf": 100, "l2": 500, "l1": 100},
            eval_restarts=10,
            batch_size=128,
            epochs=50,
            optimizer="sgd",
            weight_decay=5e-4,
            lr_epochs=(0, 20, 40, 50),
            lr_values=(0.0, 0.1, 0.005, 0.0),
        )
    raise ValueError(f"dataset must be one of 'mnist', 'cifar10', 'cifar100'; got {dataset!r}")


def make_game(
    players: Iterable[Player],
    method: str,
    adaptive: str = "none",
    msd_steps: int = 50,
    timing: str = "same-batch",
    track_domination: bool = False,
) -> Fixed | Adaptive:
    """A game by name: ``method`` in max/avg/msd, ``adaptive`` in none/l1/l2 (the gradient norm).

    Examples:
        >>> import multirobust as mr
        >>> make_game([mr.linf, mr.l2], "max", "none").aggregator.names
        ('linf', 'l2')
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if adaptive not in ADAPTIVE:
        raise ValueError(f"adaptive must be one of {', '.join(ADAPTIVE)}; got {adaptive!r}")
    _checks.one_of("timing", timing, TIMINGS)  # also when adaptive="none": a typo is an error
    _checks.integer_at_least("msd_steps", msd_steps, 1)
    players = tuple(players)
    agg = {"max": max_, "avg": avg}.get(method)
    aggregator = agg(*players) if agg is not None else msd(*players, steps=msd_steps)
    if adaptive == "none":
        return fixed(aggregator, track_domination=track_domination)
    return adaptive_policy(aggregator, norm=adaptive, timing=timing)


def paper_model(dataset: str) -> nn.Module:
    """The paper's model: the MNIST CNN, or PreAct ResNet-18 with 10 or 100 classes."""
    if dataset == "mnist":
        return MnistCNN()
    if dataset in ("cifar10", "cifar100"):
        return PreActResNet18(classes=10 if dataset == "cifar10" else 100)
    raise ValueError(f"dataset must be one of 'mnist', 'cifar10', 'cifar100'; got {dataset!r}")


def make_optimizer(model: nn.Module, settings: Settings) -> torch.optim.Optimizer:
    """The settings' optimiser (its learning rate is set by the schedule)."""
    if settings.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=1.0, weight_decay=settings.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=1.0, momentum=0.9, weight_decay=settings.weight_decay
    )


def paper_schedule(
    optimizer: torch.optim.Optimizer, settings: Settings, epochs: int, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The settings' piecewise-linear learning rate, its knots scaled from the paper's epochs to
    ``epochs`` (a longer run warms up and decays over longer, never idling at the final rate).

    Examples:
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> sched = paper_schedule(opt, paper_settings("cifar10"), 25, steps_per_epoch=1)
        >>> lrs = []
        >>> for _ in range(25):
        ...     lrs.append(opt.param_groups[0]["lr"])
        ...     opt.step()
        ...     sched.step()
        >>> lrs.index(max(lrs)), round(max(lrs), 3)  # the paper's peak: epoch 20 of 50
        (10, 0.1)
    """
    _checks.integer_at_least("epochs", epochs, 1)
    knots = [e * epochs / settings.epochs for e in settings.lr_epochs]
    return piecewise_linear(optimizer, knots, list(settings.lr_values), steps_per_epoch)


def fit_with_checkpoints(
    trainer: Trainer,
    loader: Iterable[Any],
    epochs: int,
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    is_main: bool = True,
    sampler: Any = None,
) -> History:
    """Train to ``epochs`` epochs in total, checkpointing every epoch to ``out/checkpoint.pt``.

    With ``resume``, training continues from the last checkpoint (the same final weights as an
    uninterrupted run with the same seed, on CPU), and ``out/metrics.jsonl`` is cut back to the
    steps that checkpoint had finished. Only the main rank writes files.

    Args:
        trainer: the trainer (its ``log_path`` should be ``out/metrics.jsonl`` on the main rank).
        loader: yields ``(x, y)`` batches.
        epochs: total epochs of the run (not additional ones).
        out: the run's folder.
        resume: continue from ``out/checkpoint.pt`` if it exists.
        is_main: whether this process writes checkpoints (rank 0 under DDP).
        sampler: a ``DistributedSampler`` whose epoch is set before each epoch, or ``None``.

    Returns:
        The history of every step of the run, including resumed ones.
    """
    _checks.integer_at_least("epochs", epochs, 1)
    path = os.path.join(os.fspath(out), "checkpoint.pt")
    records: list[dict[str, Any]] = []
    if resume and os.path.exists(path):
        state = checkpoint.load(path, map_location=trainer.device)
        trainer.load_state_dict(state["trainer"])
        records = json.loads(state["history"])
        if is_main and trainer.log_path is not None:
            with open(trainer.log_path, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in records)
    elif is_main and trainer.log_path is not None and os.path.exists(trainer.log_path):
        os.remove(trainer.log_path)  # a fresh run: no stale steps from an earlier one
    history = History(records)
    while trainer.epochs_done < epochs:
        if sampler is not None:
            sampler.set_epoch(trainer.epochs_done)
        history.records += trainer.fit(loader, 1).records
        if is_main:
            state = {"trainer": trainer.state_dict(), "history": json.dumps(history.records)}
            checkpoint.save(path, state)
    return history


def save_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path``, whole or not at all
    (:func:`multirobust.checkpoint.write_atomic`), so a run cut short keeps the last full file.

    Examples:
        >>> import tempfile
        >>> path = tempfile.mkdtemp() + "/results.json"
        >>> save_json(path, {"MSD": {"clean": 0.97}})
        >>> json.load(open(path))
        {'MSD': {'clean': 0.97}}
    """
    text = json.dumps(obj, indent=2).encode()
    checkpoint.write_atomic(path, lambda f: f.write(text))


def changed_settings(
    config_path: str | os.PathLike[str], asked: dict[str, Any], keys: Iterable[str]
) -> str | None:
    """Why a run cannot resume the run whose ``config.json`` is at ``config_path``: the ``keys``
    whose saved values differ from ``asked``, or a file that cannot be read; ``None`` if none.

    Examples:
        >>> import tempfile
        >>> path = tempfile.mkdtemp() + "/config.json"
        >>> save_json(path, {"method": "msd", "seed": 0})
        >>> changed_settings(path, {"method": "max", "seed": 0}, ["method", "seed"])
        "the run was started with method='msd', not method='max'"
    """
    try:
        with open(config_path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as e:
        return f"{os.fspath(config_path)} cannot be read ({e}); restore it, or delete it"
    changed = [k for k in keys if saved.get(k) != asked[k]]
    if not changed:
        return None
    was = ", ".join(f"{k}={saved.get(k)!r}" for k in changed)
    now = ", ".join(f"{k}={asked[k]!r}" for k in changed)
    return f"the run was started with {was}, not {now}"


def weights_digest(model: nn.Module) -> str:
    """A SHA-256 of the model's parameters and buffers, to compare replicas across ranks."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class Distributed:
    """This process's place in a ``torchrun`` job (a single process when not under torchrun)."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Whether this process writes logs and checkpoints."""
        return self.rank == 0

    def close(self, wrapper: weakref.ReferenceType[nn.Module] | None = None) -> None:
        """Leave the process group on every rank together: collect garbage, a barrier, destroy.

        Call it on every rank once the last collective is done and every reference to the
        ``DistributedDataParallel`` wrapper is dropped: under gloo, a rank whose wrapper (which
        holds the group) is still alive when its process exits can abort with SIGABRT
        ("terminate called without an active exception"), and torchrun then kills the others.
        After it, rank 0 may go on alone (evaluation) with no collective pending. A no-op in a
        single process.

        Args:
            wrapper: a weak reference to the wrapper, taken before dropping it; ``close`` raises
                if the wrapper is still alive, instead of leaving the abort to chance.

        Example:
            >>> init_distributed("cpu").close()  # not under torchrun: nothing to leave
        """
        if self.world_size == 1 or not torch.distributed.is_initialized():
            return
        gc.collect()  # a trainer and its compiled closures form cycles that hold the wrapper
        if wrapper is not None and wrapper() is not None:
            raise RuntimeError(
                "close(): the DistributedDataParallel wrapper is still referenced; drop every "
                "reference to it (the model, the Trainer) before leaving the process group"
            )
        cuda = self.device.type == "cuda"
        try:
            torch.distributed.barrier(device_ids=[self.device.index] if cuda else None)
        finally:
            torch.distributed.destroy_process_group()


def init_distributed(device: str | None = None) -> Distributed:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1`` (NCCL on CUDA, else gloo).

    Args:
        device: ``"cuda"`` or ``"cpu"``; ``None`` picks CUDA when available.
    """
    if device is not None:
        if not isinstance(device, str) or device.split(":")[0] not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cuda', 'cpu' or None, got {device!r}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} but CUDA is not available here; pass device='cpu' (or None "
                "to pick CUDA only when available)"
            )
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(f"cuda:{local}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Distributed(rank, world, dev)


def plot_history(
    history: History, path: str | os.PathLike[str], players: Iterable[Player] = ()
) -> None:
    """Write a PNG of a run: each player's budget, weight ``gamma`` and loss over the steps.

    Budgets are shown relative to each player's base budget, taken from ``players`` (by name),
    or in absolute units for players not given. A panel whose field no step recorded (the
    players' losses in MSD without ``track_domination``) says "not recorded".

    Raises:
        ImportError: without matplotlib (``pip install "multirobust[recipes]"``).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as e:
        raise ImportError('plots need matplotlib: pip install "multirobust[recipes]"') from e
    from multirobust.diagnostics import trajectory

    base = {p.name: float(p.eps) for p in players}
    fig = Figure(figsize=(11, 3))
    FigureCanvasAgg(fig)
    for ax, key, title in zip(
        fig.subplots(1, 3),
        ("eps", "gamma", "player_loss"),
        ("budget (/ base budget)", "gamma", "player loss"),
        strict=True,
    ):
        series = trajectory(history, key)
        for name, values in series.items():
            if key == "eps" and name in base:
                # Rounded: float32 budgets over float base budgets are off by ~1e-8, which
                # matplotlib would draw as an axis offset.
                values = [round(v / base[name], 6) for v in values]
            ax.plot(values, label=name, linewidth=0.8)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if series:
            ax.legend(fontsize=7)
        else:  # e.g. players' losses in MSD without track_domination
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=110)
