"""Full-batch gradient descent against mini-batch SGD, at equal epochs and at equal time.

    python experiments/batch_vs_minibatch.py --dataset fashion-mnist \\
        --data-root /usr/share/datasets/fashion-mnist

The lecture: "often, we only compute the gradients across a small subset of data" -- full-batch
gradient descent averages the loss over all N training examples before each step, mini-batch
gradient descent over M of them, so it takes N / M steps for the cost of one full-batch step.
A linear classifier is trained by ``lintorch.train.train_model`` on the same ``--limit``
training images with batch size N (full batch) and with each of ``--batch-sizes``, the other
settings being the data set's defaults (DATASET_DEFAULTS in lintorch/train.py; ``--lr`` to
override the rate):

1. equal epochs: every batch size gets ``--epochs`` passes over the data;
2. equal time: every batch size gets the training time T that the slowest one (per epoch)
   took in 1: it runs round(T / its epoch time) epochs (at most ``--max-epochs``), its epoch
   time being the median of its epochs in 1. Where that is the epoch count of 1, the run of 1 is
   reused (same settings, same seed, same result). ``--time-budget`` sets T instead.

Time is training time as ``fit`` records it per epoch (``epoch_time_s``: the steps and the
epoch's validation pass; checkpoints and TensorBoard logging excluded). On a busy machine the
measured epoch times vary, so the equal-time runs only approximately get T: the table shows what
each one actually took.

Curves: one TensorBoard run per (batch size, epochs) in
LOGDIR/batch_vs_minibatch/<dataset>-<time>/b<batch>-e<epochs>, with what ``fit`` logs (step =
epoch) and ``vs_train_ms/accuracy_val``, ``vs_train_ms/loss_train`` with step = training time
in milliseconds, to overlay the runs on a common time axis.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from lintorch import cli, data
from lintorch.train import TrainConfig, train_model

import common

EXPERIMENT = "batch_vs_minibatch"


# ---------------------------------------------------------------------------------------------
# The command line and the data


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python experiments/batch_vs_minibatch.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    common.add_data_flags(p)
    common.add_run_flags(p, "batch_vs_minibatch/<dataset>-<time>/b<batch>-e<epochs>", "limit",
                         "loss")
    p.add_argument("--quick", action="store_true", help="few images and epochs (seconds)")
    common.add_compute_flags(p)
    count = cli.positive(int)
    p.add_argument("--batch-sizes", type=count, nargs="+", default=None,
                   help="mini-batch sizes; full batch (N = --limit) is always added "
                        "(default 32 256 2048, --quick 16 128)")
    p.add_argument("--epochs", type=count, default=None,
                   help="epochs of the equal-epochs runs (default 10, --quick 2)")
    p.add_argument("--time-budget", type=cli.positive(float), default=None,
                   help="seconds of training each equal-time run gets (default: what the "
                        "slowest batch size took at equal epochs)")
    p.add_argument("--max-epochs", type=count, default=None,
                   help="cap on the epochs of an equal-time run (default 500, --quick 10)")
    p.add_argument("--lr", type=cli.positive(float), default=None,
                   help="learning rate of every run (default: the data set's)")
    args = p.parse_args(argv)
    args.dataset = common.chosen_dataset(args)
    if args.batch_sizes is None:
        args.batch_sizes = [16, 128] if args.quick else [32, 256, 2048]
    if args.limit is None and args.quick:
        args.limit = 1000
    if args.epochs is None:
        args.epochs = 2 if args.quick else 10
    if args.max_epochs is None:
        args.max_epochs = 10 if args.quick else 500
    return args


# ---------------------------------------------------------------------------------------------
# The runs


def train_one(batch_size: int, epochs: int, d: data.Prepared, args, run_dir: Path) -> dict:
    n = d.train_x.shape[0]
    cfg = TrainConfig(dataset=args.dataset, model="linear", loss=args.loss, epochs=epochs,
                      batch_size=batch_size, lr=args.lr, limit=n, seed=args.seed,
                      device=args.device, logdir=str(run_dir),
                      run_name=f"b{batch_size}-e{epochs}", quiet=True)
    _, metrics = train_model(cfg, d)
    history = metrics["history"]
    seconds = [h["epoch_time_s"] for h in history]
    with SummaryWriter(metrics["run_dir"]) as w:
        elapsed = 0.0
        for h in history:
            elapsed += h["epoch_time_s"]
            w.add_scalar("vs_train_ms/accuracy_val", h["val_accuracy"], round(1000 * elapsed))
            w.add_scalar("vs_train_ms/loss_train", h["train_loss"], round(1000 * elapsed))
    steps_per_epoch = -(-n // batch_size)
    return {"batch_size": batch_size, "full_batch": batch_size == n, "epochs": epochs,
            "steps": epochs * steps_per_epoch, "train_seconds": sum(seconds),
            "epoch_seconds": statistics.median(seconds),
            "train_loss": metrics["train"]["loss"], "val_accuracy": metrics["val"]["accuracy"],
            "test_accuracy": metrics["test"]["accuracy"], "lr": metrics["config"]["lr"],
            "lr_decay": metrics["config"]["lr_decay"], "run_dir": metrics["run_dir"]}


def table(r: dict) -> str:
    rows = []
    for regime in ("equal-epochs", "equal-time"):
        for k in r[regime]:
            batch = f"full={k['batch_size']}" if k["full_batch"] else str(k["batch_size"])
            epochs = f"{k['epochs']}*" if k.get("capped") else k["epochs"]
            rows.append([regime, batch, epochs, k["steps"], f"{k['train_seconds']:.1f}",
                         f"{k['train_loss']:.4f}", f"{100 * k['val_accuracy']:.1f}%",
                         f"{100 * k['test_accuracy']:.1f}%"])
    k = r["equal-epochs"][0]
    title = (f"Full-batch gradient descent against mini-batch SGD on {r['dataset']}: linear "
             f"classifier, {r['loss']} loss, N = {r['train_images']} training images, lr "
             f"{k['lr']:g} ({k['lr_decay']} decay).\nequal-epochs: {r['epochs']} epochs each; "
             f"equal-time: {r['time_budget_s']:.1f} s of training each ({r['time_note']}).\n"
             f"train s: the epochs' measured time (steps + validation pass); train loss: the "
             f"final W on the N training images.")
    header = ["regime", "batch", "epochs", "steps", "train s", "train loss", "val acc", "test acc"]
    text = common.format_table(title, header, rows, left=2)
    if any(k.get("capped") for k in r["equal-time"]):
        text += f"\n* capped at --max-epochs {r['max_epochs']}: less than the time budget"
    return text


def main(argv: list[str] | None = None) -> dict:
    t0 = time.perf_counter()
    args = parse_args(argv)
    d = common.load_prepared(args, args.limit)
    n = d.train_x.shape[0]
    sizes = sorted({b for b in args.batch_sizes if b < n}) + [n]
    name = data.short_name(args.dataset)  # a path never goes into a folder name or a title
    run_dir = common.run_dir(args.logdir, EXPERIMENT, name)
    with common.torch_threads(args.threads):
        equal_epochs = [train_one(b, args.epochs, d, args, run_dir) for b in sizes]
        slowest = max(equal_epochs, key=lambda k: k["epoch_seconds"])
        if args.time_budget is not None:
            budget, note = args.time_budget, "--time-budget"
        else:
            budget = args.epochs * slowest["epoch_seconds"]
            note = (f"batch {slowest['batch_size']}'s {args.epochs} epochs of "
                    f"{slowest['epoch_seconds']:.3f} s")
        equal_time = []
        for k in equal_epochs:
            epochs = max(1, round(budget / k["epoch_seconds"]))
            capped = epochs > args.max_epochs
            epochs = min(epochs, args.max_epochs)
            same = epochs == args.epochs and args.time_budget is None
            run = k if same else train_one(k["batch_size"], epochs, d, args, run_dir)
            equal_time.append({**run, "capped": capped})
    r = {"dataset": name, "loss": args.loss, "train_images": n, "epochs": args.epochs,
         "time_budget_s": budget, "time_note": note, "max_epochs": args.max_epochs,
         "equal-epochs": equal_epochs, "equal-time": equal_time}
    print(table(r))
    r["run_dir"] = str(run_dir)
    r["seconds"] = time.perf_counter() - t0
    print(f"\nCurves (step = epoch, or training ms under vs_train_ms/): tensorboard --logdir "
          f"{run_dir} ({r['seconds']:.1f}s)")
    return r


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except data.DataError as e:
        sys.exit(f"error: {e}")
