"""lintorch.board: the figures are checked against references computed here (torchvision's
make_grid, the counts, the predictions), the TensorBoard helpers by reading the events back."""

from __future__ import annotations

import io
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hp_metadata
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid

from lintorch import board
from lintorch.models import LinearClassifier, SigmoidMLP

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
TAB20 = colormaps["tab20"].colors  # (strong, light) pairs: class k is TAB20[2k], TAB20[2k + 1]


def pixels(fig: Figure) -> tuple[int, int]:
    """(width, height) of the figure rendered at its own dpi."""
    w, h = fig.get_size_inches() * fig.dpi
    return round(w), round(h)


def test_importing_board_loads_no_matplotlib():
    code = "import sys, lintorch.board; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- confusion matrix -------------------------------------------------------------------------


def test_confusion_matrix_matches_double_loop():
    g = torch.Generator().manual_seed(0)
    c = 7
    target = torch.randint(0, c, (500,), generator=g)
    pred = torch.randint(0, c, (500,), generator=g)
    expected = torch.zeros(c, c, dtype=torch.int64)
    for t, p in zip(target.tolist(), pred.tolist()):
        expected[t, p] += 1
    cm = board.confusion_matrix(pred, target, c)
    assert cm.dtype == torch.int64
    assert torch.equal(cm, expected)
    assert torch.equal(cm.sum(1), torch.bincount(target, minlength=c))  # rows are true classes
    assert torch.equal(cm.sum(0), torch.bincount(pred, minlength=c))


def test_confusion_matrix_edge_cases():
    # A class never seen still gets its row and column; empty input gives zeros.
    cm = board.confusion_matrix(torch.tensor([0, 0]), torch.tensor([0, 1]), 4)
    assert cm.shape == (4, 4) and cm[0, 0] == 1 and cm[1, 0] == 1 and cm.sum() == 2
    empty = torch.empty(0, dtype=torch.long)
    assert torch.equal(board.confusion_matrix(empty, empty, 3), torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError):
        board.confusion_matrix(torch.tensor([3]), torch.tensor([0]), 3)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_confusion_matrix_on_cuda():
    target = torch.randint(0, 5, (1000,), device="cuda")
    pred = torch.randint(0, 5, (1000,), device="cuda")
    cm = board.confusion_matrix(pred, target, 5)
    assert cm.device.type == "cuda"
    assert torch.equal(cm.cpu(), board.confusion_matrix(pred.cpu(), target.cpu(), 5))


def test_confusion_figure_shows_counts_fractions_and_accuracy():
    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, 10, (400,), generator=g)
    pred = torch.where(torch.rand(400, generator=g) < 0.6, target,
                       torch.randint(0, 10, (400,), generator=g))
    cm = board.confusion_matrix(pred, target, 10)
    fig = board.confusion_figure(cm, FASHION)
    ax = fig.axes[0]
    cells = {tuple(round(v) for v in t.get_position()): t for t in ax.texts}  # (column, row)
    assert {k: int(t.get_text()) for k, t in cells.items()} == {
        (j, i): int(cm[i, j]) for i in range(10) for j in range(10)}
    accuracy = (pred == target).double().mean().item()
    assert f"{100 * accuracy:.1f}%" in ax.get_title() and "n = 400" in ax.get_title()
    rows = cm.double() / cm.sum(1, keepdim=True)
    np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), rows.numpy(), rtol=1e-6)
    assert [t.get_text() for t in ax.get_xticklabels()] == FASHION
    assert [t.get_text() for t in ax.get_yticklabels()] == FASHION
    # Ink readable on the cell: white on the darkest cell, black on the palest.
    darkest, palest = divmod(int(rows.argmax()), 10), divmod(int(rows.argmin()), 10)
    assert cells[darkest[::-1]].get_color() == "white"
    assert cells[palest[::-1]].get_color() == "black"


def test_confusion_figure_of_empty_matrix_and_bad_input():
    fig = board.confusion_figure(torch.zeros(3, 3, dtype=torch.long), ["a", "b", "c"])
    assert "n = 0" in fig.axes[0].get_title()
    assert not np.asarray(fig.axes[0].images[0].get_array()).any()  # no division by zero
    with pytest.raises(ValueError, match=r"\(C, C\) matrix for 3 class names"):
        board.confusion_figure(torch.zeros(3, 4, dtype=torch.long), ["a", "b", "c"])
    with pytest.raises(ValueError, match="for 2 class names"):
        board.confusion_figure(torch.zeros(3, 3, dtype=torch.long), ["a", "b"])


# --- templates --------------------------------------------------------------------------------


@pytest.mark.parametrize("n, shape", [(10, (1, 28, 28)), (10, (3, 32, 32)), (13, (3, 8, 8))])
def test_template_figure_is_make_grid_with_the_names_under_the_tiles(n, shape):
    tiles = torch.rand(n, *shape)
    names = [f"class {k}" for k in range(n)]
    fig = board.template_figure(tiles, names)
    [ax] = fig.axes
    [image] = ax.images
    shown = torch.from_numpy(np.asarray(image.get_array()))
    h, w = shape[1:]
    ncols = min(n, 10)
    pad = (shown.shape[1] - ncols * w) // (ncols + 1)  # the padding, read off the picture
    assert pad > 0
    expected = make_grid(tiles, nrow=10, padding=pad, pad_value=1.0).permute(1, 2, 0)
    assert torch.equal(shown, expected)
    assert [t.get_text() for t in ax.texts] == names
    for k, text in enumerate(ax.texts):
        x, y = text.get_position()  # data coordinates: pixel (i, j) is centred on (j, i)
        left, top = pad + (k % ncols) * (w + pad), pad + (k // ncols) * (h + pad)
        assert left <= x <= left + w - 1 and top + h - 1 < y < top + h + pad
    width, height = pixels(fig)
    assert width >= 4 * shown.shape[1] and height >= 4 * shown.shape[0]  # big enough to read


def test_template_figure_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(C, 1 or 3, h, w\)"):
        board.template_figure(torch.rand(10, 28, 28), FASHION)
    with pytest.raises(ValueError, match=r"\(C, 1 or 3, h, w\)"):
        board.template_figure(torch.rand(10, 2, 28, 28), FASHION)
    with pytest.raises(ValueError, match="9 class names for 10 templates"):
        board.template_figure(torch.rand(10, 1, 28, 28), FASHION[:9])


# --- saving -----------------------------------------------------------------------------------


def test_save_figure_writes_a_png_of_the_figure_and_no_temporary(tmp_path):
    fig = board.template_figure(torch.rand(3, 1, 6, 6), ["a", "b", "c"])
    size = pixels(fig)
    path = tmp_path / "sub" / "templates.png"
    board.save_figure(fig, path)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == size
        # The white padding of the template grid survives as white pixels.
        assert im.convert("RGB").getpixel((0, 0)) == (255, 255, 255)
    assert [p.name for p in path.parent.iterdir()] == ["templates.png"]


def test_save_figure_failure_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "fig.png"
    path.write_bytes(b"old")
    fig = Figure()

    def half_written(fname, **kwargs):
        open(fname, "wb").write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", half_written)
    with pytest.raises(RuntimeError, match="disk full"):
        board.save_figure(fig, path)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["fig.png"]


def test_save_figure_closes_a_pyplot_figure(tmp_path):
    import matplotlib.pyplot as plt

    fig = plt.figure()
    board.save_figure(fig, tmp_path / "fig.png")
    assert not plt.fignum_exists(fig.number)


# --- TensorBoard ------------------------------------------------------------------------------


def test_tensorboard_logging_round_trip(tmp_path):
    model = nn.Linear(4, 3)
    model(torch.randn(8, 4)).sum().backward()
    config = {"lr": 0.1, "epochs": 3, "loss": "svm", "bias_trick": True, "seed": None,
              "hidden": [10, 20], "shape": (1, 28, 28)}
    names = ["a", "b", "c"]
    with SummaryWriter(log_dir=str(tmp_path)) as writer:
        for step in range(3):
            writer.add_scalar("train/loss", 1.0 / (step + 1), step)
            board.log_epoch_histograms(writer, model, step)
            templates = model.weight.detach().reshape(3, 1, 2, 2).sigmoid()
            writer.add_figure("templates", board.template_figure(templates, names), step)
        cm = board.confusion_matrix(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2]), 3)
        confusion = board.confusion_figure(cm, names)
        size = pixels(confusion)
        writer.add_figure("confusion", confusion, 2)
        board.log_config_text(writer, config)
        board.log_hparams(writer, config, {"hparam/test_accuracy": 0.75})

    # Everything lands in the writer's own folder: no sub-folder per hparams call.
    assert [p for p in tmp_path.iterdir() if p.is_dir()] == []
    tags = board.read_tags(tmp_path)
    assert {"templates", "confusion"} <= set(tags["images"])
    assert {"params/weight", "params/bias", "grads/weight", "grads/bias"} <= set(
        tags["histograms"])
    assert "config/text_summary" in tags["tensors"]

    scalars = board.read_scalars(tmp_path)
    assert [s for s, _ in scalars["train/loss"]] == [0, 1, 2]
    assert scalars["hparam/test_accuracy"][0][1] == pytest.approx(0.75)

    acc = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    acc.Reload()
    assert [e.step for e in acc.Images("templates")] == [0, 1, 2]
    [image] = acc.Images("confusion")
    assert (image.width, image.height) == size
    content = acc.PluginTagToContent(hp_metadata.PLUGIN_NAME)
    assert {hp_metadata.EXPERIMENT_TAG, hp_metadata.SESSION_START_INFO_TAG,
            hp_metadata.SESSION_END_INFO_TAG} <= set(content)
    start = hp_metadata.parse_session_start_info_plugin_data(
        content[hp_metadata.SESSION_START_INFO_TAG])
    assert start.hparams["lr"].number_value == pytest.approx(0.1)
    assert start.hparams["loss"].string_value == "svm"
    assert start.hparams["seed"].string_value == "None"
    assert start.hparams["hidden"].string_value == "[10, 20]"
    experiment = hp_metadata.parse_experiment_plugin_data(content[hp_metadata.EXPERIMENT_TAG])
    assert [m.name.tag for m in experiment.metric_infos] == ["hparam/test_accuracy"]


def test_histograms_skip_non_finite(tmp_path):
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(float("nan"))
        model.bias.fill_(float("inf"))
    with SummaryWriter(log_dir=str(tmp_path)) as writer:
        board.log_epoch_histograms(writer, model, 0)  # must not raise
    assert board.read_tags(tmp_path)["histograms"] == []


# --- what an epoch shows ----------------------------------------------------------------------

ROW = {"epoch": 1, "train_loss": 2.0, "val_loss": 2.1, "penalty": 0.5, "train_accuracy": 0.3,
       "val_accuracy": 0.25, "lr": 0.1}


def log_run(logdir, model, image_shape, names, epochs=3) -> EventAccumulator:
    """``epochs`` epochs of ``board.log_epoch``, then the labelled templates, read back."""
    with SummaryWriter(log_dir=str(logdir)) as writer:
        for epoch in range(1, epochs + 1):
            board.log_epoch(writer, {**ROW, "epoch": epoch}, model, image_shape, names)
        board.log_templates_figure(writer, model, image_shape, names, epochs)
    return EventAccumulator(str(logdir), size_guidance={"images": 0, "histograms": 0}).Reload()


@pytest.mark.parametrize("shape", [(1, 6, 5), (3, 8, 8)])
def test_an_epoch_shows_scalars_histograms_and_the_templates_as_one_image(tmp_path, shape):
    model = LinearClassifier(math.prod(shape), 12)
    model(torch.randn(4, model.in_features)).sum().backward()
    names = [f"class {k}" for k in range(12)]
    acc = log_run(tmp_path, model, shape, names)
    tags = acc.Tags()
    assert set(board.EPOCH_SCALARS) <= set(tags["scalars"])
    assert {f"{kind}/{name}" for kind in ("params", "grads") for name in ("weight", "bias")} <= set(
        tags["histograms"])
    epochs = acc.Images("templates")
    assert [e.step for e in epochs] == [1, 2, 3]
    # make_grid's picture, rows of 10 (here 10 and 2 tiles), as add_image turns it into bytes
    expected = make_grid(model.templates(shape), nrow=10, padding=2, pad_value=1.0)
    with Image.open(io.BytesIO(epochs[-1].encoded_image_string)) as image:
        shown = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
    assert shown.shape == expected.shape == (3, 2 * shape[1] + 6, 10 * shape[2] + 22)
    assert (shown.int() - (expected * 255).int()).abs().max() <= 1
    # the names under the tiles: the labelled figure, once
    [labelled] = acc.Images("templates/labelled")
    assert labelled.step == 3
    figure = board.template_figure(model.templates(shape), names)
    assert (labelled.width, labelled.height) == pixels(figure)


def test_an_epoch_draws_no_matplotlib_figure(tmp_path, monkeypatch):
    # A figure costs ~80 ms to draw, an epoch of CIFAR-10 ~0.35 s: drawn once, at the end.
    def drawn(*args, **kwargs):
        raise AssertionError("an epoch drew a matplotlib figure")

    monkeypatch.setattr(Figure, "__init__", drawn)
    model = LinearClassifier(3 * 8 * 8, 10)
    model(torch.randn(4, model.in_features)).sum().backward()
    with SummaryWriter(log_dir=str(tmp_path)) as writer:
        for epoch in (1, 2):
            board.log_epoch(writer, {**ROW, "epoch": epoch}, model, (3, 8, 8), FASHION)
    assert len(board.read_tags(tmp_path)["images"]) == 1


@pytest.mark.parametrize("model, shape", [(LinearClassifier(6, 10), (6,)),
                                          (SigmoidMLP(3 * 4 * 4, [5], 10), (3, 4, 4))])
def test_features_or_an_mlp_show_no_templates(tmp_path, model, shape):
    acc = log_run(tmp_path, model, shape, FASHION)
    assert acc.Tags()["images"] == [] and acc.Tags()["histograms"]


def test_histograms_count_every_value_in_equal_bins(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(50, 40)
    with torch.no_grad():
        model.bias.zero_()  # one value throughout: one bin
    with SummaryWriter(log_dir=str(tmp_path)) as writer:
        board.log_epoch_histograms(writer, model, 0)
    acc = EventAccumulator(str(tmp_path), size_guidance={"histograms": 0}).Reload()
    h = acc.Histograms("params/weight")[0].histogram_value
    w = model.weight.detach().double().flatten().numpy()
    assert (h.num, h.min, h.max) == (w.size, pytest.approx(w.min()), pytest.approx(w.max()))
    assert (h.sum, h.sum_squares) == (pytest.approx(w.sum()), pytest.approx(w @ w))
    counts, edges = np.histogram(w, bins=64, range=(h.min, h.max))
    np.testing.assert_allclose(h.bucket_limit, edges[1:], rtol=0, atol=1e-6 * (h.max - h.min))
    assert sum(h.bucket) == w.size and np.abs(np.array(h.bucket) - counts).sum() <= 2
    bias = acc.Histograms("params/bias")[0].histogram_value
    assert (bias.min, bias.max, bias.bucket[0], sum(bias.bucket)) == (0, 0, 40, 40)
    assert "grads/weight" not in acc.Tags()["histograms"]  # no backward pass yet
