"""What a run shows in TensorBoard, knowing nothing of the training loop: scalars, histograms,
hparams, and figures of the class templates and the confusion matrix. The figures are drawn
with Pillow, which TensorBoard already uses to encode images: 40 ms a run, where importing
matplotlib and drawing them with it took 0.6 s, a tenth of Fashion-MNIST's default run."""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from .files import printable, write_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from PIL.Image import Image

__all__ = ["confusion_figure", "confusion_matrix", "log_config_text", "log_epoch",
           "log_epoch_histograms", "log_figure", "log_final", "log_hparams", "log_templates_figure",
           "read_scalars", "read_tags", "save_figure", "template_figure", "template_grid"]

# Screen pixels per template pixel: a 28x28 template is 112 px wide, enough to see strokes and
# to hold its class name. The padding between tiles (in template pixels) holds the names.
_ZOOM, _PAD = 4, 5
_BINS = 64  # of a histogram; TensorBoard shows 30


def template_grid(templates: Tensor, pad: int = 2) -> Tensor:
    """The C class templates (C, 1 or 3, h, w) in [0, 1], e.g. ``LinearClassifier.templates``,
    as one (3, H, W) image: rows of at most 10 tiles, ``pad`` white pixels around each."""
    tiles = templates.detach().cpu().float()
    if tiles.dim() != 4 or tiles.shape[1] not in (1, 3) or len(tiles) == 0:
        raise ValueError(f"templates must be (C, 1 or 3, h, w), got {tuple(tiles.shape)}")
    c, _, h, w = tiles.shape
    ncols = min(c, 10)
    # torchvision's make_grid layout (white padding), written out: importing torchvision takes
    # 1.1 s, more than all else TensorBoard adds to a default run.
    grid = torch.ones(3, -(-c // ncols) * (h + pad) + pad, ncols * (w + pad) + pad)
    for k, tile in enumerate(tiles):
        y, x = pad + (k // ncols) * (h + pad), pad + (k % ncols) * (w + pad)
        grid[:, y:y + h, x:x + w] = tile  # a grey tile broadcasts to RGB
    return grid


def template_figure(templates: Tensor, class_names: Sequence[str]) -> Image:
    """``template_grid`` of the templates, each template pixel _ZOOM screen pixels wide, with each
    class name under its tile."""
    from PIL import Image, ImageDraw

    if len(class_names) != len(templates):
        raise ValueError(f"{len(class_names)} class names for {len(templates)} templates")
    grid = _rgb(template_grid(templates, _PAD))
    image = grid.resize((grid.width * _ZOOM, grid.height * _ZOOM), Image.NEAREST)
    _, _, h, w = templates.shape
    ncols, draw, font = min(len(templates), 10), ImageDraw.Draw(image), _font()
    for k, name in enumerate(class_names):
        y, x = _PAD + (k // ncols) * (h + _PAD), _PAD + (k % ncols) * (w + _PAD)
        # whole pixels, so that a name is drawn the same wherever it is
        draw.text(((2 * x + w) * _ZOOM // 2, (2 * (y + h) + _PAD) * _ZOOM // 2), name, "black",
                  font, "mm")
    return image


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """(C, C) int64 counts, rows = true class, columns = predicted class, on the inputs' device."""
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    if pred.shape != target.shape:
        raise ValueError(f"pred and target sizes differ: {pred.numel()} vs {target.numel()}")
    if pred.numel():
        # One host sync, but an out-of-range label would otherwise land silently in another cell.
        lo, hi = torch.stack(torch.cat([pred, target]).aminmax()).tolist()
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"labels must lie in [0, {num_classes}), found [{lo}, {hi}]")
    flat = target * num_classes + pred
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def confusion_figure(cm: Tensor, class_names: Sequence[str]) -> Image:
    """Heatmap of the row-normalised confusion matrix (rows = true class, colour = fraction of
    the row, from white to dark blue), the counts in the cells, class names on both axes, the
    accuracy in the title."""
    from PIL import Image, ImageDraw

    cm, c = torch.as_tensor(cm).detach().cpu().long(), len(class_names)
    if cm.shape != (c, c):
        raise ValueError(f"need a (C, C) matrix for {c} class names, got {tuple(cm.shape)}")
    frac = cm / cm.sum(1, keepdim=True).clamp_min(1)  # a class never seen: a row of zeros
    total, font = int(cm.sum()), _font()
    title = (f"accuracy {100 * int(cm.trace()) / max(total, 1):.1f}%  (n = {total});  "
             "colour: fraction of the true class")
    cell = max([36] + [round(font.getlength(str(n))) + 8 for n in cm.flatten().tolist()])
    names = max([0] + [round(font.getlength(name)) for name in class_names]) + 8
    left, top = names + 24, 32  # room for the row names and "true"; for the title
    image = Image.new("RGB", (max(left + c * cell + 12, round(font.getlength(title)) + 24),
                              top + c * cell + names + 30), "white")
    draw = ImageDraw.Draw(image)
    draw.text((image.width // 2, top // 2), title, "black", font, "mm")
    for i, row in enumerate(cm.tolist()):
        for j, count in enumerate(row):
            x, y, (r, g, b) = left + j * cell, top + i * cell, _blue(float(frac[i, j]))
            draw.rectangle((x, y, x + cell - 1, y + cell - 1), (r, g, b))
            # Black ink on pale cells, white on saturated ones (by the cell colour's luminance).
            ink = "white" if 0.299 * r + 0.587 * g + 0.114 * b < 128 else "black"
            draw.text((x + cell // 2, y + cell // 2), str(count), ink, font, "mm")
    for k, name in enumerate(class_names):
        middle = k * cell + cell // 2
        draw.text((left - 6, top + middle), name, "black", font, "rm")
        _paste_upright(image, name, font, (left + middle, top + c * cell + 6), "top")
    draw.text((left + c * cell // 2, image.height - 4), "predicted", "black", font, "md")
    _paste_upright(image, "true", font, (4, top + c * cell // 2), "left")
    return image


# The ends of matplotlib's "Blues" colour map
_PALE, _DARK = (247, 251, 255), (8, 48, 107)


def _blue(fraction: float) -> tuple[int, int, int]:
    return tuple(round(p + fraction * (d - p)) for p, d in zip(_PALE, _DARK))


def _font(size: int = 12):
    from PIL import ImageFont

    return ImageFont.load_default(size)  # Pillow's own font: nothing to find on the system


def _rgb(image: Tensor) -> Image:
    """A (3, H, W) float image in [0, 1] as a Pillow image."""
    from PIL import Image

    return Image.fromarray(image.mul(255).round().byte().permute(1, 2, 0).numpy())


def _paste_upright(image: Image, text: str, font, at: tuple[int, int], side: str) -> None:
    """``text`` written bottom to top, its top-centre (side "top") or left-middle at ``at``."""
    from PIL import Image, ImageDraw

    label = Image.new("L", (round(font.getlength(text)) + 2, 20))
    ImageDraw.Draw(label).text((1, label.height // 2), text, 255, font, "lm")
    label = label.rotate(90, expand=True)
    x, y = (at[0] - label.width // 2, at[1]) if side == "top" else (
        at[0], at[1] - label.height // 2)
    image.paste("black", (x, y), label)


def save_figure(fig: Figure | Image, path) -> None:
    """Write ``fig`` (a Pillow image, or a matplotlib Figure, which is closed) as PNG to ``path``
    (parent folders created). The PNG appears whole or not at all: it is written to a temporary
    file beside it, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    matplotlib = hasattr(fig, "savefig")
    try:
        write_atomic(path, lambda tmp: (fig.savefig if matplotlib else fig.save)(tmp, format="png"))
    finally:
        if matplotlib and fig.canvas.manager is not None:  # pyplot's: held on to until closed
            import matplotlib.pyplot as plt

            plt.close(fig)


def log_figure(writer, tag: str, image: Image, step: int) -> None:
    """A Pillow image (``template_figure``, ``confusion_figure``) under ``tag``."""
    writer.add_image(tag, np.asarray(image.convert("RGB")), step, dataformats="HWC")


# An epoch's row (train.train_epoch's, each sweep model's) -> its scalars' tags
EPOCH_SCALARS = {"loss/train": "train_loss", "loss/val": "val_loss", "loss/penalty": "penalty",
                 "accuracy/train": "train_accuracy", "accuracy/val": "val_accuracy", "lr": "lr"}


def log_epoch(writer, row: dict, model: nn.Module | None = None, image_shape=None,
              class_names: Sequence[str] = ()) -> None:
    """An epoch's scalars; with the model, its histograms and (a linear model of images) its
    class templates as one image (``templates``). The labelled figure is drawn once, at the end
    (``log_templates_figure``)."""
    for tag, key in EPOCH_SCALARS.items():
        if row[key] is not None and math.isfinite(row[key]):
            writer.add_scalar(tag, row[key], row["epoch"])
    if model is not None:
        log_epoch_histograms(writer, model, row["epoch"])
        if hasattr(model, "templates") and len(image_shape) == 3:
            writer.add_image("templates", template_grid(model.templates(image_shape)), row["epoch"])
    writer.flush()


def log_templates_figure(writer, model: nn.Module, image_shape, class_names: Sequence[str],
                         step: int) -> None:
    """The class templates with their names under them (``templates/labelled``), for a linear
    model of images; nothing for another model."""
    if hasattr(model, "templates") and len(image_shape) == 3:
        log_figure(writer, "templates/labelled",
                   template_figure(model.templates(image_shape), class_names), step)


def log_final(writer, config: dict, step: int, test_accuracy: float | None,
              metrics: dict) -> None:
    """The test accuracy (``accuracy/test``), and for the HPARAMS tab the run's hparams
    (``config``: its recipe, ``lintorch.config.recipe``) and final metrics
    (``hparam/test_accuracy`` and ``metrics``)."""
    if test_accuracy is not None:
        writer.add_scalar("accuracy/test", test_accuracy, step)
    log_hparams(writer, config, {
        "hparam/test_accuracy": math.nan if test_accuracy is None else test_accuracy, **metrics})


def log_epoch_histograms(writer, model: nn.Module, step: int) -> None:
    """Histogram of every parameter (``params/{name}``) and of its gradient (``grads/{name}``),
    in _BINS equal bins from the smallest value to the largest."""
    for name, p in model.named_parameters():
        for tag, values in ((f"params/{name}", p), (f"grads/{name}", p.grad)):
            if values is None or not values.numel():
                continue
            values = values.detach().reshape(-1).float().cpu()
            lo, hi = map(float, values.aminmax())
            if not (math.isfinite(lo) and math.isfinite(hi)):
                # A diverging run (too large a learning rate) yields inf/nan; keep the finite part
                # rather than crash the training loop.
                if not (values := values[values.isfinite()]).numel():
                    continue
                lo, hi = map(float, values.aminmax())
            # writer.add_histogram sorts the values in float64 into ~1,500 uneven bins: 15 ms an
            # epoch of CIFAR-10's linear model (0.3 s more on the ~0.8 s TensorBoard adds to its
            # default run), 55 ms of the MLP's (784x512 weights); torch.histc takes 1 and 9 ms.
            top = hi if hi > lo else lo + 1  # one value throughout (a bias at 0): the first bin
            limits = torch.linspace(lo, top, _BINS + 1)[1:].tolist()  # each bin's right edge
            v = values.double()
            writer.add_histogram_raw(tag, lo, hi, v.numel(), float(v.sum()), float(v @ v), limits,
                                     torch.histc(values, _BINS, lo, top).tolist(), step)


def log_hparams(writer, config: dict, metrics: dict, step: int | None = None) -> None:
    """``config`` and final ``metrics`` for the HPARAMS tab, in the writer's own run folder (its
    ``add_hparams`` would open a sub-folder per call). Values that are not int/float/str/bool
    become strings. Metric keys such as ``"hparam/test_accuracy"`` are also logged as scalars,
    where the tab reads their values: do not reuse a tag the training loop already logs."""
    from torch.utils.tensorboard.summary import hparams

    values = {str(k): float(v) for k, v in metrics.items()}
    for k, v in values.items():  # first: an add_* call reopens a writer that was closed
        writer.add_scalar(k, v, step)
    for summary in hparams({str(k): _hparam_value(v) for k, v in config.items()}, values):
        writer.file_writer.add_summary(summary, step)


def log_config_text(writer, config: dict, step: int | None = None) -> None:
    """The full config as a markdown table under the text tag ``config``."""
    rows = ["| key | value |", "|---|---|"]
    for k, v in config.items():
        value = v if isinstance(v, str) else json.dumps(v, default=str)
        rows.append(f"| {_md_escape(str(k))} | {_md_escape(value)} |")
    writer.add_text("config", "\n".join(rows), step)


def read_scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    """All scalars of the run in ``logdir`` (event files directly in it): tag -> [(step, value)]."""
    acc = _accumulator(logdir)
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def read_tags(logdir) -> dict:
    """``EventAccumulator.Tags()`` of ``logdir``'s run (text is "tensors": "<tag>/text_summary")."""
    return _accumulator(logdir).Tags()


def _accumulator(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # Size 0 keeps every event: the defaults silently subsample long runs.
    guidance = {k: 0 for k in ("scalars", "images", "audio", "histograms", "tensors",
                               "distributions", "compressedHistograms")}
    return EventAccumulator(str(logdir), size_guidance=guidance).Reload()


def _hparam_value(v):
    if isinstance(v, str):
        return printable(v)
    if isinstance(v, bool):
        return v
    if isinstance(v, Tensor) and v.numel() == 1:
        v = v.item()
    if isinstance(v, numbers.Integral):  # numpy ints too
        return int(v)
    return float(v) if isinstance(v, numbers.Real) else str(v)


def _md_escape(s: str) -> str:
    return printable(s).replace("|", "\\|").replace("\n", " ")
