"""What does a (learning rate x regularization) sweep cost? Issue #6's speed and memory targets.

    python experiments/sweep_benchmark.py             # a couple of minutes on a 2-core CPU
    python experiments/sweep_benchmark.py --quick     # every size shrunk: a smoke run

(s) speed: a 5 x 5 grid (``lintorch.sweep.run``, 25 models) against one model
    (``lintorch.train.fit``) on the same prepared tensors, same epochs and batch size, both
    without TensorBoard; the two take turns in this one process, so a noisy machine slows both
    alike. Target: at most 3x the one model's wall time on a CPU, 2x on a CUDA GPU.
(m) memory: peak resident memory of ``python -m lintorch.sweep`` training 25 models on a
    CIFAR-10-sized data set of random pixels (50,000 + 10,000 images in the official format,
    read through lintorch's loader), in a child process that reports its own peak. One epoch:
    nothing a run allocates grows with the epochs. Target: at most 2.5 GB.

Speed is measured on Fashion-MNIST when it is installed (``data_root``, else Debian's
/usr/share/datasets/fashion-mnist) and on CIFAR-10 (the real one under ``data_root`` when it is
there, else the random-pixel set of (m)).

Why the CPU figure depends on the data's width: a step of K models costs K times the matrix
multiplies of one (4 N D C flops per model and epoch), and on a CPU one model's step is mostly
fixed per-step overhead, not arithmetic. The ratio is therefore about (K * gemm + overhead) /
(gemm + overhead): small when D C is small (Fashion-MNIST, D = 784), larger for CIFAR-10
(D = 3072). On a GPU the K models' arithmetic is nearly free and the step count rules.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lintorch import data, sweep
from lintorch.train import TrainConfig, fit

REPO = Path(__file__).resolve().parents[1]
FASHION_SYSTEM_ROOT = "/usr/share/datasets/fashion-mnist"
LRS = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
REGS = [0.0, 1e-4, 1e-3, 1e-2, 1e-1]
ONE = (1e-2, 1e-3)  # the one model timed alone: the grid's middle point
TARGETS = {"cpu": 3.0, "cuda": 2.0, "peak_rss_gb": 2.5}


@dataclasses.dataclass
class Sizes:
    cifar_per_batch: int = 10_000  # x 5 training batches: CIFAR-10's own size
    cifar_test: int = 10_000
    limit: int | None = None  # training images for (s)
    epochs: int = 3
    rounds: int = 2  # alternations of fit and sweep
    child_args: tuple[str, ...] = ("--epochs", "1")


QUICK = Sizes(cifar_per_batch=300, cifar_test=300, limit=1000, epochs=1, rounds=1,
              child_args=("--epochs", "1", "--val-size", "200"))


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def matmul_floor_epoch(d: data.Prepared, batch_size: int, models: int, device: str) -> float:
    """Seconds for the arithmetic no K-model step can skip: per batch, the scores of all K
    models (one (B, D) x (D, K*C) product) and their weight gradient (one (K*C, B) x (B, D)
    product), over one epoch. Nothing else: no loss, no update, no bookkeeping."""
    n, c = d.train_x.shape[0], len(d.classes)
    x_all = d.train_x.flatten(1)
    W = torch.zeros(models * c, x_all.shape[1], device=device, dtype=x_all.dtype)
    b = torch.zeros(models * c, device=device, dtype=x_all.dtype)
    order = torch.randperm(n, device=device)
    _sync(device)
    t0 = time.perf_counter()
    for idx in order.split(batch_size):
        x = x_all.index_select(0, idx)
        s = torch.addmm(b, x, W.T)
        s.T @ x
    _sync(device)
    return time.perf_counter() - t0


def measure_speed(name: str, root: str, sizes: Sizes, device: str, tmp: str) -> dict:
    """(s) on one data set and device: wall time of the 5 x 5 sweep / wall time of one fit."""
    raw = data.load_dataset(name, root, download=False)
    d = data.prepare(raw, device=device, limit=sizes.limit)
    del raw
    cfg = TrainConfig(dataset=name, epochs=sizes.epochs, device=device, logdir=tmp,
                      tensorboard=False, quiet=True).resolved()
    one = dataclasses.replace(cfg, lr=ONE[0], reg=ONE[1])

    def time_fit() -> tuple[float, dict]:
        _sync(device)
        t0 = time.perf_counter()
        result = fit(one, prepared=d)
        _sync(device)
        return time.perf_counter() - t0, result

    def time_sweep() -> tuple[float, dict]:
        _sync(device)
        t0 = time.perf_counter()
        result = sweep.run(cfg, LRS, REGS, prepared=d)
        _sync(device)
        return time.perf_counter() - t0, result

    time_fit()  # warm-up: first-call costs (allocator, kernels, MKL) are no one's fault
    walls = {"fit": [], "sweep": []}
    epochs = {"fit": [], "sweep": []}
    floor = []
    diverged = 0
    for r in range(sizes.rounds):
        floor.append(matmul_floor_epoch(d, cfg.batch_size, len(LRS) * len(REGS), device))
        for what in (["fit", "sweep"] if r % 2 == 0 else ["sweep", "fit"]):
            wall, result = time_fit() if what == "fit" else time_sweep()
            walls[what].append(wall)
            history = (result["history"] if what == "fit" else
                       next(m["history"] for m in result["models"] if not m["diverged"]))
            epochs[what] += [row["epoch_time_s"] for row in history]
            if what == "sweep":
                diverged = sum(m["diverged"] for m in result["models"])
    fit_s, sweep_s = statistics.median(walls["fit"]), statistics.median(walls["sweep"])
    ratio = sweep_s / fit_s
    target = TARGETS["cuda" if torch.device(device).type == "cuda" else "cpu"]
    return {
        "key": "s", "what": f"5 x 5 sweep / one model, wall time, {sizes.epochs} epoch(s)",
        "dataset": name, "device": device, "value": ratio, "unit": "x", "op": "<=",
        "target": target, "verdict": "PASS" if ratio <= target else "MISS",
        "detail": {"fit_wall_s": walls["fit"], "sweep_wall_s": walls["sweep"],
                   "epoch_ratio": statistics.median(epochs["sweep"])
                   / statistics.median(epochs["fit"]),
                   # the 25 models' matrix products alone / one model's whole epoch: no
                   # implementation of the sweep can have an epoch ratio below this
                   "matmul_floor_ratio": statistics.median(floor)
                   / statistics.median(epochs["fit"]),
                   "matmul_floor_epoch_s": floor,
                   "fit_epoch_s": epochs["fit"], "sweep_epoch_s": epochs["sweep"],
                   "train_images": d.train_x.shape[0], "batch_size": cfg.batch_size,
                   "models": len(LRS) * len(REGS), "diverged": diverged},
    }


_CHILD = """
import json, resource, sys
from lintorch import sweep
code = sweep.main(sys.argv[1:])
print("SWEEP-BENCHMARK-CHILD", json.dumps(
    {"exit_code": code, "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def measure_memory(root: str, sizes: Sizes, tmp: str) -> dict:
    """(m): ``python -m lintorch.sweep`` of 25 models on CIFAR-10-sized data, CPU, in a child
    process that reports its own ``ru_maxrss``."""
    args = ["--dataset", "cifar10", "--data-root", root, "--no-download", "--device", "cpu",
            "--lr", *map(str, LRS), "--reg", *map(str, REGS), "--logdir", str(Path(tmp) / "mem"),
            "--quiet", *sizes.child_args]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True,
                          cwd=REPO)
    wall = time.perf_counter() - t0
    line = next((ln for ln in proc.stdout.splitlines()
                 if ln.startswith("SWEEP-BENCHMARK-CHILD ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"the sweep run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    child = json.loads(line.split(" ", 1)[1])
    # ru_maxrss is in KiB on Linux, in bytes on macOS
    rss_gb = child["maxrss"] * (1 if sys.platform == "darwin" else 1024) / 1e9
    target = TARGETS["peak_rss_gb"]
    return {"key": "m", "what": "peak RSS of a 25-model sweep, random-pixel CIFAR-10",
            "dataset": "cifar10", "device": "cpu", "value": rss_gb, "unit": "GB", "op": "<=",
            "target": target, "verdict": "PASS" if rss_gb <= target else "MISS",
            "detail": {"command": "python -m lintorch.sweep " + " ".join(args),
                       "wall_s": wall, "train_images": 5 * sizes.cifar_per_batch,
                       "test_images": sizes.cifar_test}}


def _random_cifar10(folder: Path, sizes: Sizes) -> str:
    sys.path.insert(0, str(REPO / "tests"))
    from cifar_fixture import write_cifar10  # the official format, as Python 2 pickled it

    write_cifar10(folder, n_train_per_batch=sizes.cifar_per_batch, n_test=sizes.cifar_test)
    return str(folder)


def _fashion_root(data_root: str | None) -> str | None:
    for root in (data.resolve_root(data_root), Path(FASHION_SYSTEM_ROOT)):
        try:
            data.load_dataset("fashion-mnist", root, download=False)
        except data.DataError:
            continue
        return str(root)
    return None


def measure(data_root: str | None = None, quick: bool = False, threads: int | None = None
            ) -> dict:
    """(s) and (m); returns {"environment": ..., "measurements": [...], "all_pass": bool}.

    Each measurement: key, what, dataset, device, value, unit, op, target, verdict, detail.
    ``threads``: torch's CPU threads for (s) (default: torch's choice). On a machine that other
    jobs share, one thread gives steadier figures: oversubscribed OpenMP threads spin and wait.
    """
    sizes = QUICK if quick else Sizes()
    if threads:
        torch.set_num_threads(threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    report = {"quick": quick, "environment": {
        "torch": torch.__version__, "python": platform.python_version(),
        "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
        "load_average_start": os.getloadavg(),
        "cuda": torch.cuda.get_device_name() if "cuda" in devices else None}}
    out = []
    with tempfile.TemporaryDirectory(prefix="lintorch-sweep-bench-") as tmp:
        random_cifar = _random_cifar10(Path(tmp) / "cifar10-random", sizes)
        out.append(measure_memory(random_cifar, sizes, tmp))
        sets = []
        fashion = _fashion_root(data_root)
        if fashion:
            sets.append(("fashion-mnist", fashion))
        real = data.resolve_root(data_root)
        sets.append(("cifar10", str(real) if data.find_dataset(real) == "cifar10"
                     else random_cifar))
        report["datasets"] = dict(sets)
        for name, root in sets:
            for device in devices:
                out.append(measure_speed(name, root, sizes, device, tmp))
    report["environment"]["load_average_end"] = os.getloadavg()
    report["measurements"] = out
    report["all_pass"] = all(m["verdict"] == "PASS" for m in out)
    return report


def format_table(measurements: list[dict]) -> str:
    rows = [["", "measurement", "data", "device", "value", "target", "verdict"]]
    for m in measurements:
        value = f"{m['value']:.2f}{'x' if m['unit'] == 'x' else ' ' + m['unit']}"
        target = f"{m['op']} {m['target']:g}{'x' if m['unit'] == 'x' else ' ' + m['unit']}"
        rows.append([m["key"], m["what"], m["dataset"], m["device"], value, target,
                     m["verdict"]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default=None,
                        help="folder that may hold CIFAR-10 or Fashion-MNIST")
    parser.add_argument("--quick", action="store_true", help="shrink every size: a smoke run")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for the speed measurement (default: torch's choice)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write JSON to PATH")
    args = parser.parse_args(argv)
    report = measure(args.data_root, args.quick, args.threads)
    env = report["environment"]
    print(f"torch {env['torch']}, {env['threads']} threads on {env['cpu_count']} CPUs"
          f"{', ' + env['cuda'] if env['cuda'] else ''}; load average "
          f"{env['load_average_start'][0]:.1f} -> {env['load_average_end'][0]:.1f}"
          f"{'; --quick: sizes shrunk, verdicts indicative only' if report['quick'] else ''}")
    print(format_table(report["measurements"]))
    for m in report["measurements"]:
        if m["key"] == "s":
            det = m["detail"]
            fit_s, sweep_s = (statistics.median(det[k]) for k in ("fit_wall_s", "sweep_wall_s"))
            print(f"  {m['dataset']} on {m['device']}: one model {fit_s:.2f}s, 25 models "
                  f"{sweep_s:.2f}s; per epoch {det['epoch_ratio']:.2f}x, of which the 25 "
                  f"models' matrix products alone take {det['matmul_floor_ratio']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
