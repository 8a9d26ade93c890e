"""experiments/benchmark.py: the floor does the same update as training, the pipeline sees the
same images, and a --quick run writes the JSON it promises, the sweep's (f) and (g) included. No
timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lintorch import data

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "benchmark.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["benchmark"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules["benchmark"]


def test_the_floor_step_is_an_sgd_step_on_cross_entropy_plus_l2(bench):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 5, generator=g, dtype=torch.float64), torch.randint(3, (7,),
                                                                              generator=g)
    W = torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    lr, reg = 0.1, 0.01
    L = F.cross_entropy(x @ W.T + b, y) + reg * (W * W).sum()
    dW, db = torch.autograd.grad(L, [W, b])
    W_floor, b_floor = W.detach().clone(), b.detach().clone()
    bench.floor_step(W_floor, b_floor, x, y, lr, reg, -torch.ones(8, 1, dtype=x.dtype))
    torch.testing.assert_close(W_floor, W.detach() - lr * dW)
    torch.testing.assert_close(b_floor, b.detach() - lr * db)


@pytest.mark.parametrize("channels", [1, 3])
def test_the_pipeline_sees_the_same_uint8_images_as_lintorch(bench, channels):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (30, channels, 8, 8), generator=g, dtype=torch.uint8)
    labels = torch.randint(10, (30,), generator=g)
    raw = data.RawData("cifar10", [str(k) for k in range(10)], images, labels, images[:5],
                       labels[:5])
    d = data.prepare(raw, val_size=10)
    dataset = bench.pipeline_dataset(d)
    assert len(dataset) == 20
    x0, y0 = dataset[0]
    torch.testing.assert_close(x0, d.train_x[0], atol=1e-5, rtol=0)
    assert y0 == int(d.train_y[0])


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_quick_run_writes_the_json_with_positive_ratios(tmp_path, device):
    empty = tmp_path / "no-data"  # no real CIFAR-10: random pixels are written and loaded
    empty.mkdir()
    path = tmp_path / "bench.json"
    env = {**os.environ, "LINTORCH_DATA": str(empty)}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--device", device,
                           "--json", str(path)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(path.read_text())
    assert {"quick", "environment", "datasets", "measurements", "all_pass"} <= set(report)
    assert report["quick"] is True
    assert report["datasets"]["cifar10"]["source"].startswith("random pixels")
    ms = report["measurements"]
    assert {m["key"] for m in ms} >= ({"a", "b", "c", "d", "f", "g"}
                                      | ({"e"} if device == "cuda" else set()))
    assert {m["device"] for m in ms if m["key"] in "abcfg"} == {device}
    # (f): the sweep's speed ratio on every data set loaded; (g): its peak RSS on CIFAR-10
    sweep_speed = [m for m in ms if m["key"] == "f"]
    assert {m["dataset"] for m in sweep_speed} == {k for k, v in report["datasets"].items() if v}
    assert all(m["unit"] == "x" and m["target"] == (2.0 if device == "cuda" else 3.0)
               and m["detail"]["models"] == 25 and m["detail"]["epoch_ratio"] > 0
               and m["detail"]["matmul_floor_ratio"] > 0 for m in sweep_speed)
    [sweep_memory] = [m for m in ms if m["key"] == "g"]
    assert (sweep_memory["dataset"], sweep_memory["unit"], sweep_memory["target"]) == (
        "cifar10", "GB", 2.5)
    for m in ms:
        assert {"key", "what", "dataset", "device", "value", "unit", "target", "verdict"} <= set(m)
        assert m["verdict"] in ("PASS", "MISS", "-")
        assert m["value"] > 0 and math.isfinite(m["value"])
    ratios = [m for m in ms if m["unit"] == "x"]
    assert len(ratios) >= 3 + 6 + 1  # (a), (b) x 2 workers, (c) x 3 losses x 2 sizes, (f)
    targeted = [m for m in ms if m["target"] is not None]
    shown = [line.split()[-1] for line in proc.stdout.splitlines()
             if line.endswith(("PASS", "MISS"))]
    assert shown == [m["verdict"] for m in targeted]


def test_profile_step_finds_the_bare_loops_operators_in_fit(tmp_path):
    from cifar_fixture import write_cifar10
    from experiment_runner import run_main

    write_cifar10(tmp_path / "data", n_train_per_batch=300, n_test=50)  # 1,500 - 1,000 val
    result, text = run_main("profile_step", [
        "--dataset", "cifar10", "--data-root", str(tmp_path / "data"), "--no-download",
        "--device", "cpu", "--batch-size", "128", "--rows", "5"])
    assert result["device"] == "cpu" and result["steps"] == 4  # 500 images in batches of 128
    for op in ("aten::index_select", "aten::mm"):
        assert result["ops"][op] > 0, op
    assert 0 < result["floor_ops_us_per_step"] < result["host_us_per_step"]
    assert result["wall_us_per_step"] > 0
    assert "4 steps" in text and "Self CPU" in text
