"""The training experiments (search against gradient, full batch against mini-batch, learning-rate
decay, losses and models) in their --quick form, in-process on Fashion-MNIST: the rows of their
tables, the accounting they claim, and what they leave in TensorBoard."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from experiment_runner import assert_runs_only_under, image_folder, load, run_main
from PIL import Image

from lintorch import append_ones, board

REPO = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(not FASHION.is_dir(), reason=f"no Fashion-MNIST at {FASHION}")


pytestmark = pytest.mark.usefixtures("one_thread")




def row(text: str, *first: str) -> list[str]:
    """The cells of the printed table row whose first cells are ``first``."""
    for line in text.splitlines():
        cells = line.split()
        if cells[:len(first)] == list(first):
            return cells
    raise AssertionError(f"no row {first!r} in:\n{text}")


def quick(tmp_path: Path, *extra: str) -> list[str]:
    return ["--quick", "--no-download", "--dataset", "fashion-mnist", "--data-root", str(FASHION),
            "--logdir", str(tmp_path), *extra]


# ---------------------------------------------------------------------------------------------
# search_vs_gradient.py


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    return run_main("search_vs_gradient", quick(tmp_path_factory.mktemp("search")))


@needs_fashion
def test_every_method_spends_the_same_budget(searched):
    r, text = searched
    assert [m["method"] for m in r["methods"]] == ["random search", "random local search",
                                                   "genetic algorithm", "sgd"]
    sgd = r["methods"][-1]
    assert sgd["epochs"] * sgd["steps_per_epoch"] == r["budget"] == 60
    assert sgd["images"] == sgd["steps_per_epoch"] * r["batch_size"]
    for name in ("random search", "random local search", "genetic algorithm", "sgd"):
        assert row(text, *name.split())[len(name.split())] == "60"
    assert "fixed subset of 32 training images" in text  # the accounting, in the header


@needs_fashion
def test_course_notes_anchors_are_printed_beside_the_searches(searched):
    _, text = searched
    assert "15.5%" in row(text, "random", "search")
    assert "21.4%" in row(text, "random", "local", "search")


@needs_fashion
def test_gradient_beats_search_at_equal_budget(searched):
    r, _ = searched
    acc = {m["method"]: m["val"]["accuracy"] for m in r["methods"]}
    assert acc["sgd"] > 0.6
    assert acc["sgd"] > max(acc[m] for m in ("random search", "random local search",
                                             "genetic algorithm")) + 0.2


@needs_fashion
def test_accuracy_against_evaluations_goes_to_tensorboard(searched):
    r, _ = searched
    for m in r["methods"]:
        scalars = board.read_scalars(m["run_dir"])
        val = scalars["vs_evaluations/accuracy_val"]
        assert val[-1][0] == r["budget"], m["method"]
        assert val[-1][1] == pytest.approx(m["val"]["accuracy"], abs=1e-6), m["method"]
        train = scalars["vs_evaluations/accuracy_train"]
        assert all(0 < step <= r["budget"] for step, _ in train), m["method"]
        assert "vs_evaluations/loss" in scalars
    runs = sorted(Path(m["run_dir"]).name for m in r["methods"])
    assert runs == ["genetic_algorithm", "random_local_search", "random_search", "sgd"]


def test_sgd_plan_takes_exactly_the_budget():
    plan = load("search_vs_gradient").sgd_plan
    assert plan(1000, 256, 59000) == (10, 100)  # the default: 10 epochs over 25600 images
    assert plan(60, 32, 2000) == (10, 6)
    assert plan(7, 32, 100) == (7, 1)  # a prime budget: one step per epoch
    assert plan(1000, 256, 5000) == (100, 10)  # few images: more, shorter epochs


def test_shorter_budgets_replay_the_start_of_a_search():
    # The validation curve reruns each search with smaller budgets: that is only the curve of
    # the full run if a search's first steps do not depend on its budget.
    mod = load("search_vs_gradient")
    gen = torch.Generator().manual_seed(0)
    x1 = append_ones(torch.randn(64, 20, generator=gen))
    y = torch.randint(10, (64,), generator=gen)
    for method in ("random search", "random local search", "genetic algorithm"):
        full = mod.run_search(method, x1, y, 10, 300, "svm", seed=3)
        for budget in mod.checkpoints(full.history):
            part = mod.run_search(method, x1, y, 10, budget, "svm", seed=3)
            assert part.history == full.history[:len(part.history)], method
            assert part.history[-1][0] == budget


# ---------------------------------------------------------------------------------------------
# batch_vs_minibatch.py


@pytest.fixture(scope="module")
def batched(tmp_path_factory):
    return run_main("batch_vs_minibatch", quick(tmp_path_factory.mktemp("batch")))


@needs_fashion
def test_full_batch_and_mini_batches_at_equal_epochs(batched):
    r, text = batched
    n = r["train_images"]
    assert [k["batch_size"] for k in r["equal-epochs"]] == [16, 128, n]
    for k in r["equal-epochs"]:
        assert k["epochs"] == r["epochs"]
        assert k["steps"] == r["epochs"] * math.ceil(n / k["batch_size"])
        batch = f"full={n}" if k["batch_size"] == n else str(k["batch_size"])
        cells = row(text, "equal-epochs", batch)
        assert cells[2:4] == [str(k["epochs"]), str(k["steps"])]
    assert row(text, "equal-epochs", f"full={n}")[3] == str(r["epochs"])  # one step an epoch


@needs_fashion
def test_equal_time_gives_each_batch_size_the_budget_in_epochs(batched):
    r, text = batched
    for measured, k in zip(r["equal-epochs"], r["equal-time"]):
        assert measured["batch_size"] == k["batch_size"]
        wanted = max(1, round(r["time_budget_s"] / measured["epoch_seconds"]))
        assert k["epochs"] == min(wanted, r["max_epochs"])
        batch = f"full={k['batch_size']}" if k["full_batch"] else str(k["batch_size"])
        assert row(text, "equal-time", batch)[2].rstrip("*") == str(k["epochs"])
    slowest = max(r["equal-epochs"], key=lambda k: k["epoch_seconds"])
    assert r["time_budget_s"] == pytest.approx(r["epochs"] * slowest["epoch_seconds"])


@needs_fashion
def test_batch_runs_log_against_training_time(batched):
    r, _ = batched
    for k in r["equal-epochs"] + r["equal-time"]:
        scalars = board.read_scalars(k["run_dir"])
        assert len(scalars["vs_train_ms/accuracy_val"]) == k["epochs"]
        assert len(scalars["accuracy/val"]) == k["epochs"]


# ---------------------------------------------------------------------------------------------
# lr_decay.py


@pytest.fixture(scope="module")
def decayed(tmp_path_factory):
    return run_main("lr_decay", quick(tmp_path_factory.mktemp("decay")))


@needs_fashion
def test_each_schedule_has_a_row_and_its_final_rate(decayed):
    r, text = decayed
    runs = {k["schedule"]: k for k in r["runs"]}
    assert list(runs) == ["none", "step", "exp", "cosine", "none lr/10"]
    lr = runs["none"]["lr"]
    assert runs["none"]["final_lr"] == lr
    assert runs["step"]["final_lr"] == pytest.approx(lr / 100)
    assert runs["exp"]["final_lr"] == pytest.approx(lr / 100)
    assert runs["cosine"]["final_lr"] < lr / 2
    assert runs["none lr/10"]["final_lr"] == pytest.approx(lr / 10)
    for name in ("none", "step", "exp", "cosine"):
        assert float(row(text, name)[2]) == pytest.approx(runs[name]["final_lr"], rel=1e-2)
    row(text, "none", "lr/10")


@needs_fashion
def test_a_large_constant_rate_settles_higher_than_decayed_ones(decayed):
    r, _ = decayed
    runs = {k["schedule"]: k for k in r["runs"]}
    for name in ("step", "exp", "cosine"):
        assert runs["none"]["train_loss"] > runs[name]["train_loss"], name


@needs_fashion
def test_schedules_overlay_in_tensorboard(decayed):
    r, _ = decayed
    for k in r["runs"]:
        lrs = [v for _, v in board.read_scalars(k["run_dir"])["lr"]]
        assert len(lrs) == r["epochs"]
        assert lrs[-1] == pytest.approx(k["final_lr"])
    assert len({Path(k["run_dir"]).parent for k in r["runs"]}) == 1


# ---------------------------------------------------------------------------------------------
# losses_and_models.py


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("models")
    r, text = run_main("losses_and_models", quick(tmp / "runs", "--figures", "--figures-dir",
                                                  str(tmp / "figures")))
    return r, text, tmp


@needs_fashion
def test_each_loss_and_model_has_a_test_accuracy(compared):
    r, text, _ = compared
    names = [(k["model"], k["loss"], k["hidden"]) for k in r["runs"]]
    assert names == [("linear", "svm", None), ("linear", "softmax", None),
                     ("mlp-1", "softmax", [32]), ("mlp-2", "softmax", [32, 16]),
                     ("mlp-3", "softmax", [32, 16, 8])]
    for k in r["runs"]:
        cells = row(text, k["model"], k["loss"])
        assert cells[2] == ("-".join(map(str, k["hidden"])) if k["hidden"] else "-")
        assert cells[-2] == f"{100 * k['test_accuracy']:.1f}%"
    for loss in ("svm", "softmax"):  # one epoch of a linear classifier: well above chance
        assert next(k for k in r["runs"] if k["model"] == "linear" and k["loss"] == loss
                    )["test_accuracy"] > 0.5


@needs_fashion
def test_linear_templates_go_to_png_and_tensorboard(compared):
    r, _, tmp = compared
    assert sorted(Path(p).name for p in r["figures"]) == [
        "templates_fashion-mnist_softmax.png", "templates_fashion-mnist_svm.png"]
    for path in r["figures"]:
        assert Path(path).parent == tmp / "figures"
        with Image.open(path) as img:
            width, height = img.size
        assert width > 10 * 28 * 4 > height > 28 * 4  # ten 28x28 tiles at scale 4, one row
    for k in r["runs"]:
        images = board.read_tags(k["run_dir"])["images"]
        assert ("templates" in images) == (k["model"] == "linear"), k["model"]


# ---------------------------------------------------------------------------------------------
# The command line and CIFAR-10


def test_missing_data_is_one_line_error(tmp_path):
    env = dict(os.environ, LINTORCH_DATA=str(tmp_path / "none"))
    done = subprocess.run(
        [sys.executable, "experiments/lr_decay.py", "--quick", "--no-download", "--logdir",
         str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in done.stderr
    assert "Fashion-MNIST not found" in last  # no CIFAR-10 there: the fallback data set


def test_cifar10_is_the_default_where_it_is_found(tmp_path):
    from cifar_fixture import write_cifar10

    write_cifar10(tmp_path / "data", n_train_per_batch=240, n_test=50)
    args = ["--quick", "--no-download", "--data-root", str(tmp_path / "data"), "--logdir",
            str(tmp_path / "runs"), "--figures", "--figures-dir", str(tmp_path / "figures")]
    r, text = run_main("losses_and_models", args)
    assert r["dataset"] == "cifar10"
    with Image.open(r["figures"][0]) as img:
        assert img.size[0] > 10 * 32 * 4  # colour templates, 32x32 tiles
    r, text = run_main("search_vs_gradient", args[:-3] + ["--budget", "20"])
    assert r["dataset"] == "cifar10" and r["methods"][-1]["evaluations"] == 20


# ---------------------------------------------------------------------------------------------
# A folder of images as --dataset


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("images"), n_train=120)


@pytest.mark.parametrize("experiment", ["search_vs_gradient", "batch_vs_minibatch", "lr_decay",
                                        "losses_and_models"])
def test_a_folder_names_the_runs_and_figures_after_itself(experiment, pets, tmp_path):
    figures = ["--figures", "--figures-dir", str(tmp_path / "figures")]
    r, text = run_main(experiment, ["--quick", "--dataset", str(pets), "--logdir",
                                    str(tmp_path / "runs"),
                                    *(figures if experiment == "losses_and_models" else [])])
    group = assert_runs_only_under(tmp_path / "runs", experiment, "pets")
    assert r["dataset"] == "pets" and str(pets) not in text
    runs = r.get("runs") or r.get("methods") or r["equal-epochs"] + r["equal-time"]
    assert {Path(k["run_dir"]).parent for k in runs} == {group}
    written = {"runs", "figures"} if experiment == "losses_and_models" else {"runs"}
    assert {p.name for p in tmp_path.iterdir()} == written
    if experiment == "losses_and_models":
        assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
            "templates_pets_softmax.png", "templates_pets_svm.png"]


# ---------------------------------------------------------------------------------------------
# linear_ceiling.py


@needs_fashion
def test_linear_ceiling_reaches_the_minimum_of_each_objective(tmp_path):
    argv = [a for a in quick(tmp_path) if a not in ("--logdir", str(tmp_path))]
    r, text = run_main("linear_ceiling", argv + ["--iterations", "200"])
    rows = {k["lambda"]: k for k in r["rows"]}
    assert list(rows) == [1e-2, 1e-3]
    for k in rows.values():
        # below the loss of W = 0 (log C), where the gradient (norm ~1 at W = 0) has all but
        # vanished
        assert k["objective"] < math.log(10) and k["grad_norm"] < 1e-2
        assert float(row(text, f"{k['lambda']:g}")[5].rstrip("%")) == pytest.approx(
            100 * k["test_accuracy"], abs=0.01)
    # less regularization fits the training images at least as well
    assert rows[1e-3]["train_accuracy"] >= rows[1e-2]["train_accuracy"]
    assert r["best_test_oracle"]["test_accuracy"] == max(k["test_accuracy"] for k in rows.values())
    assert r["preprocess"] == "standardize" and "--preprocess standardize" in text


@needs_fashion
def test_linear_ceiling_takes_the_preprocessing(tmp_path):
    argv = [a for a in quick(tmp_path) if a not in ("--logdir", str(tmp_path))]
    r, text = run_main("linear_ceiling", argv + ["--preprocess", "pixel", "--lambdas", "1e-2"])
    assert r["preprocess"] == "pixel" and "--preprocess pixel" in text
    assert r["rows"][0]["objective"] < math.log(10)
