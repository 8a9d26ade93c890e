"""How fast is lintorch's training, and why: against the floor and the usual torchvision pipeline;
and what a (learning rate x regularization) sweep costs.

    python experiments/benchmark.py --json bench.json   # ~6 minutes on a busy 2-core CPU for
                                                        # (a)-(e), a couple more for (f), (g)
    python experiments/benchmark.py --quick             # every size shrunk: a smoke run

Every speed figure is a ratio of two things timed alternately in this one process, so a machine
that slows down slows both sides alike. (Not quite when other processes keep every CPU busy:
then multi-threaded ops stall on descheduled threads, unevenly; the table warns, and
--threads 1 is steadier.)

(a) lintorch's linear softmax epoch (``fit``, batch 256) against the floor: a bare loop of the
    same matrix multiplies over the same in-memory tensors, gradient by hand, no autograd;
(b) the same epoch against the pipeline most users write: a torchvision-CIFAR10-style Dataset
    of PIL images + ToTensor + Normalize + DataLoader(shuffle=True, batch_size=256), with 0 and
    2 workers, + nn.Linear + F.cross_entropy + torch.optim.SGD;
(c) the custom losses against torch's built-ins (``lintorch.compare.loss_speed``);
(d) the time to load the data set, and the peak resident memory of a default training run
    (``python -m lintorch.train``, in a child process);
(e) on a CUDA GPU when there is one: (a)-(c), (f) and (g) there, and the default run's wall
    time;
(f) a 5 x 5 sweep (``lintorch.sweep.run``, 25 models) against one model (``fit``) on the same
    prepared tensors, same epochs and batch size, both without TensorBoard, taking turns: the
    ratio of their wall times (issue #6: at most 3x on a CPU, 2x on a CUDA GPU); the JSON adds
    the per-epoch ratio and the 25 models' bare matrix products per epoch, a floor no sweep has
    under it;
(g) the peak resident memory of ``python -m lintorch.sweep`` training those 25 models for one
    epoch on the CIFAR-10-sized set, in a child process like (d)'s (issue #6: at most 2.5 GB;
    nothing a run allocates grows with the epochs).

Data: the real CIFAR-10 when --data-root or $LINTORCH_DATA holds it, otherwise a full-size one
of random pixels (50,000 + 10,000 images, the official file format) written to a temporary
folder and read through lintorch's own loader; and the same measurements on Fashion-MNIST when
it is installed. Random pixels cost what real ones cost: no step looks at their values.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from lintorch import compare, data, sweep
from lintorch.train import TrainConfig, fit

REPO = Path(__file__).resolve().parents[1]
FASHION_SYSTEM_ROOT = "/usr/share/datasets/fashion-mnist"  # Debian's fashion-mnist package
BATCH_SIZE = 256

# (what, value must be "lower"/"higher" than, target); the targets, never loosened
TARGETS = {
    "epoch_vs_floor": ("<=", 1.3),
    "speedup_vs_pipeline": (">=", 10.0),
    "loss_small": ("<=", 1.5),
    "loss_large": ("<=", 1.0),
    "load_s": ("<=", 3.0),
    "peak_rss_gb": ("<=", 2.0),
    "sweep_vs_fit_cpu": ("<=", 3.0),
    "sweep_vs_fit_cuda": ("<=", 2.0),
    "sweep_peak_rss_gb": ("<=", 2.5),
}
SWEEP_LRS = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
SWEEP_REGS = [0.0, 1e-4, 1e-3, 1e-2, 1e-1]
SWEEP_ONE = (1e-2, 1e-3)  # the one model (f) times alone: the grid's middle point


@dataclasses.dataclass
class Sizes:
    cifar_per_batch: int = 10_000  # x 5 training batches
    cifar_test: int = 10_000
    limit: int | None = None  # training images for (a), (b) and (f)
    epochs: int = 3  # per timed fit; the first is a warm-up and not counted
    rounds: int = 3  # alternations of (a)/(b)
    loss_sizes: tuple[int, int] = (256, 50_000)
    loss_repeats: int = 7
    min_block_s: float = 0.02
    load_repeats: int = 3
    child_args: tuple[str, ...] = ()  # extra flags of the default run
    sweep_epochs: int = 3  # per timed fit and sweep of (f), all counted
    sweep_rounds: int = 2  # alternations of fit and sweep
    sweep_child_args: tuple[str, ...] = ("--epochs", "1")  # extra flags of (g)'s sweep


QUICK = Sizes(cifar_per_batch=300, cifar_test=300, limit=1500, epochs=2, rounds=1,
              loss_sizes=(256, 2048), loss_repeats=3, min_block_s=0.005, load_repeats=1,
              child_args=("--epochs", "1", "--limit", "1000", "--val-size", "200"),
              sweep_epochs=1, sweep_rounds=1,
              sweep_child_args=("--epochs", "1", "--val-size", "200"))


# ---------------------------------------------------------------------------------------------
# The three training loops


def lintorch_epochs(d: data.Prepared, dataset: str, sizes: Sizes, device: str, logdir: str,
                    cuda_graphs: bool = True) -> list[float]:
    """Seconds per epoch of lintorch's own loop (``fit``), past the first epoch."""
    cfg = TrainConfig(dataset=dataset, batch_size=BATCH_SIZE, epochs=sizes.epochs, device=device,
                      logdir=logdir, tensorboard=False, quiet=True, cuda_graphs=cuda_graphs)
    history = fit(cfg, prepared=d)["history"]
    return [row["epoch_time_s"] for row in history[1:]]


@torch.no_grad()
def floor_epochs(d: data.Prepared, cfg: TrainConfig, device: str) -> list[float]:
    """The floor: per batch, the same matrix multiplies as lintorch's step (scores and the
    weight gradient) with the softmax gradient p - onehot(y) written inline, no autograd, no
    bookkeeping; per epoch, the same validation pass. Seconds per epoch, past the first."""
    x, y = d.train_x.flatten(1), d.train_y
    val_x, val_y = d.val_x.flatten(1), d.val_y
    (n, dim), c = x.shape, len(d.classes)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    W = 1e-3 * torch.randn(c, dim, generator=gen, device=device, dtype=x.dtype)
    b = torch.zeros(c, device=device, dtype=x.dtype)
    minus_one = torch.full((cfg.batch_size, 1), -1.0, device=device, dtype=x.dtype)
    times = []
    for _ in range(cfg.epochs):
        _sync(device)
        t0 = time.perf_counter()
        for idx in torch.randperm(n, generator=gen, device=device).split(cfg.batch_size):
            # index_select: the fastest row gather (on the CPU ~3x faster than x[idx])
            floor_step(W, b, x.index_select(0, idx), y.index_select(0, idx), cfg.lr, cfg.reg,
                       minus_one)
        (torch.addmm(b, val_x, W.T).argmax(1) == val_y).float().mean().item()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times[1:]


@torch.no_grad()
def floor_step(W: Tensor, b: Tensor, x: Tensor, y: Tensor, lr: float, reg: float,
               minus_one: Tensor) -> None:
    """One SGD step on mean cross-entropy + reg |W|^2, in place: dL/ds = (p - onehot(y)) / N,
    dL/dW = dL/ds^T x + 2 reg W, dL/db = column sums of dL/ds. ``minus_one``: (>= N, 1) of -1."""
    p = torch.addmm(b, x, W.T).softmax(1)
    dS = p.scatter_add_(1, y.unsqueeze(1), minus_one[: len(y)]).div_(len(y))
    # the L2 penalty's gradient rides in the same addmm
    W.sub_(torch.addmm(W, dS.T, x, beta=2 * reg), alpha=lr)
    b.sub_(dS.sum(0), alpha=lr)


class PILImageDataset(Dataset):
    """What ``torchvision.datasets.CIFAR10`` does per item: an HWC uint8 array becomes a PIL
    image, which the transform turns into a tensor."""

    def __init__(self, images: np.ndarray, labels: list[int], transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def pipeline_dataset(d: data.Prepared) -> PILImageDataset:
    """lintorch's training split, back as the uint8 images it came from (x * std + mean) * 255,
    behind the usual ToTensor + Normalize with the same per-channel statistics."""
    x = d.train_x.cpu() * d.std.cpu() + d.mean.cpu()
    images = x.mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    images = np.ascontiguousarray(images[..., 0] if images.shape[-1] == 1 else images)
    normalize = transforms.Normalize(d.mean.flatten().tolist(), d.std.flatten().tolist())
    return PILImageDataset(images, d.train_y.cpu().tolist(),
                           transforms.Compose([transforms.ToTensor(), normalize]))


def pipeline_epoch(dataset: PILImageDataset, in_features: int, num_classes: int,
                   cfg: TrainConfig, num_workers: int, device: str) -> float:
    """Seconds of one epoch of the usual torchvision-style loop (worker start-up included, as
    without persistent_workers every epoch pays it)."""
    torch.manual_seed(cfg.seed)
    model = nn.Linear(in_features, num_classes).to(device)
    # weight_decay w adds w W to the gradient: 2 reg W is the lecture's L2 penalty reg |W|^2
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, weight_decay=2 * cfg.reg)
    loader = DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, num_workers=num_workers)
    _sync(device)
    t0 = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x.flatten(1)), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    _sync(device)
    return time.perf_counter() - t0


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------
# Measurements


def _measurement(key: str, what: str, dataset: str | None, device: str, value: float,
                 unit: str, target_key: str | None = None, **detail) -> dict:
    op, target = TARGETS[target_key] if target_key else (None, None)
    verdict = "-"
    if target is not None:
        verdict = "PASS" if (value <= target if op == "<=" else value >= target) else "MISS"
    return {"key": key, "what": what, "dataset": dataset, "device": device, "value": value,
            "unit": unit, "target": target, "op": op, "verdict": verdict, "detail": detail}


def measure_training(raw: data.RawData, sizes: Sizes, device: str, tmp: str) -> list[dict]:
    """(a) and (b) on one data set and device: all loops take turns, round after round."""
    d = data.prepare(raw, device=device, limit=sizes.limit)
    cfg = TrainConfig(dataset=raw.name, batch_size=BATCH_SIZE, epochs=sizes.epochs).resolved()
    pipeline = pipeline_dataset(d)
    in_features, num_classes = d.train_x[0].numel(), len(d.classes)
    loops = {
        "lintorch": lambda: lintorch_epochs(d, raw.name, sizes, device, tmp),
        "floor": lambda: floor_epochs(d, cfg, device),
        "pipeline_w0": lambda: [pipeline_epoch(pipeline, in_features, num_classes, cfg, 0,
                                               device)],
        "pipeline_w2": lambda: [pipeline_epoch(pipeline, in_features, num_classes, cfg, 2,
                                               device)],
    }
    if torch.device(device).type == "cuda":  # what the CUDA graphs save: eager steps too
        loops["lintorch_eager"] = lambda: lintorch_epochs(d, raw.name, sizes, device, tmp,
                                                          cuda_graphs=False)
    times: dict[str, list[float]] = {name: [] for name in loops}
    order = list(loops)
    for r in range(sizes.rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            times[name] += loops[name]()
    med = {name: statistics.median(ts) for name, ts in times.items()}
    n = d.train_x.shape[0]
    rows = [_measurement("a", "lintorch epoch / bare-loop floor", raw.name, device,
                         med["lintorch"] / med["floor"], "x", "epoch_vs_floor",
                         lintorch_epoch_s=med["lintorch"], floor_epoch_s=med["floor"],
                         lintorch_eager_epoch_s=med.get("lintorch_eager"),
                         train_images=n, epochs_timed=len(times["floor"]))]
    for w in (0, 2):
        rows.append(_measurement(
            "b", f"torchvision pipeline ({w} workers) / lintorch epoch", raw.name, device,
            med[f"pipeline_w{w}"] / med["lintorch"], "x", "speedup_vs_pipeline",
            pipeline_epoch_s=med[f"pipeline_w{w}"], lintorch_epoch_s=med["lintorch"],
            num_workers=w, train_images=n, epochs_timed=len(times[f"pipeline_w{w}"])))
    return rows


def measure_losses(sizes: Sizes, device: str) -> list[dict]:
    """(c): compare.loss_speed at a small and a large batch."""
    rows = []
    for n, target in zip(sizes.loss_sizes, ("loss_small", "loss_large")):
        speed = compare.loss_speed(n, 10, device, sizes.loss_repeats, sizes.min_block_s)
        for loss, r in speed.items():
            rows.append(_measurement(
                "c", f"{loss} loss fwd+bwd / built-in, N={n:,}", None, device, r["ratio"], "x",
                target, lintorch_s=r["function_s"], builtin_s=r["builtin_s"],
                checked_s=r["checked_s"], checked_ratio=r["checked_ratio"], n=n))
    return rows


def measure_load(name: str, root: str, sizes: Sizes) -> tuple[data.RawData, dict]:
    """(d): seconds for ``load_dataset``, median of a few loads (the files are in the page
    cache after the first, as on any machine that trains more than once)."""
    times = []
    for _ in range(sizes.load_repeats):
        t0 = time.perf_counter()
        raw = data.load_dataset(name, root, download=False)
        times.append(time.perf_counter() - t0)
    return raw, _measurement("d", f"load {name}", name, "cpu", statistics.median(times), "s",
                             "load_s", loads=times, root=str(root))


# Linux carries ru_maxrss across fork and exec, so a child started by this (large) process would
# report this process's peak; /proc/self/status's VmHWM belongs to the child's own memory map.
_CHILD = """
import importlib, json, resource, sys
code = importlib.import_module(sys.argv[1]).main(sys.argv[2:])
try:
    with open("/proc/self/status") as f:
        peak_kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
except OSError:
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_kib //= 1024 if sys.platform == "darwin" else 1  # bytes there, KiB on Linux
print("BENCHMARK-CHILD", json.dumps({"exit_code": code, "peak_kib": peak_kib}))
"""


def run_child(module: str, args: list[str]) -> tuple[float, float]:
    """``python -m <module> <args>`` in a child process that reports its own peak RSS:
    (peak RSS in GB, wall seconds as the user sees them, interpreter start-up included)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, module, *args], capture_output=True,
                          text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCHMARK-CHILD ")), None)
    child = json.loads(line.split(" ", 1)[1]) if line else {}
    if proc.returncode != 0 or child.get("exit_code") != 0:
        raise RuntimeError(f"python -m {module} failed ({proc.returncode}): "
                           f"{proc.stderr[-2000:]}")
    return child["peak_kib"] * 1024 / 1e9, wall


def measure_default_run(name: str, root: str, sizes: Sizes, device: str, tmp: str
                        ) -> list[dict]:
    """(d), (e): ``python -m lintorch.train`` with the data set's defaults: peak RSS, and wall
    time."""
    args = ["--dataset", name, "--data-root", str(root), "--no-download", "--device", device,
            "--logdir", str(Path(tmp) / "default-runs"), "--quiet", *sizes.child_args]
    rss_gb, wall = run_child("lintorch.train", args)
    cmd = "python -m lintorch.train " + " ".join(args)
    return [
        _measurement("d", "peak RSS of a default training run", name, device, rss_gb, "GB",
                     "peak_rss_gb", command=cmd),
        _measurement("d" if device == "cpu" else "e", "wall time of a default training run",
                     name, device, wall, "s", None, command=cmd),
    ]


@torch.no_grad()
def matmul_floor_epoch(d: data.Prepared, batch_size: int, models: int, device: str) -> float:
    """(f)'s floor: seconds for the arithmetic no K-model step can skip: per batch, the scores
    of all K models (one (B, D) x (D, K*C) product) and their weight gradient (one
    (K*C, B) x (B, D) product), over one epoch. Nothing else: no loss, no update, no
    bookkeeping."""
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


def measure_sweep_speed(raw: data.RawData, sizes: Sizes, device: str, tmp: str) -> dict:
    """(f) on one data set and device: wall time of the 5 x 5 sweep / wall time of one fit.

    Why the CPU figure depends on the data's width: a step of K models costs K times the matrix
    multiplies of one (4 N D C flops per model and epoch), and on a CPU one model's step is
    mostly fixed per-step overhead, not arithmetic. The ratio is therefore about
    (K * gemm + overhead) / (gemm + overhead): small when D C is small (Fashion-MNIST, D = 784),
    larger for CIFAR-10 (D = 3072). On a GPU the K models' arithmetic is nearly free and the
    step count rules.
    """
    d = data.prepare(raw, device=device, limit=sizes.limit)
    cfg = TrainConfig(dataset=raw.name, epochs=sizes.sweep_epochs, device=device, logdir=tmp,
                      tensorboard=False, quiet=True).resolved()
    one = dataclasses.replace(cfg, lr=SWEEP_ONE[0], reg=SWEEP_ONE[1])
    models = len(SWEEP_LRS) * len(SWEEP_REGS)
    calls = {"fit": lambda: fit(one, prepared=d),
             "sweep": lambda: sweep.run(cfg, SWEEP_LRS, SWEEP_REGS, prepared=d)}

    def timed(what: str) -> tuple[float, dict]:
        _sync(device)
        t0 = time.perf_counter()
        result = calls[what]()
        _sync(device)
        return time.perf_counter() - t0, result

    timed("fit")  # warm-up: first-call costs (allocator, kernels, MKL) are no one's fault
    walls: dict[str, list[float]] = {"fit": [], "sweep": []}
    epochs: dict[str, list[float]] = {"fit": [], "sweep": []}
    floor, diverged = [], 0
    for r in range(sizes.sweep_rounds):
        floor.append(matmul_floor_epoch(d, cfg.batch_size, models, device))
        for what in (["fit", "sweep"] if r % 2 == 0 else ["sweep", "fit"]):
            wall, result = timed(what)
            walls[what].append(wall)
            history = (result["history"] if what == "fit" else
                       next(m["history"] for m in result["models"] if not m["diverged"]))
            epochs[what] += [row["epoch_time_s"] for row in history]
            if what == "sweep":
                diverged = sum(m["diverged"] for m in result["models"])
    fit_epoch = statistics.median(epochs["fit"])
    target = "sweep_vs_fit_cuda" if torch.device(device).type == "cuda" else "sweep_vs_fit_cpu"
    return _measurement(
        "f", f"5 x 5 sweep / one model, wall time, {sizes.sweep_epochs} epoch(s)", raw.name,
        device, statistics.median(walls["sweep"]) / statistics.median(walls["fit"]), "x",
        target, fit_wall_s=walls["fit"], sweep_wall_s=walls["sweep"],
        epoch_ratio=statistics.median(epochs["sweep"]) / fit_epoch,
        # the 25 models' matrix products alone / one model's whole epoch: no implementation of
        # the sweep can have an epoch ratio below this
        matmul_floor_ratio=statistics.median(floor) / fit_epoch, matmul_floor_epoch_s=floor,
        fit_epoch_s=epochs["fit"], sweep_epoch_s=epochs["sweep"],
        train_images=d.train_x.shape[0], batch_size=cfg.batch_size, models=models,
        diverged=diverged)


def measure_sweep_memory(root: str, sizes: Sizes, device: str, tmp: str) -> dict:
    """(g): ``python -m lintorch.sweep`` of the 25 models on CIFAR-10: its peak RSS."""
    args = ["--dataset", "cifar10", "--data-root", str(root), "--no-download", "--device",
            device, "--lr", *map(str, SWEEP_LRS), "--reg", *map(str, SWEEP_REGS),
            "--logdir", str(Path(tmp) / "sweep-runs"), "--quiet", *sizes.sweep_child_args]
    rss_gb, wall = run_child("lintorch.sweep", args)
    return _measurement("g", "peak RSS of a 25-model sweep", "cifar10", device, rss_gb, "GB",
                        "sweep_peak_rss_gb", command="python -m lintorch.sweep " + " ".join(args),
                        wall_s=wall)


# ---------------------------------------------------------------------------------------------
# Data


def cifar10_root(data_root: str | None, sizes: Sizes, tmp: str) -> tuple[str, str]:
    """(root, description): the real CIFAR-10 if there is one, else random pixels in tmp."""
    root = data.resolve_root(data_root)
    if data.find_dataset(root) == "cifar10":
        return str(root), f"CIFAR-10 at {root}"
    sys.path.insert(0, str(REPO / "tests"))
    from cifar_fixture import write_cifar10  # the official format, as Python 2 pickled it

    folder = Path(tmp) / "cifar10-random"
    write_cifar10(folder, n_train_per_batch=sizes.cifar_per_batch, n_test=sizes.cifar_test)
    n = 5 * sizes.cifar_per_batch
    return str(folder), (f"random pixels in CIFAR-10's format ({n:,} + {sizes.cifar_test:,}; "
                         f"no CIFAR-10 under {root})")


def fashion_root(data_root: str | None) -> str | None:
    for root in (data.resolve_root(data_root), Path(FASHION_SYSTEM_ROOT)):
        try:
            data.load_dataset("fashion-mnist", root, download=False)
        except data.DataError:
            continue
        return str(root)
    return None


# ---------------------------------------------------------------------------------------------
# Report


def _value(m: dict) -> str:
    v = m["value"]
    return {"x": f"{v:.2f}x", "s": f"{v:.2f} s", "GB": f"{v:.2f} GB"}[m["unit"]]


def _target(m: dict) -> str:
    if m["target"] is None:
        return "-"
    return f"{m['op']} {m['target']:g}{'x' if m['unit'] == 'x' else ' ' + m['unit']}"


def format_table(measurements: list[dict]) -> str:
    header = ["", "measurement", "data", "device", "value", "target", "verdict"]
    rows = [[m["key"], m["what"], m["dataset"] or "-", m["device"], _value(m), _target(m),
             m["verdict"]] for m in measurements]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _say(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict:
    sizes = QUICK if args.quick else Sizes()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for, but torch sees no CUDA GPU")
    devices = {"cpu": ["cpu"], "cuda": ["cuda"]}.get(
        args.device, ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    report = {
        "quick": args.quick,
        "environment": {
            "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(), "load_average_start": os.getloadavg(),
            "cuda": torch.cuda.get_device_name() if "cuda" in devices else None,
        },
        "datasets": {},
        "measurements": [],
    }
    out = report["measurements"]
    with tempfile.TemporaryDirectory(prefix="lintorch-bench-") as tmp:
        cifar, description = cifar10_root(args.data_root, sizes, tmp)
        report["datasets"]["cifar10"] = {"root": cifar, "source": description}
        sets = [("cifar10", cifar)]
        fashion = fashion_root(args.data_root)
        report["datasets"]["fashion-mnist"] = {"root": fashion} if fashion else None
        if fashion:
            sets.append(("fashion-mnist", fashion))
        for name, root in sets:
            _say(f"{name}: loading, then (a) and (b) on {', '.join(devices)}")
            raw, load = measure_load(name, root, sizes)
            out.append(load)
            for device in devices:
                out += measure_training(raw, sizes, device, tmp)
            for device in devices:
                _say(f"{name}: (f) 5 x 5 sweep against one model on {device}")
                out.append(measure_sweep_speed(raw, sizes, device, tmp))
            del raw
            gc.collect()
            for device in devices:
                _say(f"{name}: default training run on {device}")
                out += measure_default_run(name, root, sizes, device, tmp)
                if name == "cifar10":
                    _say(f"{name}: (g) 25-model sweep run on {device}")
                    out.append(measure_sweep_memory(root, sizes, device, tmp))
        for device in devices:
            _say(f"(c) losses on {device}")
            out += measure_losses(sizes, device)
    order = {"a": 0, "b": 1, "c": 2, "d": 3, "e": 4, "f": 5, "g": 6}
    out.sort(key=lambda m: (m["device"] != "cpu", order[m["key"]]))  # stable: CPU first
    report["environment"]["load_average_end"] = os.getloadavg()
    targeted = [m for m in out if m["target"] is not None]
    report["all_pass"] = all(m["verdict"] == "PASS" for m in targeted)
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark lintorch's training against the floor and the usual torchvision "
                    "pipeline, its losses against torch's, a 5 x 5 sweep against one model; "
                    "prints PASS/MISS per target.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data-root", default=None,
                        help="folder that may hold CIFAR-10 (unset: $LINTORCH_DATA, else "
                             "./data); random pixels in its format otherwise")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: the CPU, then CUDA too when there is a GPU; cpu or cuda: "
                             "that device alone (loading is timed in either case)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for this process (unset: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="shrink every size: a smoke run")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write JSON to PATH")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = run(args)
    datasets = "; ".join(f"{k}: {v['source'] if 'source' in v else v['root']}"
                         for k, v in report["datasets"].items() if v)
    print(f"data: {datasets}")
    env = report["environment"]
    print(f"torch {env['torch']}, {env['threads']} threads on {env['cpu_count']} CPUs"
          f"{', ' + env['cuda'] if env['cuda'] else ''}; load average "
          f"{env['load_average_start'][0]:.1f} -> {env['load_average_end'][0]:.1f}"
          f"{'; --quick: sizes shrunk, verdicts indicative only' if report['quick'] else ''}")
    busiest = max(env["load_average_start"][0], env["load_average_end"][0])
    if busiest > (env["cpu_count"] or 1) and env["threads"] > 1:
        print(f"warning: other processes kept the CPUs busy (load {busiest:.1f} on "
              f"{env['cpu_count']} CPUs): multi-threaded ops then stall on descheduled threads "
              "and CPU ratios mean little; --threads 1 is steadier")
    print(format_table(report["measurements"]))
    for m in report["measurements"]:
        if m["key"] == "a" and m["detail"].get("lintorch_eager_epoch_s"):
            det = m["detail"]
            print(f"  (a) {m['dataset']} on {m['device']}: lintorch epoch "
                  f"{det['lintorch_epoch_s']:.3f}s with CUDA graphs, "
                  f"{det['lintorch_eager_epoch_s']:.3f}s without "
                  f"({det['lintorch_eager_epoch_s'] / det['floor_epoch_s']:.2f}x the floor); "
                  f"floor {det['floor_epoch_s']:.3f}s")
        if m["key"] == "f":
            det = m["detail"]
            fit_s, sweep_s = (statistics.median(det[k]) for k in ("fit_wall_s", "sweep_wall_s"))
            print(f"  (f) {m['dataset']} on {m['device']}: one model {fit_s:.2f}s, 25 models "
                  f"{sweep_s:.2f}s; per epoch {det['epoch_ratio']:.2f}x, of which the 25 "
                  f"models' matrix products alone take {det['matmul_floor_ratio']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
