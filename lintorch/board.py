"""What a run shows in TensorBoard, knowing nothing of the training loop: scalars, histograms,
hparams, and figures of the class templates and the confusion matrix. The figures are
pyplot-free ``matplotlib.figure.Figure`` objects (no backend to select, safe in threads);
matplotlib is imported inside the functions, saving ~0.3 s per import of lintorch."""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .files import printable, write_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["confusion_figure", "confusion_matrix", "log_config_text", "log_epoch",
           "log_epoch_histograms", "log_final", "log_hparams", "log_templates_figure",
           "read_scalars", "read_tags", "save_figure", "template_figure", "template_grid"]

_DPI = 100
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
    # torchvision's make_grid layout (white padding), written out: importing it takes 1.1 s,
    # more than all else TensorBoard adds to a default run (~0.8 s).
    grid = torch.ones(3, -(-c // ncols) * (h + pad) + pad, ncols * (w + pad) + pad)
    for k, tile in enumerate(tiles):
        y, x = pad + (k // ncols) * (h + pad), pad + (k % ncols) * (w + pad)
        grid[:, y:y + h, x:x + w] = tile  # a grey tile broadcasts to RGB
    return grid


def template_figure(templates: Tensor, class_names: Sequence[str]) -> Figure:
    """``template_grid`` of the templates with each class name under its tile."""
    from matplotlib.figure import Figure

    if len(class_names) != len(templates):
        raise ValueError(f"{len(class_names)} class names for {len(templates)} templates")
    grid = template_grid(templates, _PAD).permute(1, 2, 0)
    _, _, h, w = templates.shape
    ncols = min(len(templates), 10)
    # The axes fill the figure, so that one template pixel is exactly _ZOOM screen pixels.
    fig = Figure(figsize=(grid.shape[1] * _ZOOM / _DPI, grid.shape[0] * _ZOOM / _DPI), dpi=_DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    for k, name in enumerate(class_names):
        y, x = _PAD + (k // ncols) * (h + _PAD), _PAD + (k % ncols) * (w + _PAD)
        # Pixel (i, j) is centred on data coordinates (j, i); the name sits in the padding below.
        ax.text(x + (w - 1) / 2, y + h + (_PAD - 1) / 2, name, ha="center", va="center", fontsize=9)
    ax.imshow(grid.numpy(), interpolation="nearest", vmin=0, vmax=1)
    ax.set_axis_off()
    return fig


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


def confusion_figure(cm: Tensor, class_names: Sequence[str]) -> Figure:
    """Heatmap of the row-normalised confusion matrix (rows = true class, colour = fraction of
    the row), the counts in the cells, class names on both axes, the accuracy in the title."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    cm, c = torch.as_tensor(cm).detach().cpu().long(), len(class_names)
    if cm.shape != (c, c):
        raise ValueError(f"need a (C, C) matrix for {c} class names, got {tuple(cm.shape)}")
    frac = cm / cm.sum(1, keepdim=True).clamp_min(1)  # a class never seen: a row of zeros
    total, cmap = int(cm.sum()), colormaps["Blues"]
    fig = Figure(figsize=(2.5 + 0.5 * c, 2 + 0.5 * c), dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(frac.numpy(), cmap=cmap, vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="fraction of the true class", shrink=0.8)
    for i, row in enumerate(cm.tolist()):
        for j, count in enumerate(row):
            r, g, b, _ = cmap(float(frac[i, j]))
            # Black ink on pale cells, white on saturated ones (by the cell colour's luminance).
            ink = "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black"
            ax.text(j, i, str(count), ha="center", va="center", color=ink, fontsize=8)
    ax.set_xticks(range(c), class_names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(c), class_names)
    accuracy = int(cm.trace()) / max(total, 1)
    ax.set(xlabel="predicted", ylabel="true",
           title=f"accuracy {100 * accuracy:.1f}%  (n = {total})")
    return fig


def save_figure(fig: Figure, path) -> None:
    """Write ``fig`` as PNG to ``path`` (parent folders created) and close it. The PNG appears
    whole or not at all: it is written to a temporary file beside it, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_atomic(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        if fig.canvas.manager is not None:  # made by pyplot, which holds on to it until closed
            import matplotlib.pyplot as plt

            plt.close(fig)


# An epoch's row (train.train_epoch's, each sweep model's) -> its scalars' tags
EPOCH_SCALARS = {"loss/train": "train_loss", "loss/val": "val_loss", "loss/penalty": "penalty",
                 "accuracy/train": "train_accuracy", "accuracy/val": "val_accuracy", "lr": "lr"}


def log_epoch(writer, row: dict, model: nn.Module | None = None, image_shape=None,
              class_names: Sequence[str] = ()) -> None:
    """An epoch's scalars; with the model, its histograms and (a linear model of images) its
    class templates as one image (``templates``): 3 ms, where drawing the labelled figure
    (``log_templates_figure``, once at the end) takes ~50 ms, 1 s of CIFAR-10's 20 epochs."""
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
        writer.add_figure("templates/labelled", template_figure(model.templates(image_shape),
                                                                class_names), step)


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
    # _get_file_writer() rather than .file_writer: it reopens the file if the writer was closed.
    file_writer = writer._get_file_writer()
    for summary in hparams({str(k): _hparam_value(v) for k, v in config.items()}, values):
        file_writer.add_summary(summary, step)
    for k, v in values.items():
        writer.add_scalar(k, v, step)


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
