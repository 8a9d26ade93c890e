"""What the experiments share: their data flags and data, plain-text tables, a fresh run folder,
and the number of CPU threads torch uses while they run."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time
from pathlib import Path

import torch

from . import cli, data


def format_table(title: str, header: list[str], rows: list[list], left: int = 1) -> str:
    """Plain text: the first ``left`` columns left-aligned, the others right-aligned."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row):
        return "  ".join(c.ljust(w) if i < left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    lines = [line(row) for row in cells]
    rule = "-" * max(len(text) for text in lines)
    return "\n".join([title, rule, lines[0], rule, *lines[1:], rule])


def run_dir(logdir: str | Path, experiment: str, name: str | None = None) -> Path:
    """A new folder ``logdir/experiment/<name>-<time>`` (``<time>`` alone without ``name``)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return cli.unique_dir(Path(logdir) / experiment, f"{name}-{stamp}" if name else stamp)


@contextlib.contextmanager
def torch_threads(n: int):
    """``n`` CPU threads for torch inside the block (0: leave torch's default); restored after."""
    old = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def add_data_flags(parser: argparse.ArgumentParser, dataset_help: str = "data set") -> None:
    """--dataset (default: CIFAR-10 where it is found, else Fashion-MNIST), --data-root and
    --no-download, as every experiment on real data takes them."""
    parser.add_argument("--dataset", choices=data.DATASETS, default=None,
                        help=f"{dataset_help} (default: cifar10 if found under the data root, "
                             "else fashion-mnist)")
    parser.add_argument("--data-root", default=None,
                        help="folder holding the data set (default: $LINTORCH_DATA, else ./data)")
    parser.add_argument("--no-download", action="store_true", help="never download missing data")


def add_compute_flags(parser: argparse.ArgumentParser) -> None:
    """--threads and --device, for the experiments that train."""
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch (0: torch's default, one per core); these "
                             "steps are small, so a second thread gains little, and on a busy "
                             "machine it costs a lot")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto = cuda when available")


def chosen_dataset(args: argparse.Namespace) -> str:
    """--dataset, else CIFAR-10 where it is found, else Fashion-MNIST."""
    return args.dataset or data.find_dataset(args.data_root) or "fashion-mnist"


def load_prepared(args: argparse.Namespace, limit: int | None) -> data.Prepared:
    """The data set of ``args`` on ``args.device``: 1,000 validation images (200 with --quick)
    and, with --quick, the first 500 test images only."""
    raw = data.load_dataset(args.dataset, args.data_root, download=not args.no_download)
    d = data.prepare(raw, val_size=200 if args.quick else 1000, seed=args.seed,
                     device=cli.pick_device(args.device), limit=limit)
    if args.quick:  # the test set only scores the final weights: a slice does in seconds
        d = dataclasses.replace(d, test_x=d.test_x[:500], test_y=d.test_y[:500])
    return d
