"""What the experiments share: their data and compute flags (TrainConfig's own), the data, run
folders, torch's threads and text tables. Each experiment imports it as ``common``: a script's
own folder is on ``sys.path`` when it runs as ``python experiments/<name>.py``."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time
from pathlib import Path

import torch

from lintorch import cli, data, distributed
from lintorch.console import format_table  # noqa: F401  (the experiments' tables)
from lintorch.files import unique_dir


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


def add_data_flags(parser: argparse.ArgumentParser, dataset_help: str = "") -> None:
    """--dataset, --data-root and --no-download, as lintorch.train takes them, but for the
    default data set: the experiments name their runs and figures after data.short_name."""
    flags = cli.add_training_flags(parser, only=("dataset", "data_root", "no_download"),
                                   dataset=None)
    here = f"here: {dataset_help}; " if dataset_help else ""
    flags["dataset"].help += (f" ({here}unset: cifar10 if found under the data root, else "
                              "fashion-mnist)")


def add_run_flags(parser: argparse.ArgumentParser, runs: str | None, *more: str,
                  **defaults) -> dict[str, argparse.Action]:
    """--seed, --logdir (unless ``runs`` is None; ``runs``: where this experiment's runs go in
    LOGDIR) and the fields ``more`` (such as "limit", "loss"), as lintorch.train takes them;
    ``defaults``: the experiment's own. The flags' actions, by field, for notes of its own."""
    flags = cli.add_training_flags(parser, only=("seed", *more, *(("logdir",) if runs else ())),
                                   **defaults)
    if runs:
        flags["logdir"].help += f"; the runs go to LOGDIR/{runs}"
    if "limit" in flags and "limit" not in defaults:
        flags["limit"].help += "; --quick: 1000"
    return flags


def add_compute_flags(parser: argparse.ArgumentParser) -> None:
    """--threads and --device (lintorch.train's), for the experiments that train."""
    parser.add_argument(
        "--threads", type=cli.non_negative(int), default=1,
        help="CPU threads for torch (0: torch's default, one per core); on these small steps a "
             "second one gains little, and costs a lot when busy (default: %(default)s)")
    cli.add_training_flags(parser, only=("device",))


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
