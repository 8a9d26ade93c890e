"""The geometric viewpoint: hyperplanes cutting up space, on 2-D toy data of three classes.

    python experiments/geometric_2d.py

A linear classifier f(x) = Wx + b is trained with each loss (svm, softmax) by
``lintorch.train.train_model`` on toy points in the plane; its decision regions (argmax_k of
w_k . x + b_k) and its three hyperplanes w_k . x + b_k = 0 (one per row of W, drawn in the
colour of class k, with an arrow along w_k) are drawn by ``regions_figure`` below,
next to the regions of a sigmoid MLP trained on the same points. Each figure goes to
TensorBoard (runs/geometric_2d/<time>/<model>-<loss>, tag ``decision_regions``) and as
regions.png into that run folder; ``--figures`` (and every run without ``--quick``) also
writes experiments/figures/geometric_{linear_svm,linear_softmax,mlp}.png.

The toy classes are Gaussian clouds of different spreads, so the best boundary curves around
the tight cloud: a linear classifier can only cut the plane with straight lines, the MLP can bend.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from matplotlib import colormaps
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from torch import Tensor

from lintorch import board, cli, data
from lintorch.train import TrainConfig, train_model

import common

EXPERIMENT = "geometric_2d"
FIGURES = Path(__file__).resolve().parent / "figures"
CLASSES = ["class 0", "class 1", "class 2"]
# (centre, standard deviation along x and y) of each class's cloud
CLOUDS = [((0.0, 1.2), (0.45, 0.45)),
          ((-1.9, -0.9), (1.1, 0.8)),
          ((1.9, -0.9), (0.8, 1.1))]
EXTENT = (-4.5, 4.5, -4.0, 4.0)  # xmin, xmax, ymin, ymax of the pictures
RUNS = [  # (model, loss, figure name)
    ("linear", "svm", "geometric_linear_svm.png"),
    ("linear", "softmax", "geometric_linear_softmax.png"),
    ("mlp", "softmax", "geometric_mlp.png"),
]


# ---------------------------------------------------------------------------------------------
# The command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python experiments/geometric_2d.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    flags = cli.add_training_flags(p, only=("dataset", "data_root"), dataset=None)
    for flag in flags.values():  # taken so that every experiment takes the same flags
        flag.help = "unused here: the data are 2-D toy points"
    common.add_run_flags(p, "geometric_2d/<time>/<model>-<loss>")
    p.add_argument("--quick", action="store_true", help="fewer points and epochs (seconds)")
    p.add_argument("--figures", action="store_true",
                   help="also write the PNGs to --figures-dir (always done without --quick)")
    p.add_argument("--figures-dir", default=str(FIGURES), help="folder for --figures")
    p.add_argument("--size", type=int, default=None,
                   help="decision-region grid cells along y (default 300, --quick 120)")
    args = p.parse_args(argv)
    if args.size is None:
        args.size = 120 if args.quick else 300
    return args


# ---------------------------------------------------------------------------------------------
# Toy data, training, pictures


def toy_data(per_class: dict[str, int], seed: int) -> data.Prepared:
    """Three Gaussian clouds in the plane as a ``Prepared`` for ``train_model``: raw
    coordinates, no preprocessing (mean 0, std 1), so W acts on the plane as drawn."""
    gen = torch.Generator().manual_seed(seed)
    splits = {}
    for split, n in per_class.items():
        xs, ys = [], []
        for k, (centre, spread) in enumerate(CLOUDS):
            xs.append(torch.randn(n, 2, generator=gen) * torch.tensor(spread)
                      + torch.tensor(centre))
            ys.append(torch.full((n,), k, dtype=torch.long))
        order = torch.randperm(3 * n, generator=gen)
        splits[split] = (torch.cat(xs)[order], torch.cat(ys)[order])
    return data.Prepared(
        classes=list(CLASSES), image_shape=(2,),
        train_x=splits["train"][0], train_y=splits["train"][1],
        val_x=splits["val"][0], val_y=splits["val"][1],
        test_x=splits["test"][0], test_y=splits["test"][1],
        mean=torch.zeros(1, 2), std=torch.ones(1, 2))


def config(model: str, loss: str, quick: bool, seed: int, run_dir: Path) -> TrainConfig:
    # Every per-data-set field is set here, so `dataset` only names the defaults table.
    if model == "linear":
        recipe = dict(epochs=15 if quick else 60, batch_size=32, lr=0.1, lr_decay="cosine",
                      reg=1e-3)
    else:
        recipe = dict(epochs=40 if quick else 300, batch_size=32, lr=1.0, lr_decay="cosine",
                      reg=0.0, hidden=[32])
    return TrainConfig(dataset="fashion-mnist", model=model, loss=loss, preprocess="none",
                       device="cpu", seed=seed, logdir=str(run_dir), run_name=f"{model}-{loss}",
                       quiet=True, **recipe)


def regions_figure(predict: Callable[[Tensor], Tensor], extent: tuple[float, float, float, float],
                   points: Tensor | None = None, labels: Tensor | None = None,
                   lines: Sequence[tuple[float, float, float]] | None = None,
                   resolution: int = 200, title: str | None = None) -> Figure:
    """Decision regions of a classifier of 2-D points, at most 10 classes: ``predict`` maps (M, 2)
    float CPU points to their (M,) classes, under no_grad, on the centres of a grid ``resolution``
    cells high over ``extent`` = (xmin, xmax, ymin, ymax), and each cell takes the light colour of
    its class (tab20's pairs). ``points`` (N, 2) take the strong colour of their ``labels`` (or
    black). ``lines[k]`` = (w1, w2, b), the line w1 x + w2 y + b = 0, is drawn in the strong colour
    of class k, with an arrow along (w1, w2): toward the side where class k's score is positive."""
    xmin, xmax, ymin, ymax = (float(v) for v in extent)
    if not (xmin < xmax and ymin < ymax) or resolution < 1:
        raise ValueError(f"need xmin < xmax, ymin < ymax and resolution >= 1, got {extent}, "
                         f"{resolution}")
    pts = torch.zeros(0, 2) if points is None else points.detach().cpu().float()
    if pts.dim() != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must be (N, 2), got {tuple(pts.shape)}")
    if labels is not None:
        labels = labels.detach().cpu().reshape(-1).long()
        if len(labels) != len(pts):
            raise ValueError(f"{len(labels)} labels for {len(pts)} points")
        _check_classes(labels, "labels")
    lines = [tuple(map(float, line)) for line in lines or []]
    if len(lines) > 10:
        raise ValueError(f"{len(lines)} lines: there are colours for 10 classes")

    h, w = resolution, max(1, round(resolution * (xmax - xmin) / (ymax - ymin)))  # square cells
    # Cell centres, bottom row first as imshow(origin="lower") draws them.
    yy, xx = torch.meshgrid(torch.linspace(ymin, ymax, 2 * h + 1)[1::2],
                            torch.linspace(xmin, xmax, 2 * w + 1)[1::2], indexing="ij")
    with torch.no_grad():
        pred = torch.as_tensor(predict(torch.stack([xx, yy], -1).reshape(-1, 2))).cpu()
    if pred.numel() != h * w:
        raise ValueError(f"predict returned {tuple(pred.shape)} for {h * w} points")
    pred = pred.reshape(h, w).long()
    _check_classes(pred, "predicted classes")

    strong, light = colormaps["tab20"].colors[0::2], colormaps["tab20"].colors[1::2]
    title_h = 0.2 + 0.17 * title.count("\n") if title else 0  # inches
    fig = Figure(figsize=(5, 5 * h / w + title_h), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    # vmin/vmax put class k in the middle of the k-th of the 10 colours.
    ax.imshow(pred.numpy(), cmap=ListedColormap(light), vmin=-0.5, vmax=9.5, origin="lower",
              extent=(xmin, xmax, ymin, ymax), interpolation="nearest")
    for k, line in enumerate(lines):
        _draw_line(ax, line, strong[k], pts, 0.25 * min(xmax - xmin, ymax - ymin))
    if len(pts):
        colour = "black" if labels is None else [strong[k] for k in labels.tolist()]
        ax.scatter(pts[:, 0].numpy(), pts[:, 1].numpy(), c=colour, s=18, edgecolors="white",
                   linewidths=0.6, zorder=3)
    ax.set(xlim=(xmin, xmax), ylim=(ymin, ymax))
    if title:
        ax.set_title(title, loc="left", fontsize=9)
    return fig


def _check_classes(classes: Tensor, what: str) -> None:
    # Only 10 colour pairs: an 11th class would silently share class 0's colour.
    lo, hi = (int(classes.min()), int(classes.max())) if classes.numel() else (0, 0)
    if lo < 0 or hi > 9:
        raise ValueError(f"{what} must lie in [0, 10), found [{lo}, {hi}]")


def _draw_line(ax, line: tuple[float, float, float], colour, points: Tensor, step: float) -> None:
    """w1 x + w2 y + b = 0, and an arrow of length ``step`` / 2 along (w1, w2)."""
    w1, w2, b = line
    if (norm := (w1 * w1 + w2 * w2) ** 0.5) == 0:
        return
    u = torch.tensor([w1, w2]) / norm
    foot, along = -b / norm * u, torch.stack([-u[1], u[0]])  # foot: the point nearest the origin
    ax.axline(foot.tolist(), (foot + along).tolist(), color=colour, linewidth=2)
    # Lines of a classifier tend to cross near the data's centre, so the arrows start ``step``
    # away from the foot, on the side with fewer points around, where they hide nothing.
    starts = [foot + step * along, foot - step * along]
    start = min(starts, key=lambda p: int(((points - p).norm(dim=1) < step / 2).sum()))
    ax.annotate("", xy=(start + step / 2 * u).tolist(), xytext=start.tolist(),
                arrowprops=dict(arrowstyle="-|>", color=colour, linewidth=2, mutation_scale=15))


def picture(model: torch.nn.Module, d: data.Prepared, size: int, title: str,
            lines: list[tuple[float, float, float]] | None):
    """The model's decision regions with the test points; for the linear classifier also its
    hyperplanes, as a matplotlib Figure."""
    if lines:
        title += ("\n" r"lines: $w_k \cdot x + b_k = 0$, arrows: $w_k$ (toward $s_k > 0$),"
                  "\nin the colour of class k")
    else:
        title += "\nregions: argmax of the MLP's scores"
    return regions_figure(lambda x: model(x).argmax(1), EXTENT, points=d.test_x,
                                labels=d.test_y, lines=lines, resolution=size, title=title)


def run_one(model_name: str, loss: str, d: data.Prepared, args, run_dir: Path) -> dict:
    cfg = config(model_name, loss, args.quick, args.seed, run_dir)
    t0 = time.perf_counter()
    model, metrics = train_model(cfg, d)
    model.eval()
    lines = None
    if model_name == "linear":
        w, b = model.weight.detach(), model.bias.detach()
        lines = [(float(w[k, 0]), float(w[k, 1]), float(b[k])) for k in range(w.shape[0])]
    title = (f"{'linear classifier' if model_name == 'linear' else 'sigmoid MLP'}, {loss} loss: "
             f"test accuracy {100 * metrics['test']['accuracy']:.1f}%")
    fig = picture(model, d, args.size, title, lines)
    run_path = Path(metrics["run_dir"])
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(run_path)) as w:
        w.add_figure("decision_regions", fig, cfg.epochs, close=False)
    board.save_figure(fig, run_path / "regions.png")
    return {"model": model_name, "loss": loss, "epochs": cfg.epochs,
            "train_accuracy": metrics["train"]["accuracy"],
            "test_accuracy": metrics["test"]["accuracy"], "hyperplanes": lines,
            "png": str(run_path / "regions.png"), "seconds": time.perf_counter() - t0}


def tables(r: dict) -> list[str]:
    n = r["points"]
    rows = [[f"{k['model']} {k['loss']}", k["epochs"], f"{100 * k['train_accuracy']:.1f}%",
             f"{100 * k['test_accuracy']:.1f}%", f"{k['seconds']:.1f}s"] for k in r["runs"]]
    out = [common.format_table(
        f"Geometric viewpoint: 2-D toy data, 3 classes ({n['train']} train / {n['val']} val / "
        f"{n['test']} test points), trained with train_model",
        ["model loss", "epochs", "train acc", "test acc", "time"], rows)]
    rows = []
    for k in r["runs"]:
        for c, (w1, w2, b) in enumerate(k["hyperplanes"] or []):
            rows.append([f"{k['model']} {k['loss']}", CLASSES[c], f"{w1:+.3f}", f"{w2:+.3f}",
                         f"{b:+.3f}"])
    out.append(common.format_table("Hyperplanes w_k . x + b_k = 0: one per row of W",
                                   ["model loss", "class k", "w_k1", "w_k2", "b_k"], rows, left=2))
    return out


def main(argv: list[str] | None = None) -> dict:
    t0 = time.perf_counter()
    args = parse_args(argv)
    per_class = ({"train": 60, "val": 20, "test": 40} if args.quick
                 else {"train": 200, "val": 50, "test": 100})
    d = toy_data(per_class, args.seed)
    run_dir = common.run_dir(args.logdir, EXPERIMENT)
    # Toy tensors: handing each tiny step to a second thread costs more than it saves.
    with common.torch_threads(1):
        runs = [run_one(m, loss, d, args, run_dir) for m, loss, _ in RUNS]
    figures = []
    if args.figures or not args.quick:
        Path(args.figures_dir).mkdir(parents=True, exist_ok=True)
        for k, (_, _, name) in zip(runs, RUNS):
            path = Path(args.figures_dir) / name
            shutil.copyfile(k["png"], path)
            figures.append(str(path))
    r = {"points": {s: 3 * n for s, n in per_class.items()}, "runs": runs, "figures": figures}
    text = tables(r)
    print("\n\n".join(text))
    for k in runs:
        print(f"{k['model']} {k['loss']}: {k['png']}")
    for path in figures:
        print(f"figure: {path}")
    r["run_dir"] = str(run_dir)
    r["seconds"] = time.perf_counter() - t0
    print(f"\nTensorBoard events in {run_dir} ({r['seconds']:.1f}s)")
    return r


if __name__ == "__main__":
    main(sys.argv[1:])
