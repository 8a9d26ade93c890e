"""What an experiment prints and where it writes: plain-text tables, a fresh run folder, and the
number of CPU threads torch uses while it runs."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch


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


def unique_dir(logdir: Path, name: str) -> Path:
    """``logdir/name``, or ``name-2``, ``name-3``, ... if taken; not created."""
    path, k = logdir / name, 1
    while path.exists():
        k += 1
        path = logdir / f"{name}-{k}"
    return path


def run_dir(logdir: str | Path, experiment: str, name: str | None = None) -> Path:
    """A new folder ``logdir/experiment/<name>-<time>`` (``<time>`` alone without ``name``)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = unique_dir(Path(logdir) / experiment, f"{name}-{stamp}" if name else stamp)
    path.mkdir(parents=True)
    return path


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
