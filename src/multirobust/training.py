"""The ``Trainer``: plays a game (aggregator + budget policy) on each batch, updates the model.

One step, as data (design.md): players' perturbations -> per-player parameter gradients (when the
policy needs them) -> new budgets -> the aggregator's adversarial batch -> training loss ->
optimiser step -> a metrics record.
"""

import contextlib
import inspect
import itertools
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.profiler import record_function

from multirobust import _checks
from multirobust.aggregators import Avg, Max, Msd, Perturbed
from multirobust.attacks import COMPILE_MODES, check_batch, frozen_model
from multirobust.budgets import Adaptive, BudgetState, Fixed, Game, probe_step_sizes
from multirobust.gradients import PlayerGradients, player_gradients


class NonFiniteTraining(RuntimeError):
    """Raised when too many consecutive steps had a non-finite loss or gradient."""


class History:
    """The per-step records of a run, in order, with what a report needs.

    Each record is a dict with ``step``, ``epoch``, ``loss``, ``skipped``, ``lr`` (the learning
    rate the step's update used, before the scheduler moved it), and per player
    (dicts keyed by player name) ``eps``, ``alpha``, ``gamma``, ``player_loss`` (or ``None``),
    ``grad_norm`` (or ``None``), plus ``dominant`` (the largest-gradient player, or ``None``).
    """

    def __init__(self, records: Iterable[dict[str, Any]] = ()) -> None:
        self.records: list[dict[str, Any]] = list(records)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.records[i]

    @property
    def skipped(self) -> int:
        """How many steps skipped their update (non-finite loss or gradient)."""
        return sum(bool(r["skipped"]) for r in self.records)

    def column(self, key: str) -> list[Any]:
        """One field of every record, e.g. ``history.column("loss")``."""
        return [r[key] for r in self.records]

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike[str]) -> "History":
        """Read a ``metrics.jsonl`` written by ``Trainer``."""
        with open(path) as f:
            return cls(json.loads(line) for line in f if line.strip())


def _to_device(x: Tensor, y: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    for name, t, what in (("x", x, "inputs in [0, 1]"), ("y", y, "integer labels")):
        if not isinstance(t, Tensor):
            raise TypeError(
                f"{name} must be a torch.Tensor of {what}, got {type(t).__name__}; "
                f"convert with torch.as_tensor({name})"
            )
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    return torch.device("cpu")


class Trainer:
    """Trains ``model`` with ``optimizer`` on the adversarial batches of ``game``.

    Args:
        model: a classifier returning logits ``[b, classes]`` for inputs in [0, 1].
        optimizer: any ``torch.optim`` optimiser over the model's parameters.
        game: an aggregator (``mr.msd(...)``, played with fixed budgets) or a budget policy around
            one (``mr.fixed(...)``, ``mr.adaptive(...)``).
        scheduler: a learning-rate scheduler stepped once per batch (see
            ``piecewise_linear``).
        compile: run each attack iteration (a PGD step, or an MSD step with its K candidates),
            the per-player gradients and the training forward and backward through
            ``torch.compile``; the Python loop over iterations stays eager. ``True`` for the
            default mode, or a mode name: ``"reduce-overhead"`` also replays the attack
            iterations as CUDA graphs (GPU only; the fastest on small models) and the per-player
            gradients (they write none of their inputs; torch decides), never the training step
            (``"max-autotune"`` runs it as
            ``"max-autotune-no-cudagraphs"``). Compilation happens on first use (seconds to a
            minute); budgets are tensors, so changing them never recompiles.
        amp: run forward passes under bf16 autocast.
        channels_last: convert the model and inputs to channels-last memory format (4-d inputs).
        seed: seed of the trainer's generator (random starts, the l_1 step's random k).
        log_path: append every step's record to this JSONL file.
        progress: show a tqdm bar in ``fit``; ``None``: only when stderr is a terminal.
        max_consecutive_skips: stop with ``NonFiniteTraining`` after this many consecutive
            non-finite steps.
        validate: ``"every"`` batch is checked in full before its step (finite, in [0, 1],
            labels within the model's classes: a few host synchronisations and one clean forward
            pass per step); ``"first"`` checks the first batch in full, and later ones in full
            only when their shape or dtype differs from it (for fast GPU runs on trusted data).

    Examples:
        >>> import torch, multirobust as mr
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
        >>> game = mr.adaptive(mr.max_(mr.linf(eps=0.1, alpha=0.05, steps=2),
        ...                            mr.l2(eps=0.5, alpha=0.2, steps=2)))
        >>> trainer = mr.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), game)
        >>> record = trainer.step(torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,)))
        >>> sorted(record["eps"])
        ['l2', 'linf']
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        game: Game | Max | Avg | Msd,
        *,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        compile: bool | str = False,
        amp: bool = False,
        channels_last: bool = False,
        seed: int = 0,
        log_path: str | os.PathLike[str] | None = None,
        progress: bool | None = None,
        max_consecutive_skips: int = 20,
        validate: str = "every",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if isinstance(game, Max | Avg | Msd):
            game = Fixed(game)
        if not isinstance(game, Fixed | Adaptive):
            raise TypeError(
                "game must be an aggregator (mr.max_, mr.avg, mr.msd) or a budget policy "
                f"(mr.fixed, mr.adaptive), got {type(game).__name__}"
            )
        _checks.integer_at_least("max_consecutive_skips", max_consecutive_skips, 1)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}; pass seed=0")
        if scheduler is not None and (
            not isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler)
            or isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        ):
            raise TypeError(
                "scheduler must be a torch.optim.lr_scheduler.LRScheduler stepped once per batch "
                f"without arguments, or None, got {type(scheduler).__name__}; see "
                "mr.piecewise_linear (ReduceLROnPlateau needs a metric: step it yourself)"
            )
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        params = list(model.parameters())
        if params and not any(id(p) in held for p in params):
            raise ValueError(
                "optimizer holds none of the model's parameters; build it with model.parameters()"
            )
        if log_path is not None:
            folder = os.path.dirname(os.path.abspath(log_path))
            if not os.path.isdir(folder):
                raise ValueError(
                    f"log_path: folder {folder} does not exist; create it first "
                    "(os.makedirs) or pass another log_path"
                )
        if not isinstance(compile, bool):
            _checks.one_of("compile", compile, COMPILE_MODES)
        self.validate = _checks.one_of("validate", validate, ("every", "first"))
        self._checked: tuple[Any, ...] | None = None  # shapes and dtypes of the checked batch
        self.model, self.optimizer, self.game, self.scheduler = model, optimizer, game, scheduler
        # Under DistributedDataParallel, attacks and per-player gradients use the bare module;
        # only the training loss goes through the wrapper (which all-reduces the gradients).
        self.module: nn.Module = getattr(model, "module", model)
        self.compile, self.amp, self.channels_last, self.seed = compile, amp, channels_last, seed
        self.log_path, self.progress = log_path, progress
        self.max_consecutive_skips = max_consecutive_skips
        self.device = _model_device(model)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.budgets: BudgetState = game.init(self.device)
        self.steps_done = 0
        self.epochs_done = 0
        self.consecutive_skips = 0

    # -- one step ---------------------------------------------------------------------------

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager[Any]:
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)

    def _adapt(self, x: Tensor, y: Tensor, batch: Perturbed | None) -> PlayerGradients:
        """Per-player gradient norms at base budgets (or reusing MAX/AVG's own attacks), and
        the policy's budgets from them (for this batch, or the next when ``batch`` is given)."""
        game, agg = self.game, self.game.aggregator
        reuse = batch is not None and batch.per_player is not None
        if reuse:
            inputs = batch.per_player  # type: ignore[union-attr]
        else:
            eps0, alpha0 = agg.base_budgets(x.device)
            probe = None if batch is None else game.probe_steps
            if probe is not None:
                alpha0 = probe_step_sizes(eps0, alpha0, probe)
            with frozen_model(self.module), record_function("multirobust.player_attacks"):
                inputs, _ = agg.each_player(
                    self.module,
                    x,
                    y,
                    eps0,
                    alpha0,
                    self.generator,
                    steps=probe,
                    compiled=self.compile,
                )
        with record_function("multirobust.player_gradients"):
            grads = player_gradients(self.module, inputs, y, game.norm, compiled=self.compile)
        if _distributed():  # every rank must agree on the budgets: average the shards' norms
            torch.distributed.all_reduce(grads.norm)
            grads = grads._replace(norm=grads.norm / torch.distributed.get_world_size())
        with record_function("multirobust.budgets"):
            self.budgets = game.update(self.budgets, grads.norm)
        return grads

    def step(self, x: Tensor, y: Tensor) -> dict[str, Any]:
        """Train on one batch; returns the step's metrics record.

        Raises:
            TypeError, ValueError: for a bad batch or model output, before any work.
        """
        x, y = _to_device(x, y, self.device)
        with record_function("multirobust.check"):
            self._check(x, y)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        game, agg, model = self.game, self.game.aggregator, self.module
        model.train()
        grads: PlayerGradients | None = None
        with self._autocast(x.device):
            if isinstance(game, Adaptive) and game.timing == "same-batch":
                grads = self._adapt(x, y, None)
                used = self.budgets
                batch = self._perturb(x, y, used)
            else:
                used = self.budgets
                batch = self._perturb(x, y, used)
                if game.needs_gradients:
                    grads = self._adapt(x, y, batch)  # budgets for the next batch
            with record_function("multirobust.loss"):
                loss = agg.loss(self.model, batch, self.compile)
        lr = float(self.optimizer.param_groups[0]["lr"])  # the scheduler moves it in _update
        with record_function("multirobust.update"):
            skipped = self._update(loss)
        return self._record(loss, used, batch, grads, skipped, lr)

    def _perturb(self, x: Tensor, y: Tensor, budgets: BudgetState) -> Perturbed:
        with record_function("multirobust.attack"):
            agg, gen = self.game.aggregator, self.generator
            return agg.perturb(self.module, x, y, budgets.eps, budgets.alpha, gen, self.compile)

    def _check(self, x: Tensor, y: Tensor) -> None:
        typed = isinstance(x, Tensor) and isinstance(y, Tensor)
        kind = (x.shape, x.dtype, y.shape, y.dtype) if typed else None
        if kind is not None and self.validate == "first" and kind == self._checked:
            return
        check_batch(self.module, x, y, self.game.aggregator.players)
        self._checked = kind

    def _update(self, loss: Tensor) -> bool:
        """Backward and optimiser step, unless the loss or a gradient is not finite.

        The backward pass always runs, so under DistributedDataParallel every rank joins the
        gradient all-reduce; the skip decision is then the same on every rank.
        """
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        flags = [torch.isfinite(loss).all()]
        flags += [
            torch.isfinite(p.grad).all() for p in self.model.parameters() if p.grad is not None
        ]
        finite = torch.stack(flags).all().float()
        if _distributed():
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        ok = bool(finite)
        if ok:
            self.optimizer.step()
            self.consecutive_skips = 0
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self.consecutive_skips += 1
        if self.scheduler is not None:
            self.scheduler.step()
        self.steps_done += 1
        if self.consecutive_skips >= self.max_consecutive_skips:
            raise NonFiniteTraining(
                f"{self.consecutive_skips} consecutive steps had a non-finite loss or gradient "
                f"(last loss {float(loss.detach())}); the weights keep the last finite update. "
                "Lower the learning rate, check the inputs, or turn off amp."
            )
        return not ok

    def _record(
        self,
        loss: Tensor,
        used: BudgetState,
        batch: Perturbed,
        grads: PlayerGradients | None,
        skipped: bool,
        lr: float,
    ) -> dict[str, Any]:
        names = self.game.aggregator.names

        def per_player(t: Tensor | None) -> dict[str, float] | None:
            return None if t is None else dict(zip(names, t.float().tolist(), strict=True))

        player_loss = grads.loss if grads is not None else batch.player_loss
        dominant = None
        if grads is not None and bool(torch.isfinite(grads.norm).all()):
            dominant = names[int(grads.norm.argmax())]
        record = {
            "step": self.steps_done,
            "epoch": self.epochs_done,
            "loss": float(loss.detach()),
            "skipped": skipped,
            "lr": lr,
            "eps": per_player(used.eps),
            "alpha": per_player(used.alpha),
            "gamma": per_player(batch.gamma),
            "player_loss": per_player(player_loss),
            "grad_norm": per_player(None if grads is None else grads.norm),
            "dominant": dominant,
            "fallbacks": self.budgets.fallbacks,
        }
        if self.log_path is not None:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(record, allow_nan=True) + "\n")
        return record

    # -- loops ------------------------------------------------------------------------------

    def fit(
        self,
        loader: Iterable[Any],
        epochs: int,
        *,
        on_epoch_end: Callable[["Trainer", History], None] | None = None,
    ) -> History:
        """Train for ``epochs`` more epochs over ``loader`` (an iterable of ``(x, y)`` batches).

        Args:
            loader: yields ``(x, y)`` pairs; re-iterated every epoch.
            epochs: number of epochs to run from where the trainer stands.
            on_epoch_end: called after each epoch (checkpointing, evaluation).

        Returns:
            The ``History`` of the steps run by this call.

        Raises:
            TypeError, ValueError: for a bad ``epochs``, an empty loader, or batches that are not
                ``(x, y)`` pairs, before the first update.
        """
        _checks.integer_at_least("epochs", epochs, 1)
        if not (hasattr(loader, "__iter__") or hasattr(loader, "__getitem__")):
            raise TypeError(
                "loader must be an iterable of (x, y) batches, e.g. a DataLoader, got "
                f"{type(loader).__name__}"
            )
        if epochs > 1 and _one_shot(loader):
            raise TypeError(
                "loader is a one-shot iterator, spent after one epoch; pass a DataLoader or a "
                "list for epochs > 1"
            )
        history = History()
        show = sys.stderr.isatty() if self.progress is None else self.progress
        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(total=epochs * _length(loader), desc="train", unit="batch")
        for _ in range(epochs):
            seen = 0
            for item in loader:
                x, y = _unpack(item)
                history.records.append(self.step(x, y))
                seen += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{history.records[-1]['loss']:.3f}")
            if seen == 0:
                spent = " (it did before: a one-shot iterator is spent after one pass)"
                raise ValueError(
                    "loader yielded no batch"
                    + (spent if self.epochs_done > 0 else "")
                    + "; pass a non-empty DataLoader or a list"
                )
            self.epochs_done += 1
            if on_epoch_end is not None:
                on_epoch_end(self, history)
        if bar is not None:
            bar.close()
        return history

    # -- state ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """All that resuming exactly needs: model, optimiser, scheduler, budgets, RNG, counters."""
        return {
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "budgets": self.budgets._asdict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "steps_done": self.steps_done,
            "epochs_done": self.epochs_done,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict``.

        Raises:
            ValueError: if ``state`` is not a ``Trainer.state_dict()``, or was saved by a game
                with another number of players or by another model; before anything is
                restored.
        """
        keys = ("model", "optimizer", "scheduler", "budgets", "generator", "torch_rng")
        keys += ("steps_done", "epochs_done")
        missing = [k for k in keys if k not in state] if isinstance(state, dict) else keys
        if not isinstance(state, dict) or missing:
            got = f"missing {missing}" if isinstance(state, dict) else type(state).__name__
            raise ValueError(
                f"state must be a Trainer.state_dict(), got {got}; pass what state_dict() "
                "returned (a recipe checkpoint keeps it under 'trainer')"
            )
        k_saved, k_here = len(state["budgets"]["eps"]), len(self.budgets.eps)
        if k_saved != k_here:
            raise ValueError(
                f"state was saved by a game of {k_saved} players, this trainer's has {k_here}; "
                "resume with the game the run was started with"
            )
        _check_same_model(state["model"], self.module.state_dict())
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        b = state["budgets"]
        self.budgets = BudgetState(
            b["eps"].to(self.device),
            b["alpha"].to(self.device),
            b["factor"].to(self.device),
            int(b["fallbacks"]),
        )
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.steps_done = int(state["steps_done"])
        self.epochs_done = int(state["epochs_done"])


def _check_same_model(saved: dict[str, Any], here: dict[str, Any]) -> None:
    """Refuse a saved model state of another architecture before anything is loaded (torch's
    ``load_state_dict`` copies the tensors that match before it raises for the others)."""
    missing, unknown = sorted(set(here) - set(saved)), sorted(set(saved) - set(here))
    both = set(here) & set(saved)
    shapes = [(k, _shape(here[k]), _shape(saved[k])) for k in both]
    reshaped = sorted(k for k, a, b in shapes if a is not None and b is not None and a != b)
    if missing or unknown or reshaped:
        first = (missing or unknown or reshaped)[0]
        raise ValueError(
            f"state holds another model than this trainer's: {len(missing)} of its tensors "
            f"missing, {len(unknown)} unknown, {len(reshaped)} of another shape (first: "
            f"{first!r}); resume with the model the run was started with (was the checkpoint "
            "saved by another recipe or dataset?)"
        )


def _shape(t: object) -> object:
    """A tensor's shape; ``None`` for a non-tensor entry or a lazy module's uninitialised one."""
    if not isinstance(t, Tensor) or torch.nn.parameter.is_lazy(t):
        return None
    return t.shape


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _one_shot(loader: Any) -> bool:
    """A generator or a built-in iterator (``iter([...])``, ``zip``, ``map``): spent after one pass.
    Other iterators may reset themselves in ``__iter__`` (prefetchers), so they are trusted."""
    return inspect.isgenerator(loader) or (
        isinstance(loader, Iterator) and type(loader).__module__ == "builtins"
    )


def _unpack(item: Any) -> tuple[Tensor, Tensor]:
    if not isinstance(item, tuple | list) or len(item) != 2:
        size = f" of length {len(item)}" if isinstance(item, tuple | list) else ""
        raise TypeError(
            f"the loader must yield (x, y) pairs of tensors, got {type(item).__name__}{size}"
        )
    return item[0], item[1]


def _length(loader: Iterable[Any]) -> int | None:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None


def piecewise_linear(
    optimizer: torch.optim.Optimizer,
    epochs: list[float],
    values: list[float],
    steps_per_epoch: int,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-batch learning rate interpolated linearly between ``(epoch, value)`` knots.

    The paper's CIFAR-10 schedule is ``epochs=[0, 20, 40, 50]``, ``values=[0, 0.1, 0.005, 0]``.
    The optimiser's own ``lr`` is ignored (the scheduler sets it).

    Examples:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> sched = piecewise_linear(opt, [0, 1, 2], [0.0, 1.0, 0.0], steps_per_epoch=2)
        >>> lrs = []
        >>> for _ in range(4):
        ...     opt.step()
        ...     sched.step()
        ...     lrs.append(round(opt.param_groups[0]["lr"], 2))
        >>> lrs
        [0.5, 1.0, 0.5, 0.0]
    """
    if len(epochs) != len(values) or len(epochs) < 2:
        raise ValueError("epochs and values must be lists of the same length >= 2")
    if any(b <= a for a, b in itertools.pairwise(epochs)):
        raise ValueError(f"epochs must increase strictly, got {epochs}")
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"values must be finite and >= 0, got {values}")
    _checks.integer_at_least("steps_per_epoch", steps_per_epoch, 1)
    for group in optimizer.param_groups:
        group["lr"] = 1.0
        group["initial_lr"] = 1.0

    def lr_at(step: int) -> float:
        t = step / steps_per_epoch
        if t >= epochs[-1]:
            return values[-1]
        for (e0, v0), (e1, v1) in zip(
            zip(epochs, values, strict=True),
            zip(epochs[1:], values[1:], strict=True),
            strict=True,
        ):
            if e0 <= t <= e1:
                return v0 + (v1 - v0) * (t - e0) / (e1 - e0)
        return values[0]

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
