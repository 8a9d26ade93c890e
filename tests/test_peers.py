"""experiments/peers.py --quick: every row is there, measured or (scikit-learn missing) marked
skipped, with accuracies that are fractions and a JSON that holds what main() returns. No
accuracy or time is checked: --quick shrinks every run."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")
LINTORCH_ROWS = ["lintorch-linear-softmax", "lintorch-linear-svm", "lintorch-mlp-softmax"]
SKLEARN_ROWS = ["sklearn-logreg", "sklearn-sgd-hinge", "sklearn-mlp"]
TORCH_ROWS = ["torch-linear", "torch-mlp"]
ROW_KEYS = {"name", "group", "what", "status", "test_accuracy", "wall_time_s",
            "device", "notes", "detail"}


def load_peers():
    spec = importlib.util.spec_from_file_location("experiment_peers",
                                                  REPO / "experiments" / "peers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    if not FASHION.is_dir():
        pytest.skip(f"no Fashion-MNIST at {FASHION}")
    tmp = tmp_path_factory.mktemp("peers")
    threads = torch.get_num_threads()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        # one thread: a multi-threaded BLAS crawls on a busy CI machine, and --quick is a smoke run
        report = load_peers().main(["--quick", "--data-root", str(FASHION), "--threads", "1",
                                    "--logdir", str(tmp), "--json", str(tmp / "p.json")])
    assert torch.get_num_threads() == threads, "main() must give torch its threads back"
    return report, out.getvalue(), tmp


def test_every_row_is_there_in_order(quick_run):
    report, _, _ = quick_run
    assert [r["name"] for r in report["rows"]] == LINTORCH_ROWS + SKLEARN_ROWS + TORCH_ROWS


def test_lintorch_and_torch_rows_are_measured_with_accuracies_in_0_1(quick_run):
    rows = {r["name"]: r for r in quick_run[0]["rows"]}
    for name in LINTORCH_ROWS + TORCH_ROWS:
        assert rows[name]["status"] == "measured"
        assert 0 < rows[name]["test_accuracy"] <= 1
        assert rows[name]["wall_time_s"] > 0 and math.isfinite(rows[name]["wall_time_s"])


def test_sklearn_rows_are_measured_or_marked_skipped(quick_run):
    rows = {r["name"]: r for r in quick_run[0]["rows"]}
    installed = importlib.util.find_spec("sklearn") is not None
    for name in SKLEARN_ROWS:
        row = rows[name]
        if installed:
            assert row["status"] == "measured"
            assert 0 < row["test_accuracy"] <= 1 and row["wall_time_s"] > 0
        else:
            assert row["status"] == "skipped" and row["test_accuracy"] is None
            assert "scikit-learn" in row["notes"]


def test_lintorch_runs_are_written_under_logdir_peers(quick_run):
    _, _, tmp = quick_run
    for name in LINTORCH_ROWS:
        run_dir = tmp / "peers" / "fashion-mnist" / name.removeprefix("lintorch-")
        assert (run_dir / "metrics.json").is_file()
        assert list(run_dir.glob("events.out.tfevents.*"))


def test_the_json_holds_what_main_returns(quick_run):
    report, _, tmp = quick_run
    saved = json.loads((tmp / "p.json").read_text())
    assert {"quick", "dataset", "data_root", "environment", "rows"} <= set(saved)
    assert saved["quick"] is True
    assert saved["environment"]["threads"] == 1
    for row in saved["rows"]:
        assert ROW_KEYS <= set(row)
    assert saved == json.loads(json.dumps(report))


def test_the_table_prints_one_line_per_row(quick_run):
    report, stdout, _ = quick_run
    lines = stdout.splitlines()
    assert lines[2].split()[:3] == ["name", "test", "acc"]
    body = lines[4:-1]
    assert [line.split()[0] for line in body] == [r["name"] for r in report["rows"]]
    for line, row in zip(body, report["rows"]):
        if row["test_accuracy"] is not None:
            assert f"{100 * row['test_accuracy']:.2f}" in line


def test_only_selects_rows_and_groups():
    peers = load_peers()
    assert [p.name for p in peers.select(["torch", "sklearn-mlp"])] == ["sklearn-mlp",
                                                                        *TORCH_ROWS]
    assert [p.name for p in peers.select(None)] == LINTORCH_ROWS + SKLEARN_ROWS + TORCH_ROWS
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        peers.build_parser().parse_args(["--only", "nonesuch"])


def test_a_folder_of_images_gets_every_row(tmp_path):
    from experiment_runner import image_folder

    pets = image_folder(tmp_path / "images", n_train=400)  # lintorch holds 1,000 out
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        report = load_peers().main(["--quick", "--dataset", str(pets), "--threads", "1",
                                    "--logdir", str(tmp_path / "runs"), "--only", "lintorch",
                                    "torch", "sklearn-logreg"])
    rows = {r["name"]: r for r in report["rows"]}
    assert list(rows) == LINTORCH_ROWS + SKLEARN_ROWS[:1] + TORCH_ROWS
    for row in rows.values():
        assert row["status"] in ("measured", "skipped")
        assert row["status"] == "skipped" or 0 < row["test_accuracy"] <= 1
    assert rows["torch-linear"]["notes"].endswith("; 1,200 train")  # all, as scikit-learn's
    assert rows["lintorch-linear-svm"]["notes"].endswith("; 1,080 train")  # a tenth held out
    assert report["dataset"] == str(pets) and out.getvalue().startswith(f"pets from {pets};")
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["peers"]
    assert [p.name for p in (tmp_path / "runs" / "peers").iterdir()] == ["pets"]
    assert sorted(p.name for p in (tmp_path / "runs" / "peers" / "pets").iterdir()) == [
        "linear-softmax", "linear-svm", "mlp-softmax"]
