"""Losses and models: the SVM against the softmax loss, the linear classifier against sigmoid
MLPs of depth 1 to 3, and the linear classifier's class templates.

    python experiments/losses_and_models.py --dataset fashion-mnist \\
        --data-root /usr/share/datasets/fashion-mnist

Each model is trained by ``lintorch.train.train_model`` on the same ``--limit`` training images
for ``--epochs`` epochs, its other settings (rate, batch size, decay, penalty) being the data
set's defaults for that model and loss (DATASET_DEFAULTS in lintorch/train.py):

  linear svm      f = Wx + b, multiclass hinge loss
  linear softmax  f = Wx + b, cross-entropy
  mlp-1 .. mlp-3  f = W_k sigma(... sigma(W_1 x + b_1) ...) + b_k with hidden layers
                  512 / 512-256 / 512-256-128 (--quick: 32 / 32-16 / 32-16-8), cross-entropy

The visual viewpoint: each row of the linear classifier's W, reshaped to the image's shape, is a
template of its class. The templates of both linear runs go to TensorBoard (image ``templates``
of the run, logged by ``fit`` every epoch), to templates.png in the run folder and -- with
``--figures``, or always without ``--quick`` -- to
experiments/figures/templates_<dataset>_<loss>.png.

Runs: LOGDIR/losses_and_models/<dataset>-<time>/<model>-<loss>.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from lintorch import board, cli, data
from lintorch.train import TrainConfig, train_model

import common

EXPERIMENT = "losses_and_models"
FIGURES = Path(__file__).resolve().parent / "figures"
HIDDEN = [[512], [512, 256], [512, 256, 128]]
HIDDEN_QUICK = [[32], [32, 16], [32, 16, 8]]


# ---------------------------------------------------------------------------------------------
# The command line and the data


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python experiments/losses_and_models.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    common.add_data_flags(p)
    common.add_run_flags(p, "losses_and_models/<dataset>-<time>/<model>-<loss>", "limit")
    p.add_argument("--quick", action="store_true",
                   help="few images, one epoch, tiny MLPs (seconds)")
    common.add_compute_flags(p)
    p.add_argument("--epochs", type=cli.positive(int), default=None,
                   help="epochs of every model (default 10, --quick 1)")
    p.add_argument("--figures", action="store_true",
                   help="also write the template PNGs to --figures-dir (always done without "
                        "--quick)")
    p.add_argument("--figures-dir", default=str(FIGURES), help="folder for --figures")
    args = p.parse_args(argv)
    args.dataset = common.chosen_dataset(args)
    if args.epochs is None:
        args.epochs = 1 if args.quick else 10
    if args.limit is None and args.quick:
        args.limit = 1000
    return args


# ---------------------------------------------------------------------------------------------
# The runs


def runs(quick: bool) -> list[tuple[str, str, list[int] | None]]:
    """(name, loss, hidden sizes or None for the linear classifier) of each run."""
    hidden = HIDDEN_QUICK if quick else HIDDEN
    return ([("linear", "svm", None), ("linear", "softmax", None)]
            + [(f"mlp-{len(h)}", "softmax", h) for h in hidden])


def train_one(name: str, loss: str, hidden: list[int] | None, d: data.Prepared, args,
              run_dir: Path) -> dict:
    cfg = TrainConfig(dataset=args.dataset, model="linear" if hidden is None else "mlp",
                      hidden=hidden, loss=loss, epochs=args.epochs, limit=d.train_x.shape[0],
                      seed=args.seed, device=args.device, logdir=str(run_dir),
                      run_name=f"{name}-{loss}", quiet=True)
    t0 = time.perf_counter()
    model, metrics = train_model(cfg, d)
    seconds = time.perf_counter() - t0
    c = metrics["config"]
    r = {"model": name, "loss": loss, "hidden": hidden,
         "parameters": sum(p.numel() for p in model.parameters()), "epochs": c["epochs"],
         "batch_size": c["batch_size"], "lr": c["lr"], "lr_decay": c["lr_decay"],
         "reg": c["reg"], "train_accuracy": metrics["train"]["accuracy"],
         "val_accuracy": metrics["val"]["accuracy"], "test_accuracy": metrics["test"]["accuracy"],
         "seconds": seconds, "run_dir": metrics["run_dir"]}
    if hidden is None:
        r["templates_png"] = str(Path(metrics["run_dir"]) / "templates.png")
        board.save_figure(board.template_figure(model.templates(d.image_shape), d.classes),
                          r["templates_png"])
    return r


def table(r: dict) -> str:
    rows = [[k["model"], k["loss"], "-".join(map(str, k["hidden"])) if k["hidden"] else "-",
             f"{k['parameters']:,}", k["batch_size"], f"{k['lr']:g}", k["lr_decay"],
             f"{k['reg']:g}", f"{100 * k['train_accuracy']:.1f}%",
             f"{100 * k['val_accuracy']:.1f}%", f"{100 * k['test_accuracy']:.1f}%",
             f"{k['seconds']:.1f}s"] for k in r["runs"]]
    title = (f"Losses and models on {r['dataset']}: {r['train_images']} training images, "
             f"{r['runs'][0]['epochs']} epochs each; batch, rate, decay and penalty: the data "
             f"set's defaults per model and loss.")
    header = ["model", "loss", "hidden", "parameters", "batch", "lr", "decay", "reg", "train acc",
              "val acc", "test acc", "time"]
    return common.format_table(title, header, rows, left=3)


def main(argv: list[str] | None = None) -> dict:
    t0 = time.perf_counter()
    args = parse_args(argv)
    d = common.load_prepared(args, args.limit)
    dataset = data.short_name(args.dataset)  # a path never goes into a file name or a title
    run_dir = common.run_dir(args.logdir, EXPERIMENT, dataset)
    with common.torch_threads(args.threads):
        results = [train_one(name, loss, hidden, d, args, run_dir)
                   for name, loss, hidden in runs(args.quick)]
    figures = []
    if args.figures or not args.quick:
        Path(args.figures_dir).mkdir(parents=True, exist_ok=True)
        for k in results:
            if "templates_png" in k:
                path = Path(args.figures_dir) / f"templates_{dataset}_{k['loss']}.png"
                shutil.copyfile(k["templates_png"], path)
                figures.append(str(path))
    r = {"dataset": dataset, "train_images": d.train_x.shape[0], "runs": results,
         "figures": figures}
    print(table(r))
    for k in results:
        if "templates_png" in k:
            print(f"templates, linear {k['loss']}: {k['templates_png']}")
    for path in figures:
        print(f"figure: {path}")
    r["run_dir"] = str(run_dir)
    r["seconds"] = time.perf_counter() - t0
    print(f"\nCurves and templates: tensorboard --logdir {run_dir} ({r['seconds']:.1f}s)")
    return r


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except data.DataError as e:
        sys.exit(f"error: {e}")
