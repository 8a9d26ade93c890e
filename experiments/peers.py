"""lintorch's default runs beside the usual alternatives, same data and machine.

    python experiments/peers.py --json peers.json      # Fashion-MNIST: minutes on a 2-core CPU
    python experiments/peers.py --dataset cifar-jpeg   # a folder of CIFAR-10's images: 17 min
    python experiments/peers.py --quick                # 2,000 training images, 1 epoch: smoke

``--dataset`` takes what ``lintorch.train`` takes: a built-in data set (default fashion-mnist),
an .npz file or a folder of images.

Every row is one model trained from scratch in this one process, timed from loading the data set
to the test accuracy (load + fit + predict), with ``torch.set_num_threads(--threads)`` and, for
scikit-learn, the same number of BLAS/OpenMP threads:

- lintorch: ``fit(TrainConfig(dataset=..., model=..., loss=...))``, everything else at the data
  set's default (``DATASET_DEFAULTS``), TensorBoard on; its own ``wall_time_s`` (data loading,
  training, per-epoch logging and checkpoints, final evaluation). All training images but the
  1,000 the default holds out for validation (59,000 of Fashion-MNIST, 49,000 of CIFAR-10).
- scikit-learn (``pip install -e ".[peers]"``; rows marked skipped without it):
  ``LogisticRegression()``, ``SGDClassifier(loss="hinge")`` and
  ``MLPClassifier((100,), activation="logistic")`` at their defaults, on all the training
  images flattened and divided by 255.
- plain torch, the loop most people write: all the training images as one float tensor (x / 255,
  standardized with the training mean and std), ``randperm`` batches of 256,
  ``torch.optim.SGD`` + ``CosineAnnealingLR``, ``F.cross_entropy``; ``nn.Linear`` and a
  512-unit sigmoid MLP (their epochs and rates are the ones chosen on Fashion-MNIST).

Timings depend on the machine and its load; compare rows of one run, never across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lintorch import cli, console, data
from lintorch.distributed import pick_device
from lintorch.train import TrainConfig, fit

FASHION_SYSTEM_ROOT = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
BATCH_SIZE = 256  # the plain torch loops'


@dataclass(frozen=True)
class Peer:
    name: str
    group: str  # lintorch, scikit-learn or torch
    what: str


PEERS = [
    Peer("lintorch-linear-softmax", "lintorch", "lintorch linear classifier, softmax loss"),
    Peer("lintorch-linear-svm", "lintorch", "lintorch linear classifier, multiclass SVM loss"),
    Peer("lintorch-mlp-softmax", "lintorch", "lintorch sigmoid MLP, softmax loss"),
    Peer("sklearn-logreg", "scikit-learn", "LogisticRegression()"),
    Peer("sklearn-sgd-hinge", "scikit-learn", 'SGDClassifier(loss="hinge")'),
    Peer("sklearn-mlp", "scikit-learn", 'MLPClassifier((100,), activation="logistic")'),
    Peer("torch-linear", "torch", "nn.Linear(D, C) + SGD + cosine"),
    Peer("torch-mlp", "torch", "D-512-C sigmoid MLP + SGD + cosine"),
]
GROUPS = {"lintorch": "lintorch", "sklearn": "scikit-learn", "torch": "torch"}


@dataclass(frozen=True)
class Sizes:
    limit: int | None = None  # training images of every row (None: all of them)
    epochs: int | None = None  # lintorch's epochs (None: its default)
    torch_linear: tuple[int, float] = (5, 0.1)  # (epochs, lr) of the plain torch loops
    torch_mlp: tuple[int, float] = (15, 0.5)
    sgd_max_iter: int = 1000  # scikit-learn's defaults
    mlp_max_iter: int = 200


@dataclass(frozen=True)
class Source:
    dataset: str  # a built-in name, an .npz file or a folder of images
    root: str | None  # where a built-in data set lies (None: where lintorch looks)

    def load(self) -> data.RawData:
        return data.load_dataset(self.dataset, self.root, download=False, progress=False)


QUICK = Sizes(limit=2000, epochs=1, torch_linear=(1, 0.1), torch_mlp=(1, 0.5), sgd_max_iter=5,
              mlp_max_iter=5)


# ---------------------------------------------------------------------------------------------
# The rows


def _row(peer: Peer, accuracy: float | None, wall_time_s: float | None, notes: str,
         device: str | None = None, status: str = "measured", **detail) -> dict:
    return {"name": peer.name, "group": peer.group, "what": peer.what, "status": status,
            "test_accuracy": accuracy, "wall_time_s": wall_time_s, "device": device,
            "notes": notes, "detail": detail}


def run_lintorch(peer: Peer, source: Source, sizes: Sizes, logdir: str, n_images: int) -> dict:
    _, model, loss = peer.name.split("-")
    cfg = TrainConfig(dataset=source.dataset, model=model, loss=loss, data_root=source.root,
                      no_download=True, quiet=True, tensorboard=True,
                      logdir=str(Path(logdir) / "peers" / data.short_name(source.dataset)),
                      run_name=f"{model}-{loss}", epochs=sizes.epochs, limit=sizes.limit)
    metrics = fit(cfg)
    c = metrics["config"]
    hidden = f"hidden {c['hidden']}, " if model == "mlp" else ""
    n = min(n_images - c["val_size"], c["limit"] or n_images)
    momentum = f" momentum {c['momentum']:g}" if c["momentum"] else ""
    notes = (f"{hidden}{c['epochs']} ep, batch {c['batch_size']}, lr {c['lr']:g} {c['lr_decay']}"
             f"{momentum}, reg {c['reg']:g}; {n:,} train")
    return _row(peer, metrics["test"]["accuracy"], metrics["wall_time_s"], notes,
                metrics["device"], load_s=metrics["data_load_s"], run_dir=metrics["run_dir"],
                config=c)


def sklearn_estimator(name: str, sizes: Sizes):
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.neural_network import MLPClassifier

    if name == "sklearn-logreg":
        return LogisticRegression()
    if name == "sklearn-sgd-hinge":
        # random_state only fixes the shuffling, so that two runs agree
        return SGDClassifier(loss="hinge", max_iter=sizes.sgd_max_iter, random_state=0)
    return MLPClassifier((100,), activation="logistic", max_iter=sizes.mlp_max_iter,
                         random_state=0)


def training_pixels(raw: data.RawData, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The flattened training images and their labels for the rows that are not lintorch's: all
    of them, or ``limit`` drawn at random (a folder's images come sorted by class)."""
    x, y = raw.train_images.flatten(1), raw.train_labels
    if limit is None:
        return x, y
    keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:limit]
    return x[keep], y[keep]


def run_sklearn(peer: Peer, source: Source, sizes: Sizes, threads: int) -> dict:
    try:
        import sklearn
        from sklearn.exceptions import ConvergenceWarning
        from threadpoolctl import threadpool_limits
    except ImportError:
        return _row(peer, None, None, 'skipped: scikit-learn is not installed '
                    '(pip install -e ".[peers]")', status="skipped")
    estimator = sklearn_estimator(peer.name, sizes)
    with threadpool_limits(limits=threads), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        t0 = time.perf_counter()
        raw = source.load()
        X, y = training_pixels(raw, sizes.limit)
        X, y = X.numpy() / 255.0, y.numpy()
        X_test, y_test = raw.test_images.flatten(1).numpy() / 255.0, raw.test_labels.numpy()
        t1 = time.perf_counter()
        estimator.fit(X, y)
        t2 = time.perf_counter()
        accuracy = float((estimator.predict(X_test) == y_test).mean())
        t3 = time.perf_counter()
    n_iter = getattr(estimator, "n_iter_", None)
    n_iter = int(max(n_iter)) if hasattr(n_iter, "__len__") else n_iter
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    notes = f"{len(y):,} train, {n_iter} iter" + ("" if converged else ", not converged")
    return _row(peer, accuracy, t3 - t0, notes, "cpu", load_s=t1 - t0, fit_s=t2 - t1,
                predict_s=t3 - t2, n_iter=n_iter, converged=converged,
                sklearn_version=sklearn.__version__, params=_jsonable(estimator.get_params()))


def _jsonable(params: dict) -> dict:
    return {k: v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)
            for k, v in params.items()}


def run_torch(peer: Peer, source: Source, sizes: Sizes, device: torch.device) -> dict:
    """The plain loop: whole tensors in memory, a random order per epoch cut into batches."""
    epochs, lr = sizes.torch_linear if peer.name == "torch-linear" else sizes.torch_mlp
    t0 = time.perf_counter()
    raw = source.load()
    x, y = training_pixels(raw, sizes.limit)
    x, y = x.to(device).float() / 255, y.to(device)
    mean, std = x.mean(), x.std()
    x = (x - mean) / std
    x_test = (raw.test_images.flatten(1).to(device).float() / 255 - mean) / std
    y_test = raw.test_labels.to(device)
    t1 = time.perf_counter()

    torch.manual_seed(0)
    inputs, c = x.shape[1], len(raw.classes)
    if peer.name == "torch-linear":
        model = nn.Linear(inputs, c)
    else:
        model = nn.Sequential(nn.Linear(inputs, 512), nn.Sigmoid(), nn.Linear(512, c))
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    for _ in range(epochs):
        for idx in torch.randperm(len(y), device=device).split(BATCH_SIZE):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    t2 = time.perf_counter()
    notes = f"{epochs} ep, batch {BATCH_SIZE}, lr {lr:g} cosine; {len(y):,} train"
    return _row(peer, accuracy, t2 - t0, notes, str(device), load_s=t1 - t0,
                fit_predict_s=t2 - t1, epochs=epochs, lr=lr, batch_size=BATCH_SIZE)


# ---------------------------------------------------------------------------------------------
# Report


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def _sec(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def format_table(rows: list[dict]) -> str:
    return console.format_table(None, ["name", "test acc %", "time s", "notes"], [
        [r["name"], _pct(r["test_accuracy"]), _sec(r["wall_time_s"]), r["notes"]]
        for r in rows], align="lrrl")


def source(args: argparse.Namespace) -> Source:
    """--dataset, and where a built-in one lies: --data-root, else $LINTORCH_DATA, else for
    Fashion-MNIST Debian's folder (a file or a folder of images needs none)."""
    if data.kind(args.dataset) in ("npz", "folder"):
        return Source(args.dataset, None)
    fashion = FASHION_SYSTEM_ROOT if args.dataset == "fashion-mnist" else None
    return Source(args.dataset, args.data_root or os.environ.get("LINTORCH_DATA") or fashion)


def select(only: list[str] | None) -> list[Peer]:
    if not only:
        return list(PEERS)
    wanted = {p.name for p in PEERS if p.name in only or p.group in {GROUPS.get(o) for o in only}}
    return [p for p in PEERS if p.name in wanted]


def _say(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:  # main() may be called in-process (the tests): leave torch as it was
        torch.set_num_threads(threads)


def warm_up(source: Source, peers: list[Peer], sizes: Sizes) -> tuple[int, str | None]:
    """Untimed: a first read of the data set fills the page cache, and the one-time costs of a
    process are paid here rather than by whichever row comes first -- the imports, the first
    ``torch.optim`` optimizer, which imports torch._dynamo (seconds), and a folder's first
    decoding (then read from its cache). Returns the number of training images and
    scikit-learn's version (None when it is not installed)."""
    raw = data.load_dataset(source.dataset, source.root, download=False)  # with its progress
    n_images = len(raw.train_labels)
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    if any(p.group == "lintorch" for p in peers):
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    try:
        import sklearn

        sklearn_estimator("sklearn-logreg", sizes)
        return n_images, sklearn.__version__
    except ImportError:
        return n_images, None


def _run(args: argparse.Namespace) -> dict:
    sizes = QUICK if args.quick else Sizes()
    src = source(args)
    device = pick_device("auto")  # where lintorch's default run trains; the torch loops too
    peers = select(args.only)
    n_images, sklearn_version = warm_up(src, peers, sizes)
    report = {
        "quick": args.quick,
        "dataset": src.dataset,
        "data_root": src.root,
        "environment": {
            "torch": torch.__version__, "sklearn": sklearn_version,
            "python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(),
            "load_average_start": os.getloadavg(),
        },
        "rows": [],
    }
    for peer in peers:
        _say(f"{peer.name}: {peer.what}")
        if peer.group == "lintorch":
            row = run_lintorch(peer, src, sizes, args.logdir, n_images)
        elif peer.group == "scikit-learn":
            row = run_sklearn(peer, src, sizes, args.threads)
        else:
            row = run_torch(peer, src, sizes, device)
        report["rows"].append(row)
    report["environment"]["load_average_end"] = os.getloadavg()
    return report


def build_parser() -> argparse.ArgumentParser:
    names = [p.name for p in PEERS] + list(GROUPS)
    parser = argparse.ArgumentParser(
        description="lintorch's default runs beside scikit-learn and plain torch loops: test "
                    "accuracy and wall time, one process, one machine.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    flags = cli.add_training_flags(parser, only=("dataset", "data_root", "logdir"),
                                   dataset="fashion-mnist")
    flags["data_root"].help += f"; {FASHION_SYSTEM_ROOT} for Fashion-MNIST"
    flags["logdir"].help += "; lintorch's runs go to LOGDIR/peers/<dataset>/"
    parser.add_argument("--only", nargs="+", choices=names, metavar="NAME", default=None,
                        help=f"run only these rows or groups: {', '.join(names)}")
    parser.add_argument("--threads", type=cli.positive(int), default=2,
                        help="torch threads, and BLAS/OpenMP threads of scikit-learn")
    parser.add_argument("--quick", action="store_true",
                        help="2,000 training images, 1 epoch, max_iter 5: a smoke run")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write JSON to PATH")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    report = run(args)
    env = report["environment"]
    name = report["dataset"]
    where = report["data_root"] or (name if data.kind(name) in ("npz", "folder") else
                                    "lintorch's data folders")
    print(f"{data.short_name(name)} from {where}; torch {env['torch']}, scikit-learn "
          f"{env['sklearn'] or 'not installed'}; {env['threads']} thread(s) on {env['cpu_count']} "
          f"CPUs, device {env['device']}; load average {env['load_average_start'][0]:.1f} -> "
          f"{env['load_average_end'][0]:.1f}"
          f"{'; --quick: sizes shrunk, figures not comparable' if report['quick'] else ''}")
    print(format_table(report["rows"]))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    try:
        main()
    except data.DataError as e:
        sys.exit(f"error: {e}")
