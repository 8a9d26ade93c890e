"""How fast lintorch trains, and against what: the same loop with torch's built-in losses, the
usual torchvision pipeline, training a sweep's models one at a time, more processes; and what
TensorBoard costs a run.

    python experiments/benchmark.py --json bench.json   # ~14 minutes on a 2-core CPU
    python experiments/benchmark.py --quick             # every size shrunk: a smoke run

Every speed figure is a ratio of two things timed alternately: in this one process, or, for
memory, the command line and several processes, in child processes started in turns. A machine
that slows down then slows both sides alike. (Not quite when other processes keep every CPU
busy: then multi-threaded ops stall on descheduled threads, unevenly; the table warns, and
--threads 1 is steadier.)

The rows, with lintorch's goal where it has one (PASS or MISS), the figure alone where not:

(a) an epoch of ``fit`` (linear softmax, batch 256) with lintorch's losses, against the same
    loop with torch's built-ins (``--impl torch``): within 1.25x on the CPU;
(b) the same epoch against a bare loop of the same matrix multiplies with the gradient written
    inline, no autograd (a retired goal: reported, no verdict);
(c) the same epoch against the pipeline most users write: a torchvision-CIFAR10-style Dataset
    of PIL images + ToTensor + Normalize + DataLoader(shuffle=True, batch_size=256), with 0 and
    2 workers, + nn.Linear + F.cross_entropy + torch.optim.SGD: lintorch at least 10x faster;
(d) each loss forward + backward against its built-in (``lintorch.compare.loss_speed``) at
    N = 50,000 on the CPU: SVM and softmax within 1.0x, MSE within 1.25x; at N = 256 reported;
(e) the time to load each data set (at most 3 s) and the peak resident memory of a default run
    of ``python -m lintorch.train`` (at most 2 GB), in a child process; and the CIFAR-10-sized
    set's images as a folder of JPEG files read back from lintorch's cache after the first load
    decoded them (at most 0.5 s for 60,000 images: listing and checking the files included);
(f) Fashion-MNIST's default runs through the command line, TensorBoard on, as a user runs them:
    linear softmax at least 84.2% test accuracy within 15 s, linear SVM 84.0% within 15 s,
    sigmoid MLP 89.5% within 60 s (the run's own wall time from metrics.json; the process's,
    interpreter start-up included, beside it);
(g) the 5 x 5 sweep (``lintorch.sweep.run``, 25 models) against training its 25 models one
    after another with ``fit``, same data, epochs and batch size, no TensorBoard: at least 3x
    faster on the CPU; on a CUDA GPU, at most 2x the wall time of one model (5 of the 25 fits
    are timed per round and counted 5 times: a fit's cost does not depend on its lr and reg);
(h) the peak resident memory of ``python -m lintorch.sweep`` training those 25 models for one
    epoch on the CIFAR-10-sized set: at most 2.5 GB;
(i) scale-out on the CPU: the 5 x 5 sweep under ``torchrun`` (Gloo), 2 processes x 1 thread,
    within 1.1x of the wall time of 1 process x 2 threads running the same command (the
    CLI's defaults, no TensorBoard); the training time alone and each process's peak memory
    reported beside it;
(j) the same for data-parallel training of the linear softmax model on CIFAR-10-sized data,
    with the all-reduce's share of the training time;
(k) what TensorBoard costs: each data set's default run (``python -m lintorch.train``, linear
    softmax) with TensorBoard against the same run with ``--no-tensorboard``, in child processes
    taking turns, wall time as the shell sees it: within 1.1x on the CPU; the extra seconds and
    their share of the training time (the epochs) beside it.

Data: the real CIFAR-10 when --data-root or $LINTORCH_DATA holds it, otherwise a full-size one
of random pixels (50,000 + 10,000 images, the official file format) written to a temporary
folder and read through lintorch's own loader; and Fashion-MNIST when it is installed. Random
pixels cost what real ones cost: no step looks at their values.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from lintorch import cli, compare, console, data, sweep
from lintorch.train import TrainConfig, TrainingDiverged, fit

REPO = Path(__file__).resolve().parents[1]
FASHION_SYSTEM_ROOT = "/usr/share/datasets/fashion-mnist"  # Debian's fashion-mnist package
BATCH_SIZE = 256

# lintorch's goals: (comparison, bound) of a row's value
TARGETS = {
    "epoch_vs_torch": ("<=", 1.25),
    "speedup_vs_pipeline": (">=", 10.0),
    "loss_svm": ("<=", 1.0),
    "loss_softmax": ("<=", 1.0),
    "loss_mse": ("<=", 1.25),
    "load_s": ("<=", 3.0),
    "folder_cache_s": ("<=", 0.5),
    "peak_rss_gb": ("<=", 2.0),
    "sweep_vs_fits_cpu": (">=", 3.0),
    "sweep_vs_fit_cuda": ("<=", 2.0),
    "sweep_peak_rss_gb": ("<=", 2.5),
    "scale_out": ("<=", 1.1),
    "tensorboard_cost": ("<=", 1.1),
}
# Fashion-MNIST's default runs (f): extra flags, test accuracy (%) at least, wall time (s) at most
DEFAULT_RUNS = {
    "linear softmax": ((), 84.2, 15.0),
    "linear SVM": (("--loss", "svm"), 84.0, 15.0),
    "sigmoid MLP": (("--model", "mlp"), 89.5, 60.0),
}
SWEEP_LRS = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
SWEEP_REGS = [0.0, 1e-4, 1e-3, 1e-2, 1e-1]
SWEEP_GRID = [(lr, reg) for lr in SWEEP_LRS for reg in SWEEP_REGS]  # the sweep's order
TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]  # then a count
SCALE_OUT_THREADS = 2  # (i), (j): this many threads in all, in 1 process or in 2 of 1 thread


@dataclasses.dataclass
class Sizes:
    cifar_per_batch: int = 10_000  # x 5 training batches
    cifar_test: int = 10_000
    limit: int | None = None  # training images for (a)-(c) and (g)
    epochs: int = 4  # per timed fit of (a)-(c); the first is a warm-up and not counted
    rounds: int = 5  # alternations of (a)-(c)
    loss_sizes: tuple[int, int] = (256, 50_000)  # the goals are set at the larger
    loss_repeats: int = 7
    min_block_s: float = 0.02
    load_repeats: int = 3
    cli_args: tuple[str, ...] = ()  # extra flags of the default runs; (f)'s goals need none
    default_runs: tuple[str, ...] = tuple(DEFAULT_RUNS)
    sweep_epochs: int = 3  # per timed fit and sweep of (g), all counted
    sweep_rounds: int = 2  # alternations of the sweep and the fits
    sweep_fits: int = 5  # fits of the 25 that (g) times per round, scaled by 25 / sweep_fits
    sweep_child_args: tuple[str, ...] = ("--epochs", "1")  # extra flags of (h)'s sweep
    scale_args: tuple[str, ...] = ()  # extra flags of (i)'s and (j)'s runs (defaults: none)
    scale_rounds: int = 2  # alternations of 1 and 2 processes
    tensorboard_rounds: int = 5  # alternations of (k)'s runs with and without TensorBoard


QUICK = Sizes(cifar_per_batch=300, cifar_test=300, limit=1500, epochs=2, rounds=1,
              loss_sizes=(256, 2048), loss_repeats=3, min_block_s=0.005, load_repeats=1,
              cli_args=("--epochs", "1", "--limit", "1000", "--val-size", "200"),
              default_runs=("linear softmax",), sweep_epochs=1, sweep_rounds=1, sweep_fits=1,
              sweep_child_args=("--epochs", "1", "--val-size", "200"),
              scale_args=("--epochs", "1", "--val-size", "200"), scale_rounds=1,
              tensorboard_rounds=1)


# ---------------------------------------------------------------------------------------------
# The loops (a)-(c) compare


def fit_epochs(cfg: TrainConfig, d: data.Prepared) -> list[float]:
    """Seconds per epoch of lintorch's own loop (``fit``), past the first epoch."""
    return [row["epoch_time_s"] for row in fit(cfg, prepared=d)["history"][1:]]


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
    # imported here, not at the top: the child processes below run this file, and must cost
    # what the command line costs (torchvision takes ~1.5 s to import)
    from torchvision import transforms

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
# Child processes: what the command line does, measured from outside


def run_child(module: str, args: list[str], tmp: str, processes: int = 1,
              threads: int | None = None, time_allreduce: bool = False) -> dict:
    """``python -m <module> <args>`` in a child process, or under ``torchrun`` with
    ``processes`` > 1: each process runs this file's ``--child`` mode, which calls the module's
    ``main`` and reports its own peak resident memory. Returns the wall time as the user sees
    it (interpreter start-up included) and each process's report, in rank order.

    ``threads``: OMP_NUM_THREADS of each process (unset: torch's own choice)."""
    reports = Path(tempfile.mkdtemp(prefix="child-", dir=tmp))
    launcher = [sys.executable] + ([] if processes == 1 else [*TORCHRUN, str(processes)])
    command = [*launcher, str(Path(__file__).resolve()), "--child", module, str(reports),
               *(["--time-allreduce"] if time_allreduce else []), "--", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(REPO), os.environ.get("PYTHONPATH")]))}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    t0 = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    wall = time.perf_counter() - t0
    ranks = [json.loads(p.read_text()) for p in sorted(reports.glob("rank-*.json"))]
    if proc.returncode != 0 or len(ranks) != processes or any(r["exit_code"] for r in ranks):
        raise RuntimeError(f"{module} in {processes} process(es) failed ({proc.returncode}): "
                           f"{(proc.stdout + proc.stderr)[-3000:]}")
    # what a user would type for the same run
    shown = ([f"OMP_NUM_THREADS={threads}"] if threads is not None else []) + (
        ["python"] if processes == 1 else ["torchrun", "--standalone", "--nproc-per-node",
                                           str(processes)])
    return {"wall_s": wall, "ranks": sorted(ranks, key=lambda r: r["rank"]),
            "command": " ".join([*shown, "-m", module, *args])}


def peak_rss_kib() -> int:
    """This process's peak resident memory, KiB. Linux carries ru_maxrss across fork and exec,
    so a child of a large process would report its parent's peak; VmHWM is the child's own."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak // 1024 if sys.platform == "darwin" else peak  # bytes there, KiB on Linux


def time_ddp_allreduce(train_module, times: list[float]) -> None:
    """Make ``lintorch.train``'s data-parallel model time each all-reduce of its gradients:
    from the moment a gradient bucket is ready to the moment the processes' sum is in it,
    waiting for the slower process included.

    ``start`` builds its ``DataParallel`` inside ``main``; the class it names is the one place
    to hook in without changing lintorch: its own all-reduce with a clock around it."""

    class TimedDataParallel(train_module.DataParallel):
        def weighted_sum(self, state, bucket):
            t0 = time.perf_counter()

            def done(fut):
                times.append(time.perf_counter() - t0)
                return fut.value()

            return super().weighted_sum(state, bucket).then(done)

    train_module.DataParallel = TimedDataParallel


def child_main(argv: list[str]) -> int:
    """``--child MODULE REPORT_DIR [--time-allreduce] -- ARGS``: ``MODULE.main(ARGS)``, then
    REPORT_DIR/rank-<RANK>.json with its exit code and this process's peak memory."""
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="benchmark.py --child")
    parser.add_argument("module", choices=("lintorch.train", "lintorch.sweep"))
    parser.add_argument("report_dir")
    parser.add_argument("--time-allreduce", action="store_true")
    own = parser.parse_args(argv[:split])
    module = importlib.import_module(own.module)
    allreduce: list[float] = []
    if own.time_allreduce:
        time_ddp_allreduce(module, allreduce)
    code = module.main(argv[split + 1:])
    rank = int(os.environ.get("RANK", 0))
    report = {"rank": rank, "exit_code": code, "peak_kib": peak_rss_kib(),
              "allreduce_calls": len(allreduce), "allreduce_s": sum(allreduce)}
    (Path(own.report_dir) / f"rank-{rank}.json").write_text(json.dumps(report))
    return code


# ---------------------------------------------------------------------------------------------
# Measurements


def _measurement(key: str, what: str, dataset: str | None, device: str, value: float,
                 unit: str, target: tuple[str, float] | None = None, **detail) -> dict:
    op, bound = target or (None, None)
    verdict = "-"
    if bound is not None:
        verdict = "PASS" if (value <= bound if op == "<=" else value >= bound) else "MISS"
    return {"key": key, "what": what, "dataset": dataset, "device": device, "value": value,
            "unit": unit, "target": bound, "op": op, "verdict": verdict, "detail": detail}


def _on_cpu(device: str, target: str) -> tuple[str, float] | None:
    """The goal ``target`` where it is set, on the CPU; none on a GPU."""
    return TARGETS[target] if torch.device(device).type == "cpu" else None


def measure_training(raw: data.RawData, sizes: Sizes, device: str, tmp: str) -> list[dict]:
    """(a), (b) and (c) on one data set and device: all loops take turns, round after round,
    on the same prepared tensors, with the same seed."""
    d = data.prepare(raw, device=device, limit=sizes.limit)
    cfg = TrainConfig(dataset=raw.name, batch_size=BATCH_SIZE, epochs=sizes.epochs,
                      device=device, logdir=tmp, tensorboard=False, quiet=True).resolved()
    pipeline = pipeline_dataset(d)
    in_features, num_classes = d.train_x[0].numel(), len(d.classes)
    loops = {
        "lintorch": lambda: fit_epochs(cfg, d),
        "torch": lambda: fit_epochs(dataclasses.replace(cfg, impl="torch"), d),
        "floor": lambda: floor_epochs(d, cfg, device),
        "pipeline_w0": lambda: [pipeline_epoch(pipeline, in_features, num_classes, cfg, 0,
                                               device)],
        "pipeline_w2": lambda: [pipeline_epoch(pipeline, in_features, num_classes, cfg, 2,
                                               device)],
    }
    if torch.device(device).type == "cuda":  # what the CUDA graphs save: eager steps too
        loops["lintorch_eager"] = lambda: fit_epochs(dataclasses.replace(cfg, cuda_graphs=False),
                                                     d)
    times: dict[str, list[float]] = {name: [] for name in loops}
    order = list(loops)
    for r in range(sizes.rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            times[name] += loops[name]()
    med = {name: statistics.median(ts) for name, ts in times.items()}
    common = dict(lintorch_epoch_s=med["lintorch"], train_images=d.train_x.shape[0],
                  batch_size=BATCH_SIZE)
    rows = [
        _measurement("a", "lintorch epoch / the same loop with torch's built-ins", raw.name,
                     device, med["lintorch"] / med["torch"], "x",
                     _on_cpu(device, "epoch_vs_torch"), torch_epoch_s=med["torch"],
                     lintorch_epochs_s=times["lintorch"], torch_epochs_s=times["torch"],
                     **common),
        _measurement("b", "lintorch epoch / bare-loop floor (retired: no goal)", raw.name,
                     device, med["lintorch"] / med["floor"], "x", floor_epoch_s=med["floor"],
                     lintorch_eager_epoch_s=med.get("lintorch_eager"),
                     epochs_timed=len(times["floor"]), **common),
    ]
    for w in (0, 2):
        rows.append(_measurement(
            "c", f"torchvision pipeline ({w} workers) / lintorch epoch", raw.name, device,
            med[f"pipeline_w{w}"] / med["lintorch"], "x", TARGETS["speedup_vs_pipeline"],
            pipeline_epoch_s=med[f"pipeline_w{w}"], num_workers=w,
            epochs_timed=len(times[f"pipeline_w{w}"]), **common))
    return rows


def measure_losses(sizes: Sizes, device: str) -> list[dict]:
    """(d): compare.loss_speed at a small and a large batch; the goals hold at the large."""
    rows = []
    for n in sizes.loss_sizes:
        speed = compare.loss_speed(n, 10, device, sizes.loss_repeats, sizes.min_block_s)
        for loss, r in speed.items():
            target = _on_cpu(device, f"loss_{loss}") if n == max(sizes.loss_sizes) else None
            rows.append(_measurement(
                "d", f"{loss} loss fwd+bwd / built-in, N={n:,}", None, device, r["ratio"], "x",
                target, lintorch_s=r["function_s"], builtin_s=r["builtin_s"],
                checked_s=r.get("checked_s"), checked_ratio=r.get("checked_ratio"), n=n))
    return rows


def measure_load(name: str, root: str, sizes: Sizes) -> tuple[data.RawData, dict]:
    """(e): seconds for ``load_dataset``, median of a few loads (the files are in the page
    cache after the first, as on any machine that trains more than once)."""
    times = []
    for _ in range(sizes.load_repeats):
        t0 = time.perf_counter()
        raw = data.load_dataset(name, root, download=False)
        times.append(time.perf_counter() - t0)
    return raw, _measurement("e", f"load {name}", name, "cpu", statistics.median(times), "s",
                             TARGETS["load_s"], loads=times, root=str(root))


def measure_folder_cache(raw: data.RawData, sizes: Sizes, tmp: str) -> dict:
    """(e): ``raw``'s images written as an image folder of JPEG files, loaded once (decoded and
    cached, the cache in ``tmp``), then loaded from the cache (median of a few loads)."""
    folder, n = Path(tmp) / "cifar10-folder", 0
    for split, images, labels in [("train", raw.train_images, raw.train_labels),
                                  ("test", raw.test_images, raw.test_labels)]:
        for name in raw.classes:
            (folder / split / name).mkdir(parents=True)
        for image, label in zip(images.permute(0, 2, 3, 1).numpy(), labels.tolist()):
            Image.fromarray(image).save(folder / split / raw.classes[label] / f"{n:05d}.jpg")
            n += 1
    with mock.patch.dict(os.environ, {"LINTORCH_CACHE": str(Path(tmp) / "cache")}):
        t0 = time.perf_counter()
        data.load_dataset(str(folder), progress=False)
        first, times = time.perf_counter() - t0, []
        for _ in range(sizes.load_repeats):
            t0 = time.perf_counter()
            data.load_dataset(str(folder), progress=False)
            times.append(time.perf_counter() - t0)
    goal = TARGETS["folder_cache_s"] if n == 60_000 else None  # set for CIFAR-10's size
    return _measurement("e", "cached read of the images as a folder of JPEG files", "cifar10",
                        "cpu", statistics.median(times), "s", goal, images=n, reads=times,
                        first_load_s=first)


def measure_default_runs(name: str, root: str, sizes: Sizes, device: str, tmp: str
                         ) -> list[dict]:
    """(e) and (f): ``python -m lintorch.train`` with the data set's defaults, TensorBoard on,
    in a child process: its peak memory; on Fashion-MNIST, the test accuracy and wall time of
    each default run (of the linear softmax alone, without goals, when sizes are shrunk)."""
    rows = []
    runs = sizes.default_runs if name == "fashion-mnist" else ("linear softmax",)
    for label in runs:
        flags, accuracy_goal, wall_goal = DEFAULT_RUNS[label]
        logdir, run_name = Path(tmp) / "default-runs", f"{name}-{label.replace(' ', '-')}"
        args = ["--dataset", name, "--data-root", str(root), "--no-download", "--device",
                device, *flags, "--logdir", str(logdir), "--run-name", run_name,
                *sizes.cli_args]
        child = run_child("lintorch.train", args, tmp)
        metrics = json.loads((logdir / run_name / "metrics.json").read_text())
        seen = dict(command=child["command"], process_wall_s=child["wall_s"],
                    run_wall_s=metrics["wall_time_s"], data_load_s=metrics["data_load_s"],
                    epochs=len(metrics["history"]))
        if label == "linear softmax":
            rows.append(_measurement("e", "peak RSS of a default training run", name, device,
                                     child["ranks"][0]["peak_kib"] * 1024 / 1e9, "GB",
                                     TARGETS["peak_rss_gb"], **seen))
        if name != "fashion-mnist":
            rows.append(_measurement("e", "wall time of a default training run", name, device,
                                     metrics["wall_time_s"], "s", **seen))
            continue
        goals = not sizes.cli_args  # the goals are the defaults'
        rows += [
            _measurement("f", f"{label}: test accuracy of the default run", name, device,
                         100 * metrics["test"]["accuracy"], "%",
                         (">=", accuracy_goal) if goals else None, **seen),
            _measurement("f", f"{label}: wall time of the default run", name, device,
                         metrics["wall_time_s"], "s", ("<=", wall_goal) if goals else None,
                         **seen),
        ]
    return rows


def measure_tensorboard_cost(name: str, root: str, sizes: Sizes, device: str, tmp: str
                             ) -> dict:
    """(k): the data set's default run with TensorBoard and with ``--no-tensorboard``, taking
    turns; the goal holds for the defaults (no ``sizes.cli_args``) on the CPU."""
    walls: dict[bool, list[float]] = {True: [], False: []}
    runs: dict[bool, list[dict]] = {True: [], False: []}
    for r in range(sizes.tensorboard_rounds):
        for tensorboard in ([True, False] if r % 2 == 0 else [False, True]):
            logdir, run_name = Path(tmp) / "tensorboard-cost", f"{name}-{tensorboard}-{r}"
            child = run_child("lintorch.train", [
                "--dataset", name, "--data-root", str(root), "--no-download", "--device", device,
                "--logdir", str(logdir), "--run-name", run_name, "--quiet", *sizes.cli_args,
                *([] if tensorboard else ["--no-tensorboard"])], tmp)
            walls[tensorboard].append(child["wall_s"])
            runs[tensorboard].append(json.loads((logdir / run_name / "metrics.json").read_text()))
    with_s, without_s = statistics.median(walls[True]), statistics.median(walls[False])
    train_s = statistics.median(sum(row["epoch_time_s"] for row in m["history"])
                                for m in runs[True] + runs[False])
    goal = _on_cpu(device, "tensorboard_cost") if not sizes.cli_args else None
    return _measurement(
        "k", "default run with TensorBoard / without, wall time", name, device,
        with_s / without_s, "x", goal, wall_s_tensorboard=walls[True],
        wall_s_no_tensorboard=walls[False], extra_s=with_s - without_s, train_s=train_s,
        extra_share_of_train=(with_s - without_s) / train_s,
        run_wall_s_tensorboard=[m["wall_time_s"] for m in runs[True]],
        run_wall_s_no_tensorboard=[m["wall_time_s"] for m in runs[False]])


def measure_sweep_speed(raw: data.RawData, sizes: Sizes, device: str, tmp: str) -> list[dict]:
    """(g) on one data set and device: the 5 x 5 sweep against fitting its 25 models one after
    another, on the same prepared tensors, same epochs and batch size, taking turns.

    Per round the sweep runs once and ``sizes.sweep_fits`` of the 25 fits run, spread over the
    grid: a fit's cost does not depend on its (lr, reg), so k fits times 25 / k stand for 25.
    """
    d = data.prepare(raw, device=device, limit=sizes.limit)
    cfg = TrainConfig(dataset=raw.name, epochs=sizes.sweep_epochs, device=device, logdir=tmp,
                      tensorboard=False, quiet=True).resolved()
    models, k = len(SWEEP_GRID), sizes.sweep_fits
    chosen = [SWEEP_GRID[(2 * i + 1) * models // (2 * k)] for i in range(k)]

    def timed(call) -> tuple[float, dict | None]:
        _sync(device)
        t0 = time.perf_counter()
        try:
            result = call()
        except TrainingDiverged:  # it stopped early, as a diverged model of the sweep does
            result = None
        _sync(device)
        return time.perf_counter() - t0, result

    def one_fit(lr: float, reg: float):
        return lambda: fit(dataclasses.replace(cfg, lr=lr, reg=reg), prepared=d)

    timed(one_fit(*chosen[0]))  # warm-up: first-call costs (allocator, MKL) are no one's fault
    sweep_walls, fits_walls, fit_walls, epochs = [], [], [], {"fit": [], "sweep": []}
    diverged = {"fit": 0, "sweep": 0}
    for r in range(sizes.sweep_rounds):
        for what in (["sweep", "fits"] if r % 2 == 0 else ["fits", "sweep"]):
            if what == "sweep":
                wall, result = timed(lambda: sweep.run(cfg, SWEEP_LRS, SWEEP_REGS, prepared=d))
                sweep_walls.append(wall)
                diverged["sweep"] = sum(m["diverged"] for m in result["models"])
                epochs["sweep"] += [row["epoch_time_s"] for row in next(
                    m["history"] for m in result["models"] if not m["diverged"])]
                continue
            walls = []
            for lr, reg in chosen:
                wall, result = timed(one_fit(lr, reg))
                walls.append(wall)
                if result is None:
                    diverged["fit"] += 1
                else:
                    epochs["fit"] += [row["epoch_time_s"] for row in result["history"]]
            fit_walls += walls
            fits_walls.append(sum(walls) * models / k)
    sweep_s, fit_s = statistics.median(sweep_walls), statistics.median(fit_walls)
    common = dict(sweep_wall_s=sweep_walls, fit_wall_s=fit_walls, fits_timed_per_round=k,
                  fits_timed=[f"lr={lr:g},reg={reg:g}" for lr, reg in chosen],
                  epoch_ratio=statistics.median(epochs["sweep"]) / statistics.median(
                      epochs["fit"]) if epochs["fit"] else None,
                  epochs=cfg.epochs, batch_size=cfg.batch_size, models=models,
                  train_images=d.train_x.shape[0], diverged_in_sweep=diverged["sweep"],
                  diverged_fits=diverged["fit"])
    scaled = "" if k == models else f" ({k} of them timed, x {models / k:g})"
    cuda = torch.device(device).type == "cuda"
    return [
        _measurement("g", f"{models} fits one after another{scaled} / 5 x 5 sweep, wall time",
                     raw.name, device, statistics.median(fits_walls) / sweep_s, "x",
                     None if cuda else TARGETS["sweep_vs_fits_cpu"],
                     fits_wall_s=fits_walls, **common),
        _measurement("g", "5 x 5 sweep / one model, wall time", raw.name, device,
                     sweep_s / fit_s, "x", TARGETS["sweep_vs_fit_cuda"] if cuda else None,
                     **common),
    ]


def measure_sweep_memory(root: str, sizes: Sizes, device: str, tmp: str) -> dict:
    """(h): ``python -m lintorch.sweep`` of the 25 models on CIFAR-10: its peak memory."""
    args = ["--dataset", "cifar10", "--data-root", str(root), "--no-download", "--device",
            device, "--lr", *map(str, SWEEP_LRS), "--reg", *map(str, SWEEP_REGS),
            "--logdir", str(Path(tmp) / "sweep-runs"), "--quiet", *sizes.sweep_child_args]
    child = run_child("lintorch.sweep", args, tmp)
    return _measurement("h", "peak RSS of a 25-model sweep", "cifar10", device,
                        child["ranks"][0]["peak_kib"] * 1024 / 1e9, "GB",
                        TARGETS["sweep_peak_rss_gb"], command=child["command"],
                        wall_s=child["wall_s"])


def measure_scale_out(root: str, sizes: Sizes, tmp: str) -> list[dict]:
    """(i) the 5 x 5 sweep and (j) data-parallel training on CIFAR-10-sized data, on the CPU:
    ``torchrun`` with 2 processes x 1 thread against 1 process x 2 threads running the same
    command, taking turns; without TensorBoard, whose writing falls on process 0 alone."""
    base = ["--dataset", "cifar10", "--data-root", str(root), "--no-download", "--device",
            "cpu", "--quiet", "--no-tensorboard", "--run-name", "run", *sizes.scale_args]
    jobs = {"i": ("lintorch.sweep", "5 x 5 sweep", "sweep.json",
                  ["--lr", *map(str, SWEEP_LRS), "--reg", *map(str, SWEEP_REGS)]),
            "j": ("lintorch.train", "data-parallel linear softmax", "metrics.json", [])}
    rows = []
    for key, (module, label, result_file, extra) in jobs.items():
        runs: dict[int, list[dict]] = {1: [], 2: []}
        for r in range(sizes.scale_rounds):
            for processes in ([1, 2] if r % 2 == 0 else [2, 1]):
                logdir = Path(tmp) / f"scale-{key}-{processes}-{r}"
                child = run_child(module, [*base, *extra, "--logdir", str(logdir)], tmp,
                                  processes=processes,
                                  threads=SCALE_OUT_THREADS // processes,
                                  time_allreduce=module == "lintorch.train" and processes > 1)
                result = json.loads((logdir / "run" / result_file).read_text())
                if (result["world_size"], result["backend"]) != (
                        (1, None) if processes == 1 else (processes, "gloo")):
                    raise RuntimeError(f"{module} ran as world size {result['world_size']} "
                                       f"({result['backend']}), not {processes} processes")
                child["train_s"] = (result["train_time_s"] if "train_time_s" in result else
                                    sum(row["epoch_time_s"] for row in result["history"]))
                history = result["models"][0]["history"] if "models" in result else \
                    result["history"]
                # an epoch once running: start-up (torchrun, two interpreters and two copies of
                # the data on two cores) is paid once, whatever the sweep's length
                child["epoch_s"] = statistics.median(row["epoch_time_s"]
                                                     for row in history[1:] or history)
                runs[processes].append(child)
        rows += _scale_out_rows(key, label, runs)
    return rows


def _scale_out_rows(key: str, label: str, runs: dict[int, list[dict]]) -> list[dict]:
    one, two = runs[1], runs[2]

    def median(what, processes):
        return statistics.median(child[what] for child in runs[processes])

    common = dict(command_1=one[0]["command"], command_2=two[0]["command"],
                  wall_s_1=[c["wall_s"] for c in one], wall_s_2=[c["wall_s"] for c in two],
                  train_s_1=[c["train_s"] for c in one], train_s_2=[c["train_s"] for c in two])
    peaks = [[rank["peak_kib"] * 1024 / 1e9 for rank in c["ranks"]] for c in two]
    common.update(epoch_s_1=[c["epoch_s"] for c in one], epoch_s_2=[c["epoch_s"] for c in two])
    rows = [
        _measurement(key, f"{label}: 2 processes x 1 thread / 1 x 2 threads, an epoch",
                     "cifar10", "cpu", median("epoch_s", 2) / median("epoch_s", 1), "x",
                     TARGETS["scale_out"], **common),
        _measurement(key, f"{label}: the same, wall time (start-up included)", "cifar10", "cpu",
                     median("wall_s", 2) / median("wall_s", 1), "x", **common),
        _measurement(key, f"{label}: the same, training time (start-up excluded)", "cifar10",
                     "cpu", median("train_s", 2) / median("train_s", 1), "x", **common),
        _measurement(key, f"{label}: peak RSS per process, 2 processes", "cifar10", "cpu",
                     max(max(p) for p in peaks), "GB", per_process_gb=peaks),
        _measurement(key, f"{label}: peak RSS, 1 process", "cifar10", "cpu",
                     max(c["ranks"][0]["peak_kib"] for c in one) * 1024 / 1e9, "GB"),
    ]
    if two[0]["ranks"][0]["allreduce_calls"]:
        # process 0's all-reduces against process 0's epochs (metrics.json is process 0's)
        shares = [100 * c["ranks"][0]["allreduce_s"] / c["train_s"] for c in two]
        rows.append(_measurement(
            key, f"{label}: all-reduce share of the training time, 2 processes", "cifar10",
            "cpu", statistics.median(shares), "%", shares_pct=shares,
            allreduce_s=[[rank["allreduce_s"] for rank in c["ranks"]] for c in two],
            allreduce_calls=two[0]["ranks"][0]["allreduce_calls"],
            how="DDP's own all-reduce hook with a clock around it: from a gradient bucket being "
                "ready to the processes' sum being in it (waiting for the slower process "
                "included), summed over the steps, over the epochs' time (validation "
                "included)"))
    return rows


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

ORDER = "abcdefghijk"


def _value(m: dict) -> str:
    v = m["value"]
    return {"x": f"{v:.2f}x", "s": f"{v:.2f} s", "GB": f"{v:.2f} GB", "%": f"{v:.1f}%"}[m["unit"]]


def _target(m: dict) -> str:
    if m["target"] is None:
        return "-"
    unit = {"x": "x", "%": "%"}.get(m["unit"], " " + m["unit"])
    return f"{m['op']} {m['target']:g}{unit}"


def format_table(measurements: list[dict]) -> str:
    return console.format_table(None, ["", "measurement", "data", "device", "value", "goal",
                                      "verdict"], [
        [m["key"], m["what"], m["dataset"] or "-", m["device"], _value(m), _target(m),
         m["verdict"]] for m in measurements], left=7)


def format_notes(measurements: list[dict]) -> list[str]:
    """What the table's one value per row leaves out."""
    notes = []
    for m in measurements:
        det, where = m["detail"], f"{m['dataset']} on {m['device']}"
        if m["key"] == "b" and det.get("lintorch_eager_epoch_s"):
            notes.append(f"  (b) {where}: lintorch epoch {det['lintorch_epoch_s']:.3f}s with "
                         f"CUDA graphs, {det['lintorch_eager_epoch_s']:.3f}s without; floor "
                         f"{det['floor_epoch_s']:.3f}s")
        if m["key"] == "e" and m["what"].startswith("cached read"):
            notes.append(f"  (e) {det['images']:,} images as JPEG files: the first load, which "
                         f"decodes them, {det['first_load_s']:.1f}s; then from the cache")
        if m["key"] == "f" and m["unit"] == "s":
            notes.append(f"  (f) {m['what'].split(':')[0]}: {det['run_wall_s']:.1f}s in "
                         f"metrics.json, {det['process_wall_s']:.1f}s as the shell sees it "
                         f"({det['epochs']} epoch{'s' * (det['epochs'] != 1)}, data loaded in "
                         f"{det['data_load_s']:.2f}s)")
        if m["key"] == "g" and m["what"].startswith("5 x 5"):
            fit_s, sweep_s = (statistics.median(det[k]) for k in ("fit_wall_s", "sweep_wall_s"))
            notes.append(f"  (g) {where}: one model {fit_s:.2f}s, 25 models together "
                         f"{sweep_s:.2f}s, {det['epochs']} epoch{'s' * (det['epochs'] != 1)}")
        if m["key"] == "k":
            notes.append(f"  (k) {where}: TensorBoard adds {det['extra_s']:.2f}s, "
                         f"{100 * det['extra_share_of_train']:.0f}% of the "
                         f"{det['train_s']:.1f}s of training (the epochs)")
        if m["key"] in "ij" and "wall time" in m["what"]:
            notes.append(f"  ({m['key']}) wall {statistics.median(det['wall_s_2']):.1f}s "
                         f"(2 processes) against {statistics.median(det['wall_s_1']):.1f}s; "
                         f"training {statistics.median(det['train_s_2']):.1f}s against "
                         f"{statistics.median(det['train_s_1']):.1f}s")
    return notes


def _say(t_start: float, text: str) -> None:
    print(f"[{(time.perf_counter() - t_start) / 60:4.1f} min] {text}", file=sys.stderr,
          flush=True)


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
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lintorch-bench-") as tmp:
        cifar, description = cifar10_root(args.data_root, sizes, tmp)
        report["datasets"]["cifar10"] = {"root": cifar, "source": description}
        sets = [("cifar10", cifar)]
        fashion = fashion_root(args.data_root)
        report["datasets"]["fashion-mnist"] = {"root": fashion} if fashion else None
        if fashion:
            sets.append(("fashion-mnist", fashion))
        for name, root in sets:
            _say(t_start, f"{name}: loading, then (a)-(c) on {', '.join(devices)}")
            raw, load = measure_load(name, root, sizes)
            out.append(load)
            if name == "cifar10":
                _say(t_start, f"{name}: (e) its images as a folder, decoded once, then cached")
                out.append(measure_folder_cache(raw, sizes, tmp))
            for device in devices:
                out += measure_training(raw, sizes, device, tmp)
            for device in devices:
                _say(t_start, f"{name}: (g) 5 x 5 sweep against its 25 fits on {device}")
                out += measure_sweep_speed(raw, sizes, device, tmp)
            del raw
            gc.collect()
            for device in devices:
                _say(t_start, f"{name}: (e), (f) default training runs on {device}")
                out += measure_default_runs(name, root, sizes, device, tmp)
                _say(t_start, f"{name}: (k) default runs with and without TensorBoard on "
                              f"{device}")
                out.append(measure_tensorboard_cost(name, root, sizes, device, tmp))
                if name == "cifar10":
                    _say(t_start, f"{name}: (h) 25-model sweep run on {device}")
                    out.append(measure_sweep_memory(root, sizes, device, tmp))
        for device in devices:
            _say(t_start, f"(d) losses on {device}")
            out += measure_losses(sizes, device)
        if "cpu" in devices:
            _say(t_start, "cifar10: (i), (j) 2 processes against 1 on the CPU")
            out += measure_scale_out(cifar, sizes, tmp)
    out.sort(key=lambda m: (m["device"] != "cpu", ORDER.index(m["key"])))  # stable: CPU first
    report["environment"]["load_average_end"] = os.getloadavg()
    report["elapsed_s"] = time.perf_counter() - t_start
    targeted = [m for m in out if m["target"] is not None]
    report["all_pass"] = all(m["verdict"] == "PASS" for m in targeted)
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark lintorch's training against the same loop with torch's "
                    "built-ins and the usual torchvision pipeline, its losses against torch's, "
                    "its sweep against one model at a time, its default runs, and 2 processes "
                    "against 1; prints PASS/MISS per goal. (--child is this script's own, for "
                    "the child processes it starts.)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    flags = cli.add_training_flags(parser, only=("device", "data_root"))
    flags["data_root"].help += "; CIFAR-10 if it holds it, else random pixels in its format"
    flags["device"].help = ("auto: the CPU, then CUDA too when there is a GPU; cpu or cuda: "
                            "that device alone (loading and scale-out are timed on the CPU) "
                            "(default: %(default)s)")
    parser.add_argument("--threads", type=cli.positive(int), default=None,
                        help="torch threads for this process (unset: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="shrink every size: a smoke run")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write JSON to PATH")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child_main(argv[1:])
    args = build_parser().parse_args(argv)
    report = run(args)
    datasets = "; ".join(f"{k}: {v['source'] if 'source' in v else v['root']}"
                         for k, v in report["datasets"].items() if v)
    print(f"data: {datasets}")
    env = report["environment"]
    print(f"torch {env['torch']}, {env['threads']} threads on {env['cpu_count']} CPUs"
          f"{', ' + env['cuda'] if env['cuda'] else ''}; load average "
          f"{env['load_average_start'][0]:.1f} -> {env['load_average_end'][0]:.1f}; "
          f"{report['elapsed_s'] / 60:.1f} minutes"
          f"{'; --quick: sizes shrunk, verdicts indicative only' if report['quick'] else ''}")
    busiest = max(env["load_average_start"][0], env["load_average_end"][0])
    if busiest > (env["cpu_count"] or 1) and env["threads"] > 1:
        print(f"warning: other processes kept the CPUs busy (load {busiest:.1f} on "
              f"{env['cpu_count']} CPUs): multi-threaded ops then stall on descheduled threads "
              "and CPU ratios mean little; --threads 1 is steadier")
    print(format_table(report["measurements"]))
    print("\n".join(format_notes(report["measurements"])))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
