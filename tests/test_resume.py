"""Resuming keeps its promise: a resumed run continues the run its checkpoint holds, on the data
it trained on, with the recipe it used, in its own folder; otherwise it refuses in one line
before anything is written. Also the one-line refusals of flags and environment variables whose
consequences would otherwise surface as a traceback."""

from __future__ import annotations

import json
import os
import pickle
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lintorch import checkpoint, train

REPO = Path(__file__).resolve().parents[1]


def save_features(path: Path, n: int = 60, d: int = 6, seed: int = 0) -> Path:
    g = np.random.default_rng(seed)
    np.savez(path, x_train=g.normal(size=(n, d)), y_train=np.arange(n) % 3,
             x_test=g.normal(size=(10, d)), y_test=np.arange(10) % 3)
    return path


def command(dataset, logdir, name: str, *more) -> list[str]:
    return ["--dataset", str(dataset), "--val-size", "10", "--epochs", "2", "--lr", "0.05",
            "--momentum", "0.9", "--logdir", str(logdir), "--run-name", name, "--quiet",
            "--no-tensorboard", "--device", "cpu", *map(str, more)]


def metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def contents(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.fixture
def run(tmp_path) -> Path:
    """The checkpoint of a 2-epoch run on 6 features of 3 classes, with momentum."""
    assert train.main(command(save_features(tmp_path / "f.npz"), tmp_path / "runs", "r")) == 0
    return tmp_path / "runs" / "r" / "checkpoint.pt"


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


# --- a run's folder is its own ----------------------------------------------------------------


def test_copied_checkpoints_continue_in_their_own_run_folders(tmp_path):
    features, runs = save_features(tmp_path / "f.npz"), tmp_path / "runs"
    assert train.main(command(features, runs, "ra", "--lr", "0.05")) == 0
    assert train.main(command(features, runs, "rb", "--lr", "0.02")) == 0
    (tmp_path / "b").mkdir()
    shutil.copy(runs / "ra" / "checkpoint.pt", tmp_path / "b" / "a.pt")
    shutil.copy(runs / "rb" / "checkpoint.pt", tmp_path / "b" / "b.pt")
    assert train.main(["--resume", str(tmp_path / "b" / "a.pt"), "--epochs", "3"]) == 0
    assert train.main(["--resume", str(tmp_path / "b" / "b.pt"), "--epochs", "3"]) == 0
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["a.pt", "b.pt"]
    for name, lr in (("ra", 0.05), ("rb", 0.02)):
        m = metrics(runs / name)
        assert [h["epoch"] for h in m["history"]] == [1, 2, 3] and m["config"]["lr"] == lr
        assert torch.load(runs / name / "checkpoint.pt", weights_only=True)["epoch"] == 3


def test_a_checkpoint_records_its_run_folder_resolved_and_an_id(run):
    saved = torch.load(run, weights_only=True)["run"]
    assert saved["run_dir"] == str(run.parent.resolve()) and len(saved["run_id"]) >= 16


def test_a_symlinked_checkpoint_continues_in_the_runs_own_folder(run, tmp_path):
    (tmp_path / "link").mkdir()
    (tmp_path / "link" / "checkpoint.pt").symlink_to(run)
    assert train.main(["--resume", str(tmp_path / "link" / "checkpoint.pt"),
                       "--epochs", "3"]) == 0
    assert [h["epoch"] for h in metrics(run.parent)["history"]] == [1, 2, 3]
    assert [p.name for p in (tmp_path / "link").iterdir()] == ["checkpoint.pt"]


@pytest.mark.parametrize("what", ["gone", "another run"])
def test_a_checkpoint_whose_folder_is_gone_or_holds_another_run_continues_in_a_new_one(
        run, tmp_path, capsys, what):
    copy = tmp_path / "a.pt"
    shutil.copy(run, copy)
    shutil.rmtree(run.parent)
    if what == "another run":
        assert train.main(command(tmp_path / "f.npz", tmp_path / "runs", "r")) == 0
        before = contents(run.parent)
    capsys.readouterr()
    assert train.main(["--resume", str(copy), "--epochs", "3"]) == 0
    err = capsys.readouterr().err
    new = tmp_path / "runs" / ("r" if what == "gone" else "r-2")
    assert "new folder" in err and str(new) in err and what.split()[-1] in err
    assert [h["epoch"] for h in metrics(new)["history"]] == [1, 2, 3]
    if what == "another run":
        assert contents(run.parent) == before  # never replaced


def test_a_second_process_resuming_a_held_run_refuses_and_a_crash_frees_it(run, capsys):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from lintorch import files; "
         f"files.lock_folder({str(run.parent)!r}); print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline() == "held\n"
        before = contents(run.parent)
        assert train.main(["--resume", str(run), "--epochs", "3"]) == 1
        err = one_line(capsys)
        assert "in use" in err and str(holder.pid) in err
        assert contents(run.parent) == before
    finally:
        holder.kill()  # a crash: the system releases its lock
        holder.wait()
    assert train.main(["--resume", str(run), "--epochs", "3"]) == 0


def held_elsewhere(folder: Path) -> bool:
    """Whether another process holding ``folder`` keeps a new process from locking it."""
    r = subprocess.run([sys.executable, "-c", "from lintorch import files; "
                        f"files.lock_folder({str(folder)!r})"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    return r.returncode != 0 and "in use" in r.stderr


def test_a_run_holds_its_folder_while_it_runs_and_lets_go_when_it_ends(run, monkeypatch):
    seen = []
    real_epoch = train.train_epoch
    monkeypatch.setattr(train, "train_epoch", lambda run_, epoch: seen.append(
        held_elsewhere(run.parent)) or real_epoch(run_, epoch))
    assert train.main(["--resume", str(run), "--epochs", "3"]) == 0
    assert seen == [True] and not held_elsewhere(run.parent)


# --- the data is the data ---------------------------------------------------------------------


def test_the_checkpoint_records_the_data_by_absolute_path_size_and_counts(tmp_path,
                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_features(tmp_path / "feat.npz")
    assert train.main(command("feat.npz", "runs", "r")) == 0
    saved = torch.load(tmp_path / "runs/r/checkpoint.pt", weights_only=True)["run"]["data"]
    assert saved == {"dataset": str((tmp_path / "feat.npz").resolve()), "data_root": None,
                     "bytes": os.path.getsize(tmp_path / "feat.npz"), "train": 50, "val": 10,
                     "test": 10}


def test_a_resume_from_another_folder_reads_the_data_it_trained_on_or_refuses(
        tmp_path, monkeypatch, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    save_features(a / "feat.npz")
    save_features(b / "feat.npz", n=80, seed=1)  # another file of the same name
    monkeypatch.chdir(a)
    assert train.main(command("feat.npz", "runs", "r")) == 0
    monkeypatch.chdir(b)
    ckpt = "../a/runs/r/checkpoint.pt"
    assert train.main(["--resume", ckpt, "--epochs", "3"]) == 0  # alone: its own data
    m = metrics(a / "runs" / "r")
    assert m["config"]["dataset"] == str((a / "feat.npz").resolve()) and len(m["history"]) == 3
    with pytest.raises(SystemExit) as e:  # the run's command, from here: other data
        train.main([*command("feat.npz", "runs", "r", "--epochs", "4"), "--resume", ckpt])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code == 2
    assert str((a / "feat.npz").resolve()) in last and str((b / "feat.npz").resolve()) in last
    save_features(a / "feat.npz", n=70)  # its own file, rewritten since
    assert train.main(["--resume", ckpt, "--epochs", "4"]) == 1
    err = one_line(capsys)
    assert "other data" in err and str((a / "feat.npz").resolve()) in err
    assert len(metrics(a / "runs" / "r")["history"]) == 3


# --- a checkpoint is checked whole before it is used ------------------------------------------


def edit(path: Path, change) -> None:
    saved = torch.load(path, weights_only=True)
    change(saved)
    torch.save(saved, path)


def nan_weight(c):
    c["model"]["weight"][0, 0] = float("nan")


DAMAGED = {  # an edit of a run's checkpoint -> words its one line must hold
    "no epochs": (lambda c: c["config"].pop("epochs"), "no epochs"),
    "no dataset": (lambda c: c["config"].pop("dataset"), "no dataset"),
    "epochs None": (lambda c: c["config"].update(epochs=None), "epochs is None"),
    "momentum other than the config's": (
        lambda c: c["optimizer"]["param_groups"][0].update(momentum=0.0), "momentum 0.0"),
    "a string momentum": (lambda c: c["optimizer"]["param_groups"][0].update(momentum="0.9"),
                          "momentum '0.9'"),
    "a float for a buffer": (lambda c: c["optimizer"]["state"][0].update(momentum_buffer=1.5),
                             "momentum buffer float"),
    "a buffer of another dtype": (
        lambda c: c["optimizer"]["state"][0].update(
            momentum_buffer=c["optimizer"]["state"][0]["momentum_buffer"].double()),
        "torch.float64"),
    "lintorch's state labelled impl torch": (lambda c: c["config"].update(impl="torch"),
                                             "settings"),
    "epoch -1": (lambda c: c.update(epoch=-1), "epoch is -1"),
    "epoch past the config's epochs": (lambda c: c["config"].update(epochs=1),
                                       "done 2 epochs"),
    "NaN weights": (nan_weight, "NaN"),
    "a run record of the wrong kind": (lambda c: c["run"].update(run_id=3), "run_id"),
}


@pytest.mark.parametrize("case", DAMAGED)
def test_a_damaged_checkpoint_is_refused_in_one_line_before_anything_is_written(run, capsys,
                                                                                 case):
    change, words = DAMAGED[case]
    edit(run, change)
    before = contents(run.parent)
    assert train.main(["--resume", str(run), "--epochs", "3"]) == 1
    err = one_line(capsys)
    assert "is damaged" in err and words in err and str(run) in err
    assert contents(run.parent) == before


def test_epochs_below_the_epochs_done_is_a_usage_error_naming_both(run, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--resume", str(run), "--epochs", "1"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code == 2 and "--epochs 1" in last and "2 epochs" in last


# --- one line, not a traceback ------------------------------------------------------------------


def test_an_unwritable_run_folder_is_refused_before_an_epoch_is_trained(run, monkeypatch,
                                                                        capsys):
    # Tests run as root, who may write anywhere: the folder's permission is simulated.
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if (
        Path(p).resolve() == run.parent.resolve()) else real(p, mode, **kw))
    trained = []
    monkeypatch.setattr(train, "train_epoch", lambda *a: trained.append(a))
    before = contents(run.parent)
    assert train.main(["--resume", str(run), "--epochs", "3"]) == 1
    err = one_line(capsys)
    assert "permission denied" in err and str(run.parent) in err
    assert not trained and contents(run.parent) == before


def test_a_schedule_that_overflows_is_a_usage_error_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(command(save_features(tmp_path / "f.npz"), tmp_path / "runs", "r",
                           "--lr-decay", "exp", "--lr-gamma", "1e200", "--lr", "1e-300",
                           "--epochs", "3"))
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code == 2 and "overflows" in last and "--lr-gamma" in last
    assert not (tmp_path / "runs").exists()


def test_a_model_too_big_to_allocate_is_one_line_stating_its_size(tmp_path, capsys):
    code = train.main(command(save_features(tmp_path / "f.npz"), tmp_path / "runs", "r",
                              "--model", "mlp", "--hidden", "10000000000"))
    err = one_line(capsys)
    assert code == 1 and "100,000,000,003 parameters" in err and "--hidden" in err


def test_a_failed_allocation_is_one_line_stating_the_models_size(tmp_path, capsys,
                                                                  monkeypatch):
    def no_memory(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(train, "build_model", no_memory)
    code = train.main(command(save_features(tmp_path / "f.npz"), tmp_path / "runs", "r"))
    err = one_line(capsys)
    assert code == 1 and "21 parameters" in err and "cannot be allocated" in err


@pytest.mark.parametrize("env,name", [
    ({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}, "MASTER_ADDR"),
    ({"TORCHELASTIC_RESTART_COUNT": "abc"}, "TORCHELASTIC_RESTART_COUNT"),
    ({"RANK": "zero", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}, "RANK"),
])
def test_a_bad_torchrun_variable_is_one_line_naming_it(tmp_path, monkeypatch, capsys, env,
                                                       name):
    for key in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code = train.main(command(save_features(tmp_path / "f.npz"), tmp_path / "runs", "r"))
    err = one_line(capsys)
    assert code == 1 and name in err
    assert not (tmp_path / "runs").exists()


def test_a_seed_beyond_torchs_range_is_a_usage_error_naming_the_flag_and_range(capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--seed", "99999999999999999999999", "--no-download", "--data-root",
                    "/nonexistent"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code == 2 and "--seed" in last and "2^64" in last


@pytest.mark.parametrize("seed", ["lo", "hi"])
def test_every_seed_in_the_range_seeds_torchs_generators(seed):
    from lintorch.config import SEED_RANGE, SEED_STRIDE

    s = SEED_RANGE[0 if seed == "lo" else 1]
    torch.manual_seed(s)
    for epoch in (1, SEED_STRIDE):
        train.epoch_generator(s, epoch, torch.device("cpu"))


# --- messages that help ---------------------------------------------------------------------


def test_the_resume_command_printed_on_ctrl_c_pastes_as_it_is(tmp_path, monkeypatch, capsys):
    real_save = train.Run.save

    def save_then_interrupt(run, epoch):
        real_save(run, epoch)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(train.Run, "save", save_then_interrupt)
    logdir = tmp_path / "my runs"
    assert train.main(command(save_features(tmp_path / "f.npz"), logdir, "it's")) == 130
    said = capsys.readouterr().err.split("resume with: ", 1)[1].strip()
    assert shlex.split(said) == ["python", "-m", "lintorch.train", "--resume",
                                 str(logdir / "it's" / "checkpoint.pt")]


def test_resume_alone_keeps_the_runs_own_device_tensorboard_and_quiet(run, capsys):
    capsys.readouterr()
    assert train.main(["--resume", str(run), "--epochs", "3"]) == 0
    assert capsys.readouterr().out == ""  # quiet, as the run was
    assert not list(run.parent.glob("events.out.tfevents*"))
    cfg = metrics(run.parent)["config"]
    assert (cfg["device"], cfg["tensorboard"], cfg["quiet"]) == ("cpu", False, True)


def test_a_flag_given_with_resume_still_changes_a_free_setting(run):
    assert train.main(["--resume", str(run), "--epochs", "3", "--tensorboard"]) == 0
    assert list(run.parent.glob("events.out.tfevents*"))
    assert metrics(run.parent)["config"]["tensorboard"] is True


def test_the_readmes_resume_paragraph_shows_only_forms_that_parse():
    import re

    text = (REPO / "README.md").read_text()
    paragraph = text[text.index("Resuming:"):].split("\n\n")[0]
    forms = re.findall(r"`(--resume[^`]*)`", paragraph)
    assert forms
    for form in forms:
        train.build_parser().parse_args(shlex.split(form.replace("<name>", "x")))


def test_a_pickle_that_would_run_code_is_refused_in_lintorchs_words(tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(pickle.dumps({"model": Payload(), "epoch": 1, "config": {}}, protocol=4))
    assert train.main(["--resume", str(bad)]) == 1
    err = one_line(capsys)
    assert "would run code" in err and "system" in err
    assert "weights_only" not in err and "\x1b" not in err
    assert not (tmp_path / "ran").exists()


def test_a_checkpoint_it_may_not_read_says_permission_denied(run, monkeypatch, capsys):
    # Tests run as root, whom chmod 000 does not stop: the refusal is simulated.
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(run))

    monkeypatch.setattr(checkpoint.torch, "load", denied)
    assert train.main(["--resume", str(run)]) == 1
    err = one_line(capsys)
    assert "permission denied" in err and "damaged" not in err


def test_a_penalty_that_overflows_says_to_try_a_smaller_reg(tmp_path, capsys):
    code = train.main(command(save_features(tmp_path / "f.npz"), tmp_path / "runs", "r",
                              "--reg", "1e308"))
    err = one_line(capsys)
    assert code == 3 and "--reg" in err


def test_resuming_a_finished_run_logs_no_second_final_point_and_keeps_its_wall_time(
        tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    real_epoch = train.train_epoch

    def slow_epoch(*args):  # a run that takes a while, beside a resume that takes little
        time.sleep(0.5)
        return real_epoch(*args)

    monkeypatch.setattr(train, "train_epoch", slow_epoch)
    assert train.main(command(save_features(tmp_path / "f.npz"), tmp_path / "runs", "r",
                              "--tensorboard")) == 0
    monkeypatch.undo()
    folder = tmp_path / "runs" / "r"
    first = metrics(folder)["wall_time_s"]
    assert train.main(["--resume", str(folder / "checkpoint.pt")]) == 0
    acc = EventAccumulator(str(folder)).Reload()
    assert [e.step for e in acc.Scalars("accuracy/test")] == [2]
    assert metrics(folder)["wall_time_s"] >= 1.0 and first >= 1.0
