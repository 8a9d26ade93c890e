"""torchrun: two processes (Gloo, on the CPU) train what one process trains, in float64; only
process 0 writes; a killed worker is restarted and resumes; a NaN stops every process; the
sweep's models divided among processes equal one process's sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lintorch import sweep, train

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            "2"]


def torchrun(module: str, args: list, *, torchrun_flags=(), cwd=None, wait=True, timeout=180):
    """``torchrun --standalone --nproc-per-node 2 [flags] -m module args``, one thread each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [*TORCHRUN, *torchrun_flags, "-m", module, *map(str, args)]
    if not wait:
        return subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> Path:
    """4 overlapping Gaussian classes of 12 features: 601 training rows (501 after the
    validation split, so no batch size below divides them evenly) and 200 test rows."""
    g = np.random.default_rng(0)
    centers = g.normal(size=(4, 12))

    def split(n):
        y = g.integers(0, 4, n)
        return centers[y] + 1.5 * g.normal(size=(n, 12)), y

    (x_train, y_train), (x_test, y_test) = split(601), split(200)
    path = tmp_path_factory.mktemp("features") / "features.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def flags(features: Path, logdir: Path, **recipe) -> list[str]:
    base = {"dataset": features, "dtype": "float64", "device": "cpu", "val-size": 100,
            "logdir": logdir, "quiet": True, **recipe}
    out = []
    for name, value in base.items():
        out += [f"--{name}"] if value is True else [f"--{name}", str(value)]
    return out


def one_process(args: list[str]):
    """The same flags through fit in this process (one process, no torchrun)."""
    return train.train_model(train.config_from_args(train.build_parser().parse_args(args)))


def weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]


RECIPES = {
    "linear-softmax-momentum-cosine-l2": dict(epochs=3, **{"batch-size": 64, "momentum": 0.9,
                                              "lr-decay": "cosine", "reg": 1e-3}),
    "mlp-svm-l1": dict(epochs=3, model="mlp", hidden=16, loss="svm", **{
        "reg-type": "l1", "reg": 1e-3, "batch-size": 50, "lr-decay": "step", "lr-step": 1}),
    # 501 rows in batches of 4: the last batch holds 1 row, so one process's share is empty
    "batch-not-dividing-n-exp": dict(epochs=2, **{"batch-size": 4, "reg": 1e-2,
                                                  "lr-decay": "exp", "lr-gamma": 0.5}),
}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES.values(), ids=RECIPES.keys())
def test_two_processes_train_what_one_trains(tmp_path, features, recipe):
    args = flags(features, tmp_path / "ddp", **recipe, **{"run-name": "r"})
    r = torchrun("lintorch.train", args)
    assert r.returncode == 0, r.stdout + r.stderr
    model, alone = one_process(flags(features, tmp_path / "one", **recipe))
    for name, w in weights(tmp_path / "ddp" / "r").items():
        torch.testing.assert_close(w, dict(model.named_parameters())[name].detach(),
                                   rtol=1e-9, atol=1e-12)
    both = json.loads((tmp_path / "ddp" / "r" / "metrics.json").read_text())
    assert both["world_size"] == 2 and both["backend"] == "gloo" and alone["world_size"] == 1
    for a, b in zip(both["history"], alone["history"]):  # figures of the whole epoch
        for key in ("train_loss", "train_accuracy", "penalty", "val_loss", "val_accuracy"):
            assert a[key] == pytest.approx(b[key], rel=1e-9), key
    for split in ("val", "test"):
        assert both[split]["accuracy"] == alone[split]["accuracy"]
        assert both[split]["loss"] == pytest.approx(alone[split]["loss"], rel=1e-9)


@pytest.mark.slow
def test_only_process_0_writes_one_run_folder(tmp_path, features):
    r = torchrun("lintorch.train", flags(features, tmp_path / "runs", epochs=1))
    assert r.returncode == 0, r.stdout + r.stderr
    (run,) = (tmp_path / "runs").iterdir()  # one folder, whose name both processes used
    files = {p.name for p in run.iterdir()}
    assert {"metrics.json", "checkpoint.pt"} <= files
    assert sum(name.startswith("events.") for name in files) == 1


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_the_run_ends_as_if_uninterrupted(tmp_path, features):
    recipe = dict(epochs=40, **{"batch-size": 8, "momentum": 0.9, "reg": 1e-3, "lr-decay": "none",
                                "run-name": "r", "no-tensorboard": True})
    proc = torchrun("lintorch.train", flags(features, tmp_path / "runs", **recipe),
                    torchrun_flags=["--max-restarts", "1"], wait=False)
    checkpoint = tmp_path / "runs" / "r" / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the first finished epoch's checkpoint
        if checkpoint.exists() and torch.load(checkpoint, weights_only=True)["epoch"] >= 1:
            break
        time.sleep(0.02)
    workers = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert len(workers) == 2
    os.kill(int(workers[1]), signal.SIGKILL)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 40
    model, _ = one_process(flags(features, tmp_path / "one", **recipe))
    for name, w in weights(tmp_path / "runs" / "r").items():
        torch.testing.assert_close(w, dict(model.named_parameters())[name].detach(),
                                   rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_sigterm_to_torchrun_stops_every_process_and_keeps_the_checkpoint(tmp_path, features):
    proc = torchrun("lintorch.train", flags(features, tmp_path / "runs", epochs=500, **{
        "batch-size": 8, "run-name": "r", "no-tensorboard": True}), wait=False)
    checkpoint = tmp_path / "runs" / "r" / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # a finished epoch's checkpoint
        if checkpoint.exists() and torch.load(checkpoint, weights_only=True)["epoch"] >= 1:
            break
        time.sleep(0.02)
    workers = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)  # what a scheduler sends; torchrun passes it on
    out, _ = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 30
    assert out.count("interrupted; resume with: python -m lintorch.train --resume") == 2, out
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    assert 1 <= torch.load(checkpoint, weights_only=True)["epoch"] < 500


@pytest.mark.slow
def test_a_diverging_run_stops_every_process_with_exit_3(tmp_path, features):
    t0 = time.monotonic()
    r = torchrun("lintorch.train", flags(features, tmp_path / "runs", epochs=50, lr=10,
                                         reg=1e6, **{"batch-size": 16}))
    assert time.monotonic() - t0 < 60
    out = r.stdout + r.stderr
    assert r.returncode != 0
    # torchrun's report lists each worker's exit code
    assert out.count("exitcode  : 3") == 2, out
    assert "loss became NaN or infinite at epoch 1" in out


@pytest.mark.slow
def test_a_sweep_over_two_processes_equals_one_process(tmp_path, features):
    grid = ["--lr", "0.01", "0.1", "1e300", "--reg", "0", "0.01"]
    args = [*flags(features, tmp_path / "runs", epochs=2, **{"batch-size": 64,
                                                             "run-name": "s"}), *grid]
    r = torchrun("lintorch.sweep", args)
    assert r.returncode == 0, r.stdout + r.stderr
    both = json.loads((tmp_path / "runs" / "s" / "sweep.json").read_text())
    assert both["world_size"] == 2 and [p.name for p in (tmp_path / "runs").iterdir()] == ["s"]
    parser = sweep.build_parser()
    cfg = train.config_from_args(parser.parse_args(flags(features, tmp_path / "one", epochs=2,
                                                         **{"batch-size": 64}) + grid))
    alone = sweep.run(cfg, [0.01, 0.1, 1e300], [0.0, 0.01])
    assert both["best"] == alone["best"]
    for a, b in zip(both["models"], alone["models"]):
        assert (a["name"], a["diverged"], a["diverged_at"]) == (b["name"], b["diverged"],
                                                                b["diverged_at"])
        for split in ("val", "test"):
            assert a[split]["accuracy"] == b[split]["accuracy"]
        assert len(a["history"]) == len(b["history"])
        for ha, hb in zip(a["history"], b["history"]):
            for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "penalty"):
                assert ha[key] == pytest.approx(hb[key], rel=1e-9), (a["name"], key)
        assert (tmp_path / "runs" / "s" / a["name"]).is_dir()  # its TensorBoard run
