"""How far can a linear softmax classifier go on this data set, trained to convergence?

    python experiments/linear_ceiling.py --dataset fashion-mnist \\
        --data-root /usr/share/datasets/fashion-mnist --threads 2   # ~7 minutes on 2 cores

Mini-batch SGD stops somewhere near the minimum of L(W) = 1/N sum_i L_i + lambda R(W); this
script goes all the way. For each lambda of a grid (largest first, each start warm from the
previous minimum) it minimizes the full-batch objective on the training split -- lintorch's
``cross_entropy`` and ``l2_penalty`` on ``LinearClassifier``, float64, on the pixels as
``--preprocess`` prepares them (default: standardized per channel, as the default run sees them)
-- with ``torch.optim.LBFGS`` (up to 500 iterations: the objective stops changing well before
the gradient norm, ~1e-3, reaches zero), and reports the training, validation and test accuracy
of that minimum.

The best test accuracy in the table is an upper bound that no honest run reaches: it picks
lambda by looking at the test set. If even that is below a target, no learning rate, schedule
or number of epochs of this model class gets there on these pixels -- under this preprocessing
and this grid of lambdas: another preprocessing is another set of features (run it with
``--preprocess``), and a lambda between two of the grid can do a little better.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from lintorch import cli, data
from lintorch.losses import cross_entropy, l2_penalty
from lintorch.models import LinearClassifier
from lintorch.train import evaluate

import common

EXPERIMENT = "linear_ceiling"
LAMBDAS = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 0.0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python experiments/linear_ceiling.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    common.add_data_flags(p)
    p.add_argument("--quick", action="store_true", help="few images and iterations (seconds)")
    common.add_run_flags(p, None, "preprocess")
    common.add_compute_flags(p)
    p.add_argument("--lambdas", type=cli.non_negative(float), nargs="+", default=None,
                   help=f"regularization strengths (default {' '.join(map(str, LAMBDAS))})")
    p.add_argument("--iterations", type=cli.positive(int), default=None,
                   help="most L-BFGS iterations per lambda (default 500, --quick 20)")
    args = p.parse_args(argv)
    args.dataset = common.chosen_dataset(args)
    args.lambdas = args.lambdas or ([1e-2, 1e-3] if args.quick else list(LAMBDAS))
    args.iterations = args.iterations or (20 if args.quick else 500)
    return args


def accuracy(model: LinearClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(evaluate(model, x, y, cross_entropy)[1])


def minimize(model: LinearClassifier, x: torch.Tensor, y: torch.Tensor, lam: float,
             iterations: int) -> tuple[float, float]:
    """Minimize mean cross-entropy + lam R(W) over all of (x, y); (objective, |gradient|)."""
    opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=iterations, history_size=20,
                            tolerance_grad=1e-9, tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")

    def objective():
        opt.zero_grad()
        L = cross_entropy(model(x), y) + lam * l2_penalty(model.weight)
        L.backward()
        return L

    opt.step(objective)
    L = objective()
    grad_norm = torch.cat([p.grad.flatten() for p in model.parameters()]).norm()
    return float(L.detach()), float(grad_norm)


def run(args: argparse.Namespace) -> dict:
    d = common.load_prepared(args, 2000 if args.quick else None, args.preprocess)
    x, y = d.train_x.flatten(1).double(), d.train_y
    val_x, test_x = d.val_x.double(), d.test_x.double()
    model = LinearClassifier(x.shape[1], len(d.classes)).to(x.device, torch.float64)
    rows = []
    for lam in sorted(args.lambdas, reverse=True):  # each minimum warm-starts the next
        t0 = time.perf_counter()
        objective, grad_norm = minimize(model, x, y, lam, args.iterations)
        rows.append({"lambda": lam, "objective": objective, "grad_norm": grad_norm,
                     "train_accuracy": accuracy(model, x, y),
                     "val_accuracy": accuracy(model, val_x, d.val_y),
                     "test_accuracy": accuracy(model, test_x, d.test_y),
                     "seconds": time.perf_counter() - t0})
        print(f"lambda {lam:g}: test {100 * rows[-1]['test_accuracy']:.2f}%", file=sys.stderr)
    best_val = max(rows, key=lambda r: r["val_accuracy"])
    best_test = max(rows, key=lambda r: r["test_accuracy"])
    return {"dataset": data.short_name(args.dataset), "preprocess": args.preprocess,
            "train_images": x.shape[0], "val_images": val_x.shape[0],
            "test_images": test_x.shape[0], "rows": rows,
            "chosen_on_validation": best_val, "best_test_oracle": best_test}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    with common.torch_threads(args.threads):
        result = run(args)
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    print(common.format_table(
        f"{result['dataset']}: linear softmax classifier at the minimum of its objective "
        f"({result['train_images']:,} training images, --preprocess {result['preprocess']}, "
        "L-BFGS, float64)",
        ["lambda", "objective", "|grad|", "train", "val", "test", "s"],
        [[f"{r['lambda']:g}", f"{r['objective']:.4f}", f"{r['grad_norm']:.1e}",
          pct(r["train_accuracy"]), pct(r["val_accuracy"]), pct(r["test_accuracy"]),
          f"{r['seconds']:.1f}"] for r in result["rows"]]))
    v, t = result["chosen_on_validation"], result["best_test_oracle"]
    print(f"lambda chosen on validation: {v['lambda']:g}, test {pct(v['test_accuracy'])}; "
          f"best test over the grid (an oracle): {pct(t['test_accuracy'])} at {t['lambda']:g}")
    return result


if __name__ == "__main__":
    main()
