from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from cifar_fixture import write_cifar10
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hp_metadata

from lintorch import board, data, losses, stacked, sweep, train

ROOT = Path(__file__).resolve().parents[1]


def blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """3 overlapping Gaussian classes as 1x4x4 float64 'images'."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(3, 16, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g)
    x = centers[y] + 1.5 * torch.randn(n, 16, generator=g, dtype=torch.float64)
    return x.view(n, 1, 4, 4), y


def toy_data(n_train: int = 150) -> data.Prepared:
    (tx, ty), (vx, vy), (sx, sy) = blobs(n_train, 1), blobs(40, 2), blobs(40, 3)
    return data.Prepared(classes=["a", "b", "c"], image_shape=(1, 4, 4), train_x=tx, train_y=ty,
                         val_x=vx, val_y=vy, test_x=sx, test_y=sy,
                         mean=torch.zeros(1, 1, 1, 1), std=torch.ones(1, 1, 1, 1))


def config(tmp_path, **kw) -> train.TrainConfig:
    base = dict(dtype="float64", epochs=3, batch_size=32, lr_decay="cosine", device="cpu",
                quiet=True, tensorboard=False, logdir=str(tmp_path / "runs"))
    return train.TrainConfig(**{**base, **kw})


def fit_alone(cfg: train.TrainConfig, lr: float, reg: float, prepared=None):
    return train.train_model(dataclasses.replace(cfg, lr=lr, reg=reg), prepared)


def assert_same_model(a, b) -> None:
    torch.testing.assert_close(a.weight, b.weight, rtol=1e-9, atol=0)
    torch.testing.assert_close(a.bias, b.bias, rtol=1e-9, atol=1e-15)


# --- equivalence with lintorch.train.fit, one model at a time ---------------------------------


@pytest.mark.parametrize("recipe", [
    dict(loss="softmax", lr_decay="cosine", reg_type="l2"),
    dict(loss="svm", lr_decay="step", lr_step=1, momentum=0.9, reg_type="l1"),
    dict(loss="softmax", lr_decay="exp", lr_gamma=0.7, momentum=0.5, augment=True),
    dict(loss="svm", lr_decay="none", impl="torch"),
], ids=["softmax-cosine-l2", "svm-step-momentum-l1", "softmax-exp-augment", "svm-torch-impl"])
def test_every_model_ends_with_the_weights_fit_gives_it_alone(tmp_path, recipe):
    cfg, d = config(tmp_path, **recipe), toy_data()
    lrs, regs = [0.01, 0.3], [0.0, 0.05]
    models, result = sweep.train_sweep(cfg, lrs, regs, d)
    assert [(m["lr"], m["reg"]) for m in result["models"]] == [(a, r) for a in lrs for r in regs]
    for model, entry in zip(models, result["models"]):
        alone, metrics = fit_alone(cfg, entry["lr"], entry["reg"], d)
        assert_same_model(model, alone)
        assert [h["lr"] for h in entry["history"]] == [h["lr"] for h in metrics["history"]]
        for key in ("train_loss", "val_loss", "penalty"):
            got = [h[key] for h in entry["history"]]
            assert got == pytest.approx([h[key] for h in metrics["history"]], rel=1e-9)
        assert entry["test"]["accuracy"] == metrics["test"]["accuracy"]
        assert not entry["diverged"]


def test_grid_on_a_cifar_subset_matches_fit_through_the_data_loader(tmp_path):
    write_cifar10(tmp_path / "data", n_train_per_batch=24, n_test=20)
    cfg = config(tmp_path, dataset="cifar10", data_root=str(tmp_path / "data"), no_download=True,
                 val_size=20, limit=90, epochs=2, batch_size=25, lr_decay="cosine")
    models, result = sweep.train_sweep(cfg, [1e-3, 1e-2], [0.0, 0.1])
    assert result["config"]["dtype"] == "float64"
    for model, entry in zip(models, result["models"]):
        alone, _ = fit_alone(cfg, entry["lr"], entry["reg"])
        assert_same_model(model, alone)


def test_a_custom_loss_equal_to_cross_entropy_trains_the_builtin_choices_weights(tmp_path):
    cfg, d = config(tmp_path, loss="softmax", momentum=0.5), toy_data()
    builtin, _ = sweep.train_sweep(cfg, [0.01, 0.3], [0.0, 0.05], d)
    seen = []

    def cross_entropy(s, y):  # lintorch's, checking that it sees one model's scores at a time
        seen.append(tuple(s.shape))
        return losses.cross_entropy(s, y)

    custom, result = sweep.train_sweep(cfg, [0.01, 0.3], [0.0, 0.05], d, loss=cross_entropy)
    assert {shape[1] for shape in seen} == {3} and all(len(shape) == 2 for shape in seen)
    for a, b in zip(custom, builtin):
        assert_same_model(a, b)
    saved = json.loads((Path(result["sweep_dir"]) / "sweep.json").read_text())
    assert saved["config"]["loss_fn"].endswith(".cross_entropy") and saved["config"]["loss"] == (
        "softmax")


def test_a_custom_loss_replaces_the_configs_loss_model_by_model(tmp_path):
    cfg, d = config(tmp_path, loss="softmax"), toy_data()
    models, result = sweep.train_sweep(cfg, [0.01, 0.3], [0.05], d, loss=losses.svm_loss)
    assert result["config"]["loss_fn"] == "lintorch.losses.svm_loss"
    for model, entry in zip(models, result["models"]):
        alone, _ = fit_alone(dataclasses.replace(cfg, loss="svm"), entry["lr"], entry["reg"], d)
        assert_same_model(model, alone)


def test_the_sweep_has_no_loop_start_or_finish_of_its_own():
    import ast
    import inspect

    source = inspect.getsource(sweep)
    assert "for epoch in" not in source
    defined = {node.name for node in ast.walk(ast.parse(source))
               if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    assert not defined & {"start", "finish", "train_epoch", "train_step"}


# --- the batched pieces against independent references ----------------------------------------


@pytest.mark.parametrize("loss, reference", [
    ("softmax", lambda s, y: F.cross_entropy(s, y)),
    ("svm", lambda s, y: s.shape[1] * F.multi_margin_loss(s, y)),
])
def test_data_losses_equal_torch_losses_model_by_model(loss, reference):
    g = torch.Generator().manual_seed(0)
    W = torch.randn(6, 4, 5, generator=g, dtype=torch.float64)
    b = torch.randn(6, 4, generator=g, dtype=torch.float64)
    x = torch.randn(30, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (30,), generator=g)
    L = stacked.data_losses(losses.loss_fn(loss, "lintorch", "none"),
                            stacked.scores(W, x, b), y)
    expected = torch.stack([reference(x @ W[k].T + b[k], y) for k in range(6)])
    torch.testing.assert_close(L, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("reg_type", ["l2", "l1"])
def test_batched_penalties_equal_lintorch_penalties_vmapped(reg_type):
    W = torch.randn(5, 3, 7, dtype=torch.float64, requires_grad=True)
    scale = torch.rand(5, dtype=torch.float64)
    R = losses.STACKED_PENALTIES[reg_type](W)
    (grad,) = torch.autograd.grad((scale * R).sum(), W)
    W_ref = W.detach().clone().requires_grad_()
    R_ref = torch.func.vmap(losses.PENALTIES[reg_type])(W_ref)
    (scale * R_ref).sum().backward()
    torch.testing.assert_close(R, R_ref, rtol=1e-14, atol=0)
    assert torch.equal(grad, W_ref.grad)


# --- divergence -------------------------------------------------------------------------------


def test_a_diverging_model_is_marked_and_the_others_go_on(tmp_path):
    cfg, d = config(tmp_path, loss="svm", epochs=2), toy_data()
    lrs, regs = [0.05, 1e300], [0.0, 0.01]
    models, result = sweep.train_sweep(dataclasses.replace(cfg, quiet=False), lrs, regs, d)
    by_point = {(m["lr"], m["reg"]): (m, model) for m, model in zip(result["models"], models)}

    # lr = 1e300 with a penalty: R(W) overflows at the second step, as fit() finds too
    bad, bad_model = by_point[(1e300, 0.01)]
    with pytest.raises(train.TrainingDiverged) as e:
        fit_alone(cfg, 1e300, 0.01, d)
    assert bad["diverged"] and bad["diverged_at"] == {"epoch": e.value.epoch, "step": e.value.step}
    assert bad["history"] == [] and bad["val"] == {"loss": None, "accuracy": None}
    assert torch.isfinite(bad_model.weight).all()  # it kept its last good (here: initial) weights

    for point in [(0.05, 0.0), (0.05, 0.01), (1e300, 0.0)]:
        entry, model = by_point[point]
        assert not entry["diverged"]
        assert_same_model(model, fit_alone(cfg, *point, d)[0])
    assert result["best"]["lr"] == 0.05
    saved = json.loads((Path(result["sweep_dir"]) / "sweep.json").read_text())
    assert saved["models"][3]["diverged_at"] == bad["diverged_at"]
    table = sweep.format_table(result)
    assert table.count("diverged") == 1 and "best on validation" in table
    # no TensorBoard runs were written, and the last line promises none
    assert table.splitlines()[-1] == f"sweep.json in {result['sweep_dir']}"


def test_a_model_diverging_in_a_later_epoch_keeps_its_last_good_weights(tmp_path):
    # one step per epoch: epoch 1 ends finite, epoch 2's first loss overflows
    cfg, d = config(tmp_path, loss="svm", batch_size=1000, lr_decay="none"), toy_data()
    models, result = sweep.train_sweep(cfg, [1e-2, 1e300], [0.01], d)
    bad = result["models"][1]
    assert bad["diverged_at"] == {"epoch": 2, "step": 1}
    assert [h["epoch"] for h in bad["history"]] == [1]
    assert_same_model(models[1], fit_alone(dataclasses.replace(cfg, epochs=1), 1e300, 0.01, d)[0])
    assert_same_model(models[0], fit_alone(cfg, 1e-2, 0.01, d)[0])


def test_every_model_diverging_leaves_no_best(tmp_path):
    result = sweep.run(config(tmp_path, loss="svm"), [1e300], [0.5, 1.0], toy_data())
    assert all(m["diverged"] for m in result["models"]) and result["best"] is None
    assert "every model diverged" in sweep.format_table(result)


# --- output: sweep.json, TensorBoard runs ---------------------------------------------------


def test_each_model_is_its_own_tensorboard_run_with_hparams(tmp_path):
    cfg = config(tmp_path, tensorboard=True, run_name="grid", epochs=2)
    result = sweep.run(cfg, [0.01, 0.1], [0.0, 1e-3], toy_data())
    sweep_dir = tmp_path / "runs" / "grid"
    assert result["sweep_dir"] == str(sweep_dir)
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == [
        "lr=0.01,reg=0", "lr=0.01,reg=0.001", "lr=0.1,reg=0", "lr=0.1,reg=0.001"]

    assert sweep.format_table(result).splitlines()[-1] == (
        f"sweep.json and TensorBoard runs in {sweep_dir} (view with: tensorboard --logdir "
        f"{cfg.logdir})")
    saved = json.loads((sweep_dir / "sweep.json").read_text())
    assert saved["grid"] == {"lr": [0.01, 0.1], "reg": [0.0, 1e-3]}
    best = max(saved["models"], key=lambda m: m["val"]["accuracy"])
    assert saved["best"]["val_accuracy"] == best["val"]["accuracy"]
    for m in saved["models"]:
        assert len(m["history"]) == 2 and {"val", "test"} <= set(m)

    run_dir = sweep_dir / "lr=0.1,reg=0.001"
    scalars = board.read_scalars(run_dir)
    assert {"loss/train", "loss/val", "accuracy/train", "accuracy/val", "lr", "accuracy/test",
            "hparam/val_accuracy", "hparam/test_accuracy"} <= set(scalars)
    assert [step for step, _ in scalars["accuracy/val"]] == [1, 2]
    entry = saved["models"][3]
    assert scalars["hparam/val_accuracy"][0][1] == pytest.approx(entry["val"]["accuracy"])
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    content = acc.PluginTagToContent(hp_metadata.PLUGIN_NAME)
    start = hp_metadata.parse_session_start_info_plugin_data(
        content[hp_metadata.SESSION_START_INFO_TAG])
    assert start.hparams["lr"].number_value == pytest.approx(0.1)
    assert start.hparams["reg"].number_value == pytest.approx(1e-3)
    # The HPARAMS tab shows the recipe (a linear model, cosine decay: no hidden, lr_step,
    # lr_gamma; no limit) and whether the model diverged; sweep.json keeps the whole config.
    assert set(start.hparams) == {"dataset", "model", "loss", "impl", "epochs", "batch_size",
                                  "lr", "lr_decay", "momentum", "reg", "reg_type", "preprocess",
                                  "augment", "val_size", "seed", "dtype", "diverged"}
    assert set(saved["config"]) == {f.name for f in dataclasses.fields(train.TrainConfig)} | {
        "loss_fn"}
    assert saved["config"]["loss_fn"] is None  # no custom loss


def test_model_names_are_short_and_distinct():
    assert sweep.model_name(1e-3, 0.0) == "lr=0.001,reg=0"
    assert sweep.model_name(0.1, 1e-4) == "lr=0.1,reg=0.0001"
    assert sweep.model_name(0.1, 0.1000001) != sweep.model_name(0.1, 0.1000002)


# --- the command line -------------------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["--lr", "--reg", "0"], "expected at least one argument"),
    (["--lr", "0.1"], "required: --reg"),
    (["--reg", "0"], "required: --lr"),
    (["--lr", "0", "--reg", "0"], "must be a finite number > 0"),
    (["--lr", "-0.001", "--reg", "0"], "must be a finite number > 0"),
    (["--lr", "nan", "--reg", "0"], "must be a finite number > 0"),
    (["--lr", "abc", "--reg", "0"], "is not a number"),
    (["--lr", "0.1", "--reg", "-1"], "must be a finite number >= 0"),
    (["--lr", "0.1", "--reg", "inf"], "must be a finite number >= 0"),
    (["--lr", "0.1", "1e-1", "--reg", "0"], "lists a value twice"),
    (["--lr", "0.1", "--reg", "0", "--model", "mlp"], "linear classifiers only"),
    (["--lr", "0.1", "--reg", "0", "--val-size", "0"], "--val-size must be at least 1"),
])
def test_cli_rejects_empty_or_invalid_grids_with_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        sweep.main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_check_grid_rejects_empty_grids_in_the_api():
    with pytest.raises(ValueError, match="empty"):
        sweep.check_grid([], [0.0])
    with pytest.raises(ValueError, match="empty"):
        sweep.check_grid([0.1], [])


def test_cli_prints_the_table_and_the_best_model(tmp_path):
    write_cifar10(tmp_path / "data", n_train_per_batch=20, n_test=20)
    proc = subprocess.run(
        [sys.executable, "-m", "lintorch.sweep", "--dataset", "cifar10", "--data-root",
         str(tmp_path / "data"), "--no-download", "--val-size", "20", "--epochs", "2",
         "--lr", "1e-3", "1e-2", "--reg", "0", "1e-3", "--loss", "svm",
         "--logdir", str(tmp_path / "runs"), "--run-name", "cli"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "validation accuracy (%) of 4 models, svm loss, 2 epochs" in out
    assert "lr \\ reg" in out and "best on validation (*): lr=" in out
    saved = json.loads((tmp_path / "runs" / "cli" / "sweep.json").read_text())
    assert len(saved["models"]) == 4 and saved["config"]["loss"] == "svm"
    assert (tmp_path / "runs" / "cli" / "lr=0.01,reg=0.001").is_dir()


def test_features_that_overflow_float32_are_exit_1_not_every_model_diverged(tmp_path, capsys):
    from test_data_npz import overflowing_float32

    overflowing_float32(tmp_path / "big.npz")
    code = sweep.main(["--dataset", str(tmp_path / "big.npz"), "--val-size", "10", "--epochs",
                       "1", "--lr", "0.1", "--reg", "0", "--logdir", str(tmp_path / "runs"),
                       "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1 and len(err.strip().splitlines()) == 1 and "--dtype float64" in err
    assert "diverged" not in out


@pytest.mark.cuda
@pytest.mark.parametrize("recipe", [
    dict(loss="softmax", lr_decay="cosine", reg_type="l2"),
    dict(loss="svm", lr_decay="step", lr_step=1, momentum=0.9, reg_type="l1"),
], ids=["softmax-cosine-l2", "svm-step-momentum-l1"])
def test_graphed_sweep_on_cuda_matches_fit_there(tmp_path, recipe):
    # 400 images in batches of 32: three eager warm-up steps, then replays, then an eager
    # last batch of 16, in every epoch
    d = toy_data(400)
    d = dataclasses.replace(d, **{name: getattr(d, name).cuda() for name in (
        "train_x", "train_y", "val_x", "val_y", "test_x", "test_y")})
    cfg = config(tmp_path, device="cuda", **recipe)
    models, result = sweep.train_sweep(cfg, [0.01, 0.3], [0.0, 0.05], d)
    for model, entry in zip(models, result["models"]):
        alone, metrics = fit_alone(cfg, entry["lr"], entry["reg"], d)
        assert_same_model(model, alone)
        for key in ("train_loss", "train_accuracy", "val_loss", "penalty"):
            got = [h[key] for h in entry["history"]]
            assert got == pytest.approx([h[key] for h in metrics["history"]], rel=1e-9), key


@pytest.mark.cuda
def test_graphed_sweep_on_cuda_captures_again_when_a_model_drops_out(tmp_path):
    d = toy_data(400)
    d = dataclasses.replace(d, **{name: getattr(d, name).cuda() for name in (
        "train_x", "train_y", "val_x", "val_y", "test_x", "test_y")})
    cfg = config(tmp_path, device="cuda", loss="svm", epochs=2, momentum=0.9)
    models, result = sweep.train_sweep(cfg, [0.05, 1e300], [0.0, 0.01], d)
    by_point = {(m["lr"], m["reg"]): (m, model) for m, model in zip(result["models"], models)}
    assert by_point[(1e300, 0.01)][0]["diverged_at"]["epoch"] == 1
    for point in [(0.05, 0.0), (0.05, 0.01), (1e300, 0.0)]:
        entry, model = by_point[point]
        assert not entry["diverged"] and len(entry["history"]) == 2
        assert_same_model(model, fit_alone(cfg, *point, d)[0])


def test_help_shows_defaults_but_never_none(capsys):
    with pytest.raises(SystemExit):
        sweep.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in out
    assert "(default: softmax)" in out and "fashion-mnist linear" in out
