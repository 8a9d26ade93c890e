"""Learning-rate decay: a constant rate against step, exponential and cosine decay.

    python experiments/lr_decay.py --dataset fashion-mnist \\
        --data-root /usr/share/datasets/fashion-mnist

The lecture: gradient descent is guaranteed to converge under some conditions, "for example,
learning rate has to be appropriately reduced throughout training". With a constant rate,
mini-batch SGD keeps jumping around the minimum, as far as the rate times the noise of the
mini-batch gradients carries it; a decaying rate lets it settle.

A linear classifier is trained by ``lintorch.train.train_model`` from the same largish rate
(``--lr``, default 5x the data set's default rate) with each ``lr_decay`` schedule, stepped
once per epoch:

  none    constant rate
  step    x gamma every max(2, epochs/4) epochs, gamma chosen so that the last epoch runs at ~lr/100
  exp     x gamma every epoch, gamma = 0.01 ** (1 / (epochs - 1)): the last epoch at lr/100
  cosine  lr (1 + cos(pi t / epochs)) / 2: the last epoch at ~lr/100 for 20 epochs

and, as a baseline, a constant rate ten times smaller ("none lr/10"). The other settings are
the data set's defaults (DATASET_DEFAULTS in lintorch/train.py).

The table shows the convergence in numbers: the final training loss (the final W on all
training images), and how much the loss still fluctuates over the last ``--last`` epochs -- the
standard deviation of the epoch's mean training loss and of the validation loss measured after
each epoch (the latter a snapshot of the weights, so it shows the jumping most directly). The
cosine rate is still falling in the last epochs (at epoch 16 of 20 it is ~lr/7), so part of its
spread there is descent rather than noise.

Curves: one TensorBoard run per schedule in LOGDIR/lr_decay/<dataset>-<time>/<schedule>, with
what ``fit`` logs (``loss/train``, ``loss/val``, ``lr``, ...) to overlay.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from lintorch import cli, data
from lintorch.train import TrainConfig, train_model

import common

EXPERIMENT = "lr_decay"
SCHEDULES = ("none", "step", "exp", "cosine", "none lr/10")
FINAL_FACTOR = 0.01  # the step and exp schedules end at lr * FINAL_FACTOR


# ---------------------------------------------------------------------------------------------
# The command line and the data


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python experiments/lr_decay.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    common.add_data_flags(p)
    common.add_run_flags(p, "lr_decay/<dataset>-<time>/<schedule>", "limit", "loss")
    p.add_argument("--quick", action="store_true", help="few images and epochs (seconds)")
    common.add_compute_flags(p)
    p.add_argument("--lr", type=cli.positive(float), default=None,
                   help="initial rate of every schedule (default: 5x the data set's rate)")
    p.add_argument("--epochs", type=cli.positive(int), default=None,
                   help="epochs (default 20, --quick 4)")
    p.add_argument("--batch-size", type=cli.positive(int), default=None,
                   help="mini-batch size (default: the data set's)")
    p.add_argument("--last", type=int, default=None,
                   help="epochs at the end over which the fluctuation is measured "
                        "(default 5, --quick 2)")
    args = p.parse_args(argv)
    args.dataset = common.chosen_dataset(args)
    if args.epochs is None:
        args.epochs = 4 if args.quick else 20
    if args.limit is None and args.quick:
        args.limit = 1000
    if args.last is None:
        args.last = 2 if args.quick else 5
    if args.epochs < 2 or not 2 <= args.last <= args.epochs:
        p.error("need --epochs >= --last >= 2")
    return args


# ---------------------------------------------------------------------------------------------
# The runs


def schedule_config(schedule: str, lr: float, args) -> dict:
    """The TrainConfig fields of ``schedule`` starting from ``lr``."""
    epochs = args.epochs
    if schedule == "none lr/10":
        return dict(lr=lr / 10, lr_decay="none")
    if schedule == "step":
        step = max(2, epochs // 4)  # at least 2, so that step and exp differ in short runs
        drops = max(1, (epochs - 1) // step)  # decays before the last epoch starts
        return dict(lr=lr, lr_decay="step", lr_step=step, lr_gamma=FINAL_FACTOR ** (1 / drops))
    if schedule == "exp":
        return dict(lr=lr, lr_decay="exp", lr_gamma=FINAL_FACTOR ** (1 / (epochs - 1)))
    return dict(lr=lr, lr_decay=schedule)


def train_one(schedule: str, lr: float, d: data.Prepared, args, run_dir: Path) -> dict:
    cfg = TrainConfig(dataset=args.dataset, model="linear", loss=args.loss, epochs=args.epochs,
                      batch_size=args.batch_size, limit=d.train_x.shape[0], seed=args.seed,
                      device=args.device, logdir=str(run_dir),
                      run_name=schedule.replace(" ", "-").replace("/", "_"), quiet=True,
                      **schedule_config(schedule, lr, args))
    _, metrics = train_model(cfg, d)
    history = metrics["history"]
    last = history[-args.last:]
    return {"schedule": schedule, "lr": cfg.lr, "lr_decay": cfg.lr_decay,
            "lr_gamma": cfg.lr_gamma, "lr_step": cfg.lr_step, "final_lr": history[-1]["lr"],
            "train_loss": metrics["train"]["loss"],
            "train_loss_std": statistics.stdev(h["train_loss"] for h in last),
            "val_loss_std": statistics.stdev(h["val_loss"] for h in last),
            "train_loss_curve": [h["train_loss"] for h in history],
            "val_accuracy": metrics["val"]["accuracy"],
            "test_accuracy": metrics["test"]["accuracy"], "run_dir": metrics["run_dir"]}


def table(r: dict) -> str:
    rows = [[k["schedule"], f"{k['lr']:.3g}", f"{k['final_lr']:.3g}", f"{k['train_loss']:.4f}",
             f"{k['train_loss_std']:.4f}", f"{k['val_loss_std']:.4f}",
             f"{100 * k['val_accuracy']:.1f}%", f"{100 * k['test_accuracy']:.1f}%"]
            for k in r["runs"]]
    title = (f"Learning-rate decay on {r['dataset']}: linear classifier, {r['loss']} loss, "
             f"{r['train_images']} training images, batch {r['batch_size']}, {r['epochs']} "
             f"epochs.\nfinal lr: the rate of the last epoch; train loss: the final W on the "
             f"training images; std: over the last {r['last']} epochs, of the epoch's mean "
             f"training loss and of the validation loss after each epoch.")
    return common.format_table(title, ["schedule", "lr", "final lr", "train loss", "std train loss",
                                       "std val loss", "val acc", "test acc"], rows)


def main(argv: list[str] | None = None) -> dict:
    t0 = time.perf_counter()
    args = parse_args(argv)
    defaults = TrainConfig(dataset=args.dataset, model="linear", loss=args.loss).resolved()
    lr = args.lr if args.lr is not None else 5 * defaults.lr
    args.batch_size = args.batch_size or defaults.batch_size
    d = common.load_prepared(args, args.limit)
    name = data.short_name(args.dataset)  # a path never goes into a folder name or a title
    run_dir = common.run_dir(args.logdir, EXPERIMENT, name)
    with common.torch_threads(args.threads):
        runs = [train_one(s, lr, d, args, run_dir) for s in SCHEDULES]
    r = {"dataset": name, "loss": args.loss, "train_images": d.train_x.shape[0],
         "batch_size": args.batch_size, "epochs": args.epochs, "last": args.last, "runs": runs}
    print(table(r))
    const = runs[0]
    best = min(runs[1:4], key=lambda k: k["train_loss"])
    print(f"Constant rate {const['lr']:.3g}: final train loss {const['train_loss']:.4f}, "
          f"std {const['train_loss_std']:.4f} over the last {args.last} epochs; best decayed "
          f"({best['schedule']}): {best['train_loss']:.4f}, std {best['train_loss_std']:.4f}.")
    r["run_dir"] = str(run_dir)
    r["seconds"] = time.perf_counter() - t0
    print(f"\nCurves: tensorboard --logdir {run_dir} ({r['seconds']:.1f}s)")
    return r


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except data.DataError as e:
        sys.exit(f"error: {e}")
