"""The lecture's worked examples and questions, answered by measurement.

    python experiments/worked_examples.py --dataset fashion-mnist \\
        --data-root /usr/share/datasets/fashion-mnist

Recomputes the SVM table (2.9, 0, 12.9 -> L = 5.27) and the softmax example (exp 24.5, 164.0,
0.18 -> p 0.13, 0.87, 0.00 -> L_i = 2.04) with lintorch's losses, then answers each question
the lecture asks about the losses by measuring it, beside the lecture's own answer: what a
small change of the car image's scores does, the min/max of each loss, the loss of a freshly
initialised model on real data (C - 1 and log C), summing over all classes, mean vs sum.
Tables print to stdout and go to TensorBoard (runs/worked_examples/...) as text, with the
loss curves behind the min/max and small-change answers as scalars.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

import lintorch
from lintorch import data
from lintorch.train import TrainConfig, build_model

import common

EXPERIMENT = "worked_examples"
CLASSES = ["cat", "car", "frog"]
# The lecture's scores f(x, W): one row per training image (cat, car, frog), one column per
# class (cat, car, frog) -- the transpose of the slide, where each image is a column.
SCORES = [[3.2, 5.1, -1.7],
          [1.3, 4.9, 2.0],
          [2.2, 2.5, -3.1]]
LABELS = [0, 1, 2]


# ---------------------------------------------------------------------------------------------
# The command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python experiments/worked_examples.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    common.add_data_flags(p, "real data for the initial-loss questions")
    common.add_run_flags(p, "worked_examples/<dataset>-<time>")
    p.add_argument("--quick", action="store_true", help="fewer images and draws (seconds)")
    args = p.parse_args(argv)
    args.dataset = common.chosen_dataset(args)
    return args


# ---------------------------------------------------------------------------------------------
# The measurements


def lecture_scores() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(SCORES, dtype=torch.float64), torch.tensor(LABELS)


def svm_example() -> dict:
    s, y = lecture_scores()
    L_i = lintorch.svm_loss(s, y, reduction="none")
    return {"L_i": L_i.tolist(), "L": float(lintorch.svm_loss(s, y))}


def softmax_example() -> dict:
    s, y = lecture_scores()
    cat = s[:1]  # the cat image, whose label is cat
    return {"exp": cat[0].exp().tolist(), "p": lintorch.softmax(cat)[0].tolist(),
            "L_i": float(lintorch.cross_entropy(cat, y[:1])),
            # Non-GT probabilities are not in L_i = -log p_cat, yet they move it: dL_i/ds = p - 1[y]
            "dL_ds": torch.func.grad(lambda s: lintorch.cross_entropy(s, y[:1]))(cat)[0].tolist()}


def small_change_of_car_scores(draws: int, seed: int) -> dict:
    """The car image's margins are -2.6 and -1.9: each score may move by up to 1.9 / 2 = 0.95
    before a margin reaches 0, so the SVM loss stays exactly 0; cross-entropy always moves."""
    s, y = lecture_scores()
    car, ycar = s[1:2], y[1:2]
    gen = torch.Generator().manual_seed(seed)
    noise = (torch.rand(draws, 3, generator=gen, dtype=torch.float64) * 2 - 1) * 0.5
    shifted = car + noise
    svm = lintorch.svm_loss(shifted, ycar.expand(draws), reduction="none")
    ce = lintorch.cross_entropy(shifted, ycar.expand(draws), reduction="none")
    ce0 = float(lintorch.cross_entropy(car, ycar))
    # Worst direction: the car score down, the frog score (the nearest margin) up, by t each.
    t = torch.arange(0, 301, dtype=torch.float64) / 100
    worst = car + t[:, None] * torch.tensor([0.0, -1.0, 1.0], dtype=torch.float64)
    svm_t = lintorch.svm_loss(worst, ycar.expand(len(t)), reduction="none")
    ce_t = lintorch.cross_entropy(worst, ycar.expand(len(t)), reduction="none")
    last_zero = int(torch.nonzero(svm_t > 0)[0]) - 1
    return {"draws": draws, "max_abs_shift": 0.5, "svm_max_change": float(svm.abs().max()),
            "softmax_max_change": float((ce - ce0).abs().max()),
            "svm_zero_up_to_shift": float(t[last_zero]), "curve_t": t.tolist(),
            "curve_svm": svm_t.tolist(), "curve_softmax": ce_t.tolist()}


def loss_range() -> dict:
    """Each loss on the cat image as its correct score rises by t (toward the minimum) and as
    the car score rises by t (toward no maximum)."""
    s, y = lecture_scores()
    cat, ycat = s[:1], y[:1]
    t = torch.tensor([0.0, 1.0, 10.0, 40.0, 1e3, 1e6], dtype=torch.float64)
    up = cat + t[:, None] * torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    wrong = cat + t[:, None] * torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    out = {"t": t.tolist()}
    for name, fn in (("svm", lintorch.svm_loss), ("softmax", lintorch.cross_entropy)):
        out[name] = {"correct_up": fn(up, ycat.expand(len(t)), reduction="none").tolist(),
                     "wrong_up": fn(wrong, ycat.expand(len(t)), reduction="none").tolist()}
    # The curves for TensorBoard: t = 0 .. 20 in steps of 0.1.
    tc = torch.arange(0, 201, dtype=torch.float64) / 10
    for name, fn in (("svm", lintorch.svm_loss), ("softmax", lintorch.cross_entropy)):
        for key, d in (("correct_up", [1.0, 0.0, 0.0]), ("wrong_up", [0.0, 1.0, 0.0])):
            moved = cat + tc[:, None] * torch.tensor(d, dtype=torch.float64)
            out[name][f"curve_{key}"] = fn(moved, ycat.expand(len(tc)), reduction="none").tolist()
    out["curve_t"] = tc.tolist()
    return out


def all_classes_and_mean() -> dict:
    """The SVM variants the lecture asks about, written out with torch primitives beside
    lintorch's sum over j != y_i: the sum over every j (including j = y_i), and the mean over
    j != y_i instead of the sum."""
    s, y = lecture_scores()
    n, c = s.shape
    others = torch.arange(c)[None, :] != y[:, None]  # the j != y_i entries

    def hinges(s):
        return (s - s.gather(1, y[:, None]) + 1).clamp(min=0)

    def per_all(s):  # j = y_i adds max(0, s_y - s_y + 1) = 1 per example
        return hinges(s).sum(1)

    def per_mean(s):
        return hinges(s)[others].view(n, c - 1).mean(1)

    def per_sum(s):
        return lintorch.svm_loss(s, y, reduction="none")

    g, g_all, g_mean = (torch.func.grad(lambda s, f=f: f(s).sum())(s)
                        for f in (per_sum, per_all, per_mean))
    per = per_sum(s)
    nonzero = per > 0
    return {"all_minus_sum": (per_all(s) - per).tolist(),
            "all_grad_max_diff": float((g_all - g).abs().max()),
            "mean_over_sum": (per_mean(s)[nonzero] / per[nonzero]).tolist(),
            "mean_grad_over_sum_grad": float((g_mean[g != 0] / g[g != 0]).mean()),
            "num_classes": c}


def initial_losses(args: argparse.Namespace) -> dict:
    """Both losses of freshly initialised models (built as ``lintorch.train`` builds them) on
    real images, against the lecture's C - 1 and log C."""
    s0 = torch.zeros(3, 3, dtype=torch.float64)
    y = torch.tensor(LABELS)
    out = {"toy": {"svm": float(lintorch.svm_loss(s0, y)),
                   "softmax": float(lintorch.cross_entropy(s0, y)), "C": 3}}
    try:
        t0 = time.perf_counter()
        raw = data.load_dataset(args.dataset, args.data_root, download=not args.no_download)
        d = data.prepare(raw, val_size=0, seed=args.seed, limit=5000 if args.quick else None)
    except data.DataError as e:
        out["skipped"] = str(e)
        return out
    n = 1000 if args.quick else d.test_x.shape[0]
    x, y = d.test_x[:n], d.test_y[:n]
    c = len(d.classes)
    seeds = [args.seed] if args.quick else [args.seed + k for k in range(5)]
    for model_name in ("linear", "mlp"):
        cfg = TrainConfig(dataset=args.dataset, model=model_name, seed=args.seed).resolved()
        svm_vals, ce_vals = [], []
        for seed in seeds:
            torch.manual_seed(seed)  # as fit() does before building the model
            model = build_model(cfg, math.prod(d.image_shape), c)
            with torch.no_grad():
                scores = model(x)
            svm_vals.append(float(lintorch.svm_loss(scores, y)))
            ce_vals.append(float(lintorch.cross_entropy(scores, y)))
        out[model_name] = {"svm": svm_vals, "softmax": ce_vals}
    out.update(dataset=raw.name, images=n, seeds=len(seeds), C=c,
               seconds=time.perf_counter() - t0)
    return out


# ---------------------------------------------------------------------------------------------
# Printing and logging


def _spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return (f"{sum(values) / len(values):.4f} (mean of {len(values)} inits, "
            f"{min(values):.4f} .. {max(values):.4f})")


def tables(r: dict) -> list[str]:
    svm, sm = r["svm_example"], r["softmax_example"]
    out = []
    rows = [[f"score {name}", *(f"{s[k]:.2f}" for s in SCORES), ""]
            for k, name in enumerate(CLASSES)]
    rows.append(["svm L_i", *(f"{v:.4f}" for v in svm["L_i"]), "2.9  0  12.9"])
    rows.append(["svm L = mean L_i", f"{svm['L']:.4f}", "", "", "5.27"])
    out.append(common.format_table("SVM loss: the lecture's example (3 training images, 3 classes)",
                                   ["", "cat image", "car image", "frog image", "lecture"], rows))

    lect_exp, lect_p = ["24.5", "164.0", "0.18"], ["0.13", "0.87", "0.00"]
    rows = [[f"softmax {name}", f"{SCORES[0][k]:.2f}", f"{sm['exp'][k]:.4f}", f"{sm['p'][k]:.4f}",
             f"{sm['dL_ds'][k]:+.4f}", f"{lect_exp[k]}  {lect_p[k]}"]
            for k, name in enumerate(CLASSES)]
    rows.append(["softmax L_i = -log p_cat", "", "", f"{sm['L_i']:.4f}", "", "2.04"])
    out.append(common.format_table(
        "Softmax / cross-entropy: the lecture's example (the cat image)",
        ["", "score s", "exp(s)", "p", "dL_i/ds", "lecture exp, p"], rows))

    ch, rg, am, init = r["small_change"], r["loss_range"], r["all_and_mean"], r["initial_loss"]
    rows = [
        ["svm car image, scores +-0.5",
         f"max |change| {ch['svm_max_change']:.4f} over {ch['draws']} draws", "no change"],
        ["svm car image, worst-case shift",
         f"still 0 up to shift {ch['svm_zero_up_to_shift']:.2f} (= 1.9 / 2)",
         "for small values"],
        ["softmax car image, scores +-0.5",
         f"max |change| {ch['softmax_max_change']:.4f}", "(not asked)"],
        ["svm min", f"{rg['svm']['correct_up'][-1]:.4f} once s_y >= s_j + 1", "0"],
        ["svm max", f"{rg['svm']['wrong_up'][-1]:.1f} at s_car + 1e6, grows without bound",
         "inf"],
        ["softmax min", f"{rg['softmax']['correct_up'][2]:.2g} at s_y + 10, "
         f"{rg['softmax']['correct_up'][3]:.2g} at s_y + 40 (rounding), never < 0",
         "infimum 0"],
        ["softmax max", f"{rg['softmax']['wrong_up'][-1]:.1f} at s_car + 1e6, no bound",
         "unbounded"],
        ["svm at s = 0 (C = 3)", f"{init['toy']['svm']:.4f}", "C - 1 = 2"],
        ["softmax at s = 0 (C = 3)", f"{init['toy']['softmax']:.4f}",
         f"log C = {math.log(3):.4f}"],
    ]
    if "skipped" in init:
        rows.append(["initial loss on real data", "skipped: " + init["skipped"][:60], ""])
    else:
        c = init["C"]
        for m in ("linear", "mlp"):
            rows.append([f"svm at init, {m}", _spread(init[m]["svm"]), f"C - 1 = {c - 1}"])
            rows.append([f"softmax at init, {m}", _spread(init[m]["softmax"]),
                         f"log C = {math.log(c):.4f} (~2)"])
    rows += [
        ["svm sum over all j (incl. y_i)",
         "L_i + " + ", ".join(f"{v:.4f}" for v in am["all_minus_sum"])
         + f"; grad diff {am['all_grad_max_diff']:.1g}", "no difference (adds 1)"],
        ["svm mean over j instead of sum",
         "L_i x " + ", ".join(f"{v:.4f}" for v in am["mean_over_sum"])
         + f"; grad x {am['mean_grad_over_sum_grad']:.4f}", "no difference (scaling)"],
    ]
    where = ("" if "skipped" in init else
             f" (real data: {init['dataset']}, {init['images']} test images, "
             f"{init['seeds']} init seed{'s' * (init['seeds'] > 1)})")
    out.append(common.format_table("The lecture's questions, measured" + where,
                                   ["question", "measured", "lecture"], rows, left=3))
    return out


def log_to_tensorboard(run_dir: Path, r: dict, text: list[str]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(run_dir)) as w:
        for k, t in enumerate(text):
            w.add_text(f"tables/{k}", "```\n" + t + "\n```")
        w.add_text("axes", "car_image_shift: step = 100 x shift of the car and frog scores; "
                           "cat_image: step = 10 x t added to one score")
        ch = r["small_change"]
        for k in range(len(ch["curve_t"])):
            w.add_scalar("car_image_shift/svm", ch["curve_svm"][k], k)
            w.add_scalar("car_image_shift/softmax", ch["curve_softmax"][k], k)
        rg = r["loss_range"]
        for k in range(len(rg["curve_t"])):
            for loss in ("svm", "softmax"):
                w.add_scalar(f"cat_image_correct_score_up/{loss}", rg[loss]["curve_correct_up"][k],
                             k)
                w.add_scalar(f"cat_image_car_score_up/{loss}", rg[loss]["curve_wrong_up"][k], k)


def main(argv: list[str] | None = None) -> dict:
    t0 = time.perf_counter()
    args = parse_args(argv)
    r = {
        "svm_example": svm_example(),
        "softmax_example": softmax_example(),
        "small_change": small_change_of_car_scores(200 if args.quick else 10_000, args.seed),
        "loss_range": loss_range(),
        "all_and_mean": all_classes_and_mean(),
        "initial_loss": initial_losses(args),
    }
    text = tables(r)
    print("\n\n".join(text))
    run_dir = common.run_dir(args.logdir, EXPERIMENT, data.short_name(args.dataset))
    log_to_tensorboard(run_dir, r, text)
    r["run_dir"] = str(run_dir)
    r["seconds"] = time.perf_counter() - t0
    print(f"\nTensorBoard events in {run_dir} ({r['seconds']:.1f}s)")
    return r


if __name__ == "__main__":
    main(sys.argv[1:])
