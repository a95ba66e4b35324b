"""Running a recipe under ``torchrun``: joining and leaving the process group, comparing replicas.

Examples:
    >>> d = init_distributed("cpu")  # not under torchrun: one process
    >>> d.rank, d.world_size, d.is_main
    (0, 1, True)
"""

import dataclasses
import gc
import hashlib
import os
import weakref

import torch
from torch import nn


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
