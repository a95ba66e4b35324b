"""Checkpoints (multirobust.checkpoint): atomic writes, clear errors for damaged files and files
that are not checkpoints, no code execution when loading."""

import errno
import os
import pickle
import stat

import pytest
import torch

from bad_input import TYPECHECKED, Row, refuse, table
from multirobust import checkpoint
from typechecking import untyped


def test_map_location_as_a_dict_or_a_function_is_passed_to_torch(tmp_path):
    path = tmp_path / "c.pt"
    checkpoint.save(path, {"w": torch.arange(3.0)})
    for where in ({"cpu": "cpu"}, lambda storage, location: storage):
        assert torch.equal(checkpoint.load(path, map_location=where)["w"], torch.arange(3.0))


def test_round_trip(tmp_path):
    path = tmp_path / "sub" / "c.pt"
    state = {"w": torch.arange(4.0), "epoch": 2, "nested": {"g": torch.ByteTensor([1, 2])}}
    checkpoint.save(path, state)
    got = checkpoint.load(path)
    assert torch.equal(got["w"], state["w"]) and got["epoch"] == 2
    assert [p.name for p in path.parent.iterdir()] == ["c.pt"]  # no temporary file left


def test_failed_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "c.pt"
    checkpoint.save(path, {"epoch": 1})

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        checkpoint.save(path, {"epoch": 2, "bad": Unsaveable()})
    assert checkpoint.load(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["c.pt"]


class Payload:
    """Unpickling this would run ``os.system``: weights-only loading must refuse it."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_crafted_pickle_payload_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"model": Payload()}, path)
    with pytest.raises(checkpoint.CheckpointError, match=r"evil\.pt"):
        checkpoint.load(path)
    assert not (tmp_path / "pwned").exists()
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.load(path)
    assert not (tmp_path / "pwned").exists()


def test_written_files_get_the_mode_open_would_give(tmp_path):
    umask = os.umask(0o022)
    try:
        checkpoint.save(tmp_path / "new.pt", {"a": 1})
        shared = tmp_path / "shared.pt"
        shared.touch()
        shared.chmod(0o664)
        checkpoint.save(shared, {"a": 1})  # a replaced file keeps its mode
    finally:
        os.umask(umask)
    assert (tmp_path / "new.pt").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0o600
    assert shared.stat().st_mode & 0o777 == 0o664


def test_save_to_a_folder_names_it(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match=r"is a folder; pass a file's path"):
        checkpoint.save(folder, {"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temporary file beside it


# ---------------------------------------------------------------------------------------------
# Corruption, odd targets, a full disk, files that are not checkpoints
# ---------------------------------------------------------------------------------------------

PATTERN = bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0)).tolist())


def test_a_flipped_byte_inside_a_tensor_is_caught_by_the_digest(tmp_path):
    path = tmp_path / "c.pt"
    checkpoint.save(path, {"w": torch.tensor(list(PATTERN), dtype=torch.uint8), "epoch": 1})
    data = bytearray(path.read_bytes())
    at = data.find(PATTERN)
    assert at >= 0 and data.find(PATTERN, at + 1) < 0  # the tensor's bytes, stored once
    data[at + 2000] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(checkpoint.CheckpointError) as caught:
        checkpoint.load(path)
    message = str(caught.value)
    assert repr(str(path)) in message and "digest" in message and "does not match" in message


def test_a_checkpoint_is_a_torch_file_and_loads_as_saved(tmp_path):
    path = tmp_path / "c.pt"
    state = {
        "w": torch.arange(6.0).view(2, 3),
        "half": torch.ones(3, dtype=torch.bfloat16),
        "nested": {"steps": [1, 2], "name": "run", "none": None, "pair": (0.5, True)},
    }
    checkpoint.save(path, state)
    wrapped = torch.load(path, weights_only=True)  # a plain torch file, safe to load
    assert set(wrapped) == {"multirobust_checkpoint", "sha256", "payload"}
    assert len(wrapped["sha256"]) == 64
    got = checkpoint.load(path)
    assert got.keys() == state.keys() and got["nested"] == state["nested"]
    for k in ("w", "half"):
        assert got[k].dtype == state[k].dtype and torch.equal(got[k], state[k])


def test_a_checkpoint_without_a_digest_still_loads_with_a_warning(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"w": torch.arange(3.0), "epoch": 4}, path)  # as the previous version wrote them
    with pytest.warns(UserWarning, match=r"old\.pt' has no digest"):
        got = checkpoint.load(path)
    assert got["epoch"] == 4 and torch.equal(got["w"], torch.arange(3.0))


def test_saving_through_a_symbolic_link_is_refused(tmp_path):
    real = tmp_path / "real.pt"
    checkpoint.save(real, {"epoch": 1})
    link = tmp_path / "link.pt"
    link.symlink_to(real)
    for write in (
        lambda: checkpoint.save(link, {"epoch": 2}),
        lambda: checkpoint.write_atomic(link, lambda f: f.write(b"{}")),
    ):
        with pytest.raises(ValueError, match=r"link\.pt is a symbolic link to .*real\.pt"):
            write()
    assert link.is_symlink() and checkpoint.load(link)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.pt", "real.pt"]


def test_saving_over_something_that_is_not_a_regular_file_is_refused(tmp_path):
    pipe = tmp_path / "pipe.pt"
    os.mkfifo(pipe)
    for write in (
        lambda: checkpoint.save(pipe, {"epoch": 2}),
        lambda: checkpoint.write_atomic(pipe, lambda f: f.write(b"{}")),
    ):
        with pytest.raises(ValueError, match=r"pipe\.pt is not a regular file \(a FIFO\)"):
            write()
    assert stat.S_ISFIFO(pipe.lstat().st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["pipe.pt"]
    with pytest.raises(checkpoint.CheckpointError, match=r"pipe\.pt' is not a regular file"):
        checkpoint.load(pipe)  # opening a FIFO would wait for a writer


class FullDisk:
    """A file on a disk that fills up after ``room`` bytes: writes beyond raise ENOSPC (or
    another ``code``)."""

    def __init__(self, f, room, code=errno.ENOSPC):
        self.f, self.room, self.code = f, room, code

    def write(self, data):
        if len(data) > self.room:
            raise OSError(self.code, os.strerror(self.code))
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


@pytest.mark.parametrize("room", [0, 1000], ids=["OSError", "torch-unexpected-pos"])
def test_a_full_disk_is_named_and_the_previous_checkpoint_kept(tmp_path, monkeypatch, room):
    """With room for a few records, torch's writer reports '[enforce fail at inline_container.cc]
    unexpected pos' (the ENOSPC only as its context); with none, the OSError itself."""
    path = tmp_path / "c.pt"
    checkpoint.save(path, {"epoch": 1})
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode, 0), room))
    with pytest.raises(OSError) as caught:
        checkpoint.save(path, {"epoch": 2, "w": torch.zeros(10_000)})
    monkeypatch.undo()
    message = str(caught.value)
    assert caught.value.errno == errno.ENOSPC and "unexpected pos" not in message
    assert "disk" in message and "is full" in message and repr(str(tmp_path)) in message
    assert checkpoint.load(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["c.pt"]  # the temporary file was removed


def test_a_write_error_torch_hides_is_reported(tmp_path, monkeypatch):
    """Not a full disk: the OSError behind torch's 'unexpected pos', naming the folder."""
    path = tmp_path / "c.pt"
    real_fdopen = os.fdopen
    broken = lambda fd, mode: FullDisk(real_fdopen(fd, mode, 0), 1000, errno.EIO)  # noqa: E731
    monkeypatch.setattr(os, "fdopen", broken)
    with pytest.raises(OSError) as caught:
        checkpoint.save(path, {"w": torch.zeros(10_000)})
    monkeypatch.undo()
    message = str(caught.value)
    assert caught.value.errno == errno.EIO and "unexpected pos" not in message
    assert repr(str(tmp_path)) in message and "Input/output error" in message
    assert os.listdir(tmp_path) == []


UNSAFE_HINTS = ("weights_only", "safe_globals", "trust", "False")


def test_random_bytes_are_not_a_checkpoint(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(bytes(torch.randint(0, 256, (1000,)).tolist()))
    with pytest.raises(checkpoint.CheckpointError) as caught:
        checkpoint.load(path)
    message = str(caught.value)
    assert message.startswith(f"{str(path)!r} is not a checkpoint")
    assert not any(hint in message for hint in UNSAFE_HINTS), message


def test_refusals_never_suggest_unsafe_loading(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"model": Payload()}, tmp_path / "evil.pt")
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Payload()))
    checkpoint.save(tmp_path / "c.pt", {"w": torch.zeros(1000)})
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    for name in ("evil.pt", "evil.pkl", "cut.pt"):
        with pytest.raises(checkpoint.CheckpointError) as caught:
            checkpoint.load(tmp_path / name)
        message = str(caught.value)
        assert name in message and not any(h in message for h in UNSAFE_HINTS), message
    assert not (tmp_path / "pwned").exists()


def test_load_model_reads_every_layout_a_run_leaves(tmp_path) -> None:
    """One call loads a trained model: from a recipe's checkpoint (state under 'trainer'), a
    Trainer.state_dict() or a model's own state_dict(); another architecture loads nothing."""
    import multirobust as mr

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    trainer = mr.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), mr.max_(mr.linf))
    layouts = {
        "recipe": {"trainer": trainer.state_dict(), "history": "[]"},
        "trainer": trainer.state_dict(),
        "model": model.state_dict(),
    }
    for name, state in layouts.items():
        path = tmp_path / f"{name}.pt"
        checkpoint.save(path, state)
        loaded = checkpoint.load_model(
            path, torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        )
        assert not loaded.training
        assert torch.equal(loaded[1].weight, model[1].weight), name
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 5))
    before = other[1].weight.clone()
    with pytest.raises(ValueError, match="another model"):
        checkpoint.load_model(tmp_path / "model.pt", other)
    assert torch.equal(other[1].weight, before)
    checkpoint.save(tmp_path / "none.pt", {"epoch": 3})
    with pytest.raises(checkpoint.CheckpointError, match="holds no model weights"):
        checkpoint.load_model(tmp_path / "none.pt", other)


def saved(tmp_path) -> str:
    path = tmp_path / "c.pt"
    checkpoint.save(path, {"w": torch.ones(2)})
    return path


def truncated(tmp_path) -> str:
    path = tmp_path / "c.pt"
    checkpoint.save(path, {"w": torch.zeros(1000)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def a_list(tmp_path) -> str:
    torch.save([1, 2], tmp_path / "list.pt")
    return tmp_path / "list.pt"


def text(tmp_path) -> str:
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint")
    return path


BAD_INPUT = [
    Row(
        "a-text-file",
        "file",
        lambda tmp_path: checkpoint.load(text(tmp_path)),
        checkpoint.CheckpointError,
        r"notes\.pt' is not a checkpoint: it lacks the zip header",
    ),
    Row(
        "truncated",
        "file",
        lambda tmp_path: checkpoint.load(truncated(tmp_path)),
        checkpoint.CheckpointError,
        r"c\.pt.*truncated, corrupted",
    ),
    Row(
        "missing",
        "file",
        lambda tmp_path: checkpoint.load(tmp_path / "nope.pt"),
        checkpoint.CheckpointError,
        "does not exist",
    ),
    Row(
        "a-folder",
        "file",
        lambda tmp_path: checkpoint.load(tmp_path),
        checkpoint.CheckpointError,
        "is a folder, not a file; pass the file",
    ),
    Row(
        "holding-a-list",
        "file",
        lambda tmp_path: checkpoint.load(a_list(tmp_path)),
        checkpoint.CheckpointError,
        r"list\.pt' holds a list, not a dict",
    ),
    Row(
        "map_location-gpu",
        "value",
        lambda tmp_path: checkpoint.load(saved(tmp_path), map_location="gpu"),
        ValueError,
        "map_location must be a device such as 'cpu' or 'cuda:0', got 'gpu'",
    ),
    Row(
        "map_location-cuda:99",
        "device",
        lambda tmp_path: checkpoint.load(saved(tmp_path), map_location="cuda:99"),
        ValueError,
        r"map_location='cuda:99' but this machine has \d+ CUDA device\(s\); pass",
    ),
    Row(
        "save-a-list",
        "type",
        lambda tmp_path: checkpoint.save(tmp_path / "c.pt", [1, 2]),
        TypeError,
        "parameter 'state'" if TYPECHECKED else r"state must be a dict .*got list",
    ),
]


@table(BAD_INPUT)
def test_bad_input(row: Row, tmp_path) -> None:
    refuse(row, tmp_path)


def test_save_of_a_non_dict_writes_nothing(tmp_path) -> None:
    with untyped(), pytest.raises(TypeError, match=r"state must be a dict .*got list"):
        checkpoint.save(tmp_path / "c.pt", [1, 2])  # type: ignore[arg-type]
    assert not (tmp_path / "c.pt").exists()
