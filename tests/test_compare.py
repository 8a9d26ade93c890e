"""python -m lintorch.compare: its tolerances catch a wrong loss, its table and JSON, its exit code,
and the training overlay's sibling runs. Small sizes; no timing is asserted."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from cifar_fixture import write_cifar10

from lintorch import compare, losses, train
from lintorch.config import TrainConfig


class _DoubledGradient(torch.autograd.Function):
    """The right cross-entropy value with twice its gradient: what a backward bug looks like."""

    @staticmethod
    def forward(ctx, s, y, reduction):
        ctx.save_for_backward(s, y)
        ctx.reduction = reduction
        return F.cross_entropy(s, y, reduction=reduction)

    @staticmethod
    def backward(ctx, grad):
        s, y = ctx.saved_tensors
        with torch.enable_grad():
            s_ = s.detach().requires_grad_(True)
            L = F.cross_entropy(s_, y, reduction=ctx.reduction)
            (g,) = torch.autograd.grad(L, s_, grad)
        return 2 * g, None, None


@pytest.mark.parametrize("loss", compare.LOSSES)
@pytest.mark.parametrize("reduction", losses.REDUCTIONS)
def test_lintorch_agrees_with_the_builtins_within_tolerance(loss, reduction):
    r = compare.check_agreement(loss, reduction)
    assert r["value_diff"] <= compare.VALUE_TOL
    assert r["grad_diff"] <= compare.GRAD_TOL
    assert r["gradcheck"] and r["ok"]


def test_a_value_off_by_a_millionth_fails():
    def off(s, y, reduction="mean"):
        return losses.cross_entropy(s, y, reduction) * (1 + 1e-6)

    r = compare.check_agreement("softmax", "sum", custom=off)
    assert r["value_diff"] > compare.VALUE_TOL
    assert not r["ok"]


def test_a_gradient_off_by_a_millionth_fails_with_the_value_right():
    def tilted(s, y, reduction="mean"):
        # s - s.detach() is 0 in value, 1 in gradient
        return losses.cross_entropy(s, y, reduction) + 1e-6 * (s - s.detach()).sum()

    r = compare.check_agreement("softmax", "mean", custom=tilted)
    assert r["value_diff"] <= compare.VALUE_TOL
    assert r["grad_diff"] > compare.GRAD_TOL
    assert not r["ok"]


def test_a_wrong_backward_fails_gradcheck():
    def doubled(s, y, reduction="mean"):
        return _DoubledGradient.apply(s, y, reduction)

    r = compare.check_agreement("softmax", "none", n=4, c=3, custom=doubled)
    assert not r["gradcheck"]
    assert not r["ok"]


def test_svm_inputs_stay_away_from_the_kinks():
    s, y = compare.random_inputs("svm", 200, 10)
    margins = s - s.gather(1, y[:, None]) + 1.0
    margins.scatter_(1, y[:, None], 1.0)
    assert margins.abs().min() >= 0.05 - 1e-12


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_loss_speed_gives_a_positive_ratio_per_loss(device):
    speed = compare.loss_speed(64, 10, device, repeats=1, min_block_s=0.001)
    assert set(speed) == set(compare.LOSSES)
    for r in speed.values():
        assert r["device"] == device
        for key in ("function_s", "checked_s", "builtin_s", "ratio", "checked_ratio"):
            assert r[key] > 0 and math.isfinite(r[key])


def test_the_table_shows_every_loss_reduction_and_size(tmp_path, capsys):
    path = tmp_path / "compare.json"
    code = compare.main(["--no-train", "--sizes", "32", "64", "--repeats", "1",
                         "--json", str(path)])
    out = capsys.readouterr().out
    assert code == 0
    for loss in compare.LOSSES:
        for reduction in losses.REDUCTIONS:
            assert any(line.split()[:2] == [loss, reduction] for line in out.splitlines())
        for device in compare.speed_devices():
            for n in (32, 64):
                assert any(line.split()[:3] == [device, str(n), loss]
                           for line in out.splitlines())
    assert "all differences within tolerance" in out
    results = json.loads(path.read_text())
    assert {"environment", "tolerances", "agreement", "speed", "ok"} <= set(results)
    assert len(results["agreement"]) == 9
    assert len(results["speed"]) == 3 * 2 * len(compare.speed_devices())
    assert results["ok"] is True


def test_exit_code_is_1_when_a_difference_exceeds_its_tolerance(monkeypatch, capsys):
    monkeypatch.setitem(losses.LOSSES, "mse",
                        lambda x, t, reduction="mean": losses.mse_loss(x, t, reduction) + 1e-6)
    assert compare.main(["--no-train", "--no-speed"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out
    assert [line.split()[-1] for line in out.splitlines() if line.startswith("mse ")] == \
        ["FAIL"] * 3


def test_training_is_skipped_with_a_note_when_no_data_set_is_found(tmp_path, capsys):
    assert compare.main(["--no-speed", "--data-root", str(tmp_path)]) == 0
    assert "skipped: no CIFAR-10 or Fashion-MNIST" in capsys.readouterr().out


def test_training_overlay_logs_sibling_runs_and_agrees(tmp_path, capsys):
    root = tmp_path / "data"
    write_cifar10(root, n_train_per_batch=220, n_test=20)  # 1,100: 1,000 val + 100 train
    path = tmp_path / "compare.json"
    code = compare.main(["--no-speed", "--data-root", str(root), "--epochs", "2",
                         "--logdir", str(tmp_path / "runs"), "--device", "cpu",
                         "--json", str(path)])
    assert code == 0
    t = json.loads(path.read_text())["train"]
    assert t["dataset"] == "cifar10" and t["ok"]
    assert t["max_abs_weight_diff"] <= t["tolerance"]
    (group,) = (tmp_path / "runs").glob("compare-*")
    assert sorted(p.name for p in group.iterdir()) == ["lintorch", "torch"]
    for impl in ("lintorch", "torch"):
        assert list((group / impl).glob("events.out.tfevents.*"))
    out = capsys.readouterr().out
    assert f"tensorboard --logdir {group}" in out


def test_an_unwritable_logdir_is_one_line_not_a_traceback(tmp_path, capsys):
    write_cifar10(tmp_path / "data", n_train_per_batch=2, n_test=2)
    (tmp_path / "file").write_text("a file, where --logdir wants a folder")
    code = compare.main(["--no-speed", "--data-root", str(tmp_path / "data"), "--epochs", "1",
                         "--logdir", str(tmp_path / "file" / "runs"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(tmp_path / "file") in err


def test_a_json_path_in_a_missing_folder_is_one_line_not_a_traceback(tmp_path, capsys):
    path = tmp_path / "missing" / "compare.json"
    assert compare.main(["--no-train", "--no-speed", "--json", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(path.parent) in err


@pytest.mark.parametrize("interrupt,code", [(KeyboardInterrupt, 130),
                                            (lambda: train.Interrupted(None, 143), 143)],
                         ids=["ctrl-c", "sigterm-in-training"])
def test_an_interruption_exits_quietly(monkeypatch, capsys, interrupt, code):
    def stop(*args, **kwargs):
        raise interrupt()

    monkeypatch.setattr(compare, "check_all", stop)
    assert compare.main(["--no-train", "--no-speed"]) == code
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err


def test_the_training_flags_are_trains_own():
    # --limit once said "the first N training images", where TrainConfig draws N with the seed
    shown = " ".join(compare.build_parser().format_help().split())
    for name in ("limit", "data_root", "seed", "logdir", "device", "dataset"):
        assert " ".join(TrainConfig.__dataclass_fields__[name].metadata["help"].split()) in shown
    with pytest.raises(SystemExit):
        compare.build_parser().parse_args(["--limit", "0"])
