"""The main job end to end: the CLI on real Fashion-MNIST and on a CIFAR-10-layout data set,
what a run leaves behind, resuming, Ctrl-C, divergence, bad input, determinism."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from cifar_fixture import write_cifar10

import lintorch
from lintorch import board, train
from lintorch.train import TrainConfig

REPO = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").exists(),
                                   reason="Debian's dataset-fashion-mnist is not installed")
SCALARS = {"loss/train", "loss/val", "loss/penalty", "accuracy/train", "accuracy/val",
           "accuracy/test", "lr"}
HISTORY_KEYS = {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
                "epoch_time_s"}


def run_cli(*args, env=None, **kw) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "lintorch.train", *map(str, args)],
                          capture_output=True, text=True, env=full_env, cwd=kw.get("cwd"),
                          timeout=kw.get("timeout", 300))


def quick(tmp_path, **kw) -> TrainConfig:
    base = dict(dataset="fashion-mnist", data_root=str(FASHION), no_download=True, limit=2000,
                val_size=500, epochs=3, quiet=True, logdir=str(tmp_path / "runs"),
                run_name="r", tensorboard=False)
    base.update(kw)
    return TrainConfig(**base)


def signal_after_epoch_2(args: list, sig: int) -> tuple[int, str]:
    """Run the CLI, send it ``sig`` once it has printed epoch 2's line: (exit code, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "lintorch.train", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    for line in proc.stdout:
        if line.startswith("epoch   2/"):
            proc.send_signal(sig)
            break
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def hparams_shown(run_dir: Path) -> dict:
    """The hparams of the run's session as TensorBoard's HPARAMS tab reads them: name -> value."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    start = metadata.parse_session_start_info_plugin_data(
        acc.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG])
    return {k: getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}


def interrupt_after_epoch(monkeypatch, epoch: int) -> None:
    """Ctrl-C right after the checkpoint of ``epoch`` is saved (until monkeypatch.undo())."""
    real_save = train.Run.save

    def save_then_interrupt(run, e):
        real_save(run, e)
        if e == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(train.Run, "save", save_then_interrupt)


def final_weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)["model"]


# --- a real run through the CLI -----------------------------------------------------------


@needs_fashion
@pytest.mark.slow
def test_cli_run_on_fashion_mnist_leaves_everything_promised(tmp_path):
    r = run_cli("--dataset", "fashion-mnist", "--data-root", FASHION, "--no-download",
            "--limit", 3000, "--epochs", 2, "--reg", 1e-3, "--logdir", tmp_path, "--run-name",
            "fm")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "epoch   1/2" in out and "epoch   2/2" in out and "test accuracy" in out
    assert "Ankle boot" in out  # the per-class table
    run = tmp_path / "fm"

    m = json.loads((run / "metrics.json").read_text())
    assert set(m) >= {"config", "history", "train", "val", "test", "per_class_test_accuracy",
                      "data_load_s", "wall_time_s", "device", "torch_version"}
    assert set(m["config"]) == {f.name for f in train.dataclasses.fields(TrainConfig)} | {
        "loss_fn"}
    assert len(m["history"]) == 2 and HISTORY_KEYS <= set(m["history"][0])
    assert set(m["test"]) == {"loss", "accuracy"}
    assert 0.7 < m["test"]["accuracy"] <= 1.0  # 3,000 images of real data, 2 epochs
    assert len(m["per_class_test_accuracy"]) == 10

    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert {"model", "optimizer", "epoch", "rng", "config"} <= set(ckpt)
    assert ckpt["epoch"] == 2

    tags = board.read_tags(run)
    assert SCALARS <= set(tags["scalars"])
    assert {"templates", "confusion"} <= set(tags["images"])
    assert any(t.startswith("params/") for t in tags["histograms"])
    assert any(t.startswith("grads/") for t in tags["histograms"])
    scalars = board.read_scalars(run)
    assert [step for step, _ in scalars["loss/train"]] == [1, 2]
    assert scalars["accuracy/test"][-1][1] == pytest.approx(m["test"]["accuracy"])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(run), size_guidance={"tensors": 0})
    acc.Reload()
    assert acc.PluginTagToContent("hparams")  # the HPARAMS tab finds this run


@pytest.mark.slow
def test_cli_run_on_a_cifar10_layout_data_set(tmp_path):
    write_cifar10(tmp_path / "data", n_train_per_batch=60, n_test=50)
    r = run_cli("--data-root", tmp_path / "data", "--no-download", "--val-size", 50, "--epochs", 2,
            "--model", "mlp", "--hidden", 16, 8, "--loss", "svm", "--logdir", tmp_path / "runs",
            "--run-name", "c")
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "runs" / "c" / "metrics.json").read_text())
    assert m["config"]["dataset"] == "cifar10" and m["config"]["hidden"] == [16, 8]
    assert len(m["per_class_test_accuracy"]) == 10
    assert "airplane" in m["per_class_test_accuracy"]


def test_a_run_with_tensorboard_draws_its_figures_without_matplotlib(tmp_path):
    # matplotlib's import and first figure took ~0.6 s of every run, a tenth of Fashion-MNIST's
    # default run: the board's figures are drawn with Pillow, which TensorBoard already loads.
    write_cifar10(tmp_path / "data", n_train_per_batch=5, n_test=5)
    code = ("import sys; from lintorch import train; code = train.main(sys.argv[1:]); "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'; sys.exit(code)")
    r = subprocess.run([sys.executable, "-c", code, "--data-root", str(tmp_path / "data"),
                        "--no-download", "--val-size", "5", "--epochs", "1", "--quiet",
                        "--logdir", str(tmp_path / "runs"), "--run-name", "c"],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr
    tags = board.read_tags(tmp_path / "runs" / "c")
    assert {"templates", "templates/labelled", "confusion"} <= set(tags["images"])


@needs_fashion
@pytest.mark.parametrize("kw, used", [
    (dict(model="linear", lr_decay="cosine"), set()),
    (dict(model="mlp", hidden=[16], lr_decay="step", lr_step=1, lr_gamma=0.5),
     {"hidden", "lr_step", "lr_gamma"}),
], ids=["linear-cosine", "mlp-step"])
def test_hparams_tab_shows_the_recipe_and_metrics_json_the_whole_config(tmp_path, kw, used):
    cfg = quick(tmp_path, tensorboard=True, epochs=1, limit=500, val_size=100, **kw)
    m = train.fit(cfg)
    shown = hparams_shown(Path(m["run_dir"]))
    assert set(shown) == {"dataset", "model", "loss", "impl", "epochs", "batch_size", "lr",
                          "lr_decay", "momentum", "reg", "reg_type", "preprocess", "augment",
                          "val_size", "limit", "seed", "dtype"} | used
    assert shown["limit"] == 500 and shown["lr_decay"] == kw["lr_decay"]
    if "hidden" in used:
        assert (shown["hidden"], shown["lr_step"], shown["lr_gamma"]) == ("[16]", 1, 0.5)
    saved = json.loads((Path(m["run_dir"]) / "metrics.json").read_text())
    assert saved["config"] == {**train.dataclasses.asdict(cfg.resolved()), "loss_fn": None}


# --- reliability --------------------------------------------------------------------------


@needs_fashion
def test_interrupted_then_resumed_run_ends_with_the_same_weights(tmp_path, monkeypatch):
    whole = train.fit(quick(tmp_path, run_name="whole", epochs=4, augment=True, reg=1e-3))

    interrupt_after_epoch(monkeypatch, 2)
    with pytest.raises(train.Interrupted, match="--resume"):
        train.fit(quick(tmp_path, run_name="cut", epochs=4, augment=True, reg=1e-3))
    monkeypatch.undo()
    resumed = train.fit(TrainConfig(resume=str(tmp_path / "runs/cut/checkpoint.pt"),
                                    quiet=True, tensorboard=False))
    a = final_weights(tmp_path / "runs/whole")
    b = final_weights(tmp_path / "runs/cut")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4]
    assert resumed["test"] == whole["test"]


@needs_fashion
@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_resume_matches(tmp_path):
    args = ["--dataset", "fashion-mnist", "--data-root", FASHION, "--no-download", "--limit",
            1000, "--val-size", 200, "--epochs", 20, "--logdir", tmp_path, "--batch-size", 16]
    code, err = signal_after_epoch_2([*args, "--run-name", "int"], signal.SIGINT)
    assert code == 130, err
    assert "--resume" in err and "Traceback" not in err
    ckpt = tmp_path / "int" / "checkpoint.pt"
    assert 2 <= torch.load(ckpt, weights_only=False)["epoch"] < 20

    assert run_cli("--resume", ckpt, "--quiet").returncode == 0
    assert run_cli(*args, "--run-name", "ref", "--quiet").returncode == 0
    a, b = final_weights(tmp_path / "int"), final_weights(tmp_path / "ref")
    for k in a:
        assert torch.equal(a[k], b[k]), k


@needs_fashion
def test_resume_with_more_epochs_extends_a_finished_run(tmp_path):
    train.fit(quick(tmp_path, epochs=2))
    r = train.fit(TrainConfig(resume=str(tmp_path / "runs/r/checkpoint.pt"), epochs=3,
                              quiet=True, tensorboard=False))
    assert [h["epoch"] for h in r["history"]] == [1, 2, 3]


@needs_fashion
def test_divergence_stops_with_exit_3_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    code = train.main(["--dataset", "fashion-mnist", "--data-root", str(FASHION),
                       "--no-download", "--limit", "1000", "--val-size", "100", "--lr", "1e30",
                       "--logdir", str(tmp_path), "--run-name", "nan", "--quiet"])
    err = capsys.readouterr().err
    assert code == 3
    assert "epoch 1, step" in err and "--lr" in err and len(err.strip().splitlines()) == 1
    ckpt = torch.load(tmp_path / "nan" / "checkpoint.pt", weights_only=False)
    assert ckpt["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_missing_data_is_one_clear_line_and_exit_1(tmp_path):
    r = run_cli("--data-root", tmp_path / "nothing", "--no-download", "--logdir", tmp_path)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert str(tmp_path / "nothing") in lines[0] and "LINTORCH_DATA" in lines[0]
    assert "--data-root" in lines[0]


def test_corrupt_data_names_the_file(tmp_path):
    write_cifar10(tmp_path / "data", n_train_per_batch=5, n_test=5)
    batch = tmp_path / "data" / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])
    code = train.main(["--data-root", str(tmp_path / "data"), "--no-download", "--val-size",
                       "5", "--logdir", str(tmp_path), "--quiet"])
    assert code == 1


@pytest.mark.parametrize("flags", [
    ["--lr", "-1"], ["--lr", "0"], ["--batch-size", "0"], ["--epochs", "0"],
    ["--model", "resnet"], ["--loss", "hinge"], ["--hidden", "0"], ["--hidden", "-3"],
    ["--lr-decay", "linear"], ["--device", "tpu"],
])
def test_invalid_flags_are_usage_errors(flags, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(flags)
    assert e.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_help_shows_the_flags_and_defaults(capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ["--batch-size", "--lr-decay", "--reg-type", "--resume", "--limit", "--augment",
                 "--impl", "--preprocess", "--val-size", "(default: auto)", "fashion-mnist linear",
                 "per data set, listed below"]:
        assert flag in out, flag


@needs_fashion
def test_no_tensorboard_writes_no_events_but_the_rest(tmp_path):
    assert train.main(["--dataset", "fashion-mnist", "--data-root", str(FASHION), "--no-download",
                       "--limit", "500", "--val-size", "100", "--epochs", "1", "--logdir",
                       str(tmp_path), "--run-name", "quiet", "--quiet", "--no-tensorboard"]) == 0
    files = {p.name for p in (tmp_path / "quiet").iterdir()}
    assert {"metrics.json", "checkpoint.pt"} <= files
    assert not any(name.startswith("events.") for name in files)


def test_missing_checkpoint_is_one_line(tmp_path, capsys):
    assert train.main(["--resume", str(tmp_path / "nope.pt")]) == 1
    assert "no checkpoint" in capsys.readouterr().err


# --- what a run computes --------------------------------------------------------------------


@needs_fashion
def test_same_seed_gives_identical_metrics(tmp_path):
    a = train.fit(quick(tmp_path, run_name="a", augment=True))
    b = train.fit(quick(tmp_path, run_name="b", augment=True))
    strip = lambda h: {k: v for k, v in h.items() if k != "epoch_time_s"}  # noqa: E731
    assert [strip(h) for h in a["history"]] == [strip(h) for h in b["history"]]
    assert a["test"] == b["test"]
    c = train.fit(quick(tmp_path, run_name="c", seed=1))
    assert c["history"][0]["train_loss"] != a["history"][0]["train_loss"]


def test_the_torch_impl_builds_the_models_with_torchs_linear_map_and_sigmoid():
    cfg = TrainConfig(dataset="fashion-mnist", model="mlp", hidden=[4])
    ours, theirs = train.build_model(cfg, 6, 3), train.build_model(replace(cfg, impl="torch"), 6, 3)
    assert ours.sigmoid is lintorch.sigmoid and ours.linear is lintorch.linear
    assert theirs.sigmoid is torch.sigmoid and theirs.linear is torch.nn.functional.linear
    cfg = replace(cfg, model="linear")
    assert train.build_model(cfg, 6, 3).linear is lintorch.linear
    assert train.build_model(replace(cfg, impl="torch"), 6, 3).linear is torch.nn.functional.linear


@needs_fashion
@pytest.mark.parametrize("loss,model,momentum", [("softmax", "linear", 0.0),
                                                 ("svm", "linear", 0.9), ("softmax", "mlp", 0.9)])
def test_lintorch_and_torch_impls_train_the_same_model(tmp_path, loss, model, momentum):
    kw = dict(loss=loss, model=model, hidden=[16], dtype="float64", reg=1e-3, momentum=momentum)
    a = quick(tmp_path, run_name=f"l-{loss}", **kw)
    b = quick(tmp_path, run_name=f"t-{loss}", impl="torch", **kw)
    train.fit(a)
    train.fit(b)
    wa, wb = final_weights(tmp_path / f"runs/l-{loss}"), final_weights(tmp_path / f"runs/t-{loss}")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-9, atol=1e-12)


@needs_fashion
def test_fresh_model_loss_matches_the_lectures_sanity_check(tmp_path):
    # Before any step, the first mini-batches' loss is ~log C (softmax) and ~C - 1 (SVM).
    for loss, expected in [("softmax", 2.3026), ("svm", 9.0)]:
        model, m = train.train_model(quick(tmp_path, run_name=loss, loss=loss, epochs=1,
                                           lr=1e-12))
        assert m["history"][0]["train_loss"] == pytest.approx(expected, abs=0.05)


@needs_fashion
@pytest.mark.parametrize("decay,lrs", [
    ("step", [0.1, 0.1, 0.05, 0.05]), ("exp", [0.1, 0.05, 0.025, 0.0125]),
    ("none", [0.1] * 4),
])
def test_lr_schedules_step_once_per_epoch(tmp_path, decay, lrs):
    m = train.fit(quick(tmp_path, run_name=decay, epochs=4, lr=0.1, lr_decay=decay, lr_step=2,
                        lr_gamma=0.5, limit=300))
    assert [h["lr"] for h in m["history"]] == pytest.approx(lrs)


@needs_fashion
def test_regularization_penalizes_weights_not_biases(tmp_path):
    model, m = train.train_model(quick(tmp_path, reg=0.5, epochs=2, limit=500))
    assert m["history"][-1]["penalty"] == pytest.approx(
        float((model.weight.detach() ** 2).sum()), rel=0.5)
    l1, m1 = train.train_model(quick(tmp_path, run_name="l1", reg=0.5, reg_type="l1", epochs=2,
                                     limit=500))
    assert m1["history"][-1]["penalty"] == pytest.approx(
        float(l1.weight.detach().abs().sum()), rel=0.5)


@pytest.mark.cuda
@needs_fashion
def test_cuda_run_matches_cpu_run(tmp_path):
    cpu = train.fit(quick(tmp_path, run_name="cpu", dtype="float64", device="cpu"))
    gpu = train.fit(quick(tmp_path, run_name="gpu", dtype="float64", device="cuda"))
    assert gpu["test"]["accuracy"] == pytest.approx(cpu["test"]["accuracy"], abs=0.01)
    assert gpu["device"] != "cpu"


# --- CUDA graphs ----------------------------------------------------------------------------


def test_cuda_graphs_flag_reaches_the_config():
    parser = train.build_parser()
    assert train.config_from_args(parser.parse_args([])).cuda_graphs is True
    assert train.config_from_args(parser.parse_args(["--no-cuda-graphs"])).cuda_graphs is False


@pytest.mark.cuda
@needs_fashion
@pytest.mark.parametrize("model,loss,reg_type", [("linear", "softmax", "l2"),
                                                 ("mlp", "svm", "l1")])
def test_graphed_steps_train_the_model_eager_steps_train(tmp_path, monkeypatch, model, loss,
                                                         reg_type):
    made = []

    class Recorded(train.GraphedStep):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(train, "GraphedStep", Recorded)
    # momentum (a buffer the capture must find in place), a cosine rate (a new capture each
    # epoch), 1,500 training images in batches of 128 (an eager last batch each epoch)
    kw = dict(device="cuda", model=model, loss=loss, reg_type=reg_type, reg=1e-3,
              momentum=0.9, lr_decay="cosine", hidden=[32])
    eager = train.fit(quick(tmp_path, run_name="eager", cuda_graphs=False, **kw))
    assert not made
    graphed = train.fit(quick(tmp_path, run_name="graphed", **kw))
    assert len(made) == 1 and made[0].captures == 3 and made[0].eager_steps == 3
    for a, b in zip(eager["history"], graphed["history"]):
        for key in ("train_loss", "train_accuracy", "val_loss", "penalty"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), key
    runs = tmp_path / "runs"
    for name, w in final_weights(runs / "eager").items():
        torch.testing.assert_close(final_weights(runs / "graphed")[name], w)


@pytest.mark.cuda
def test_graphed_step_replays_captures_again_for_a_new_key_and_runs_odd_batches_eagerly():
    from lintorch.cuda_graph import WARMUP, GraphedStep

    total = torch.zeros((), device="cuda")
    key = {"lr": 0.1}

    def step(x, y):  # a side effect, as an optimizer's, and outputs
        total.add_(x.sum() + y.sum())
        return total.clone(), x.sum()

    graphed = GraphedStep(step, 4, torch.device("cuda"), key=lambda: key["lr"])
    want = 0.0
    for k in range(WARMUP + 3):
        x = torch.arange(4 * k, 4 * k + 4, device="cuda", dtype=torch.float32)
        want += float(2 * x.sum())
        got, x_sum = graphed(x, x.clone())
        assert float(got) == want and float(x_sum) == float(x.sum())
    assert graphed.captures == 1
    key["lr"] = 0.05
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], device="cuda")
    want += 20.0
    assert float(graphed(x, x)[0]) == want and graphed.captures == 2
    want += 14.0
    assert float(graphed(x[:1] + 6, x[:1] + 6)[0]) == want  # a smaller batch: eager
    assert graphed.captures == 2


# --- resuming and extending -------------------------------------------------------------------


@pytest.mark.parametrize("decay", ["step", "exp", "cosine", "none"])
def test_lr_at_equals_torchs_schedulers(decay):
    cfg = TrainConfig(dataset="fashion-mnist", lr=0.3, lr_decay=decay, lr_step=2, lr_gamma=0.7,
                      epochs=7).resolved()
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    sched = {"step": lambda: torch.optim.lr_scheduler.StepLR(opt, 2, 0.7),
             "exp": lambda: torch.optim.lr_scheduler.ExponentialLR(opt, 0.7),
             "cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=7),
             "none": lambda: torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)}[decay]()
    for epoch in range(1, 8):
        assert train.lr_at(cfg, epoch) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        opt.step()
        sched.step()


@needs_fashion
@pytest.mark.parametrize("decay", ["step", "exp", "cosine"])
def test_extending_a_finished_run_trains_every_new_epoch(tmp_path, decay):
    first = train.fit(quick(tmp_path, epochs=3, lr_decay=decay, lr_step=1, limit=1000))
    ckpt = tmp_path / "runs/r/checkpoint.pt"
    before = final_weights(tmp_path / "runs/r")
    more = train.fit(TrainConfig(resume=str(ckpt), epochs=6, quiet=True, tensorboard=False))
    new = more["history"][3:]
    assert [h["epoch"] for h in new] == [4, 5, 6]
    assert all(h["lr"] > 0 for h in new)
    assert not torch.equal(final_weights(tmp_path / "runs/r")["weight"], before["weight"])
    assert new[-1]["train_loss"] != first["history"][-1]["train_loss"]


@needs_fashion
def test_resume_refuses_a_flag_that_would_change_the_recipe(tmp_path, capsys):
    train.fit(quick(tmp_path, epochs=1, limit=500))
    ckpt = str(tmp_path / "runs/r/checkpoint.pt")
    for flag, value in [("--lr", "0.5"), ("--loss", "svm"), ("--model", "mlp"),
                        ("--reg", "0.1"), ("--batch-size", "7"), ("--seed", "3")]:
        with pytest.raises(SystemExit) as e:
            train.main(["--resume", ckpt, flag, value])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert flag in err.splitlines()[-1] and "--resume" in err
    # how long, where and how loudly may change
    assert train.main(["--resume", ckpt, "--epochs", "2", "--device", "cpu", "--quiet",
                       "--no-tensorboard", "--data-root", str(FASHION)]) == 0
    with pytest.raises(ValueError, match="loss cannot change"):
        train.fit(TrainConfig(resume=ckpt, loss="svm", quiet=True))


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "checkpoint.pt"
    torch.save({"model": Payload(), "epoch": 1, "config": {}}, bad)
    assert train.main(["--resume", str(bad)]) == 1
    err = capsys.readouterr().err
    assert not marker.exists()
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(bad) in err and "system" in err  # the reason: the refused function, named


def test_a_damaged_checkpoint_is_one_line(tmp_path, capsys):
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"not a checkpoint at all")
    assert train.main(["--resume", str(bad)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "cannot read checkpoint" in err


@pytest.mark.parametrize("content", [b"\x80\x02.", b"\x80\x02h\x05."],
                         ids=["stop on an empty stack", "a memo entry never stored"])
def test_a_pickle_damaged_in_any_way_is_one_line(tmp_path, capsys, content):
    # torch's weights_only unpickler meets damage with IndexError, KeyError, TypeError, ...
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(content)
    assert train.main(["--resume", str(bad)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "cannot read checkpoint" in err


@needs_fashion
def test_config_takes_pathlike_paths(tmp_path):
    m = train.fit(TrainConfig(dataset="fashion-mnist", data_root=FASHION, no_download=True,
                              limit=300, val_size=100, epochs=1, quiet=True,
                              logdir=tmp_path / "runs", run_name="p"))
    saved = json.loads((tmp_path / "runs/p/metrics.json").read_text())
    assert saved["config"]["data_root"] == str(FASHION) == m["config"]["data_root"]
    resumed = train.fit(TrainConfig(resume=tmp_path / "runs/p/checkpoint.pt", epochs=2,
                                    quiet=True, tensorboard=False))
    assert len(resumed["history"]) == 2


@needs_fashion
def test_confusion_matrix_counts_the_test_predictions(tmp_path):
    model, m = train.train_model(quick(tmp_path, epochs=1))
    raw = train.data.load_dataset("fashion-mnist", FASHION, download=False)
    d = train.data.prepare(raw, val_size=500, limit=2000)
    with torch.no_grad():
        pred = model(d.test_x).argmax(1)
    want = torch.zeros(10, 10, dtype=torch.long)
    for t, p in zip(d.test_y.tolist(), pred.tolist()):
        want[t, p] += 1
    assert m["confusion_matrix"] == want.tolist()


# --- interruptions ----------------------------------------------------------------------------


@needs_fashion
@pytest.mark.slow
def test_sigterm_keeps_the_checkpoint_and_exits_143(tmp_path):
    args = ["--dataset", "fashion-mnist", "--data-root", FASHION, "--no-download", "--limit",
            1000, "--val-size", 200, "--epochs", 50, "--logdir", tmp_path, "--batch-size", 16,
            "--run-name", "term", "--no-tensorboard"]
    code, err = signal_after_epoch_2(args, signal.SIGTERM)
    assert code == 143, err
    assert "--resume" in err and "Traceback" not in err
    assert 2 <= torch.load(tmp_path / "term/checkpoint.pt", weights_only=True)["epoch"] < 50


@pytest.mark.parametrize("where", ["data", "finish"])
def test_ctrl_c_while_loading_or_in_the_final_evaluation_exits_130_quietly(
        tmp_path, monkeypatch, capsys, where):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    write_cifar10(tmp_path / "data", n_train_per_batch=20, n_test=20)
    monkeypatch.setattr(train.data if where == "data" else train,
                        "load_dataset" if where == "data" else "finish", interrupt)
    code = train.main(["--data-root", str(tmp_path / "data"), "--no-download", "--val-size",
                       "10", "--epochs", "1", "--logdir", str(tmp_path / "runs"), "--quiet"])
    assert code == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err
    assert ("--resume" in err) == (where == "finish")


def test_limit_help_says_what_it_does(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "train on N images of the training split only" in out


@needs_fashion
@pytest.mark.slow
def test_fashion_mnist_is_found_with_no_data_flag(tmp_path, monkeypatch):
    monkeypatch.delenv("LINTORCH_DATA", raising=False)
    r = run_cli("--dataset", "fashion-mnist", "--limit", 500, "--val-size", 100, "--epochs", 1,
            "--no-download", "--quiet", "--no-tensorboard", "--logdir", tmp_path / "runs",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "data").exists()


def test_augment_is_refused_for_features_that_are_not_images(tmp_path, capsys):
    import numpy as np

    g = np.random.default_rng(0)
    np.savez(tmp_path / "f.npz", x_train=g.normal(size=(50, 6)), y_train=g.integers(0, 3, 50),
             x_test=g.normal(size=(10, 6)), y_test=g.integers(0, 3, 10))
    code = train.main(["--dataset", str(tmp_path / "f.npz"), "--augment", "--val-size", "10",
                       "--logdir", str(tmp_path / "runs"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "--augment" in err and len(err.strip().splitlines()) == 1


def test_npz_features_train_and_a_bad_file_is_one_line(tmp_path, capsys):
    import numpy as np

    g = np.random.default_rng(0)
    np.savez(tmp_path / "f.npz", x_train=g.normal(size=(80, 6)), y_train=g.integers(0, 3, 80),
             x_test=g.normal(size=(20, 6)), y_test=g.integers(0, 3, 20))
    assert train.main(["--dataset", str(tmp_path / "f.npz"), "--val-size", "10", "--epochs",
                       "2", "--logdir", str(tmp_path / "runs"), "--run-name", "f",
                       "--quiet"]) == 0
    m = json.loads((tmp_path / "runs" / "f" / "metrics.json").read_text())
    assert m["config"]["dataset"] == str(tmp_path / "f.npz") and len(m["history"]) == 2
    assert "templates" not in board.read_tags(tmp_path / "runs" / "f")["images"]
    (tmp_path / "bad.npz").write_text("not a zip")
    assert train.main(["--dataset", str(tmp_path / "bad.npz"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "bad.npz" in err


def test_features_that_overflow_float32_are_exit_1_with_the_dtype_way_out(tmp_path, capsys):
    from test_data_npz import overflowing_float32

    overflowing_float32(tmp_path / "big.npz", n=80, d=6)
    code = train.main(["--dataset", str(tmp_path / "big.npz"), "--val-size", "10", "--epochs",
                       "1", "--logdir", str(tmp_path / "runs"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "float32" in err and "--dtype float64" in err and "--lr" not in err
    assert not (tmp_path / "runs").exists()  # refused before a run folder was made


# --- checkpoints that do not fit ----------------------------------------------------------------


def save_features(path: Path, d: int = 6, classes: int = 3, seed: int = 0) -> Path:
    import numpy as np

    g = np.random.default_rng(seed)
    np.savez(path, x_train=g.normal(size=(60, d)), y_train=np.arange(60) % classes,
             x_test=g.normal(size=(10, d)), y_test=np.arange(10) % classes)
    return path


def features_checkpoint(tmp_path, model: str = "linear") -> Path:
    """The checkpoint of a 1-epoch run on 6 features of 3 classes, with momentum."""
    train.fit(TrainConfig(dataset=str(save_features(tmp_path / "f.npz")), val_size=10, epochs=1,
                          model=model, hidden=[5], momentum=0.9, logdir=str(tmp_path / "runs"),
                          run_name="f", quiet=True, tensorboard=False))
    return tmp_path / "runs" / "f" / "checkpoint.pt"


@pytest.fixture
def features_run(tmp_path) -> Path:
    return features_checkpoint(tmp_path)


def refused_resume(checkpoint: Path, capsys) -> str:
    """Resume through the CLI, which must refuse in one line with exit 1 and write nothing."""
    folder = {p.name: p.read_bytes() for p in checkpoint.parent.iterdir()}
    assert train.main(["--resume", str(checkpoint), "--epochs", "2"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(checkpoint) in err
    assert {p.name: p.read_bytes() for p in checkpoint.parent.iterdir()} == folder
    return err


@pytest.mark.parametrize("model", ["linear", "mlp"])
@pytest.mark.parametrize("d,classes,words", [
    (8, 3, "the checkpoint's model has 6 input features, the data set 8"),
    (6, 4, "the checkpoint's model has 3 classes, the data set 4"),
])
def test_resuming_on_data_that_changed_shape_says_what_does_not_fit(tmp_path, capsys, model, d,
                                                                    classes, words):
    checkpoint = features_checkpoint(tmp_path, model)
    save_features(tmp_path / "f.npz", d=d, classes=classes)  # regenerated since
    assert words in refused_resume(checkpoint, capsys)


def edit_checkpoint(path: Path, change) -> None:
    checkpoint = torch.load(path, weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, path)


DAMAGED = {  # an edit of a run's checkpoint -> words the one line must hold
    "config not a dict": (lambda c: c.update(config=[1, 2]), "config is of type list"),
    "config value of the wrong kind": (lambda c: c["config"].update(lr="fast"), "lr is 'fast'"),
    "config value out of range": (lambda c: c["config"].update(lr=-1.0), "lr must be"),
    "model misses a key": (lambda c: c["model"].pop("bias"), "model has no bias"),
    "model has an extra key": (lambda c: c["model"].update(scale=torch.ones(1)), "scale"),
    "model entry not a tensor": (lambda c: c["model"].update(bias=[0, 0, 0]), "bias"),
    "optimizer not a dict": (lambda c: c.update(optimizer=[1]), "optimizer is of type list"),
    "optimizer of another model": (lambda c: c["optimizer"]["param_groups"][0].update(params=[0]),
                                   "optimizer"),
    "momentum of another shape": (
        lambda c: c["optimizer"]["state"][0].update(momentum_buffer=torch.zeros(2, 2)),
        "optimizer"),
    "rng not a dict": (lambda c: c.update(rng=5), "rng is of type int"),
    "rng state damaged": (lambda c: c["rng"].update(torch=torch.zeros(3, dtype=torch.uint8)),
                          "rng"),
    "history not a list": (lambda c: c.update(history=3), "history"),
    "history of other epochs": (lambda c: c.update(history=[{"epoch": 5}]), "history"),
    "history of numbers": (lambda c: c.update(history=[1]), "history"),
    "epoch not a number": (lambda c: c.update(epoch="one"), "epoch is of type str"),
    "no optimizer": (lambda c: c.pop("optimizer"), "optimizer"),
}


@pytest.mark.parametrize("case", DAMAGED)
def test_a_checkpoint_with_an_entry_that_does_not_fit_is_one_line(features_run, capsys, case):
    change, words = DAMAGED[case]
    edit_checkpoint(features_run, change)
    assert words in refused_resume(features_run, capsys)


@needs_fashion
def test_the_summary_names_the_logdir_to_view(tmp_path, capsys):
    train.fit(quick(tmp_path, epochs=1, quiet=False, logdir=str(tmp_path / "my runs"),
                    tensorboard=True))
    assert f"tensorboard --logdir '{tmp_path / 'my runs'}'" in capsys.readouterr().out


@needs_fashion
def test_without_tensorboard_the_summary_promises_no_events(tmp_path, capsys):
    train.fit(quick(tmp_path, epochs=1, quiet=False))
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("metrics and checkpoint in ") and "TensorBoard" not in last
    assert not list((tmp_path / "runs" / "r").glob("events.out.tfevents*"))


# --- resuming with the run's own command ------------------------------------------------------


def features_command(tmp_path, *more) -> list[str]:
    return ["--dataset", str(save_features(tmp_path / "f.npz")), "--val-size", "10",
            "--epochs", "3", "--lr", "0.05", "--momentum", "0.9", "--logdir",
            str(tmp_path / "runs"), "--quiet", "--no-tensorboard", *more]


def test_the_same_command_with_resume_appended_resumes_where_it_stopped(tmp_path, monkeypatch,
                                                                         capsys):
    assert train.main(features_command(tmp_path, "--run-name", "whole")) == 0
    interrupt_after_epoch(monkeypatch, 1)
    command = features_command(tmp_path, "--run-name", "cut")
    assert train.main(command) == 130
    monkeypatch.undo()
    checkpoint = tmp_path / "runs" / "cut" / "checkpoint.pt"
    assert train.main([*command, "--resume", str(checkpoint)]) == 0
    a, b = final_weights(tmp_path / "runs" / "whole"), final_weights(tmp_path / "runs" / "cut")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    m = json.loads((tmp_path / "runs" / "cut" / "metrics.json").read_text())
    assert [h["epoch"] for h in m["history"]] == [1, 2, 3]


def test_resume_with_a_flag_that_differs_names_the_flag_and_both_values(tmp_path, capsys):
    assert train.main(features_command(tmp_path, "--run-name", "r", "--epochs", "1")) == 0
    checkpoint = str(tmp_path / "runs" / "r" / "checkpoint.pt")
    with pytest.raises(SystemExit) as e:
        train.main([*features_command(tmp_path, "--lr", "0.2"), "--resume", checkpoint])
    assert e.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--lr" in last and "0.05" in last and "0.2" in last
    assert json.loads((tmp_path / "runs/r/metrics.json").read_text())["config"]["lr"] == 0.05


# --- what train_step is -----------------------------------------------------------------------


def test_train_step_is_the_lectures_step_and_nothing_of_scale_out_or_graphs():
    import inspect

    source = inspect.getsource(train.train_step).lower()
    for word in ("world", "share", "graph", "ddp", "distributed", "cuda", "torch.optim"):
        assert word not in source, word


def test_fit_updates_the_weights_with_lintorchs_sgd_step_and_impl_torch_with_torchs(
        tmp_path, monkeypatch):
    from lintorch import update_rules

    calls = []
    real = update_rules.sgd_step
    monkeypatch.setattr(update_rules, "sgd_step", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = TrainConfig(dataset=str(save_features(tmp_path / "f.npz")), val_size=10, epochs=1,
                      batch_size=25, logdir=str(tmp_path / "runs"), quiet=True,
                      tensorboard=False)
    train.fit(cfg)
    assert len(calls) == 2 * 2  # 50 training examples in batches of 25: W and b, twice
    train.fit(replace(cfg, impl="torch"))
    assert len(calls) == 4


# --- strict JSON, small and uneven data sets ----------------------------------------------------


def strict_json(path: Path):
    return json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in {path}"))


def test_metrics_json_is_strict_json_without_a_validation_split(tmp_path):
    m = train.fit(TrainConfig(dataset=str(save_features(tmp_path / "f.npz")), val_size=0,
                              epochs=1, logdir=str(tmp_path / "runs"), run_name="v", quiet=True))
    saved = strict_json(tmp_path / "runs" / "v" / "metrics.json")
    assert saved["val"] == {"loss": None, "accuracy": None} == m["val"]
    assert saved["history"][0]["val_accuracy"] is None


def test_a_class_without_test_images_has_no_test_accuracy_not_zero(tmp_path, capsys):
    import numpy as np

    g = np.random.default_rng(0)
    np.savez(tmp_path / "f.npz", x_train=g.normal(size=(60, 4)), y_train=np.arange(60) % 3,
             x_test=g.normal(size=(10, 4)), y_test=np.arange(10) % 2)  # no test image of 2
    assert train.main(["--dataset", str(tmp_path / "f.npz"), "--val-size", "10", "--epochs", "1",
                       "--logdir", str(tmp_path / "runs"), "--run-name", "c",
                       "--no-tensorboard"]) == 0
    per_class = strict_json(tmp_path / "runs/c/metrics.json")["per_class_test_accuracy"]
    assert per_class["2"] is None and per_class["0"] is not None
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("2 "))
    assert row.split()[-1] == "—"


def test_a_small_data_set_takes_a_validation_split_that_fits(tmp_path):
    import numpy as np

    g = np.random.default_rng(0)
    np.savez(tmp_path / "f.npz", x_train=g.normal(size=(12, 4)), y_train=np.arange(12) % 3,
             x_test=g.normal(size=(6, 4)), y_test=np.arange(6) % 3)
    m = train.fit(TrainConfig(dataset=str(tmp_path / "f.npz"), epochs=1, quiet=True,
                              logdir=str(tmp_path / "runs"), tensorboard=False))
    assert m["config"]["val_size"] == 1 and len(m["history"]) == 1


def test_a_validation_split_too_large_names_the_flag(tmp_path, capsys):
    import numpy as np

    g = np.random.default_rng(0)
    np.savez(tmp_path / "f.npz", x_train=g.normal(size=(12, 4)), y_train=np.arange(12) % 3,
             x_test=g.normal(size=(6, 4)), y_test=np.arange(6) % 3)
    assert train.main(["--dataset", str(tmp_path / "f.npz"), "--val-size", "50",
                       "--logdir", str(tmp_path / "runs"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--val-size" in err


# --- a custom loss (fit's loss=) --------------------------------------------------------------


def features_config(tmp_path, **kw) -> TrainConfig:
    return TrainConfig(**{**dict(dataset=str(save_features(tmp_path / "f.npz")), val_size=10,
                                 epochs=2, batch_size=16, dtype="float64", momentum=0.5,
                                 logdir=str(tmp_path / "runs"), quiet=True, tensorboard=False),
                          **kw})


def test_a_custom_loss_equal_to_cross_entropy_trains_the_builtin_choices_weights(tmp_path):
    cfg = features_config(tmp_path, loss="softmax")
    builtin, _ = train.train_model(replace(cfg, run_name="builtin"))
    custom, m = train.train_model(replace(cfg, run_name="custom"), loss=lintorch.cross_entropy)
    torch.testing.assert_close(custom.weight, builtin.weight, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(custom.bias, builtin.bias, rtol=1e-12, atol=1e-15)
    saved = json.loads((Path(m["run_dir"]) / "metrics.json").read_text())
    assert saved["config"]["loss"] == "softmax"
    assert saved["config"]["loss_fn"] == m["config"]["loss_fn"] == "lintorch.losses.cross_entropy"


def test_a_custom_loss_replaces_the_configs_loss(tmp_path):
    cfg = features_config(tmp_path)
    svm, _ = train.train_model(replace(cfg, loss="svm", run_name="svm"))
    custom, m = train.train_model(replace(cfg, loss="softmax", run_name="custom"),
                                  loss=lintorch.svm_loss)
    torch.testing.assert_close(custom.weight, svm.weight, rtol=1e-12, atol=1e-15)
    assert m["config"]["loss_fn"] == "lintorch.losses.svm_loss"


def test_the_custom_loss_is_named_by_where_it_is_defined():
    class Hinge(torch.autograd.Function):
        pass

    assert train.qualified_name(Hinge.apply) == (
        f"{__name__}.test_the_custom_loss_is_named_by_where_it_is_defined.<locals>.Hinge.apply")
    assert train.qualified_name(lintorch.CrossEntropyLoss()) == "lintorch.losses.CrossEntropyLoss"
