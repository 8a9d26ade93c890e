"""experiments/benchmark.py: the floor does the same update as training, the pipeline sees the
same images, the timed all-reduce is DDP's own, and a --quick run writes every row it promises,
with its goal where lintorch has one. No timing is asserted."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from experiment_runner import load
from torch import nn

from lintorch import data, distributed

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "benchmark.py"


@pytest.fixture(scope="module")
def bench():
    return load("benchmark")


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


def test_the_timed_all_reduce_sums_as_lintorchs_does_and_times_each_step(bench, tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        times: list[float] = []
        lintorch_train = types.SimpleNamespace(DataParallel=distributed.DataParallel)
        bench.time_ddp_allreduce(lintorch_train, times)
        torch.manual_seed(0)
        x, y = torch.randn(8, 5), torch.randint(3, (8,))
        plain = nn.Linear(5, 3)
        timed = copy.deepcopy(plain)
        ddp = lintorch_train.DataParallel(timed, torch.device("cpu"), distributed.World())
        for _ in range(3):
            for net in (plain, ddp):
                net.zero_grad()
                F.cross_entropy(net(x), y).backward()
        assert len(times) == 3 and all(t > 0 for t in times)
        for a, b in zip(plain.parameters(), timed.parameters()):
            torch.testing.assert_close(a.grad, b.grad)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_quick_run_writes_the_json_with_every_row(tmp_path, device):
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
    datasets = {k for k, v in report["datasets"].items() if v}
    cpu = device == "cpu"
    ms = report["measurements"]
    for m in ms:
        assert {"key", "what", "dataset", "device", "value", "unit", "target", "verdict",
                "detail"} <= set(m)
        assert m["verdict"] in ("PASS", "MISS", "-") and (m["verdict"] == "-") == (
            m["target"] is None)
        assert m["value"] > 0 and math.isfinite(m["value"])
    by_key = {key: [m for m in ms if m["key"] == key] for key in "abcdefghijk"}
    assert all(by_key[k] for k in "abcdeghijk" if cpu or k not in "ij")
    assert {m["device"] for m in ms if m["key"] in "abcdgh"} == {device}
    # (a) against torch's built-ins, on every data set: the goal on the CPU only
    assert {m["dataset"] for m in by_key["a"]} == datasets
    assert all(m["target"] == (1.25 if cpu else None) for m in by_key["a"])
    assert all(m["target"] is None for m in by_key["b"])  # the floor's goal is retired
    # (d): the goals at the larger N, SVM and softmax 1.0x, MSE 1.25x; none at N = 256
    goals = {m["what"].split()[0]: m["target"] for m in by_key["d"] if "N=256" not in m["what"]}
    assert goals == ({"svm": 1.0, "softmax": 1.0, "mse": 1.25} if cpu else
                     {"svm": None, "softmax": None, "mse": None})
    assert all(m["target"] is None for m in by_key["d"] if "N=256" in m["what"])
    # (f): the default run of Fashion-MNIST, shrunk, so without its goals
    if "fashion-mnist" in datasets:
        assert {m["unit"] for m in by_key["f"]} == {"%", "s"}
        assert all(m["target"] is None for m in by_key["f"])
    # (g): 25 fits against the sweep (>= 3x on the CPU), the sweep against one (<= 2x on CUDA)
    assert {m["dataset"] for m in by_key["g"]} == datasets
    for m in by_key["g"]:
        assert m["detail"]["models"] == 25 and m["detail"]["fits_timed_per_round"] == 1
        assert m["target"] in ((3.0, None) if m["what"].startswith("25 fits") else (None, 2.0))
        assert (m["target"] is not None) == (cpu == m["what"].startswith("25 fits"))
    # (k): each data set's default run with TensorBoard against without; shrunk: no goal
    assert sorted(m["dataset"] for m in by_key["k"]) == sorted(datasets)
    for m in by_key["k"]:
        assert m["unit"] == "x" and m["target"] is None and m["device"] == device
        det = m["detail"]
        assert len(det["wall_s_tensorboard"]) == len(det["wall_s_no_tensorboard"]) == 1
        assert det["train_s"] > 0 and det["extra_s"] == pytest.approx(
            det["wall_s_tensorboard"][0] - det["wall_s_no_tensorboard"][0])
    # (e): an image folder of the CIFAR-10-sized set's images, read back from its cache; the
    # goal (0.5 s) is for CIFAR-10's 60,000 images, not the shrunk set's
    [folder] = [m for m in by_key["e"] if m["what"].startswith("cached read")]
    assert (folder["dataset"], folder["unit"], folder["target"]) == ("cifar10", "s", None)
    assert folder["detail"]["images"] == 5 * 300 + 300 and len(folder["detail"]["reads"]) == 1
    assert folder["detail"]["first_load_s"] > 0
    [sweep_memory] = by_key["h"]
    assert (sweep_memory["dataset"], sweep_memory["unit"], sweep_memory["target"]) == (
        "cifar10", "GB", 2.5)
    if cpu:  # (i), (j): 2 processes against 1, each process's memory, the all-reduce's share
        for key in "ij":
            epoch, wall, train_time, per_process, alone, *share = by_key[key]
            assert (epoch["target"], wall["target"], train_time["target"]) == (1.1, None, None)
            assert len(epoch["detail"]["epoch_s_2"]) == len(epoch["detail"]["wall_s_2"])
            assert [len(run) for run in per_process["detail"]["per_process_gb"]] == [2]
            assert per_process["unit"] == alone["unit"] == "GB"
            assert wall["detail"]["command_2"].startswith("OMP_NUM_THREADS=1 torchrun")
        [share] = by_key["j"][5:]
        assert share["unit"] == "%" and 0 < share["value"] < 100
        assert share["detail"]["allreduce_calls"] > 0
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
