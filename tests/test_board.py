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
from matplotlib.figure import Figure
from PIL import Image, ImageChops, ImageDraw, ImageFont
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hp_metadata
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid

from lintorch import board
from lintorch.models import LinearClassifier, SigmoidMLP

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


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


def ink(image: Image.Image, background) -> Image.Image:
    """``image`` cropped to what differs from ``background``."""
    box = ImageChops.difference(image, Image.new("RGB", image.size, background)).getbbox()
    return image.crop(box)


def written(text: str, colour="black", background="white") -> Image.Image:
    """``text`` as Pillow writes it in its own font, cropped to its ink."""
    image = Image.new("RGB", (20 + 8 * len(text), 40), background)
    ImageDraw.Draw(image).text((10, 20), text, colour, ImageFont.load_default(12), "lm")
    return ink(image, background)


def heatmap_box(image: Image.Image) -> tuple[int, int, int, int]:
    """The box of the confusion figure's cells: the pixels whose blue exceeds their red."""
    rgb = torch.from_numpy(np.array(image)).int()
    ys, xs = torch.nonzero(rgb[..., 2] > rgb[..., 0] + 4, as_tuple=True)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_confusion_figure_shows_counts_fractions_and_accuracy():
    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, 10, (400,), generator=g)
    pred = torch.where(torch.rand(400, generator=g) < 0.6, target,
                       torch.randint(0, 10, (400,), generator=g))
    pred[target == 3] = 3  # a row all on the diagonal: the darkest cell
    cm = board.confusion_matrix(pred, target, 10)
    image = board.confusion_figure(cm, FASHION)
    left, top, right, bottom = heatmap_box(image)
    cell = (right - left) // 10
    assert right - left == bottom - top == 10 * cell
    rows = (cm.double() / cm.sum(1, keepdim=True)).tolist()
    pale, dark = np.array([247, 251, 255]), np.array([8, 48, 107])  # matplotlib's Blues ends
    for i in range(10):
        for j in range(10):
            box = (left + j * cell, top + i * cell, left + (j + 1) * cell, top + (i + 1) * cell)
            tile = image.crop(box)
            colour = tile.getpixel((1, 1))  # the cell's colour, away from its number
            assert np.abs(colour - (pale + rows[i][j] * (dark - pale))).max() <= 0.5
            # the count, in ink readable on the cell: white on dark cells, black on pale ones
            luma = np.dot(colour, [0.299, 0.587, 0.114])  # Rec. 601
            pen = "white" if luma < 128 else "black"
            assert ink(tile, colour) == written(str(int(cm[i, j])), pen, colour), (i, j)
    assert ink(image.crop((0, 0, image.width, top)), "white") == written(
        f"accuracy {100 * (pred == target).double().mean():.1f}%  (n = 400);  colour: fraction "
        "of the true class")
    assert rows[3][3] == 1 and image.getpixel((left + 3 * cell + 1, top + 3 * cell + 1)) == (
        8, 48, 107)
    for k, name in enumerate(FASHION):  # the names, beside each row and under each column
        beside = image.crop((25, top + k * cell, left - 1, top + (k + 1) * cell))  # past "true"
        assert ink(beside, "white") == written(name)
        under = image.crop((left + k * cell, bottom + 1, left + (k + 1) * cell, image.height - 20))
        assert ink(under, "white").size == written(name).size[::-1]  # written upwards


def test_confusion_figure_of_empty_matrix_and_bad_input():
    image = board.confusion_figure(torch.zeros(3, 3, dtype=torch.long), ["a", "b", "c"])
    left, top, right, bottom = heatmap_box(image)
    assert image.getpixel((left + 1, top + 1)) == (247, 251, 255)  # no division by zero
    assert ink(image.crop((0, 0, image.width, top)), "white") == written(
        "accuracy 0.0%  (n = 0);  colour: fraction of the true class")
    with pytest.raises(ValueError, match=r"\(C, C\) matrix for 3 class names"):
        board.confusion_figure(torch.zeros(3, 4, dtype=torch.long), ["a", "b", "c"])
    with pytest.raises(ValueError, match="for 2 class names"):
        board.confusion_figure(torch.zeros(3, 3, dtype=torch.long), ["a", "b"])


# --- templates --------------------------------------------------------------------------------


@pytest.mark.parametrize("n, shape", [(10, (1, 28, 28)), (10, (3, 32, 32)), (13, (3, 8, 8))])
def test_template_figure_is_make_grid_with_the_names_under_the_tiles(n, shape):
    tiles = torch.rand(n, *shape)
    names = [f"class {k}" for k in range(n)]
    image = board.template_figure(tiles, names)
    zoom, pad, (h, w) = board._ZOOM, board._PAD, shape[1:]
    # make_grid's picture, each pixel zoom x zoom; the padding marked -1 to find it again
    grid = make_grid(tiles, nrow=10, padding=pad, pad_value=-1.0).permute(1, 2, 0)
    grid = grid.repeat_interleave(zoom, 0).repeat_interleave(zoom, 1)
    shown = torch.from_numpy(np.array(image)).int()
    assert shown.shape == grid.shape
    tile = grid[..., 0] >= 0
    assert torch.equal(shown[tile], (grid[tile] * 255).round().int())
    ncols = min(n, 10)
    for k, name in enumerate(names):  # each name in the padding under its tile
        x, y = (pad + (k % ncols) * (w + pad)) * zoom, (pad + (k // ncols) * (h + pad) + h) * zoom
        under = image.crop((x - pad * zoom // 2, y, x + (w + pad // 2) * zoom, y + pad * zoom))
        assert ink(under, "white") == written(name), name
    assert image.width >= 4 * grid.shape[1] / zoom  # big enough to read


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
    path = tmp_path / "sub" / "templates.png"
    board.save_figure(fig, path)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == fig.size
        assert ImageChops.difference(im.convert("RGB"), fig).getbbox() is None
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
            board.log_figure(writer, "templates", board.template_figure(templates, names), step)
        cm = board.confusion_matrix(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2]), 3)
        confusion = board.confusion_figure(cm, names)
        board.log_figure(writer, "confusion", confusion, 2)
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
    with Image.open(io.BytesIO(image.encoded_image_string)) as shown:
        assert ImageChops.difference(shown.convert("RGB"), confusion).getbbox() is None
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
    with Image.open(io.BytesIO(labelled.encoded_image_string)) as shown:
        assert ImageChops.difference(shown.convert("RGB"), figure).getbbox() is None


def test_an_epoch_draws_no_labelled_figure(tmp_path, monkeypatch):
    # The labelled templates are drawn once, at the end; an epoch logs the bare grid.
    def drawn(*args, **kwargs):
        raise AssertionError("an epoch drew the labelled figure")

    monkeypatch.setattr(board, "template_figure", drawn)
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
