"""Recipes: every --smoke run, the real loaders on files written here, resume, torchrun."""

import contextlib
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import multirobust.checkpoint as ckpt
from bad_input import Row, refuse, table
from multirobust.paper import experiment

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
sys.path.insert(0, str(RECIPES))


def run(*args: str, timeout: int = 300, returncode: int = 0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    assert out.returncode == returncode, out.stdout[-3000:] + out.stderr[-3000:]
    return out


# The MNIST recipe, stopped after its first checkpoint (as a kill between epochs would stop it).
STOP_AFTER_FIRST_CHECKPOINT = """
import sys
sys.path.insert(0, "recipes")
import multirobust.checkpoint as c
save = c.save
def save_then_stop(path, state):
    save(path, state)
    sys.exit(0)
c.save = save_then_stop
import paper
paper.main("mnist", sys.argv[1:])
"""


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return ckpt.load(folder / "checkpoint.pt")["trainer"]["model"]


@pytest.mark.parametrize(
    ("script", "flag", "value", "message"),
    [
        ("recipes/digits.py", "--eval-steps", "0", "--eval-steps must be >= 1, got 0"),
        ("recipes/digits.py", "--eval-restarts", "-1", "--eval-restarts must be >= 0, got -1"),
        ("recipes/digits.py", "--methods", "max,fgsm", "--methods: unknown 'fgsm'"),
        ("recipes/digits.py", "--adaptive", "l3", "--adaptive: unknown 'l3'"),
        ("recipes/cifar10.py", "--epochs", "0", "--epochs must be >= 1, got 0"),
        ("recipes/cifar10.py", "--batch-size", "0", "--batch-size must be >= 1, got 0"),
        ("recipes/synthetic_svm.py", "--gd-epochs", "0", "--gd-epochs must be >= 1, got 0"),
        ("recipes/synthetic_svm.py", "--lr", "-1", "--lr must be a finite number > 0, got -1.0"),
    ],
)
def test_bad_recipe_flags_fail_before_any_work(script, flag, value, message, tmp_path):
    out = run(script, flag, value, "--out", str(tmp_path / "run"), timeout=120, returncode=2)
    assert message in out.stderr, out.stderr[-2000:]
    assert not (tmp_path / "run").exists()  # nothing written


@pytest.mark.slow
def test_paper_recipe_fast_path_on_fake_data(tmp_path):
    """--fast on the CPU: compiled (CUDA graphs only apply on a GPU), bf16, channels-last."""
    run(
        "recipes/mnist.py",
        "--smoke",
        "--fake-data",
        "--device",
        "cpu",
        "--fast",
        "--epochs",
        "1",
        "--method",
        "msd",
        "--adaptive",
        "l2",
        "--timing",
        "lagged",
        "--out",
        str(tmp_path),
    )
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["compile"], config["amp"], config["channels_last"]) == (
        "reduce-overhead",
        True,
        True,
    )
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["steps"] == 4 and 0 <= results["pgd"]["union"] <= 1


@pytest.mark.parametrize(
    "dataset", ["mnist", "cifar10", pytest.param("cifar100", marks=pytest.mark.slow)]
)
def test_paper_recipe_smoke_on_fake_data(dataset, tmp_path):
    epochs = "2" if dataset == "mnist" else "1"  # PreAct ResNet-18 on CPU: one epoch is enough
    out = run(
        f"recipes/{dataset}.py",
        "--smoke",
        "--fake-data",
        "--device",
        "cpu",
        "--method",
        "msd",
        "--adaptive",
        "l2",
        "--epochs",
        epochs,
        "--out",
        str(tmp_path),
    )
    assert "settings:" in out.stdout
    for name in (
        "config.json",
        "metrics.jsonl",
        "checkpoint.pt",
        "results.json",
        "trajectories.png",
    ):
        assert (tmp_path / name).exists(), name
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["steps"] == int(epochs) * 4 and 0 <= results["pgd"]["union"] <= 1


def test_digits_recipe_smoke(tmp_path):
    out = run("recipes/digits.py", "--smoke", "--out", str(tmp_path))
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"MAX", "MAX+AB l2", "AVG", "AVG+AB l2", "MSD", "MSD+AB l2"}
    assert "mean streak" in out.stdout and "All" in out.stdout


def test_digits_recipe_resumed_for_one_method_keeps_the_others(tmp_path, capsys):
    import digits as recipe

    common = ["--smoke", "--adaptive", "none", "--out", str(tmp_path)]
    first = recipe.main([*common, "--methods", "max,avg"])
    recipe.main([*common, "--methods", "msd", "--resume"])
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results) == ["MAX", "AVG", "MSD"] and results["MAX"] == first["MAX"]
    with pytest.raises(SystemExit):  # kept results of other settings would mix in one table
        recipe.main([*common, "--methods", "msd", "--resume", "--seed", "1"])
    assert "the run was started with seed=0, not seed=1" in capsys.readouterr().err


def test_digits_recipe_cut_short_keeps_the_finished_models(tmp_path, monkeypatch):
    import digits as recipe

    evaluate, calls = recipe.mr.evaluate, []

    def evaluate_then_die(*args, **kwargs):  # the run is killed during the second evaluation
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(recipe.mr, "evaluate", evaluate_then_die)
    flags = ["--smoke", "--methods", "max,msd", "--adaptive", "none", "--out", str(tmp_path)]
    with pytest.raises(KeyboardInterrupt):
        recipe.main(flags)
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"MAX"} and 0 <= results["MAX"]["report"]["union"] <= 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("track", [False, True], ids=["msd", "msd-tracked"])
def test_plot_history_draws_every_panel_without_warnings(track, tmp_path):
    pytest.importorskip("matplotlib")
    import multirobust as mr
    from multirobust.paper.experiment import make_game, plot_history

    players = (mr.linf(eps=0.1, alpha=0.05, steps=2), mr.l2(eps=0.5, alpha=0.25, steps=2))
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    game = make_game(players, "msd", "none", msd_steps=2, track_domination=track)
    trainer = mr.Trainer(net, torch.optim.SGD(net.parameters(), lr=0.1), game)
    history = trainer.fit([(torch.rand(8, 1, 8, 8), torch.randint(0, 3, (8,)))] * 2, 1)
    assert (history.records[0]["player_loss"] is not None) == track
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns of a legend with nothing to show
        plot_history(history, tmp_path / "run.png", players)
    assert (tmp_path / "run.png").stat().st_size > 1000


@pytest.mark.parametrize("epochs", [10, 50, 60])
def test_paper_schedule_spans_the_epochs_asked_for(epochs):
    from multirobust.paper import experiment as ex

    settings = ex.paper_settings("cifar10")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = ex.paper_schedule(opt, settings, epochs, steps_per_epoch=1)
    lrs = []
    for _ in range(epochs + 1):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert lrs[epochs * 2 // 5] == pytest.approx(0.1)  # the peak, epoch 20 of the paper's 50
    assert all(lr > 0 for lr in lrs[1:epochs]) and lrs[epochs] == 0  # 0 only at the end


def test_resume_gives_the_same_final_weights(tmp_path):
    common = [
        "recipes/mnist.py",
        "--smoke",
        "--fake-data",
        "--device",
        "cpu",
        "--method",
        "max",
        "--adaptive",
        "l1",
        "--timing",
        "lagged",
    ]
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    run(*common, "--out", full)
    run("-c", STOP_AFTER_FIRST_CHECKPOINT, *common[1:], "--out", cut)
    assert ckpt.load(Path(cut) / "checkpoint.pt")["trainer"]["epochs_done"] == 1
    run(*common, "--resume", "--out", cut)
    for k, v in weights(Path(full)).items():
        assert torch.equal(v, weights(Path(cut))[k]), k
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 8  # two epochs of 4 steps, no step logged twice

    # --out guards, before any data is loaded: a finished run is neither overwritten nor resumed
    # with other settings (its config.json stays as it was), and --resume needs a run.
    config = (tmp_path / "full" / "config.json").read_text()
    out = run(*common, "--out", full, returncode=2)
    assert "already holds a run (checkpoint.pt): pass --resume" in out.stderr
    out = run(
        *common[:6], "msd", *common[7:], "--epochs", "1", "--resume", "--out", full, returncode=2
    )
    assert "was started with method='max', epochs=2, not method='msd', epochs=1" in out.stderr
    assert (tmp_path / "full" / "config.json").read_text() == config
    out = run(*common, "--resume", "--out", str(tmp_path / "typo"), returncode=2)
    assert "holds no run (no config.json); drop --resume" in out.stderr
    (tmp_path / "file").write_text("")
    out = run(*common, "--out", str(tmp_path / "file"), returncode=2)
    assert "is a file, not a folder" in out.stderr
    # A checkpoint that fails to load leaves config.json too; one copied in alone resumes.
    shutil.copytree(full, tmp_path / "broken")
    data = (tmp_path / "broken" / "checkpoint.pt").read_bytes()
    (tmp_path / "broken" / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    out = run(*common, "--resume", "--eval-n", "4", "--out", str(tmp_path / "broken"), returncode=1)
    assert "CheckpointError" in out.stderr
    assert (tmp_path / "broken" / "config.json").read_text() == config
    (tmp_path / "copied").mkdir()
    shutil.copy(tmp_path / "full" / "checkpoint.pt", tmp_path / "copied")
    run(*common, "--resume", "--out", str(tmp_path / "copied"))
    assert json.loads((tmp_path / "copied" / "config.json").read_text())["resume"] is True


def test_torchrun_two_ranks_end_with_identical_weights(tmp_path):
    run(
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "recipes/mnist.py",
        "--smoke",
        "--fake-data",
        "--device",
        "cpu",
        "--method",
        "msd",
        "--adaptive",
        "l2",
        "--out",
        str(tmp_path),
        timeout=400,
    )
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["ranks_identical"] is True


CLOSE_THEN_WORK_ALONE = """
import time, weakref, torch
import multirobust.paper.experiment as ex
dist = ex.init_distributed("cpu")
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Conv2d(1, 4, 3))
model(torch.randn(8, 1, 28, 28)).square().mean().backward()
wrapper = weakref.ref(model)
try:
    dist.close(wrapper)
except RuntimeError as e:
    print("refused:", "still referenced" in str(e))
del model
dist.close(wrapper)
if dist.rank == 0:  # rank 1 exits while rank 0 is still busy, as in the recipes' evaluation
    start = time.time()
    while time.time() - start < 1.0:
        torch.randn(200, 200) @ torch.randn(200, 200)
    print("rank 0 alone; group left:", not torch.distributed.is_initialized())
"""


def test_close_lets_rank_0_go_on_alone(tmp_path):
    # With a bare destroy_process_group() instead (the wrapper alive), rank 1 aborted in 2 of 12
    # runs of this script, and in 6 of 20 of a variant that destroys after rank 0's work; with
    # close(), 0 of 90 of that variant. The abort is rare, so close() refuses a live wrapper.
    script = tmp_path / "close.py"
    script.write_text(CLOSE_THEN_WORK_ALONE)
    out = run("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script))
    assert out.stdout.count("refused: True") == 2
    assert "rank 0 alone; group left: True" in out.stdout


def _write_mnist(root: Path, n: int = 40) -> None:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, count in (("train", n), ("t10k", n // 2)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        header = np.array([2051, count, 28, 28], dtype=">i4").tobytes()
        (raw / f"{split}-images-idx3-ubyte").write_bytes(header + images.tobytes())
        header = np.array([2049, count], dtype=">i4").tobytes()
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(header + labels.tobytes())


def _write_cifar10(root: Path, n: int = 16) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, n).tolist(),
        }
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(
        pickle.dumps({"label_names": [str(i) for i in range(10)]})
    )


def test_mnist_loader_reads_files_in_torchvision_format(tmp_path):
    _write_mnist(tmp_path)
    out = tmp_path / "run"
    run(
        "recipes/mnist.py",
        "--smoke",
        "--device",
        "cpu",
        "--data-dir",
        str(tmp_path),
        "--out",
        str(out),
    )
    assert json.loads((out / "results.json").read_text())["steps"] > 0


def test_cifar10_loader_reads_files_in_torchvision_format(tmp_path, monkeypatch):
    torchvision = pytest.importorskip("torchvision")
    _write_cifar10(tmp_path)
    # Files written here cannot match the published md5 sums; everything else is the real loader.
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    import paper

    results = paper.main(
        "cifar10",
        [
            "--smoke",
            "--device",
            "cpu",
            "--data-dir",
            str(tmp_path),
            "--out",
            str(tmp_path / "run"),
            "--epochs",
            "1",
        ],
    )
    assert results["steps"] == 4 and "pgd" in results


# -- one run per --out, and a run folder's files ------------------------------------------------

# Every recipe, with the flags of its quickest run.
RECIPES = {
    "digits": ["recipes/digits.py", "--smoke", "--methods", "max", "--adaptive", "none"],
    "mnist": ["recipes/mnist.py", "--smoke", "--fake-data", "--device", "cpu"],
    "cifar10": ["recipes/cifar10.py", "--smoke", "--fake-data", "--device", "cpu"],
    "cifar100": ["recipes/cifar100.py", "--smoke", "--fake-data", "--device", "cpu"],
    "synthetic_svm": [
        "recipes/synthetic_svm.py",
        "--smoke",
        "--setting",
        "argmin",
        "--aggregator",
        "max",
        "--budgets",
        "all-2mu",
    ],
}

# Holds --out the way a recipe does, until killed.
HOLD_OUT = """
import sys, time
from multirobust.paper import experiment as ex
assert ex.claim_out(sys.argv[1]) is None
print("held", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("recipe", RECIPES)
def test_a_busy_out_is_refused_by_name(recipe, tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_OUT, str(out)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        refused = run(*RECIPES[recipe], "--out", str(out), timeout=120, returncode=2)
    finally:
        holder.kill()
        holder.wait()
    message = f"--out {out} is in use by another run (pid {holder.pid}); wait for it or pick"
    assert message in refused.stderr, refused.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["run.lock"]  # nothing written


@pytest.mark.parametrize("recipe", RECIPES)
def test_an_out_that_cannot_be_made_is_a_parser_error(recipe, tmp_path):
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "run"
    refused = run(*RECIPES[recipe], "--out", str(out), timeout=120, returncode=2)
    assert f"--out {out} cannot be written (NotADirectoryError" in refused.stderr
    assert "pick a folder you can write to" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_an_out_under_a_read_only_folder_is_a_parser_error(capsys):
    import digits as recipe

    out = "/sys/multirobust-test-run"  # /sys is mounted read-only: root cannot write there either
    try:
        os.makedirs(out)
    except PermissionError:
        pass
    else:
        os.rmdir(out)
        pytest.skip("/sys is writable here")
    with pytest.raises(SystemExit) as e:
        recipe.parse_args(["--smoke", "--out", out])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"--out {out} cannot be written (PermissionError: " in err, err
    assert "pick a folder you can write to, or make this one writable" in err


@pytest.fixture(scope="module")
def finished_digits(tmp_path_factory):
    """A finished digits run of one model (MAX), and the flags that made it."""
    import digits as recipe

    out = tmp_path_factory.mktemp("digits") / "run"
    flags = ["--smoke", "--methods", "max", "--adaptive", "none"]
    recipe.main([*flags, "--out", str(out)])
    return out, flags


def test_digits_refuses_to_overwrite_or_mix_a_finished_run(finished_digits, tmp_path, capsys):
    import digits as recipe

    out = tmp_path / "run"
    shutil.copytree(finished_digits[0], out)
    flags = [*finished_digits[1], "--out", str(out)]
    config, results = (out / "config.json").read_text(), (out / "results.json").read_text()
    for argv, message in [
        (flags, "already holds a run (config.json): pass --resume to continue it"),
        ([*flags, "--seed", "1"], "already holds a run (config.json)"),
        ([*flags, "--resume", "--seed", "1"], "the run was started with seed=0, not seed=1"),
        ([*flags[:-1], str(tmp_path / "typo"), "--resume"], "holds no run (no config.json)"),
    ]:
        with pytest.raises(SystemExit) as e:  # before any data is loaded
            recipe.main(argv)
        assert e.value.code == 2 and message in capsys.readouterr().err, argv
    assert (out / "config.json").read_text() == config
    assert (out / "results.json").read_text() == results
    assert not (tmp_path / "typo").exists()


def test_digits_resume_names_a_half_written_results_file(finished_digits, tmp_path, capsys):
    import digits as recipe

    out = tmp_path / "run"
    shutil.copytree(finished_digits[0], out)
    text = (out / "results.json").read_text()
    (out / "results.json").write_text(text[: len(text) // 2])
    with pytest.raises(SystemExit) as e:
        recipe.main([*finished_digits[1], "--out", str(out), "--resume"])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert f"{out}/results.json is not valid JSON (a write cut short?: " in err, err
    assert "delete it (--resume then evaluates every model again from its checkpoint), or " in err


def test_digits_resume_names_a_checkpoint_that_is_not_a_recipes(finished_digits, tmp_path):
    import digits as recipe

    out = tmp_path / "run"
    shutil.copytree(finished_digits[0], out)
    path = out / "MAX" / "checkpoint.pt"
    ckpt.save(path, ckpt.load(path)["trainer"]["model"])  # a bare state_dict
    with pytest.raises(ckpt.CheckpointError, match=f"{path} is not a recipe checkpoint"):
        recipe.main([*finished_digits[1], "--out", str(out), "--resume"])


def _tiny_trainer(log_path: Path):
    import multirobust as mr
    from multirobust.paper.experiment import make_game

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    game = make_game([mr.linf(eps=0.1, alpha=0.05, steps=1)], "max")
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    return mr.Trainer(net, opt, game, log_path=log_path)


BATCHES = [(torch.rand(8, 1, 8, 8), torch.randint(0, 3, (8,)))] * 2


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ("state_dict", "is not a recipe checkpoint: it holds {'1.bias', '1.weight'}, not the"),
        ("no history", "is not a recipe checkpoint: it holds {'trainer'}, not the 'trainer' and"),
        ("history not JSON", "its 'history' is not valid JSON (Unterminated string"),
    ],
)
def test_resume_refuses_a_checkpoint_it_did_not_write(state, message, tmp_path):
    from multirobust.paper import experiment as ex

    trainer = _tiny_trainer(tmp_path / "metrics.jsonl")
    saved = {
        "state_dict": trainer.module.state_dict(),
        "no history": {"trainer": trainer.state_dict()},
        "history not JSON": {"trainer": trainer.state_dict(), "history": '[{"step": 0, "lo'},
    }[state]
    ckpt.save(tmp_path / "checkpoint.pt", saved)
    with pytest.raises(ckpt.CheckpointError) as e:
        ex.fit_with_checkpoints(trainer, BATCHES, 1, tmp_path, resume=True)
    assert str(e.value).startswith(f"{tmp_path / 'checkpoint.pt'}") and message in str(e.value)
    assert trainer.epochs_done == 0  # nothing loaded


def test_resume_replaces_a_half_written_metrics_file(tmp_path):
    from multirobust.paper import experiment as ex

    ex.fit_with_checkpoints(_tiny_trainer(tmp_path / "metrics.jsonl"), BATCHES, 1, tmp_path)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "lo')  # a run killed while logging a step of its second epoch
    ex.fit_with_checkpoints(
        _tiny_trainer(tmp_path / "metrics.jsonl"), BATCHES, 2, tmp_path, resume=True
    )
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]


# ---------------------------------------------------------------------------------------------
# Bad input: the paper kit's settings and the recipes' flags, refused before any work
# ---------------------------------------------------------------------------------------------


class ParserError(Exception):
    """A recipe's argparse error: what it printed to stderr before exiting with status 2."""


def parsed(name: str, *args: object) -> object:
    """``recipes/<name>.py``'s ``parse_args(*args)``; an argparse error is a ``ParserError``."""
    module = __import__(name)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return module.parse_args(*args)
    except SystemExit as e:
        assert e.code == 2, e.code
        raise ParserError(err.getvalue()) from None


def busy(tmp_path: Path) -> object:
    """digits --out a folder this process holds, as a running recipe does."""
    out = tmp_path / "run"
    assert experiment.claim_out(out) is None
    try:
        return parsed("digits", ["--smoke", "--out", str(out)])
    finally:
        experiment.release_out(out)


def a_file(tmp_path: Path) -> Path:
    (tmp_path / "file").write_text("")
    return tmp_path / "file"


def _players() -> list:
    import multirobust as mr

    return [mr.linf(eps=0.1, alpha=0.05, steps=1), mr.l2(eps=0.5, alpha=0.25, steps=1)]


def _small_trainer() -> object:
    import multirobust as mr

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    return mr.Trainer(net, torch.optim.SGD(net.parameters(), lr=0.1), mr.max_(_players()[0]))


BATCH4 = [(torch.rand(4, 1, 4, 4), torch.arange(4) % 3)]

BAD_INPUT = [
    *(
        Row(
            f"{fn}-imagenet",
            "value",
            lambda f=fn: getattr(experiment, f)("imagenet"),
            ValueError,
            r"dataset must be one of '?mnist'?, '?cifar10'?",
        )
        for fn in ("paper_settings", "paper_model")
    ),
    *(
        Row(
            f"make_game-{key}-{value}",
            "value",
            lambda kw={key: value}: experiment.make_game(_players(), **{"method": "max", **kw}),
            ValueError,
            match,
        )
        for key, value, match in [
            ("method", "mad", "method must be one of max, avg, msd; got 'mad'"),
            ("adaptive", "l3", "adaptive must be one of none, l1, l2; got 'l3'"),
            ("timing", "later", "timing must be one of 'same-batch', 'lagged'; got 'later'"),
            ("msd_steps", 0, "msd_steps must be an int >= 1, got 0"),
        ]
    ),
    Row(
        "init_distributed-tpu",
        "value",
        lambda: experiment.init_distributed("tpu"),
        ValueError,
        "device must be 'cuda', 'cpu' or None, got 'tpu'",
    ),
    Row(
        "init_distributed-cuda-without-cuda",
        "device",
        lambda: experiment.init_distributed("cuda"),
        ValueError,
        "CUDA is not available here; pass device='cpu'",
        marks=(pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available"),),
    ),
    *(
        Row(
            f"paper-{flag}-{value}",
            "value",
            lambda f=flag, v=value: parsed("paper", "mnist", [f, v]),
            ParserError,
            f"argument {flag}: invalid choice: '{value}'",
        )
        for flag, value in [("--method", "mad"), ("--adaptive", "l3"), ("--timing", "later")]
    ),
    Row(
        "digits-out-a-file",
        "out",
        lambda tmp_path: parsed("digits", ["--smoke", "--out", str(a_file(tmp_path))]),
        ParserError,
        r"--out \S+file is a file, not a folder",
    ),
    Row(
        "digits-out-cannot-be-made",
        "out",
        lambda tmp_path: parsed("digits", ["--smoke", "--out", str(a_file(tmp_path) / "run")]),
        ParserError,
        r"--out .*cannot be written \(NotADirectoryError.*pick a folder you can write to",
    ),
    Row(
        "digits-out-busy",
        "out",
        busy,
        ParserError,
        r"--out \S+ is in use by another run \(pid \d+\); wait for it or pick",
    ),
]


@table(BAD_INPUT)
def test_bad_input(row: Row, tmp_path) -> None:
    refuse(row, tmp_path)


def test_fit_with_checkpoints_epochs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="epochs must be an int >= 1, got 0"):
        experiment.fit_with_checkpoints(_small_trainer(), BATCH4, 0, tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_digits_recipe_unknown_method(tmp_path: Path, capsys) -> None:
    pytest.importorskip("sklearn")
    import digits

    with pytest.raises(SystemExit) as exit_:
        digits.main(["--smoke", "--methods", "mad", "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert "--methods: unknown 'mad'; choose from max, avg, msd" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written, nothing trained
