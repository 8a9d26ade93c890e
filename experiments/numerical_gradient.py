"""Numerical gradients and the gradient check, as the lecture does them, on real images.

    python experiments/numerical_gradient.py --dataset fashion-mnist \\
        --data-root /usr/share/datasets/fashion-mnist

1. The lecture's walk-through: take the current W, perturb one coordinate at a time by
   h = 0.0001, and read the gradient entry off (loss(W + h) - loss(W)) / h -- printed for a
   few weights of a linear classifier's W (the first class's weights on the pixels that vary
   most over the training images; a border pixel, constant in every image, has the same
   zero-signal gradient as any other), beside the analytic gradient.
2. The gradient check: analytic gradients against forward and centred differences. The
   analytic gradient is lintorch's own from end to end: the loss's hand-written dL/ds, the
   sigmoid's, and the linear map's dL/dW = (dL/ds)^T x and dL/db = sum_i dL/ds_i
   (``lintorch.models.LinearFunction``), chained by autograd. Relative errors
   |a - n| / (|a| + |n|), for each loss and both models, at initialisation and after one
   epoch of training, in float64 on a real mini-batch; random coordinates of each parameter
   tensor (``--num-checks``), since a full numerical gradient of the MLP takes ~800k losses.
3. Numerical vs analytic gradient (slow and approximate vs fast and exact): the time of one
   full numerical gradient of the linear W against one backward pass.

Tables print to stdout and go to TensorBoard (runs/numerical_gradient/...) as text, with a
histogram of log10 relative errors per setting.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

import lintorch
from lintorch import data
from lintorch.losses import CLASSIFIERS, LOSSES
from lintorch.train import TrainConfig, build_model, train_model

import common

EXPERIMENT = "numerical_gradient"
H_LECTURE = 1e-4  # the lecture's step, in the walk-through
H = 1e-5  # the step of the gradient check (grad_check's default)
STEPS = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8]

# The usual rule of thumb for the largest relative error (CS231n's notes on gradient checks),
# valid in float64: the bounds below which a check counts as passed.
THRESHOLDS = [
    (1e-7, "great"),
    (1e-4, "ok if kinks, else suspicious"),
    (1e-2, "uncomfortable"),
    (math.inf, "probably wrong"),
]


# ---------------------------------------------------------------------------------------------
# The command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python experiments/numerical_gradient.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    common.add_data_flags(p, "data set of the mini-batch")
    common.add_run_flags(p, "numerical_gradient/<dataset>-<time>")
    p.add_argument("--quick", action="store_true",
                   help="fewer checked coordinates, less training, no full gradient (seconds)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images in the mini-batch (default 64, --quick 16)")
    p.add_argument("--num-checks", type=int, default=None,
                   help="random coordinates checked per parameter tensor (default 100, "
                        "--quick 4; smaller tensors are checked whole)")
    p.add_argument("--dims", type=int, default=5,
                   help="weights shown in the walk-through (on the pixels of largest variance)")
    args = p.parse_args(argv)
    args.dataset = common.chosen_dataset(args)
    if args.num_checks is None:
        args.num_checks = 4 if args.quick else 100
    if args.batch_size is None:
        args.batch_size = 16 if args.quick else 64
    return args


# ---------------------------------------------------------------------------------------------
# Data and models


def load_data(args: argparse.Namespace) -> tuple[data.Prepared, str]:
    """The real data set, prepared as training prepares it; random images if it is missing."""
    limit = 1000 if args.quick else 5000
    try:
        raw = data.load_dataset(args.dataset, args.data_root, download=not args.no_download)
        d = data.prepare(raw, val_size=500, seed=args.seed, limit=limit)
        # Training reports test accuracy, which nothing here uses: keep that evaluation short.
        return dataclasses.replace(d, test_x=d.test_x[:limit], test_y=d.test_y[:limit]), raw.name
    except data.DataError as e:
        print(f"note: {e}\nnote: using random images instead of a real mini-batch\n")
    gen = torch.Generator().manual_seed(args.seed)
    shape = (1, 12, 12)

    def images(n):
        return torch.randn(n, *shape, generator=gen)

    def labels(n):
        return torch.randint(10, (n,), generator=gen)

    return data.Prepared(
        classes=[str(k) for k in range(10)], image_shape=shape,
        train_x=images(limit), train_y=labels(limit), val_x=images(200), val_y=labels(200),
        test_x=images(200), test_y=labels(200),
        mean=torch.zeros(1, 1, 1, 1), std=torch.ones(1, 1, 1, 1)), "random"


def models(args: argparse.Namespace, d: data.Prepared, run_dir: Path) -> dict:
    """Each model freshly initialised (as ``fit`` builds it) and after one epoch of softmax
    training with ``train_model``, both as float64 copies."""
    out = {}
    in_features, c = math.prod(d.image_shape), len(d.classes)
    for name in ("linear", "mlp"):
        cfg = TrainConfig(dataset=args.dataset, model=name, loss="softmax", epochs=1,
                          device="cpu", seed=args.seed, logdir=str(run_dir),
                          run_name=f"train-{name}", quiet=True)
        torch.manual_seed(args.seed)
        fresh = build_model(cfg.resolved(), in_features, c)
        trained, metrics = train_model(cfg, d)
        out[name] = {"init": fresh.double(), "trained": trained.double(),
                     "train_accuracy": metrics["train"]["accuracy"]}
    return out


@dataclasses.dataclass
class Objective:
    """The mini-batch loss as a function ``f(theta)`` of every parameter of a model, flattened
    into one vector ``theta`` (concatenated in ``named_parameters`` order)."""

    f: Callable[[torch.Tensor], torch.Tensor]
    scores: Callable[[torch.Tensor], torch.Tensor]
    theta: torch.Tensor
    spans: dict[str, tuple[int, int]]
    y: torch.Tensor
    hinge: bool

    def hinges_crossed(self, i: int, h: float) -> bool:
        """Whether moving coordinate i by +-h turns a hinge margin s_j - s_y + 1 on or off:
        a kink of max(0, .) then lies between the two points of the centred difference."""
        if not self.hinge:
            return False
        patterns = []
        with torch.no_grad():
            for step in (-h, 0.0, h):
                t = self.theta.clone()
                t[i] += step
                s = self.scores(t)
                patterns.append(s - s.gather(1, self.y[:, None]) + 1 > 0)
        return not (torch.equal(patterns[0], patterns[1]) and torch.equal(patterns[1], patterns[2]))


def objective(model: torch.nn.Module, loss: str, x: torch.Tensor, y: torch.Tensor) -> Objective:
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]

    def scores(theta: torch.Tensor) -> torch.Tensor:
        params = {n: t.view(s) for n, t, s in zip(names, theta.split(sizes), shapes)}
        return torch.func.functional_call(model, params, (x,))

    def f(theta: torch.Tensor) -> torch.Tensor:
        return LOSSES[loss](scores(theta), y)

    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    spans, start = {}, 0
    for n, k in zip(names, sizes):
        spans[n] = (start, start + k)
        start += k
    return Objective(f, scores, theta, spans, y, hinge=loss == "svm")


def pick_coordinates(spans: dict, k: int, gen: torch.Generator) -> torch.Tensor:
    """``k`` distinct random coordinates of each parameter tensor (all of a smaller one), so
    that a small bias is checked as surely as a large weight matrix."""
    picks = []
    for lo, hi in spans.values():
        n = hi - lo
        picks.append(lo + (torch.randperm(n, generator=gen)[:k] if n > k else torch.arange(n)))
    return torch.cat(picks)


def numeric_at(f, theta: torch.Tensor, idx: torch.Tensor, h: float, method: str) -> torch.Tensor:
    """``lintorch.numerical_gradient`` restricted to the coordinates ``idx`` of theta."""
    z = theta[idx].clone()
    return lintorch.numerical_gradient(lambda z: f(theta.index_put((idx,), z)), z, h, method)


def analytic(f, theta: torch.Tensor) -> torch.Tensor:
    t = theta.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(t), t)
    return g


def verdict(err: float) -> str:
    return next(label for bound, label in THRESHOLDS if err < bound)


# ---------------------------------------------------------------------------------------------
# 1. The walk-through


def signal_pixels(train_x: torch.Tensor, k: int) -> torch.Tensor:
    """The k pixels (flat indices) whose values vary most over the training images."""
    return train_x.flatten(1).double().var(0).topk(k).indices


def walk_through(model, x, y, pixels: torch.Tensor) -> dict:
    """The lecture's slides, literally: loss at W, then at W + h in one coordinate at a time,
    the coordinates being the first class's weights on ``pixels``."""
    W, b = model.weight.detach().clone(), model.bias.detach()

    def loss(W):
        return float(lintorch.cross_entropy(lintorch.linear(x, W, b), y))

    flat = W.view(-1)
    current = loss(W)
    rows = []
    for i in pixels.tolist():  # W[0, i], at flat index i
        old = flat[i].item()
        flat[i] = old + H_LECTURE
        perturbed = loss(W)
        flat[i] = old
        rows.append({"dim": i, "pixel": i, "w": old, "loss": current,
                     "loss_plus_h": perturbed, "grad": (perturbed - current) / H_LECTURE})
    Wr = W.clone().requires_grad_(True)
    # lintorch's own gradient: the cross-entropy's dL/ds, then the linear map's (dL/ds)^T x
    (g,) = torch.autograd.grad(lintorch.cross_entropy(lintorch.linear(x, Wr, b), y), Wr)
    f = lambda w: lintorch.cross_entropy(lintorch.linear(x, w.view_as(W), b), y)  # noqa: E731
    library = numeric_at(f, W.reshape(-1), pixels, H_LECTURE, "forward")
    central = numeric_at(f, W.reshape(-1), pixels, H_LECTURE, "central")
    for r, a, n, c in zip(rows, g.view(-1)[pixels].tolist(), library.tolist(), central.tolist()):
        r.update(analytic=a, library_forward=n, central=c)
    return {"rows": rows, "loss": current}


# ---------------------------------------------------------------------------------------------
# 2. The gradient check


def check(obj: Objective, idx: torch.Tensor, num_checks: int | None, seed: int) -> dict:
    """Relative errors of forward and centred differences (step H) at the coordinates ``idx``,
    each large one explained where it can be (rounding, a kink); and ``lintorch.grad_check``
    on each parameter tensor at its own random coordinates."""
    t0 = time.perf_counter()
    f, theta = obj.f, obj.theta
    a = analytic(f, theta)[idx]
    n = numeric_at(f, theta, idx, H, "central")
    fwd = lintorch.relative_error(a, numeric_at(f, theta, idx, H, "forward"))
    ctr = lintorch.relative_error(a, n)
    # Rounding the loss L to the dtype's epsilon moves (L(+h) - L(-h)) / 2h by ~eps |L| / h:
    # the smallest relative error a correct gradient of this size can show.
    eps = torch.finfo(theta.dtype).eps
    floor = eps * abs(float(f(theta))) / (H * torch.maximum(a.abs(), n.abs()).clamp(min=1e-300))
    large = [k for k in range(len(idx)) if ctr[k] >= max(1e-7, 10 * float(floor[k]))]
    kinks = [k for k in large if obj.hinges_crossed(int(idx[k]), H)]
    unexplained = [float(ctr[k]) for k in large if k not in kinks]
    lib = None
    if num_checks is not None:
        lib = 0.0
        for lo, hi in obj.spans.values():
            def f_part(p, lo=lo, hi=hi):
                return f(torch.cat([theta[:lo], p, theta[hi:]]))
            k = num_checks if hi - lo > num_checks else None
            lib = max(lib, lintorch.grad_check(f_part, theta[lo:hi], num_checks=k, h=H,
                                                 seed=seed))
    worst = int(ctr.argmax())
    if float(ctr.max()) < 1e-7:
        label = "great"
    elif unexplained:
        label = verdict(max(unexplained))
    else:
        label = "kink crossed" if kinks else "rounding floor"
    return {"coords": len(idx), "forward_max": float(fwd.max()),
            "central_max": float(ctr.max()), "central_median": float(ctr.median()),
            "grad_median": float(a.abs().median()), "grad_at_worst": float(a[worst].abs()),
            "rounding_floor": float(floor[worst]), "kinks": len(kinks),
            "above_1e-7": int((ctr >= 1e-7).sum()),
            "rounding": int(((ctr >= 1e-7) & (ctr < 10 * floor)).sum()),
            "unexplained_max": max(unexplained, default=0.0), "grad_check_max": lib,
            "verdict": label, "central_errors": ctr, "seconds": time.perf_counter() - t0}


def kink_check(model, x, y) -> dict:
    """Move one bias so that one hinge margin sits 0.25 h |x_id| from its corner, then check
    the W entry that moves that margin by h x_id: the centred difference straddles max(0, .)."""
    W, b = model.weight.detach(), model.bias.detach().clone()
    s = x @ W.T + b
    margins = s - s.gather(1, y[:, None]) + 1
    margins.scatter_(1, y[:, None], math.inf)  # j = y_i is not a margin
    i, j = divmod(int(margins.abs().argmin()), margins.shape[1])
    d = int(x[i].abs().argmax())
    # s_ij moves with b_j one to one: shift b_j so that margin_ij = 0.25 h |x_id|
    b[j] -= margins[i, j] - 0.25 * H * abs(float(x[i, d]))
    shifted = lintorch.LinearClassifier(W.shape[1], W.shape[0]).double()
    with torch.no_grad():
        shifted.weight.copy_(W)
        shifted.bias.copy_(b)
    obj = objective(shifted, "svm", x, y)
    idx = torch.tensor([obj.spans["weight"][0] + j * W.shape[1] + d])
    r = check(obj, idx, None, seed=0)
    r.update(example=i, cls=j, pixel=d, analytic=float(analytic(obj.f, obj.theta)[idx]),
             central=float(numeric_at(obj.f, obj.theta, idx, H, "central")))
    return r


def gradient_checks(args, nets: dict, x, y) -> list[dict]:
    rows = []
    gen = torch.Generator().manual_seed(args.seed)
    for model_name in ("linear", "mlp"):
        for loss in CLASSIFIERS:
            for state in ("init", "trained"):
                obj = objective(nets[model_name][state], loss, x, y)
                r = check(obj, pick_coordinates(obj.spans, args.num_checks, gen),
                          args.num_checks, args.seed)
                r.update(name=f"{model_name} {loss} {state}", dtype="float64")
                rows.append(r)
    linear = nets["linear"]["trained"]
    obj = objective(copy.deepcopy(linear).float(), "softmax", x.float(), y)
    r = check(obj, pick_coordinates(obj.spans, args.num_checks, gen), args.num_checks, args.seed)
    r.update(name="linear softmax trained", dtype="float32")
    rows.append(r)
    r = kink_check(linear, x, y)
    r.update(name="linear svm at a kink", dtype="float64")
    rows.append(r)
    return rows


def step_sweep(args, nets: dict, x, y) -> dict:
    """The largest relative error against h: truncation shrinks with h (O(h) forward, O(h^2)
    centred), rounding grows as eps |L| / h; the best h sits between the two."""
    gen = torch.Generator().manual_seed(args.seed + 1)
    k = 4 if args.quick else 10
    cases = {"linear softmax trained": objective(nets["linear"]["trained"], "softmax", x, y),
             "mlp softmax init": objective(nets["mlp"]["init"], "softmax", x, y)}
    out = {"h": STEPS}
    for name, obj in cases.items():
        idx = pick_coordinates(obj.spans, k, gen)
        a = analytic(obj.f, obj.theta)[idx]
        out[name] = {method: [float(lintorch.relative_error(
            a, numeric_at(obj.f, obj.theta, idx, h, method)).max()) for h in STEPS]
            for method in ("forward", "central")}
        out[name]["coords"] = len(idx)
    return out


# ---------------------------------------------------------------------------------------------
# 3. Numerical vs analytic


def full_gradient_timing(model, x, y) -> dict:
    obj = objective(model, "softmax", x, y)
    f, theta = obj.f, obj.theta
    t0 = time.perf_counter()
    g = analytic(f, theta)
    t_analytic = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = lintorch.numerical_gradient(f, theta.clone(), h=H)
    t_numeric = time.perf_counter() - t0
    return {"params": theta.numel(), "analytic_s": t_analytic, "numeric_s": t_numeric,
            "max_rel_error": float(lintorch.relative_error(g, n).max())}


# ---------------------------------------------------------------------------------------------
# Printing and logging


def tables(r: dict) -> list[str]:
    out = []
    w = r["walk_through"]
    where = [tuple(int(i) for i in torch.unravel_index(torch.tensor(k["pixel"]),
                                                       w["image_shape"])) for k in w["rows"]]
    rows = [[f"W[0,{k['dim']}]", str(at).replace(" ", ""), f"{k['w']:+.5f}", f"{k['loss']:.10f}",
             f"{k['loss_plus_h']:.10f}",
             f"{k['grad']:+.6f}", f"{k['central']:+.6f}", f"{k['analytic']:+.6f}"]
            for k, at in zip(w["rows"], where)]
    out.append(common.format_table(
        f"Walk-through: linear classifier, softmax loss, {r['batch']} {r['data']} images "
        f"(float64), h = {H_LECTURE:g}; W[0,j]: the weight of class 0 ({w['class']}) on pixel "
        f"j, for the {len(rows)} pixels of largest variance over the training images",
        ["weight", "pixel (c,row,col)", "W", "loss", "loss(W + h)", "(diff) / h", "centred",
         "analytic"], rows)
        + "\nanalytic: lintorch's own gradient, the cross-entropy's dL/ds and the linear "
          "map's dL/dW = (dL/ds)^T x, both written by hand")

    rows = []
    for k in r["checks"]:
        lib = "-" if k["grad_check_max"] is None else f"{k['grad_check_max']:.1e}"
        rows.append([k["name"], k["dtype"], k["coords"], f"{k['grad_median']:.1e}",
                     f"{k['forward_max']:.1e}", f"{k['central_max']:.1e}",
                     f"{k['central_median']:.1e}", k["above_1e-7"], k["rounding"], k["kinks"],
                     lib, k["verdict"]])
    out.append(common.format_table(
        f"Gradient check, h = {H:g}: relative error |a - n| / (|a| + |n|) of analytic a and "
        f"numerical n, {r['batch']} {r['data']} images",
        ["setting", "dtype", "coords", "|a| median", "forward max", "centred max",
         "centred median", ">= 1e-7", "rounding", "kink", "grad_check max", "verdict"],
        rows, left=2) + "\ninit: as fit builds the model; trained: after one epoch of softmax "
        "training by train_model (training accuracy "
        + ", ".join(f"{m} {100 * acc:.1f}%" for m, acc in r["train_accuracy"].items()) + ")")

    rows = [[label, f"largest error < {b:.0e}"] for b, label in THRESHOLDS[:-1]]
    rows += [["probably wrong", "largest error >= 1e-02"],
             ["rounding floor", "every error >= 1e-7 is under 10 eps |L| / (h |a|)"],
             ["kink crossed", "... or sits where +-h turns a hinge margin on or off"]]
    out.append(common.format_table(
        "Verdicts: the usual rule of thumb (float64), applied to the errors that neither "
        "rounding nor a kink explains", ["verdict", "when"], rows, left=2))

    st = r["steps"]
    cases = [name for name in st if name != "h"]
    rows = [[f"{h:.0e}", *(f"{st[c][m][i]:.1e}" for c in cases for m in ("forward", "central"))]
            for i, h in enumerate(st["h"])]
    out.append(common.format_table(
        "Step size h: largest relative error (truncation shrinks with h, rounding grows as "
        "1/h)", ["h", *(f"{c.replace(' softmax', '')} {m}" for c in cases
                for m in ("forward", "centred"))],
        rows) + "\n" + "; ".join(f"{c}: {st[c]['coords']} coordinates" for c in cases)
        + f"; float64, {r['batch']} {r['data']} images")

    if "full" in r:
        f = r["full"]
        rows = [["numerical (centred, one loss per +-h)", f"{f['numeric_s']:.2f} s",
                 f"{2 * f['params']} losses"],
                ["analytic (one backward pass)", f"{1000 * f['analytic_s']:.2f} ms", "1 loss"],
                ["max relative error between them", f"{f['max_rel_error']:.1e}", ""]]
        out.append(common.format_table(
            f"Numerical vs analytic gradient: all {f['params']} parameters of the trained "
            "linear classifier (softmax, float64)", ["", "time", "work"], rows))
    return out


NOTES = """\
Notes
- coords: random coordinates of each parameter tensor (all of a small one, like a bias);
  >= 1e-7: how many of them err by 1e-7 or more, and of those, how many no more than
  rounding explains (10 eps |L| / (h |a|), see below) and how many straddle a hinge's kink.
  grad_check: lintorch.grad_check per parameter tensor, its own random coordinates.
- analytic: lintorch's own gradients from end to end (each loss's dL/ds, the sigmoid's, the
  linear map's dL/dW = (dL/ds)^T x and dL/db = sum_i dL/ds_i), chained by autograd.
- The walk-through is the lecture's forward difference with its h = 1e-4; the check uses
  h = 1e-5. Forward differences err by O(h), centred ones by O(h^2): hence centred for checks.
  The SVM loss is piecewise linear in W, so away from kinks even forward differences are exact.
- Kinks: where a hinge margin lies within h |x| of 0, the centred difference straddles the
  corner of max(0, .) and averages its two slopes, so a correct gradient shows a large error
  ("linear svm at a kink": one margin put 0.25 h |x| from its corner). A trained SVM has
  margins near 0, and a check may hit one by chance: accept up to ~1e-4 for losses with
  kinks, or confirm that the large errors sit at margins within h |x| of 0.
- Rounding: the loss is known to ~eps |L|, so a numerical slope to ~eps |L| / h; relative to
  a tiny gradient (an MLP's first layer at initialisation, |a| ~ 1e-7) that alone exceeds
  1e-7. In float32 (eps ~ 1e-7) the floor is ~1 at h = 1e-5: gradient checks need float64.
  The step-size table shows both effects: errors fall with h while truncation dominates, then
  rise as 1/h once rounding does; the MLP's tiny gradients reach that turn at larger h."""


def log_to_tensorboard(run_dir: Path, r: dict, text: list[str]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(run_dir)) as w:
        for k, t in enumerate(text + [NOTES]):
            w.add_text(f"tables/{k}", "```\n" + t + "\n```")
        for k in r["checks"]:
            errs = k["central_errors"].double().clamp(min=1e-20).log10()
            w.add_histogram(f"log10_relative_error/{k['name'].replace(' ', '-')}-{k['dtype']}",
                            errs, 0)


def main(argv: list[str] | None = None) -> dict:
    t0 = time.perf_counter()
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    d, source = load_data(args)
    run_dir = common.run_dir(args.logdir, EXPERIMENT, data.short_name(args.dataset))
    nets = models(args, d, run_dir)
    x = d.train_x[:args.batch_size].double().flatten(1)
    y = d.train_y[:args.batch_size]
    # Thousands of tiny losses: handing each to a second thread costs more than it saves
    # (and on a busy machine, far more).
    with common.torch_threads(1):
        r = {"data": source, "batch": x.shape[0],
             "train_accuracy": {m: nets[m]["train_accuracy"] for m in nets},
             "walk_through": {**walk_through(nets["linear"]["trained"], x, y,
                                             signal_pixels(d.train_x, args.dims)),
                              "class": d.classes[0], "image_shape": list(d.image_shape)},
             "checks": gradient_checks(args, nets, x, y),
             "steps": step_sweep(args, nets, x, y)}
        if not args.quick:
            r["full"] = full_gradient_timing(nets["linear"]["trained"], x, y)
    text = tables(r)
    print("\n\n".join(text))
    print("\n" + NOTES)
    log_to_tensorboard(run_dir, r, text)
    for k in r["checks"]:
        del k["central_errors"]
    r["run_dir"] = str(run_dir)
    r["seconds"] = time.perf_counter() - t0
    print(f"\nTensorBoard events in {run_dir} ({r['seconds']:.1f}s)")
    return r


if __name__ == "__main__":
    main(sys.argv[1:])
