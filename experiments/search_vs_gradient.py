"""Search against gradient: random search, random local search, a genetic algorithm and
mini-batch SGD, each given the same budget of loss evaluations.

    python experiments/search_vs_gradient.py --dataset fashion-mnist \\
        --data-root /usr/share/datasets/fashion-mnist

The lecture: given a model and a loss, finding the best weights is a search problem, with three
classes of methods -- random search, genetic algorithms (population-based search) and
gradient-based optimization, the last being dominant. Here each trains the same linear
classifier s = Wx + b on the same data set with the same number of loss evaluations.

Accounting. One loss evaluation is the loss of one weight matrix W on ``--batch-size`` (256)
training images:
  * the searches (``lintorch.search``) score each candidate W on one fixed subset of that many
    training images (the first of the shuffled training split), one evaluation per candidate;
  * SGD (``lintorch.train.train_model``) takes one step per evaluation, on a fresh mini-batch of
    that size. Its backward pass (about twice the arithmetic of the forward pass) is not counted,
    so in arithmetic SGD spends ~3x more per evaluation: the line under the table gives its
    validation accuracy at a third of the budget, where the arithmetic is equal.
SGD runs ``epochs x steps_per_epoch = budget`` steps over the first ``steps_per_epoch x
batch_size`` training images, ``epochs`` being the smallest divisor of the budget of at least 10
(so that its curve has 10 points). The searches minimise the data loss alone, so SGD runs without
a penalty (reg 0); its other settings are the data set's defaults (DATASET_DEFAULTS in
lintorch/train.py). Every final W is then measured on the whole training split, the validation
split and the test set (not counted in the budget).

Curves: one TensorBoard run per method in LOGDIR/search_vs_gradient/<dataset>-<time>/<method>,
tags ``vs_evaluations/loss`` (best loss so far, on the data it was measured on),
``vs_evaluations/accuracy_train`` (accuracy on that data) and ``vs_evaluations/accuracy_val``,
with step = loss evaluations used. A search's validation points come from rerunning it with
smaller budgets from the same seed: the searches draw their random numbers in the same order
whatever the budget, so a budget that ends on a step boundary reproduces the state of the full
run at that point. SGD's points are its epochs (its run folder also holds what ``fit`` logs,
with step = epoch).

Anchors: the CS231n course notes report CIFAR-10 test accuracies of 15.5% for random search
(best of 1000 random W) and 21.4% for random local search (1000 tries), with the SVM loss on the
whole training set for each try. They are printed beside the measurements; Fashion-MNIST is the
easier data set, so its numbers are higher.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter

from lintorch import append_ones, board, cli, data, search
from lintorch.losses import loss_fn as data_loss_fn
from lintorch.models import LinearClassifier
from lintorch.train import TrainConfig, evaluate, train_model

import common

EXPERIMENT = "search_vs_gradient"
METHODS = ("random search", "random local search", "genetic algorithm", "sgd")
# CS231n notes, "Optimization": CIFAR-10 test accuracy with the SVM loss, 1000 tries each.
ANCHORS = {"random search": 0.155, "random local search": 0.214}
# The searches' settings, chosen on the Fashion-MNIST validation split at the default budget.
# Random search: candidates are scored 100 at a time (one batch), which changes nothing else.
RANDOM_SEARCH = dict(population=100, scale=1e-3)
# Local search: one try per step, as in the notes; bigger steps overshoot on standardised pixels.
LOCAL_SEARCH = dict(population=1, step_size=1e-3)
# A small population leaves room for ~50 generations in 1000 evaluations.
GENETIC = dict(population=20, elite=2, mutation_std=1e-2, crossover="uniform",
               selection="tournament")
MIN_SGD_EPOCHS = 10  # points on SGD's curve


# ---------------------------------------------------------------------------------------------
# The command line and the data


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python experiments/search_vs_gradient.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    common.add_data_flags(p)
    flags = common.add_run_flags(p, "search_vs_gradient/<dataset>-<time>/<method>", "loss",
                                 loss="svm")
    flags["loss"].help += "; every method minimises it (the notes' anchors use svm)"
    p.add_argument("--quick", action="store_true",
                   help="a tiny budget on a few images (seconds)")
    common.add_compute_flags(p)
    p.add_argument("--budget", type=cli.positive(int), default=None,
                   help="loss evaluations per method (default 1000, --quick 60)")
    p.add_argument("--batch-size", type=cli.positive(int), default=None,
                   help="images per loss evaluation (default 256, --quick 32)")
    args = p.parse_args(argv)
    args.dataset = common.chosen_dataset(args)
    if args.budget is None:
        args.budget = 60 if args.quick else 1000
    if args.batch_size is None:
        args.batch_size = 32 if args.quick else 256
    return args


def load_data(args: argparse.Namespace) -> data.Prepared:
    d = common.load_prepared(args, limit=2000 if args.quick else None)
    if d.train_x.shape[0] < args.batch_size:
        raise data.DataError(f"--batch-size {args.batch_size} exceeds the "
                             f"{d.train_x.shape[0]} training images")
    return d


# ---------------------------------------------------------------------------------------------
# The methods


def run_search(method: str, x1: Tensor, y: Tensor, num_classes: int, budget: int, loss: str,
               seed: int) -> search.SearchResult:
    gen = torch.Generator(device=x1.device).manual_seed(seed)
    if method == "random search":
        return search.random_search(x1, y, num_classes, budget, loss=loss, generator=gen,
                                    **RANDOM_SEARCH)
    if method == "random local search":
        return search.random_local_search(x1, y, num_classes, budget, loss=loss, generator=gen,
                                          **LOCAL_SEARCH)
    return search.genetic_algorithm(x1, y, num_classes, budget, loss=loss, generator=gen,
                                    **GENETIC)


def as_model(W: Tensor) -> LinearClassifier:
    """The classifier whose ``[W | b]`` is ``W`` (C, D + 1), as the searches return it."""
    model = LinearClassifier(W.shape[1] - 1, W.shape[0]).to(W)
    with torch.no_grad():
        model.weight.copy_(W[:, :-1])
        model.bias.copy_(W[:, -1])
    return model


def measure(model: torch.nn.Module, d: data.Prepared, loss: str) -> dict:
    loss_fn = data_loss_fn(loss, "lintorch")
    out = {}
    for split, x, y in (("train", d.train_x, d.train_y), ("val", d.val_x, d.val_y),
                        ("test", d.test_x, d.test_y)):
        L, acc, _ = evaluate(model, x, y, loss_fn)
        out[split] = {"loss": float(L), "accuracy": float(acc)}
    return out


def checkpoints(history: list[tuple[int, float, float]], count: int = 10) -> list[int]:
    """About ``count`` budgets, evenly spread, each ending on one of the search's steps."""
    ends = [evals for evals, _, _ in history]
    targets = [ends[-1] * k / count for k in range(1, count + 1)]
    return sorted({min(ends, key=lambda e, t=t: abs(e - t)) for t in targets})


def search_method(method: str, d: data.Prepared, args, run_dir: Path) -> dict:
    n_eval = args.batch_size
    x1 = append_ones(d.train_x[:n_eval].flatten(1))
    y = d.train_y[:n_eval]
    num_classes = len(d.classes)
    t0 = time.perf_counter()
    result = run_search(method, x1, y, num_classes, args.budget, args.loss, args.seed)
    seconds = time.perf_counter() - t0
    final = measure(as_model(result.weight), d, args.loss)

    loss_fn = data_loss_fn(args.loss, "lintorch")
    curve = []
    for b in checkpoints(result.history):
        weight = result.weight if b == result.history[-1][0] else run_search(
            method, x1, y, num_classes, b, args.loss, args.seed).weight
        _, acc, _ = evaluate(as_model(weight), d.val_x, d.val_y, loss_fn)
        curve.append((b, float(acc)))

    path = run_dir / method.replace(" ", "_")
    with SummaryWriter(str(path)) as w:
        settings = {"random search": RANDOM_SEARCH, "random local search": LOCAL_SEARCH,
                    "genetic algorithm": GENETIC}[method]
        board.log_config_text(w, {"method": method, "loss": args.loss, "budget": args.budget,
                                  "images_per_evaluation": n_eval, "seed": args.seed,
                                  **settings})
        for evals, best_loss, acc in result.history:
            w.add_scalar("vs_evaluations/loss", best_loss, evals)
            w.add_scalar("vs_evaluations/accuracy_train", acc, evals)
        for evals, acc in curve:
            w.add_scalar("vs_evaluations/accuracy_val", acc, evals)
    return {"method": method, "evaluations": result.history[-1][0], "evaluated_loss": result.loss,
            **final, "val_curve": curve, "seconds": seconds, "run_dir": str(path)}


def sgd_plan(budget: int, batch_size: int, n: int) -> tuple[int, int]:
    """(epochs, steps per epoch) with epochs x steps = budget and steps x batch_size <= n."""
    fits = [e for e in range(1, budget + 1)
            if budget % e == 0 and (budget // e) * batch_size <= n]
    epochs = next((e for e in fits if e >= MIN_SGD_EPOCHS), fits[-1])
    return epochs, budget // epochs


def sgd_method(d: data.Prepared, args, run_dir: Path) -> dict:
    epochs, steps = sgd_plan(args.budget, args.batch_size, d.train_x.shape[0])
    images = steps * args.batch_size
    cfg = TrainConfig(dataset=args.dataset, model="linear", loss=args.loss, epochs=epochs,
                      batch_size=args.batch_size, limit=images, reg=0.0, seed=args.seed,
                      device=args.device, logdir=str(run_dir), run_name="sgd", quiet=True)
    subset = dataclasses.replace(d, train_x=d.train_x[:images], train_y=d.train_y[:images])
    t0 = time.perf_counter()
    model, metrics = train_model(cfg, subset)
    seconds = time.perf_counter() - t0
    final = measure(model, d, args.loss)
    history = metrics["history"]
    curve = [(h["epoch"] * steps, h["val_accuracy"]) for h in history]
    with SummaryWriter(metrics["run_dir"]) as w:
        for h in history:
            evals = h["epoch"] * steps
            w.add_scalar("vs_evaluations/loss", h["train_loss"], evals)
            w.add_scalar("vs_evaluations/accuracy_train", h["train_accuracy"], evals)
            w.add_scalar("vs_evaluations/accuracy_val", h["val_accuracy"], evals)
    return {"method": "sgd", "evaluations": epochs * steps,
            "evaluated_loss": history[-1]["train_loss"], **final, "val_curve": curve,
            "seconds": seconds, "run_dir": metrics["run_dir"], "epochs": epochs,
            "steps_per_epoch": steps, "images": images, "lr": metrics["config"]["lr"]}


# ---------------------------------------------------------------------------------------------
# The report


def table(r: dict) -> str:
    rows = []
    for m in r["methods"]:
        anchor = ANCHORS.get(m["method"])
        rows.append([m["method"], m["evaluations"], f"{m['train']['loss']:.4f}",
                     f"{100 * m['train']['accuracy']:.1f}%", f"{100 * m['val']['accuracy']:.1f}%",
                     f"{100 * m['test']['accuracy']:.1f}%",
                     f"{100 * anchor:.1f}%" if anchor is not None else "-",
                     f"{m['seconds']:.1f}s"])
    sgd = next(m for m in r["methods"] if m["method"] == "sgd")
    title = (f"Search against gradient on {r['dataset']}, {r['loss']} loss, linear classifier: "
             f"{r['budget']} loss evaluations each.\nOne evaluation = the loss of one W on "
             f"{r['batch_size']} images: searches score every candidate on one fixed subset of "
             f"{r['batch_size']} training images,\nSGD takes one step on a fresh mini-batch of "
             f"{r['batch_size']} ({sgd['epochs']} epochs x {sgd['steps_per_epoch']} steps over "
             f"{sgd['images']} images, lr {sgd['lr']:g}, reg 0). Loss and train acc: the final W "
             f"on all {r['train_images']} training images; time: SGD's includes fit's logging.")
    header = ["method", "evaluations", "train loss", "train acc", "val acc", "test acc",
              "notes CIFAR-10 test", "time"]
    return common.format_table(title, header, rows)


def main(argv: list[str] | None = None) -> dict:
    t0 = time.perf_counter()
    args = parse_args(argv)
    d = load_data(args)
    name = data.short_name(args.dataset)  # a path never goes into a folder name or a title
    run_dir = common.run_dir(args.logdir, EXPERIMENT, name)
    with common.torch_threads(args.threads):
        methods = [search_method(m, d, args, run_dir) for m in METHODS if m != "sgd"]
        methods.append(sgd_method(d, args, run_dir))
    r = {"dataset": name, "loss": args.loss, "budget": args.budget,
         "batch_size": args.batch_size, "train_images": d.train_x.shape[0], "methods": methods}
    print(table(r))
    sgd = methods[-1]
    third, acc = min(sgd["val_curve"], key=lambda p: abs(p[0] - args.budget / 3))
    best_search = max(m["val"]["accuracy"] for m in methods[:-1])
    print(f"SGD at {third} evaluations (~a third of the budget: equal arithmetic, counting its "
          f"backward pass): val acc {100 * acc:.1f}% against the best search's "
          f"{100 * best_search:.1f}%")
    r["sgd_at_a_third"] = {"evaluations": third, "val_accuracy": acc}
    r["run_dir"] = str(run_dir)
    r["seconds"] = time.perf_counter() - t0
    print(f"\nCurves (step = loss evaluations): tensorboard --logdir {run_dir} "
          f"({r['seconds']:.1f}s)")
    return r


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except data.DataError as e:
        sys.exit(f"error: {e}")
