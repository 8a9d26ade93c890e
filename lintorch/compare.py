"""lintorch's hand-written losses side by side with torch's built-ins, one table per check:

    python -m lintorch.compare --json compare.json

1. agreement: value and gradient of each loss and reduction with its built-in on random float64
   inputs (``C * F.multi_margin_loss``, ``F.cross_entropy``, ``F.mse_loss``), and ``gradcheck``;
2. speed: forward + backward of each against its built-in, timed alternately, as ratios;
3. training: one seed and config with ``--impl lintorch`` and ``--impl torch``, as sibling runs
   that TensorBoard overlays.

The exit code is 1 when a difference exceeds its tolerance (speed never fails it), for CI."""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import Tensor
from torch.autograd import gradcheck

from . import console, data, files, losses, train

LOSSES = tuple(losses.LOSSES)
# Both sides evaluate the same formula in float64, so they may differ by rounding alone: a few
# ulps of values up to ~1e3, summed over ~1e3 terms, stays far below 1e-9.
VALUE_TOL = 1e-9
GRAD_TOL = 1e-9
# Training in float32 with the two implementations rounds differently at every step, and large
# steps amplify the differences: after 3 epochs of Fashion-MNIST they measured 5e-7 of the
# largest weight at lr 0.05 and 2e-4 at the default lr 0.1. The final weights must agree to
# this fraction of the largest one (float64 runs agree to 1e-9: tests/test_train.py).
WEIGHT_RTOL = 1e-3


def random_inputs(loss: str, n: int, c: int, dtype=torch.float64, device="cpu",
                  seed: int = 0) -> tuple[Tensor, Tensor]:
    """Scores (n, c) and a target: labels for svm and softmax, a float (n, c) for mse. SVM
    scores are kept 0.05 away from the hinge's kinks, where the gradient jumps and a finite
    difference (gradcheck) would straddle two slopes."""
    g = torch.Generator().manual_seed(seed)
    s = 3 * torch.randn(n, c, generator=g, dtype=torch.float64)
    if loss == "mse":
        target = torch.randn(n, c, generator=g, dtype=torch.float64)
        return s.to(device, dtype), target.to(device, dtype)
    y = torch.randint(c, (n,), generator=g)
    if loss == "svm":
        margins = s - s.gather(1, y[:, None]) + 1.0
        near = (margins.abs() < 0.05).scatter_(1, y[:, None], False)
        s = s + 0.2 * near
    return s.to(device, dtype), y.to(device)


def check_agreement(loss: str, reduction: str, n: int = 32, c: int = 10, seed: int = 0,
                    custom: Callable[..., Tensor] | None = None,
                    builtin: Callable[..., Tensor] | None = None) -> dict:
    """Largest |value difference| and |gradient difference| of ``custom`` against ``builtin``
    (default: lintorch's loss and torch's), and whether gradcheck passes, in float64."""
    custom, builtin = custom or losses.LOSSES[loss], builtin or losses.BUILTIN_LOSSES[loss]
    s, target = random_inputs(loss, n, c, seed=seed)
    # mse is differentiable in both arguments; the classification losses in the scores alone
    wrt, fixed = ([s, target], []) if loss == "mse" else ([s], [target])

    def value_and_grads(fn):
        inputs = [t.clone().requires_grad_(True) for t in wrt]
        L = fn(*inputs, *fixed, reduction=reduction)
        # one random upstream gradient, the same for both sides, so "none" is checked in full
        v = torch.randn(L.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=L.dtype)
        return L.detach(), torch.autograd.grad(L, inputs, grad_outputs=v)

    (L_c, g_c), (L_b, g_b) = value_and_grads(custom), value_and_grads(builtin)
    value_diff = _max_abs_diff(L_c, L_b)
    grad_diff = max(_max_abs_diff(a, b) for a, b in zip(g_c, g_b))
    passed = gradcheck(lambda *xs: custom(*xs, *fixed, reduction=reduction),
                       tuple(t.clone().requires_grad_(True) for t in wrt),
                       eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=False)
    ok = value_diff <= VALUE_TOL and grad_diff <= GRAD_TOL and passed
    return {"loss": loss, "reduction": reduction, "value_diff": value_diff,
            "grad_diff": grad_diff, "gradcheck": bool(passed), "ok": bool(ok)}


def _max_abs_diff(a: Tensor, b: Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def check_all() -> list[dict]:
    return [check_agreement(loss, reduction) for loss in LOSSES for reduction in losses.REDUCTIONS]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _block(fn: Callable[[], object], k: int, device: torch.device) -> float:
    """Seconds per call of fn, over k calls in a row."""
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(k):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / k


def time_alternating(fns: dict[str, Callable[[], object]], repeats: int = 7,
                     min_block_s: float = 0.02, device: str | torch.device = "cpu"
                     ) -> dict[str, float]:
    """Median seconds per call of each fn, timed in blocks that take turns (reversing the order
    every round), so a machine slowing down or speeding up weighs on all of them alike."""
    device, calls = torch.device(device), {}
    for name, fn in fns.items():
        fn()  # warm-up: first-call allocation and dispatch caches
        k = 1
        while _block(fn, k, device) * k < min_block_s and k < 1 << 20:
            k *= 2
        calls[name] = k
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(max(1, repeats)):
        for name in list(fns) if r % 2 == 0 else list(fns)[::-1]:
            times[name].append(_block(fns[name], calls[name], device))
    return {name: statistics.median(ts) for name, ts in times.items()}


def loss_speed(n: int, c: int = 10, device: str | torch.device = "cpu", repeats: int = 7,
               min_block_s: float = 0.02) -> dict[str, dict]:
    """Forward + backward seconds of each loss in float32 at batch n: lintorch's Function as
    training applies it, lintorch's checked functional (which validates the labels), and
    torch's built-in; ``ratio`` is Function / built-in, ``checked_ratio`` functional / built-in."""
    device, result = torch.device(device), {}
    for loss in LOSSES:
        s, target = random_inputs(loss, n, c, dtype=torch.float32, device=device)
        s.requires_grad_(True)

        def step(fn, s=s, target=target):
            return lambda: torch.autograd.grad(fn(s, target), s)

        # "function": what training applies, without the per-call label check
        fns = {"function": losses.loss_fn(loss), "checked": losses.LOSSES[loss],
               "builtin": losses.BUILTIN_LOSSES[loss]}
        t = time_alternating({k: step(fn) for k, fn in fns.items()}, repeats, min_block_s, device)
        result[loss] = {"loss": loss, "n": n, "c": c, "device": device.type,
                        **{f"{k}_s": seconds for k, seconds in t.items()},
                        "ratio": t["function"] / t["builtin"],
                        "checked_ratio": t["checked"] / t["builtin"]}
    return result


def speed_devices(device: str = "auto") -> list[str]:
    """The CPU always, and CUDA unless --device cpu (or there is no GPU)."""
    return ["cpu"] + (["cuda"] if device != "cpu" and torch.cuda.is_available() else [])


def train_overlay(dataset: str, data_root: str | None = None, epochs: int = 3,
                  limit: int | None = None, device: str = "auto", logdir: str = "runs",
                  seed: int = 0) -> dict:
    """Train the same config with both implementations into ``logdir/compare-<time>/{lintorch,
    torch}``, and compare the final models."""
    group = files.unique_dir(logdir, f"compare-{time.strftime('%Y%m%d-%H%M%S')}")
    models, metrics = {}, {}
    for impl in train.IMPLS:
        cfg = train.TrainConfig(dataset=dataset, impl=impl, epochs=epochs, limit=limit,
                                data_root=data_root, no_download=True, device=device,
                                seed=seed, logdir=str(group), run_name=impl, quiet=True)
        models[impl], metrics[impl] = train.train_model(cfg)
    a, b = ({k: p.detach() for k, p in models[impl].named_parameters()} for impl in train.IMPLS)
    weight_diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    weight_max = max(float(p.abs().max()) for p in a.values())
    tolerance = WEIGHT_RTOL * weight_max
    runs = {impl: {"test_accuracy": m["test"]["accuracy"], "val_accuracy": m["val"]["accuracy"],
                   "train_loss": m["train"]["loss"], "run_dir": m["run_dir"]}
            for impl, m in metrics.items()}
    return {"dataset": dataset, "epochs": epochs, "limit": limit,
            "device": metrics["lintorch"]["device"], "logdir": str(group), "runs": runs,
            "max_abs_weight_diff": weight_diff, "max_abs_weight": weight_max,
            "tolerance": tolerance, "ok": weight_diff <= tolerance}


def _table(header: list[str], rows: list[list[str]]) -> str:
    return console.format_table(None, header, rows, left=len(header))


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f}"


def format_report(results: dict) -> str:
    """The results as plain-text tables, one per check."""
    parts = [f"Agreement with torch's built-ins (float64; tolerance {VALUE_TOL:g} on values, "
             f"{GRAD_TOL:g} on gradients)"]
    parts.append(_table(
        ["loss", "reduction", "max |dL|", "max |dgrad|", "gradcheck", "verdict"],
        [[r["loss"], r["reduction"], f"{r['value_diff']:.2e}", f"{r['grad_diff']:.2e}",
          "pass" if r["gradcheck"] else "FAIL", "ok" if r["ok"] else "FAIL"]
         for r in results["agreement"]]))
    if results.get("speed"):
        parts.append("\nForward + backward time, float32, C = 10, median of alternating blocks "
                     "(ratio = lintorch / torch; checked = the public function, which also "
                     "validates labels)")
        parts.append(_table(
            ["device", "N", "loss", "lintorch us", "checked us", "torch us", "ratio",
             "checked ratio"],
            [[r["device"], f"{r['n']:,}", r["loss"], _us(r["function_s"]), _us(r["checked_s"]),
              _us(r["builtin_s"]), f"{r['ratio']:.2f}x", f"{r['checked_ratio']:.2f}x"]
             for r in results["speed"]]))
    if (t := results.get("train")) is not None:
        parts.append("\nTraining overlay")
        if "skipped" in t:
            parts.append(f"skipped: {t['skipped']}")
        else:
            parts.append(_table(
                ["impl", "test accuracy", "val accuracy", "train loss", "run"],
                [[impl, f"{100 * r['test_accuracy']:.2f}%", f"{100 * r['val_accuracy']:.2f}%",
                  f"{r['train_loss']:.4f}", r["run_dir"]] for impl, r in t["runs"].items()]))
            parts.append(
                f"{data.short_name(t['dataset'])}, {t['epochs']} epochs on {t['device']}: "
                f"largest |dW| = {t['max_abs_weight_diff']:.2e} (largest |W| "
                f"{t['max_abs_weight']:.2e}, tolerance {t['tolerance']:.2e}): "
                f"{'ok' if t['ok'] else 'FAIL'}")
            parts.append(f"overlay the curves with: tensorboard --logdir {t['logdir']}")
    parts.append(f"\n{'all differences within tolerance' if results['ok'] else 'FAILED'}")
    return "\n".join(parts)


def run(args: argparse.Namespace) -> dict:
    cuda = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    results: dict = {
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "platform": platform.platform(), "threads": torch.get_num_threads(),
                        "cuda": cuda},
        "tolerances": {"value": VALUE_TOL, "grad": GRAD_TOL, "weight_rtol": WEIGHT_RTOL},
        "agreement": check_all(), "speed": []}
    if not args.no_speed:
        for device in speed_devices(args.device):
            for n in args.sizes:
                results["speed"] += loss_speed(n, 10, device, args.repeats).values()
    if not args.no_train:
        dataset = args.dataset or data.find_dataset(args.data_root)
        if dataset is None:
            where = data.resolve_root(args.data_root)
            results["train"] = {"skipped": f"no CIFAR-10 or Fashion-MNIST under {where} "
                                           "(--data-root or LINTORCH_DATA)"}
        else:
            results["train"] = train_overlay(dataset, args.data_root, args.epochs, args.limit,
                                             args.device, args.logdir, args.seed)
    ok = all(r["ok"] for r in results["agreement"]) and results.get("train", {}).get("ok", True)
    results["ok"] = bool(ok)
    return results


def build_parser() -> argparse.ArgumentParser:
    from . import cli

    parser = argparse.ArgumentParser(
        prog="python -m lintorch.compare",
        description="Compare lintorch's hand-written losses with torch's built-ins: values and "
                    "gradients, speed, and a training run with each. Exit code 1 when a "
                    "difference exceeds its tolerance.",
        formatter_class=cli.HelpFormatter)
    a, count = parser.add_argument, cli.positive(int)
    a("--no-train", action="store_true", help="skip the training overlay")
    a("--no-speed", action="store_true", help="skip the timings")
    # The training overlay's settings are lintorch.train's, but for these defaults.
    flags = cli.add_training_flags(
        parser, only=("dataset", "epochs", "data_root", "device", "logdir", "limit", "seed"),
        dataset=None, epochs=3)
    flags["dataset"].help += " (unset here: cifar10 if found under the data root, else " \
                             "fashion-mnist)"
    flags["epochs"].help = "epochs of each training run (default: %(default)s)"
    flags["device"].help += "; the timings run on the CPU, and on CUDA unless cpu"
    flags["logdir"].help += "; the runs go to LOGDIR/compare-<time>/{lintorch,torch}"
    a("--sizes", type=count, nargs="+", default=[256, 50_000],
      help="batch sizes N to time (default: %(default)s)")
    a("--repeats", type=count, default=7,
      help="alternating timing rounds per loss and size (default: %(default)s)")
    a("--json", metavar="PATH", help="also write the results as JSON to PATH")
    return parser


def main(argv: list[str] | None = None) -> int:
    from . import cli

    args = build_parser().parse_args(argv)

    def work() -> int:
        results = run(args)
        print(format_report(results))
        if args.json:
            try:
                files.write_json(args.json, results)
            except OSError as e:  # else the message names write_json's temporary file
                raise OSError(f"cannot write {args.json}: {e.strerror or e}") from None
        return 0 if results["ok"] else 1

    return cli.run_main(work, error_code=2)  # 1 is taken: a difference too large


if __name__ == "__main__":
    sys.exit(main())
