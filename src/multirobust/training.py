"""The ``Trainer``: plays a game (aggregator + budget policy) on each batch, updates the model.

One step, top-down (``Trainer.step``): check the batch; measure the players if the policy asks
(before the attack); the aggregator's batch at the budgets in force; measure after the attack if
asked; the training loss; the optimiser's update; the step's record.
"""

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.profiler import record_function
from torch.utils.data import Dataset

from multirobust import _checks, _fit, _state
from multirobust._compile import COMPILE_MODES
from multirobust._hardware import warn_if_emulated_bf16
from multirobust.aggregators import Aggregator, Perturbed, check_aggregator
from multirobust.attacks import check_batch
from multirobust.budgets import POLICY_MEMBERS, BudgetPolicy, fixed
from multirobust.history import History
from multirobust.measure import Measurements, check_measure, measure_players
from multirobust.players import check_budget
from multirobust.schedules import piecewise_linear

__all__ = ["History", "NonFiniteTraining", "Trainer", "piecewise_linear"]


class NonFiniteTraining(RuntimeError):
    """Raised when too many consecutive steps had a non-finite loss or gradient."""


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
        game: an aggregator (``mr.msd(...)`` or any ``mr.Aggregator``, played with fixed
            budgets) or a budget policy around one (``mr.fixed(...)``, ``mr.adaptive(...)`` or
            any ``mr.BudgetPolicy``).
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
        amp: run forward passes under bf16 autocast (on a CPU only where it computes bf16
            natively: elsewhere it is emulated and several times slower, and a warning says so).
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
        game: BudgetPolicy | Aggregator,
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
        game = _as_policy(game)
        _checks.integer_at_least("max_consecutive_skips", max_consecutive_skips, 1)
        _checks.seed("seed", seed, allow_none=False)
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
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError(
                "model has no trainable parameters (none, or all with requires_grad=False); "
                "nothing would be trained: pass the classifier itself"
            )
        if not any(id(p) in held for p in params):
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
        if amp:
            warn_if_emulated_bf16(self.device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.budgets: Any = game.init(self.device)
        _state.check_policy_state(self.budgets, len(game.aggregator.players), "policy.init()")
        self.steps_done = 0
        self.epochs_done = 0
        self.consecutive_skips = 0

    # -- one step ---------------------------------------------------------------------------

    def step(self, x: Tensor, y: Tensor) -> dict[str, Any]:
        """Train on one batch; returns the step's metrics record.

        Raises:
            TypeError, ValueError: for a bad batch or model output, before any work.
        """
        x, y = self._prepare(x, y)
        policy, need = self.game, self.game.measure
        self.module.train()
        measured = None
        with self._autocast(x.device):
            if need is not None and need.when == "before":
                measured = self._measure(x, y, None)  # budgets for this batch
            used = self.budgets
            with record_function("multirobust.attack"):
                batch = policy.aggregator.perturb(
                    self.module, x, y, used.eps, used.alpha, self.generator, self.compile
                )
            if need is not None and need.when == "after":
                measured = self._measure(x, y, batch)  # budgets for the next batch
            with record_function("multirobust.loss"):
                loss = policy.aggregator.loss(self.model, batch, self.compile)
        lr = float(self.optimizer.param_groups[0]["lr"])  # the scheduler moves it in _update
        with record_function("multirobust.update"):
            skipped = self._update(loss)
        return self._record(loss, used, batch, measured, skipped, lr)

    def _prepare(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The batch on the model's device, checked, in the trainer's memory format."""
        x, y = _to_device(x, y, self.device)
        with record_function("multirobust.check"):
            self._check(x, y)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def _measure(self, x: Tensor, y: Tensor, batch: Perturbed | None) -> Measurements:
        """The policy's measurements (averaged over DDP ranks), and its updated state."""
        m = measure_players(
            self.module,
            self.game.aggregator,
            x,
            y,
            self.game.measure,
            generator=self.generator,
            batch=batch,
            compiled=self.compile,
        )
        if _distributed():  # every rank must agree on the budgets: average the measurements
            m = Measurements(*(None if t is None else _mean_over_ranks(t) for t in m))
        with record_function("multirobust.budgets"):
            self.budgets = self.game.update(self.budgets, m)
        return m

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager[Any]:
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)

    def _check(self, x: Tensor, y: Tensor) -> None:
        typed = isinstance(x, Tensor) and isinstance(y, Tensor)
        kind = (x.shape, x.dtype, y.shape, y.dtype) if typed else None
        if kind is not None and self.validate == "first" and kind == self._checked:
            return
        check_batch(self.module, x, y, self.game.aggregator.players)
        for p in self.game.aggregator.players:
            check_budget(p, float(p.eps), x[0].numel())
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
        used: Any,
        batch: Perturbed,
        measured: Measurements | None,
        skipped: bool,
        lr: float,
    ) -> dict[str, Any]:
        names = tuple(p.name for p in self.game.aggregator.players)

        def per_player(t: Tensor | None) -> dict[str, float] | None:
            return None if t is None else dict(zip(names, t.float().tolist(), strict=True))

        norm = None if measured is None else measured.norm
        player_loss = measured.loss if measured is not None else batch.player_loss
        dominant = None
        if norm is not None and bool(torch.isfinite(norm).all()):
            dominant = names[int(norm.argmax())]
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
            "grad_norm": per_player(norm),
            "dominant": dominant,
        }
        for field, t in self.budgets._asdict().items():  # the policy's other state, after update
            if field in ("eps", "alpha"):
                continue
            if t.dim() == 0:
                record[field] = float(t) if t.is_floating_point() else int(t)
            elif t.shape == (len(names),):
                record[field] = per_player(t)
        if self.log_path is not None:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(record, allow_nan=True) + "\n")
        return record

    # -- loops ------------------------------------------------------------------------------

    def fit(
        self,
        loader: Iterable[Any] | Dataset,
        epochs: int,
        *,
        on_epoch_end: Callable[["Trainer", History], None] | None = None,
        batch_size: int = _fit.BATCH_SIZE,
    ) -> History:
        """Train for ``epochs`` more epochs over ``loader``.

        Args:
            loader: an iterable of ``(x, y)`` batches (a ``DataLoader``, a list), re-iterated
                every epoch; or a map-style ``Dataset`` of ``(x, y)`` examples (such as
                ``multirobust.data.digits()``'s), batched here in a shuffled order that depends
                only on the trainer's seed and the epoch (so a resumed run is exact).
            epochs: number of epochs to run from where the trainer stands.
            on_epoch_end: called after each epoch (checkpointing, evaluation).
            batch_size: the batch size for a ``Dataset`` (ignored for batches).

        Progress: a tqdm bar on a terminal; without one (a log file, nohup, CI) one plain line
        per epoch on stderr. ``progress=False`` on the Trainer silences both.

        Returns:
            The ``History`` of the steps run by this call.

        Raises:
            TypeError, ValueError: for a bad ``epochs``, an empty loader, or batches that are not
                ``(x, y)`` pairs, before the first update.
        """
        _checks.integer_at_least("epochs", epochs, 1)
        dataset = _fit.is_dataset(loader)
        if dataset:
            _checks.integer_at_least("batch_size", batch_size, 1)
            _fit.check_dataset(loader, "loader")  # type: ignore[arg-type]
        elif not (hasattr(loader, "__iter__") or hasattr(loader, "__getitem__")):
            raise TypeError(
                "loader must be an iterable of (x, y) batches, e.g. a DataLoader, or a Dataset "
                f"of (x, y) examples, got {type(loader).__name__}"
            )
        if epochs > 1 and _fit.one_shot(loader):
            raise TypeError(
                "loader is a one-shot iterator, spent after one epoch; pass a DataLoader or a "
                "list for epochs > 1"
            )
        history = History()
        terminal = sys.stderr.isatty()
        bar = lines = None
        if self.progress or (self.progress is None and terminal):
            from tqdm.auto import tqdm

            per_epoch = -(-len(loader) // batch_size) if dataset else _fit.length(loader)
            bar = tqdm(total=None if per_epoch is None else epochs * per_epoch, unit="batch")
        elif self.progress is None:
            lines = _fit.EpochLines(epochs)
        for _ in range(epochs):
            start = len(history)
            batches = (
                _fit.epoch_batches(loader, batch_size, self.seed, self.epochs_done)  # type: ignore[arg-type]
                if dataset
                else loader
            )
            for item in batches:
                x, y = _fit.unpack(item)
                history.records.append(self.step(x, y))
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{history.records[-1]['loss']:.3f}")
            if len(history) == start:
                spent = " (it did before: a one-shot iterator is spent after one pass)"
                raise ValueError(
                    "loader yielded no batch"
                    + (spent if self.epochs_done > 0 else "")
                    + "; pass a non-empty DataLoader or a list"
                )
            self.epochs_done += 1
            if lines is not None:
                lines.epoch_end(self.epochs_done, History(history.records[start:]))
            if on_epoch_end is not None:
                on_epoch_end(self, history)
        if bar is not None:
            bar.close()
        return history

    # -- state ------------------------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        """What a resume must match: the game's description and the optimiser's and
        scheduler's classes (see ``load_state_dict``)."""
        return {
            "game": _state.describe(self.game),
            "optimizer": type(self.optimizer).__qualname__,
            "scheduler": None if self.scheduler is None else type(self.scheduler).__qualname__,
        }

    def state_dict(self) -> dict[str, Any]:
        """All that resuming exactly needs: model, optimiser, scheduler, budget-policy state,
        RNG, counters, and the run's ``identity``."""
        return {
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "budgets": self.budgets._asdict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "steps_done": self.steps_done,
            "epochs_done": self.epochs_done,
            "identity": self.identity(),
        }

    def load_state_dict(self, state: dict[str, Any], *, new_game: bool = False) -> None:
        """Restore a ``state_dict``, refusing any other run's before restoring anything.

        Args:
            state: what ``state_dict()`` returned.
            new_game: the saved game differs on purpose (fine-tuning with new players, budgets
                or policy): restore the model, optimiser, scheduler, RNG and counters, and start
                this trainer's own policy state. The optimiser's and scheduler's classes must
                still match (to start afresh from the weights alone, load ``state["model"]``
                into the model).

        Raises:
            ValueError: if ``state`` is not a ``Trainer.state_dict()``; was saved by another
                game (players, their order or settings, aggregator, policy: each difference
                named), another optimiser or scheduler, or another model; or holds a budget
                state that is not finite and positive.
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
        self._check_identity(state.get("identity"), new_game)
        _state.check_same_model(state["model"], self.module.state_dict())
        budgets = None if new_game else self._saved_budgets(state["budgets"])
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.budgets = self.game.init(self.device) if budgets is None else budgets
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.steps_done = int(state["steps_done"])
        self.epochs_done = int(state["epochs_done"])

    def _check_identity(self, saved: Any, new_game: bool) -> None:
        """Refuse a state of another run, naming every difference."""
        here = self.identity()
        if not isinstance(saved, dict):
            if not new_game:
                raise ValueError(
                    "state does not say which game it was saved by (a checkpoint of an older "
                    "multirobust); pass new_game=True to load it into this trainer's game"
                )
            return
        diffs = [
            f"{key}: saved {saved.get(key)!r}, here {here[key]!r}"
            for key in ("optimizer", "scheduler")
            if saved.get(key) != here[key]
        ]
        if not new_game:
            diffs += _state.differences(saved.get("game"), here["game"], "game")
        if diffs:
            more = f"; and {len(diffs) - 8} more" if len(diffs) > 8 else ""
            fix = "resume with the game, optimiser and scheduler the run was started with"
            if not new_game:
                fix += ", or pass new_game=True to change the game on purpose"
            raise ValueError(f"state was saved by another run: {'; '.join(diffs[:8])}{more}. {fix}")

    def _saved_budgets(self, saved: Any) -> Any:
        """The saved policy state, as this trainer's policy's state type, checked."""
        fresh = self.budgets
        if not isinstance(saved, dict) or set(saved) != set(fresh._fields):
            got = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
            raise ValueError(
                f"state's budgets hold {got}, this trainer's policy keeps "
                f"{list(fresh._fields)}; resume with the policy the run was started with"
            )
        values = {
            k: torch.as_tensor(saved[k]).to(device=self.device, dtype=getattr(fresh, k).dtype)
            for k in fresh._fields
        }
        restored = type(fresh)(**values)
        _state.check_policy_state(restored, len(fresh.eps), "state's budgets")
        return restored


def _as_policy(game: object) -> BudgetPolicy:
    """``game`` as a budget policy: an aggregator alone is played with fixed budgets."""
    what = f"the class {game.__name__}" if isinstance(game, type) else type(game).__name__
    if isinstance(game, type) or not any(hasattr(game, m) for m in ("players", "aggregator")):
        raise TypeError(
            "game must be an aggregator (mr.max_, mr.avg, mr.msd, or an mr.Aggregator) or a "
            f"budget policy (mr.fixed, mr.adaptive, or an mr.BudgetPolicy), got {what}"
        )
    if not hasattr(game, "aggregator"):
        check_aggregator(game, "game")
        return fixed(game)  # type: ignore[arg-type]
    lacking = [m for m in POLICY_MEMBERS if not hasattr(game, m)]
    if lacking:
        raise TypeError(f"game must implement mr.BudgetPolicy; {what} lacks {', '.join(lacking)}")
    check_aggregator(game.aggregator, "game.aggregator")  # type: ignore[attr-defined]
    check_measure(game.measure)  # type: ignore[attr-defined]
    return game  # type: ignore[return-value]


def _mean_over_ranks(t: Tensor) -> Tensor:
    t = t.clone()
    torch.distributed.all_reduce(t)
    return t / torch.distributed.get_world_size()


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()
