"""TensorBoard logging and pictures: class templates, confusion matrices, decision regions.

Knows TensorBoard and images, nothing of the training loop. Pictures are drawn with torch and
Pillow only (no matplotlib), returned as (3, H, W) float tensors in [0, 1] on the CPU, ready for
``writer.add_image(tag, image, step)`` or :func:`save_png`.
"""

from __future__ import annotations

import functools
import json
import numbers
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor, nn

__all__ = [
    "PALETTE", "PALETTE_DARK", "confusion_image", "confusion_matrix", "grid_points",
    "log_config_text", "log_epoch_histograms", "log_hparams", "read_scalars", "read_tags",
    "region_image", "save_png", "template_grid",
]

# Paired light/strong colours (matplotlib's tab20 pairs, plus two): light ones fill decision
# regions, strong ones mark points and lines, so a point is visible on its own class's region.
# Stored as uint8 / 255 so colours survive a round trip through an 8-bit PIL image exactly.
PALETTE = torch.tensor([
    [174, 199, 232], [255, 187, 120], [152, 223, 138], [255, 152, 150], [197, 176, 213],
    [196, 156, 148], [247, 182, 210], [199, 199, 199], [219, 219, 141], [158, 218, 229],
    [255, 237, 160], [188, 189, 240],
], dtype=torch.uint8).float() / 255
PALETTE_DARK = torch.tensor([
    [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
    [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
    [204, 163, 0], [70, 70, 170],
], dtype=torch.uint8).float() / 255

_TEXT = (30, 30, 30)
_WHITE = (255, 255, 255)


# --- pictures -----------------------------------------------------------------------------------


def template_grid(
    templates: Tensor,
    class_names: Sequence[str] | None = None,
    scale: int = 4,
    ncols: int | None = None,
) -> Tensor:
    """The C class templates (C, 1 or 3, h, w) in [0, 1], e.g. ``LinearClassifier.templates``,
    side by side (at most ``ncols`` = 10 per row), upscaled by ``scale`` (nearest), with class
    names written under each tile. Returns (3, H, W) in [0, 1]."""
    tiles = templates.detach().cpu().float()
    if tiles.dim() != 4 or tiles.shape[1] not in (1, 3):
        raise ValueError(f"templates must be (C, 1 or 3, H, W), got {tuple(tiles.shape)}")
    if tiles.shape[1] == 1:
        tiles = tiles.expand(-1, 3, -1, -1)
    tiles = tiles.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    c, _, th, tw = tiles.shape
    names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
    if len(names) != c:
        raise ValueError(f"{len(names)} class names for {c} templates")
    ncols = ncols or min(c, 10)
    nrows = -(-c // ncols)

    font = _font(13)
    gap = 6
    # Columns widen to fit the longest name: a clipped class name is worse than a wider picture.
    col_w = max(tw, max(_text_size(n, font)[0] for n in names) + 4)
    label_h = _text_size("Ag", font)[1] + 6
    width = gap + ncols * (col_w + gap)
    height = gap + nrows * (th + label_h + gap)
    canvas = torch.ones(3, height, width)
    cells = []
    for k in range(c):
        x0 = gap + (k % ncols) * (col_w + gap)
        y0 = gap + (k // ncols) * (th + label_h + gap)
        xt = x0 + (col_w - tw) // 2
        canvas[:, y0:y0 + th, xt:xt + tw] = tiles[k]
        cells.append((x0, y0 + th, names[k]))

    img = _to_pil(canvas)
    draw = ImageDraw.Draw(img)
    for x0, y0, name in cells:
        _center_text(draw, (x0 + col_w / 2, y0 + label_h / 2), name, font)
    return _from_pil(img)


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """(C, C) int64 counts, rows = true class, columns = predicted class, on the inputs' device."""
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    if pred.shape != target.shape:
        raise ValueError(f"pred and target sizes differ: {pred.numel()} vs {target.numel()}")
    if pred.numel():
        # One host sync, but an out-of-range label would otherwise land silently in another cell.
        lo, hi = torch.stack([torch.minimum(pred.min(), target.min()),
                              torch.maximum(pred.max(), target.max())]).tolist()
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"labels must lie in [0, {num_classes}), found [{lo}, {hi}]")
    flat = target * num_classes + pred
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def confusion_image(cm: Tensor, class_names: Sequence[str], cell: int = 44) -> Tensor:
    """Heatmap of the row-normalised confusion matrix (rows = true class), counts in the cells,
    class names on both axes and the overall accuracy on top. Returns (3, H, W) in [0, 1]."""
    cm = cm.detach().cpu().long()
    c = cm.shape[0]
    if cm.shape != (c, c) or len(class_names) != c:
        raise ValueError(f"need a square matrix and one name per class, got {tuple(cm.shape)} "
                         f"and {len(class_names)} names")
    rows = cm.sum(dim=1, keepdim=True)
    frac = (cm.double() / rows.clamp_min(1)).float()
    colors = _blues(frac)  # (C, C, 3) in [0, 1]

    font, small = _font(13), _font(12)
    pad = 8
    label_w = max(_text_size(n, font)[0] for n in class_names)
    line_h = _text_size("Ag", font)[1]
    left = pad + line_h + pad + label_w + pad  # axis title, names, gap
    top = pad + line_h + pad                   # accuracy line
    bottom = pad + label_w + pad + line_h + pad
    width, height = left + c * cell + pad, top + c * cell + bottom

    img = Image.new("RGB", (width, height), _WHITE)
    draw = ImageDraw.Draw(img)
    total = int(cm.sum())
    acc = cm.diag().sum().item() / max(total, 1)
    _center_text(draw, (left + c * cell / 2, pad + line_h / 2),
                 f"accuracy {100 * acc:.1f}%  (n = {total})", font)
    for i in range(c):
        for j in range(c):
            x, y = left + j * cell, top + i * cell
            rgb = tuple(int(round(255 * v)) for v in colors[i, j].tolist())
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=rgb)
            # Text must stay readable on both pale and saturated cells.
            ink = _WHITE if _luminance(colors[i, j]) < 0.5 else _TEXT
            _center_text(draw, (x + cell / 2, y + cell / 2), str(int(cm[i, j])), small, ink)
    # Thin frame so empty (white) cells still read as a matrix.
    draw.rectangle([left - 1, top - 1, left + c * cell, top + c * cell], outline=(160, 160, 160))

    for i, name in enumerate(class_names):
        tw, _ = _text_size(name, font)
        ty = top + i * cell + cell / 2
        _center_text(draw, (left - pad - tw / 2, ty), name, font)
        # Column names are rotated so long names do not overlap; they end at the matrix edge.
        _paste_rotated_text(img, name, font, (left + i * cell + cell // 2, top + c * cell + pad))
    _center_text(draw, (left + c * cell / 2, height - pad - line_h / 2), "predicted", font)
    _paste_rotated_text(img, "true", font, (pad + line_h // 2, top + c * cell // 2), center=True)
    return _from_pil(img)


def grid_points(
    extent: tuple[float, float, float, float], height: int, width: int, device=None
) -> Tensor:
    """(height * width, 2) data coordinates of pixel centres, row-major, top row = ymax.

    This is the pixel convention of :func:`region_image`: evaluate the model on these points and
    reshape the predicted classes to (height, width).
    """
    xmin, xmax, ymin, ymax = extent
    xs = xmin + (torch.arange(width, device=device) + 0.5) * ((xmax - xmin) / width)
    ys = ymax - (torch.arange(height, device=device) + 0.5) * ((ymax - ymin) / height)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], dim=-1).reshape(-1, 2).float()


def region_image(
    grid_pred: Tensor,
    num_classes: int,
    extent: tuple[float, float, float, float] | None = None,
    points: Tensor | None = None,
    labels: Tensor | None = None,
    lines: Sequence[tuple[float, float, float]] | None = None,
) -> Tensor:
    """Decision regions of 2-D toy data: ``grid_pred[i, j]`` is the class at pixel (i, j), the
    top row being the largest y (see :func:`grid_points`). Region pixels get ``PALETTE[class]``.

    ``points`` (N, 2) in data coordinates are drawn as dots in ``PALETTE_DARK[label]`` (black
    when ``labels`` is None); each line ``(w1, w2, b)`` of ``lines`` is drawn where
    w1 * x + w2 * y + b = 0, line k in ``PALETTE_DARK[k]``. Both need ``extent`` =
    (xmin, xmax, ymin, ymax) to place them. Returns (3, H, W) in [0, 1].
    """
    grid = grid_pred.detach().cpu().long()
    if grid.dim() != 2:
        raise ValueError(f"grid_pred must be (H, W), got {tuple(grid.shape)}")
    if grid.numel() and (grid.min() < 0 or grid.max() >= num_classes):
        raise ValueError(f"grid_pred values must lie in [0, {num_classes})")
    image = PALETTE[grid % len(PALETTE)].permute(2, 0, 1).contiguous()
    if points is None and not lines:
        return image
    if extent is None:
        raise ValueError("extent=(xmin, xmax, ymin, ymax) is needed to draw points or lines")

    h, w = grid.shape
    xmin, xmax, ymin, ymax = (float(v) for v in extent)

    def to_px(x: float, y: float) -> tuple[float, float]:
        # -0.5: PIL puts pixel centres on integer coordinates, data pixels span [j, j + 1).
        return (x - xmin) / (xmax - xmin) * w - 0.5, (ymax - y) / (ymax - ymin) * h - 0.5

    img = _to_pil(image)
    draw = ImageDraw.Draw(img)
    for k, (w1, w2, b) in enumerate(lines or []):
        ends = _line_ends(float(w1), float(w2), float(b), (xmin, xmax, ymin, ymax))
        if ends is not None:
            draw.line([to_px(*ends[0]), to_px(*ends[1])], fill=_rgb(PALETTE_DARK, k), width=2)
    if points is not None:
        pts = points.detach().cpu().double().reshape(-1, 2).tolist()
        labs = labels.detach().cpu().reshape(-1).tolist() if labels is not None else None
        r = max(3.5, min(h, w) / 80)
        for n, (x, y) in enumerate(pts):
            u, v = to_px(x, y)
            fill = _rgb(PALETTE_DARK, int(labs[n])) if labs is not None else (0, 0, 0)
            draw.ellipse([u - r, v - r, u + r, v + r], fill=fill, outline=_WHITE)
    return _from_pil(img)


def save_png(image: Tensor, path) -> None:
    """Write a (3, H, W) or (1, H, W) or (H, W) image in [0, 1] as PNG (parent dirs created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _to_pil(image).save(path, format="PNG")


# --- TensorBoard --------------------------------------------------------------------------------


def log_epoch_histograms(writer, model: nn.Module, step: int) -> None:
    """Histogram of every parameter (``params/{name}``) and of its gradient (``grads/{name}``)."""
    for name, p in model.named_parameters():
        _add_histogram(writer, f"params/{name}", p, step)
        if p.grad is not None:
            _add_histogram(writer, f"grads/{name}", p.grad, step)


def log_hparams(writer, config: dict, metrics: dict, step: int | None = None) -> None:
    """Record ``config`` and final ``metrics`` for TensorBoard's HPARAMS tab, in the writer's own
    run folder (``writer.add_hparams`` would open a sub-folder per call, splitting one run in two).

    Values that are not int/float/str/bool become strings (None -> "None", lists, tuples...).
    Metric keys such as ``"hparam/test_accuracy"`` are also logged as scalars, which is where the
    tab reads their values from; do not reuse a tag the training loop already logs.
    """
    from torch.utils.tensorboard.summary import hparams

    hp = {str(k): _hparam_value(v) for k, v in config.items()}
    values = {str(k): float(v) for k, v in metrics.items()}
    exp, ssi, sei = hparams(hp, values)
    # _get_file_writer() rather than .file_writer: it reopens the file if the writer was closed.
    file_writer = writer._get_file_writer()
    for summary in (exp, ssi, sei):
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
    """``EventAccumulator.Tags()`` of the run in ``logdir``: {"scalars": [...], "images": [...],
    "histograms": [...], "tensors": [...] (text lands here as "<tag>/text_summary"), ...}."""
    return _accumulator(logdir).Tags()


# --- helpers ------------------------------------------------------------------------------------


def _accumulator(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # Size 0 keeps every event: the defaults silently subsample long runs.
    guidance = {k: 0 for k in ("scalars", "images", "audio", "histograms", "tensors",
                               "distributions", "compressedHistograms")}
    acc = EventAccumulator(str(logdir), size_guidance=guidance)
    acc.Reload()
    return acc


def _add_histogram(writer, tag: str, values: Tensor, step: int) -> None:
    values = values.detach().reshape(-1).float().cpu()
    # A diverging run (too large a learning rate) yields inf/nan, which numpy's histogram
    # rejects; keep the finite part rather than crash the training loop.
    values = values[torch.isfinite(values)]
    if values.numel():
        writer.add_histogram(tag, values, step)


def _hparam_value(v):
    if isinstance(v, (bool, str)):
        return v
    if isinstance(v, Tensor) and v.numel() == 1:
        v = v.item()
    if isinstance(v, numbers.Integral):  # numpy ints too
        return int(v)
    if isinstance(v, numbers.Real):
        return float(v)
    return str(v)


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


@functools.cache
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1 or no FreeType: small bitmap font
        return ImageFont.load_default()


def _text_size(text: str, font) -> tuple[int, int]:
    left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox(
        (0, 0), text, font=font)
    return right - left, bottom - top


def _center_text(draw, xy, text: str, font, fill=_TEXT) -> None:
    # Anchors work only with FreeType fonts, not with the old bitmap fallback.
    if isinstance(font, ImageFont.FreeTypeFont):
        draw.text(xy, text, fill=fill, font=font, anchor="mm")
    else:
        tw, th = _text_size(text, font)
        draw.text((xy[0] - tw / 2, xy[1] - th / 2), text, fill=fill, font=font)


def _paste_rotated_text(img, text: str, font, xy, center: bool = False) -> None:
    """Text rotated 90 degrees (reading upwards), horizontally centred on x; its top edge at y
    (``center``: its middle at y)."""
    tw, th = _text_size(text, font)
    mask = Image.new("L", (tw + 4, th + 6), 0)
    left, top, _, _ = ImageDraw.Draw(mask).textbbox((0, 0), text, font=font)
    ImageDraw.Draw(mask).text((2 - left, 3 - top), text, fill=255, font=font)
    mask = mask.rotate(90, expand=True)
    x, y = xy
    y0 = y - mask.height // 2 if center else y
    img.paste(_TEXT, (int(x - mask.width // 2), int(y0)), mask)


def _line_ends(w1: float, w2: float, b: float, extent) -> tuple | None:
    """Two points of w1*x + w2*y + b = 0 spanning the extent, or None for a degenerate line."""
    xmin, xmax, ymin, ymax = extent
    if abs(w2) >= abs(w1):
        if w2 == 0:
            return None
        return (xmin, -(w1 * xmin + b) / w2), (xmax, -(w1 * xmax + b) / w2)
    return (-(w2 * ymin + b) / w1, ymin), (-(w2 * ymax + b) / w1, ymax)


def _rgb(palette: Tensor, k: int) -> tuple[int, int, int]:
    return tuple(int(round(255 * v)) for v in palette[k % len(palette)].tolist())


def _blues(frac: Tensor) -> Tensor:
    """White -> mid blue -> dark blue colour map for values in [0, 1], shape (..., 3)."""
    stops = torch.tensor([[255, 255, 255], [107, 174, 214], [8, 48, 107]]).float() / 255
    t = frac.clamp(0, 1) * (len(stops) - 1)
    i = t.floor().long().clamp(max=len(stops) - 2)
    f = (t - i).unsqueeze(-1)
    return stops[i] * (1 - f) + stops[i + 1] * f


def _luminance(rgb: Tensor) -> float:
    return float(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])


def _to_pil(image: Tensor) -> Image.Image:
    image = image.detach().cpu().float()
    if image.dim() == 2:
        image = image.unsqueeze(0)
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W), (1, H, W) or (H, W), got {tuple(image.shape)}")
    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()
    return Image.fromarray(array.numpy())


def _from_pil(img: Image.Image) -> Tensor:
    return torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1).float() / 255
