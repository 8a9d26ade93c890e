"""experiments/scaling.py: the ring all-reduce's cost and the two projections against numbers
worked by hand, the fit of alpha and beta, and a --quick run that measures, projects and labels
its output as projected."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from experiment_runner import load

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "scaling.py"


@pytest.fixture(scope="module")
def scaling():
    return load("scaling")


@pytest.fixture
def problem(scaling):
    # 6 models of 99 x 10 weights + 10 biases: 4 * 1,000 = 4,000 bytes each
    return scaling.Problem(examples=10_000, features=99, classes=10, grid=(2, 3), batch_size=100)


def test_a_ring_all_reduce_costs_alpha_plus_2_p_minus_1_over_p_bytes_over_beta(scaling):
    # 8 devices, 8 MB at 1 GB/s, 10 us: 10e-6 + 2 * 7/8 * 8e6 / 1e9 = 0.01401 s
    assert scaling.ring_allreduce_s(8e6, 8, alpha=10e-6, beta=1e9) == pytest.approx(0.01401)
    # 2 devices: each link carries the bytes once, 10e-6 + 8e6 / 1e9
    assert scaling.ring_allreduce_s(8e6, 2, alpha=10e-6, beta=1e9) == pytest.approx(0.00801)
    assert scaling.ring_allreduce_s(8e6, 1, alpha=10e-6, beta=1e9) == 0.0
    # gathering moves half of that: 10e-6 + 7/8 * 8e6 / 1e9
    assert scaling.ring_allgather_s(8e6, 8, alpha=10e-6, beta=1e9) == pytest.approx(0.00701)


def test_a_data_parallel_epoch_is_steps_times_compute_plus_all_reduce(scaling, problem):
    row = scaling.project_data_parallel(problem, devices=4, step_s=0.02, speedup=10,
                                        alpha=1e-4, beta=1e8)
    # ceil(10,000 / (4 * 100)) = 25 steps of 0.02 / 10 s, each all-reducing
    # 1e-4 + 2 * 3/4 * 4,000 / 1e8 = 1.6e-4 s
    assert row == pytest.approx({"devices": 4, "batch_per_device": 100, "steps": 25,
                                 "compute_s": 0.05, "allreduce_s": 0.004, "epoch_s": 0.054})
    alone = scaling.project_data_parallel(problem, devices=1, step_s=0.02, speedup=10,
                                          alpha=1e-4, beta=1e8)
    assert (alone["steps"], alone["allreduce_s"]) == (100, 0.0)


def test_the_grid_divides_its_models_among_devices_and_gathers_them_once(scaling, problem):
    row = scaling.project_grid(problem, devices=4, stack_step_s=0.03, speedup=10, alpha=1e-4,
                               beta=1e8)
    # ceil(6 / 4) = 2 models a device, over all 10,000 examples: 100 steps of 0.03 / 10 s;
    # then 6 * 4,000 bytes gathered: 1e-4 + 3/4 * 24,000 / 1e8 = 2.8e-4 s
    assert row == pytest.approx({"devices": 4, "models_per_device": 2, "steps": 100,
                                 "compute_s": 0.3, "gather_s": 2.8e-4, "total_s": 0.30028})


def test_speedups_are_over_one_device(scaling):
    rows = scaling.with_speedups([{"epoch_s": 8.0}, {"epoch_s": 2.0}, {"epoch_s": 16.0}],
                                 "epoch_s")
    assert [r["speedup"] for r in rows] == [1.0, 4.0, 0.5]


def test_alpha_and_beta_are_recovered_from_exact_all_reduce_times(scaling):
    points = [{"bytes": b, "seconds": 50e-6 + b / 2e9}
              for b in (1_024, 4_096, 65_536, 1e6, 8e6, 3.2e7)]
    alpha, beta = scaling.fit_ring(points)
    assert alpha == pytest.approx(50e-6, rel=1e-6)
    assert beta == pytest.approx(2e9, rel=1e-6)


def test_one_slow_small_all_reduce_does_not_set_alpha(scaling):
    points = [{"bytes": b, "seconds": 50e-6 + b / 2e9} for b in (1_024, 4_096, 65_536, 1e6, 8e6)]
    points[1]["seconds"] = 2e-3  # a descheduled process
    alpha, beta = scaling.fit_ring(points)
    assert alpha == pytest.approx(50e-6, rel=0.05)
    assert beta == pytest.approx(2e9, rel=1e-6)


def test_all_reduces_that_do_not_grow_with_size_give_one_line(scaling, monkeypatch, capsys):
    def shrinking(floats, *args, **kwargs):  # noise on a busy machine: larger, yet no slower
        return [{"floats": n, "bytes": 4 * n, "seconds": 1e-3 - 4 * n / 1e12} for n in floats]

    monkeypatch.setattr(scaling, "allreduce_seconds", shrinking)
    with pytest.raises(SystemExit) as exit_:
        scaling.main(["--quick"])
    message = str(exit_.value.code)
    assert message.startswith("error: the all-reduce did not take longer for more bytes")
    assert "\n" not in message and "--alpha-us" in message


def test_the_measured_all_reduces_reach_16_mb(scaling, monkeypatch):
    asked = []

    def record(floats, *args, **kwargs):
        asked.extend(floats)
        return [{"floats": n, "bytes": 4 * n, "seconds": 1e-4 + 4 * n / 1e9} for n in floats]

    monkeypatch.setattr(scaling, "allreduce_seconds", record)
    scaling.run(scaling.build_parser().parse_args(["--quick", "--devices", "8"]))
    assert 4 * max(asked) >= 16 * 2**20


def test_given_links_replace_the_measured_ones(scaling):
    args = scaling.build_parser().parse_args(["--quick", "--devices", "8", "--alpha-us", "10",
                                              "--beta-gbps", "100", "--device-speedup", "50"])
    result = scaling.run(args)
    assert result["devices"] == [1, 8]
    assert result["measured"]["allreduce"] is None  # nothing to measure: both were given
    a = result["assumptions"]
    assert a["alpha_from"] == a["beta_from"] == "as given"
    assert (a["alpha_s"], a["beta_bytes_per_s"]) == pytest.approx((1e-5, 1e11))
    problem = scaling.QUICK
    eight = result["data_parallel"][1]
    assert eight["allreduce_s"] == pytest.approx(
        eight["steps"] * scaling.ring_allreduce_s(problem.model_bytes, 8, 1e-5, 1e11))
    assert eight["compute_s"] == pytest.approx(
        eight["steps"] * result["measured"]["step_s"] / 50)


def test_quick_run_writes_a_projection_labelled_as_such(tmp_path):
    path = tmp_path / "scaling.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(path)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("PROJECTED")
    result = json.loads(path.read_text())
    assert {"projected", "quick", "problem", "devices", "measured", "assumptions",
            "data_parallel", "grid"} <= set(result)
    assert result["projected"] is True and result["devices"] == [1, 8, 64]
    measured = result["measured"]
    assert measured["step_s"] > 0
    assert {row["models"] for row in measured["stack_step_s"]} == {100, 13, 2}
    assert len(measured["allreduce"]) >= 3 and measured["fit"]["backend"] == "gloo"
    a = result["assumptions"]
    assert a["alpha_from"] == a["beta_from"] == "measured"
    assert a["alpha_s"] >= 0 and a["beta_bytes_per_s"] > 0
    assert any("faster" in line or "as fast" in line for line in a["text"])
    for table, keys in [("data_parallel", {"batch_per_device", "compute_s", "allreduce_s",
                                           "epoch_s"}),
                        ("grid", {"models_per_device", "compute_s", "gather_s", "total_s"})]:
        rows = result[table]
        assert [r["devices"] for r in rows] == [1, 8, 64]
        for r in rows:
            assert keys | {"devices", "steps", "speedup"} <= set(r)
            assert r["speedup"] > 0 and math.isfinite(r["speedup"])
        assert rows[0]["speedup"] == 1.0
