from __future__ import annotations

import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hp_metadata
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from lintorch import board

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _is_image(img: torch.Tensor, h: int | None = None, w: int | None = None) -> None:
    assert img.dim() == 3 and img.shape[0] == 3
    assert img.dtype == torch.float32
    assert img.min() >= 0 and img.max() <= 1
    if h is not None:
        assert img.shape[1:] == (h, w)


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


def test_confusion_image():
    cm = board.confusion_matrix(torch.randint(0, 10, (300,)), torch.randint(0, 10, (300,)), 10)
    _is_image(board.confusion_image(cm, FASHION))
    # Rows without samples must not divide by zero.
    _is_image(board.confusion_image(torch.zeros(3, 3, dtype=torch.long), ["a", "b", "c"]))


# --- templates --------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
def test_template_grid(shape):
    img = board.template_grid(torch.rand(10, *shape), [f"class {i}" for i in range(10)], scale=2)
    _is_image(img)
    assert img.shape[1] > 2 * shape[1] and img.shape[2] >= 10 * 2 * shape[2]


# --- decision regions -------------------------------------------------------------------------


def test_region_image_colours_are_palette():
    grid = torch.tensor([[0, 1, 2], [2, 1, 0]])
    img = board.region_image(grid, 3)
    _is_image(img, 2, 3)
    for i in range(2):
        for j in range(3):
            assert torch.equal(img[:, i, j], board.PALETTE[grid[i, j]])


def test_region_image_with_points_and_lines():
    extent = (-2.0, 2.0, -1.0, 1.0)
    h, w = 50, 100
    pts = board.grid_points(extent, h, w)
    assert pts.shape == (h * w, 2)
    grid = (pts[:, 0] > 0).long().reshape(h, w)  # class 1 on the right half
    points = torch.tensor([[1.5, 0.5], [-1.5, -0.5]])
    img = board.region_image(grid, 2, extent, points=points, labels=torch.tensor([1, 0]),
                             lines=[(1.0, 0.0, 0.0), (0.0, 1.0, 0.5), (0.0, 0.0, 1.0)])
    _is_image(img, h, w)
    # Drawing leaves untouched pixels exactly at their palette colour (corners are far from all).
    assert torch.equal(img[:, 0, -1], board.PALETTE[1])
    assert torch.equal(img[:, -1, 0], board.PALETTE[0])
    # The point at (1.5, 0.5) sits at column 87.5, row 12.5, in the dark colour of class 1.
    assert torch.allclose(img[:, 12, 87], board.PALETTE_DARK[1], atol=1 / 255)
    # The vertical line x = 0 crosses the middle column.
    assert torch.allclose(img[:, 40, 49], board.PALETTE_DARK[0], atol=0.1)


def test_grid_points_top_row_is_ymax():
    pts = board.grid_points((0.0, 4.0, 0.0, 2.0), 2, 4)
    torch.testing.assert_close(pts[0], torch.tensor([0.5, 1.5]))
    torch.testing.assert_close(pts[-1], torch.tensor([3.5, 0.5]))


def test_palette_has_distinct_colours():
    assert len(board.PALETTE) >= 10 and board.PALETTE.shape == board.PALETTE_DARK.shape
    assert len({tuple(c.tolist()) for c in board.PALETTE}) == len(board.PALETTE)


def test_save_png(tmp_path):
    path = tmp_path / "sub" / "img.png"
    board.save_png(torch.rand(3, 12, 20), path)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (20, 12) and im.mode == "RGB"


# --- TensorBoard ------------------------------------------------------------------------------


def test_tensorboard_logging_round_trip(tmp_path):
    model = nn.Linear(4, 3)
    model(torch.randn(8, 4)).sum().backward()
    config = {"lr": 0.1, "epochs": 3, "loss": "svm", "bias_trick": True, "seed": None,
              "hidden": [10, 20], "shape": (1, 28, 28)}
    with SummaryWriter(log_dir=str(tmp_path)) as writer:
        for step in range(3):
            writer.add_scalar("train/loss", 1.0 / (step + 1), step)
            board.log_epoch_histograms(writer, model, step)
        templates = model.weight.detach().reshape(3, 1, 2, 2).sigmoid()
        writer.add_image("templates", board.template_grid(templates), 2)
        board.log_config_text(writer, config)
        board.log_hparams(writer, config, {"hparam/test_accuracy": 0.75})

    # Everything lands in the writer's own folder: no sub-folder per hparams call.
    assert [p for p in tmp_path.iterdir() if p.is_dir()] == []
    tags = board.read_tags(tmp_path)
    assert "templates" in tags["images"]
    assert {"params/weight", "params/bias", "grads/weight", "grads/bias"} <= set(
        tags["histograms"])
    assert "config/text_summary" in tags["tensors"]

    scalars = board.read_scalars(tmp_path)
    assert [s for s, _ in scalars["train/loss"]] == [0, 1, 2]
    assert scalars["hparam/test_accuracy"][0][1] == pytest.approx(0.75)

    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
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
