"""Checkpoints: atomic writes, clear errors for damaged files, no code execution when loading."""

import os
import pickle

import pytest
import torch

from multirobust import checkpoint


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


def test_truncated_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "c.pt"
    checkpoint.save(path, {"w": torch.zeros(1000)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(checkpoint.CheckpointError, match=r"c\.pt.*truncated, corrupted"):
        checkpoint.load(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "nope.pt")


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
