"""What the experiments share: data flags and data, text tables, run folders, torch's threads."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time
from pathlib import Path

import torch

from . import data, distributed
from .console import format_table  # noqa: F401  (the experiments' tables)
from .files import unique_dir


def run_dir(logdir: str | Path, experiment: str, name: str | None = None) -> Path:
    """A new folder ``logdir/experiment/<name>-<time>`` (``<time>`` alone without ``name``)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return unique_dir(Path(logdir) / experiment, f"{name}-{stamp}" if name else stamp)


@contextlib.contextmanager
def torch_threads(n: int):
    """``n`` CPU threads for torch inside the block (0: leave torch's default); restored after."""
    old = torch.get_num_threads()
    torch.set_num_threads(n if n > 0 else old)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def add_data_flags(parser: argparse.ArgumentParser, dataset_help: str = "data set") -> None:
    """--dataset, --data-root and --no-download, as every experiment on real data takes them."""
    from . import cli

    a = parser.add_argument
    # What lintorch.train takes; the experiments name their runs and figures after
    # data.short_name, never after a path.
    a("--dataset", type=cli.dataset_name, default=None, metavar=cli.DATASET_METAVAR,
      help=f"{dataset_help}: a built-in one, an .npz file or a folder of images (default: "
           "cifar10 if found under the data root, else fashion-mnist)")
    a("--data-root", help="folder holding the data set (default: $LINTORCH_DATA, else ./data)")
    a("--no-download", action="store_true", help="never download missing data")


def add_compute_flags(parser: argparse.ArgumentParser) -> None:
    """--threads and --device, for the experiments that train."""
    a = parser.add_argument
    a("--threads", type=int, default=1, help="CPU threads for torch (0: torch's default, one per "
      "core); on these small steps a second one gains little, and costs a lot when busy")
    a("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda when available")


def chosen_dataset(args: argparse.Namespace) -> str:
    return args.dataset or data.find_dataset(args.data_root) or "fashion-mnist"


def load_prepared(args: argparse.Namespace, limit: int | None,
                  preprocess: str = "standardize") -> data.Prepared:
    """The data set of ``args`` on ``args.device``, 1,000 validation images; --quick takes 200 and
    500 test images (they only score the final weights: a sample does in seconds)."""
    raw = data.load_dataset(args.dataset, args.data_root, download=not args.no_download)
    d = data.prepare(raw, val_size=200 if args.quick else 1000, preprocess=preprocess,
                     seed=args.seed, device=distributed.pick_device(args.device), limit=limit)
    if not args.quick:
        return d
    # Every k-th image, not the first 500: a folder's test images come sorted by class.
    k = max(1, len(d.test_y) // 500)
    return dataclasses.replace(d, test_x=d.test_x[::k][:500], test_y=d.test_y[::k][:500])
