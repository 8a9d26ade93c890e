"""The lecture's experiments (worked examples, numerical gradient, geometric viewpoint) in their
--quick form: their tables hold the lecture's numbers and the rows the README quotes."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from experiment_runner import assert_runs_only_under, image_folder, load, run_main
from matplotlib import colormaps
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lintorch import board

REPO = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")
HAVE_FASHION = FASHION.is_dir()
needs_fashion = pytest.mark.skipif(not HAVE_FASHION, reason=f"no Fashion-MNIST at {FASHION}")




def row(text: str, name: str) -> str:
    """The printed table row that starts with ``name``."""
    lines = [line for line in text.splitlines() if line.startswith(name)]
    assert lines, f"no row {name!r} in:\n{text}"
    return lines[0]


def quick_args(logdir: Path, *extra: str) -> list[str]:
    data = ["--dataset", "fashion-mnist", "--data-root", str(FASHION)] if HAVE_FASHION else []
    return ["--quick", "--logdir", str(logdir), "--no-download", *data, *extra]


# ---------------------------------------------------------------------------------------------
# worked_examples.py


@pytest.fixture(scope="module")
def worked(tmp_path_factory):
    return run_main("worked_examples", quick_args(tmp_path_factory.mktemp("worked")))


def test_svm_table_is_the_lectures(worked):
    r, text = worked
    assert [round(v, 1) for v in r["svm_example"]["L_i"]] == [2.9, 0.0, 12.9]
    assert round(r["svm_example"]["L"], 2) == 5.27
    assert row(text, "svm L_i").split()[2:5] == ["2.9000", "0.0000", "12.9000"]
    assert row(text, "svm L = mean L_i").split()[5] == "5.2667"


def test_softmax_example_is_the_lectures(worked):
    r, text = worked
    sm = r["softmax_example"]
    assert [round(sm["exp"][0], 1), round(sm["exp"][1], 1), round(sm["exp"][2], 2)] == [
        24.5, 164.0, 0.18]
    assert [round(p, 2) for p in sm["p"]] == [0.13, 0.87, 0.00]
    assert round(sm["L_i"], 2) == 2.04
    # non-GT classes are not in -log p_cat, yet their scores move it: dL/ds_j = p_j
    assert sm["dL_ds"][1] == pytest.approx(sm["p"][1])
    assert row(text, "softmax L_i = -log p_cat").split()[-2:] == ["2.0404", "2.04"]
    for name in ("softmax cat", "softmax car", "softmax frog"):
        row(text, name)


def test_small_change_of_car_scores_leaves_svm_loss_at_zero(worked):
    ch = worked[0]["small_change"]
    assert ch["svm_max_change"] == 0.0
    assert ch["svm_zero_up_to_shift"] == pytest.approx(0.95)  # the nearest margin is -1.9
    assert ch["softmax_max_change"] > 0
    assert "no change" in row(worked[1], "svm car image, scores +-0.5")


def test_loss_ranges_are_the_lectures(worked):
    rg = worked[0]["loss_range"]
    assert rg["svm"]["correct_up"][-1] == 0.0  # min 0 ...
    assert rg["svm"]["wrong_up"][-1] > 1e6  # ... max unbounded
    soft = rg["softmax"]["correct_up"]
    assert all(a >= b >= 0 for a, b in zip(soft, soft[1:]))  # infimum 0, never below
    assert 0 < soft[2] < 1e-3
    assert rg["softmax"]["wrong_up"][-1] > 1e6
    for name in ("svm min", "svm max", "softmax min", "softmax max"):
        row(worked[1], name)


def test_all_classes_adds_one_and_mean_scales(worked):
    am = worked[0]["all_and_mean"]
    assert am["all_minus_sum"] == pytest.approx([1.0, 1.0, 1.0])
    assert am["all_grad_max_diff"] == 0.0
    assert am["mean_over_sum"] == pytest.approx([0.5, 0.5])  # 1 / (C - 1), C = 3
    assert am["mean_grad_over_sum_grad"] == pytest.approx(0.5)
    row(worked[1], "svm sum over all j")
    row(worked[1], "svm mean over j instead of sum")


def test_zero_scores_give_c_minus_1_and_log_c(worked):
    toy = worked[0]["initial_loss"]["toy"]
    assert toy["svm"] == pytest.approx(2.0)
    assert toy["softmax"] == pytest.approx(math.log(3))


@needs_fashion
def test_fresh_models_on_real_data_give_c_minus_1_and_log_c(worked):
    init = worked[0]["initial_loss"]
    assert init["C"] == 10 and init["dataset"] == "fashion-mnist"
    for model in ("linear", "mlp"):
        assert init[model]["svm"][0] == pytest.approx(9.0, abs=0.05)
        assert init[model]["softmax"][0] == pytest.approx(math.log(10), abs=0.01)
        assert row(worked[1], f"svm at init, {model}").split()[-1] == "9"


def test_worked_examples_without_data_still_answers_the_rest(tmp_path):
    r, text = run_main("worked_examples", ["--quick", "--no-download", "--dataset",
                                           "fashion-mnist", "--data-root", str(tmp_path / "none"),
                                           "--logdir", str(tmp_path)])
    assert "skipped" in r["initial_loss"]
    assert "skipped" in row(text, "initial loss on real data")
    assert round(r["svm_example"]["L"], 2) == 5.27


def test_worked_examples_command_line(tmp_path):
    env = dict(os.environ, LINTORCH_DATA=str(FASHION))
    done = subprocess.run(
        [sys.executable, "experiments/worked_examples.py", "--quick", "--logdir", str(tmp_path),
         "--no-download"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert row(done.stdout, "svm L = mean L_i").split()[-1] == "5.27"
    if HAVE_FASHION:  # the default data set is what LINTORCH_DATA holds
        assert "real data: fashion-mnist" in done.stdout
    run = next((tmp_path / "worked_examples").iterdir())
    assert any(p.name.startswith("events.out.tfevents") for p in run.iterdir())


def test_default_data_set_is_cifar10_where_it_is_found(tmp_path):
    from cifar_fixture import write_cifar10

    write_cifar10(tmp_path / "data", n_train_per_batch=200, n_test=50)
    args = ["--quick", "--no-download", "--data-root", str(tmp_path / "data"), "--logdir",
            str(tmp_path / "runs")]
    r, text = run_main("worked_examples", args)
    assert r["initial_loss"]["dataset"] == "cifar10" and r["initial_loss"]["C"] == 10
    assert "real data: cifar10" in text
    r, text = run_main("numerical_gradient", [*args, "--num-checks", "2"])
    assert r["data"] == "cifar10"
    assert row(text, "linear svm at a kink").endswith("kink crossed")


@pytest.mark.parametrize("experiment, extra", [("worked_examples", []),
                                               ("numerical_gradient", ["--num-checks", "2"])])
def test_a_folder_of_images_names_the_run_after_itself(experiment, extra, tmp_path):
    pets = image_folder(tmp_path / "images", n_train=200)  # numerical_gradient holds 500 out
    r, text = run_main(experiment, ["--quick", "--dataset", str(pets), "--logdir",
                                    str(tmp_path / "runs"), *extra])
    group = assert_runs_only_under(tmp_path / "runs", experiment, "pets")
    assert r["run_dir"] == str(group) and str(pets) not in text
    data_set = r["initial_loss"]["dataset"] if experiment == "worked_examples" else r["data"]
    assert data_set == "pets"


# ---------------------------------------------------------------------------------------------
# numerical_gradient.py


@pytest.fixture(scope="module")
def numgrad(tmp_path_factory):
    return run_main("numerical_gradient", quick_args(tmp_path_factory.mktemp("numgrad")))


def test_walk_through_is_the_lectures_forward_difference(numgrad):
    r, text = numgrad
    h = 1e-4
    for k in r["walk_through"]["rows"]:
        assert k["grad"] == pytest.approx((k["loss_plus_h"] - k["loss"]) / h)
        assert k["grad"] == pytest.approx(k["library_forward"], rel=1e-9)  # numerical_gradient
        assert k["grad"] == pytest.approx(k["analytic"], rel=1e-2, abs=1e-6)  # O(h) off
        assert k["central"] == pytest.approx(k["analytic"], rel=1e-5, abs=1e-9)
    first = r["walk_through"]["rows"][0]
    assert row(text, f"W[0,{first['dim']}]").split()[3] == f"{r['walk_through']['loss']:.10f}"


def test_walk_through_shows_weights_on_the_pixels_that_vary_most(numgrad):
    r, text = numgrad
    rows = r["walk_through"]["rows"]
    grads = [k["analytic"] for k in rows]
    assert len(set(grads)) == len(grads) and min(map(abs, grads)) > 0  # not a constant border
    assert sorted(k["pixel"] for k in rows) != [0, 1, 2, 3, 4]  # Fashion-MNIST: constant 0
    assert "pixels of largest variance" in text and "lintorch's own gradient" in text


def test_gradient_check_passes_in_float64(numgrad):
    r, text = numgrad
    checks = {(k["name"], k["dtype"]): k for k in r["checks"]}
    for model in ("linear", "mlp"):
        for loss in ("svm", "softmax"):
            for state in ("init", "trained"):
                name = f"{model} {loss} {state}"
                k = checks[(name, "float64")]
                # every error >= 1e-7 is explained: by rounding a loss whose gradient is tiny,
                # or (the hinge only) by a kink between the two points of the difference
                allowed = ("great", "rounding floor") + (("kink crossed",) if loss == "svm" else ())
                assert k["verdict"] in allowed and k["unexplained_max"] == 0, name
                # grad_check's coordinates are random and may straddle a hinge's kink (which
                # ones do depends on the weights' last bits, i.e. on the thread count); the
                # kink-aware check above explains the SVM's errors
                if loss != "svm":
                    assert k["grad_check_max"] < 1e-2, name
                assert row(text, name).split()[-1] == k["verdict"].split()[-1]
    for name in ("linear softmax init", "linear softmax trained"):  # O(h) against O(h^2)
        k = checks[(name, "float64")]
        assert k["forward_max"] > 10 * k["central_max"]


def test_float32_and_kinks_break_the_rule_of_thumb(numgrad):
    r, text = numgrad
    checks = {(k["name"], k["dtype"]): k for k in r["checks"]}
    f32 = checks[("linear softmax trained", "float32")]
    assert f32["central_max"] > 1e-3 and f32["verdict"] == "rounding floor"
    kink = checks[("linear svm at a kink", "float64")]
    assert kink["central_max"] > 1e-2  # the centred difference straddles max(0, .)'s corner
    assert kink["kinks"] == 1 and kink["verdict"] == "kink crossed"
    assert row(text, "linear svm at a kink").endswith("kink crossed")
    assert "rule of thumb" in text


def test_error_against_step_size_is_truncation_then_rounding(numgrad):
    r, text = numgrad
    st = r["steps"]
    i = {h: k for k, h in enumerate(st["h"])}
    linear, mlp = st["linear softmax trained"], st["mlp softmax init"]
    assert linear["forward"][i[1e-2]] > 10 * linear["forward"][i[1e-4]]  # O(h)
    assert linear["central"][i[1e-2]] > 100 * linear["central"][i[1e-4]]  # O(h^2)
    assert mlp["central"][i[1e-8]] > 10 * mlp["central"][i[1e-4]]  # rounding, ~1/h
    assert row(text, "1e-05").split()[0] == "1e-05"


def test_numerical_gradient_logs_to_tensorboard(numgrad):
    run = Path(numgrad[0]["run_dir"])
    tags = board.read_tags(run)
    assert any("text_summary" in t for t in tags["tensors"])
    assert any(t.startswith("log10_relative_error/") for t in tags["histograms"])


# ---------------------------------------------------------------------------------------------
# geometric_2d.py


@pytest.fixture(scope="module")
def geometric(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("geometric")
    r, text = run_main("geometric_2d", ["--quick", "--logdir", str(tmp / "runs"), "--figures",
                                        "--figures-dir", str(tmp / "figures")])
    return r, text, tmp


def test_each_classifier_separates_the_toy_classes(geometric):
    r, text, _ = geometric
    runs = {f"{k['model']} {k['loss']}": k for k in r["runs"]}
    assert set(runs) == {"linear svm", "linear softmax", "mlp softmax"}
    for name, k in runs.items():
        assert k["test_accuracy"] > 0.85, name
        assert row(text, name).split()[-2].endswith("%")


def test_hyperplanes_are_the_rows_of_w(geometric):
    r, text, _ = geometric
    mod = load("geometric_2d")
    d = mod.toy_data({"train": 60, "val": 20, "test": 40}, 0)
    for k in r["runs"]:
        if k["model"] == "mlp":
            assert k["hyperplanes"] is None
            continue
        lines = torch.tensor(k["hyperplanes"])  # (w_k1, w_k2, b_k) per class
        assert lines.shape == (3, 3)
        scores = d.test_x @ lines[:, :2].T + lines[:, 2]
        accuracy = (scores.argmax(1) == d.test_y).double().mean().item()
        assert accuracy == pytest.approx(k["test_accuracy"], abs=1 / 120)
        printed = [line.split() for line in text.splitlines()
                   if line.startswith(f"linear {k['loss']} ") and " class " in line]
        assert [p[3] for p in printed] == ["0", "1", "2"]
        assert [float(p[4]) for p in printed] == pytest.approx(lines[:, 0].tolist(), abs=1e-3)


def test_pictures_go_to_png_and_tensorboard(geometric):
    r, _, tmp = geometric
    for k in r["runs"]:
        png = Path(k["png"])
        assert 1_000 < png.stat().st_size < 100_000
        with Image.open(png) as img:
            size = img.size
        # The same figure in TensorBoard, as an image of the PNG's size.
        acc = EventAccumulator(str(png.parent), size_guidance={"images": 0})
        acc.Reload()
        [event] = acc.Images("decision_regions")
        assert (event.width, event.height) == size
    names = sorted(Path(p).name for p in r["figures"])
    assert names == ["geometric_linear_softmax.png", "geometric_linear_svm.png",
                     "geometric_mlp.png"]
    assert all(Path(p).parent == tmp / "figures" for p in r["figures"])
    for k, name in zip(r["runs"], ["geometric_linear_svm.png", "geometric_linear_softmax.png",
                                   "geometric_mlp.png"]):
        assert (tmp / "figures" / name).read_bytes() == Path(k["png"]).read_bytes()


def test_picture_shows_the_models_regions_and_hyperplanes():
    mod = load("geometric_2d")
    d = mod.toy_data({"train": 60, "val": 20, "test": 40}, 0)
    w = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [-1.0, -1.0]])
    model = torch.nn.Linear(2, 3)
    with torch.no_grad():
        model.weight.copy_(w)
        model.bias.zero_()
    lines = [(*row, 0.0) for row in w.tolist()]
    ax = mod.picture(model, d, 40, "a title", lines).axes[0]
    [image] = ax.images
    xmin, xmax, ymin, ymax = mod.EXTENT
    assert tuple(image.get_extent()) == mod.EXTENT and image.origin == "lower"
    regions = torch.from_numpy(image.get_array().data).long()
    assert regions.shape[0] == 40
    # A cell shows the argmax of the scores at its centre; row 0 is the bottom (ymin).
    h, wd = regions.shape
    for i, j in ((0, 0), (h - 1, wd - 1), (h // 2, 0)):
        x = xmin + (j + 0.5) * (xmax - xmin) / wd
        y = ymin + (i + 0.5) * (ymax - ymin) / h
        assert regions[i, j] == model(torch.tensor([[x, y]])).argmax().item()
    assert len(ax.lines) == 3 and len(ax.collections[0].get_offsets()) == len(d.test_x)
    assert ax.get_title(loc="left").startswith("a title\n")


# --- geometric_2d.regions_figure ------------------------------------------------------------

GEOMETRIC = load("geometric_2d")
TAB20 = colormaps["tab20"].colors


def quadrants(x: torch.Tensor) -> torch.Tensor:
    """Class 0 left, 1 upper right, 2 lower right."""
    return torch.where(x[:, 0] < 0, 0, torch.where(x[:, 1] > 0, 1, 2))


def test_regions_figure_paints_the_predictions_at_cell_centres():
    extent = (-2.0, 2.0, -1.0, 1.0)
    fig = GEOMETRIC.regions_figure(quadrants, extent, resolution=10)
    [image] = fig.axes[0].images
    # 10 cells high, 20 wide (square cells); row 0 is the bottom one (origin="lower").
    xs = -2.0 + (torch.arange(20) + 0.5) * 0.2
    ys = -1.0 + (torch.arange(10) + 0.5) * 0.2
    centres = torch.cartesian_prod(ys, xs).flip(1)  # (x, y), row-major from the bottom
    expected = quadrants(centres).reshape(10, 20)
    assert torch.equal(torch.from_numpy(np.asarray(image.get_array())).long(), expected)
    assert image.origin == "lower" and tuple(image.get_extent()) == extent
    for k in range(3):  # each region in the light colour of its class
        assert image.cmap(image.norm(k)) == pytest.approx((*TAB20[2 * k + 1], 1.0))


def test_regions_figure_points_and_lines():
    points = torch.tensor([[1.0, 0.5], [-1.0, -0.5], [1.0, -0.5]])
    lines = [(1.0, 0.0, 0.0), (0.0, 2.0, -1.0), (1.0, 1.0, 0.5), (0.0, 0.0, 1.0)]
    fig = GEOMETRIC.regions_figure(quadrants, (-2, 2, -1, 1), points=points,
                               labels=torch.tensor([1, 0, 2]), lines=lines, resolution=8,
                               title="two\nlines")
    ax = fig.axes[0]
    [dots] = ax.collections
    np.testing.assert_allclose(dots.get_offsets(), points.numpy())
    np.testing.assert_allclose(dots.get_facecolors()[:, :3], [TAB20[2], TAB20[0], TAB20[4]])
    assert len(ax.lines) == 3 and len(ax.texts) == 3  # the degenerate w = 0 is not drawn
    for k, (line, arrow) in enumerate(zip(ax.lines, ax.texts)):
        w1, w2, b = lines[k]
        for x, y in (line.get_xy1(), line.get_xy2()):
            assert w1 * x + w2 * y + b == pytest.approx(0, abs=1e-6)
        assert line.get_color() == TAB20[2 * k]
        x0, y0 = arrow.xyann  # the arrow starts on the line and points along w
        assert w1 * x0 + w2 * y0 + b == pytest.approx(0, abs=1e-6)
        dx, dy = np.subtract(arrow.xy, arrow.xyann)
        assert dx * w1 + dy * w2 > 0 and dx * w2 - dy * w1 == pytest.approx(0, abs=1e-6)
    assert ax.get_title(loc="left") == "two\nlines"
    assert (ax.get_xlim(), ax.get_ylim()) == ((-2, 2), (-1, 1))


def test_regions_figure_arrow_keeps_off_the_points():
    crowd = torch.tensor([[0.1, 0.5], [-0.1, 0.6], [0.0, 0.4]])  # on x = 0, above the origin
    for points, side in ((crowd, -1), (-crowd, 1)):
        fig = GEOMETRIC.regions_figure(quadrants, (-2, 2, -1, 1), points=points,
                                   lines=[(1.0, 0.0, 0.0)], resolution=4)
        [arrow] = fig.axes[0].texts
        assert np.sign(arrow.xyann[1]) == side


def test_regions_figure_rejects_bad_input():
    extent = (-1, 1, -1, 1)
    with pytest.raises(ValueError, match="xmin < xmax"):
        GEOMETRIC.regions_figure(quadrants, (1, -1, -1, 1))
    with pytest.raises(ValueError, match=r"points must be \(N, 2\)"):
        GEOMETRIC.regions_figure(quadrants, extent, points=torch.zeros(4, 3))
    with pytest.raises(ValueError, match="3 labels for 4 points"):
        GEOMETRIC.regions_figure(quadrants, extent, points=torch.zeros(4, 2), labels=torch.zeros(3))
    with pytest.raises(ValueError, match="for 64 points"):
        GEOMETRIC.regions_figure(lambda x: quadrants(x)[1:], extent, resolution=8)
    with pytest.raises(ValueError, match=r"must lie in \[0, 10\), found \[0, 10\]"):
        GEOMETRIC.regions_figure(lambda x: quadrants(x) * 5, extent, resolution=8)
