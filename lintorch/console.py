"""What a run prints, importing nothing of lintorch: its lines, a progress bar, and tables."""

from __future__ import annotations

import sys
from collections.abc import Iterable


def say(quiet: bool, *args) -> None:
    if not quiet:
        print(*args, flush=True)


def progress(items: list, desc: str, quiet: bool) -> Iterable:
    """``items``, with a tqdm bar on a terminal (none when quiet or piped to a file)."""
    if quiet or not sys.stdout.isatty():
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, leave=False, unit="batch", dynamic_ncols=True)


def format_table(title: str | None, header: list[str], rows: list[list], left: int = 1,
                 align: str | None = None) -> str:
    """Plain text between rules, under ``title`` if one is given: the first ``left`` columns
    left-aligned and the others right-aligned, or as ``align`` says ("lrrl": one letter each)."""
    align = align or "l" * left + "r" * (len(header) - left)
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if a == "l" else c.rjust(w)
                       for c, w, a in zip(row, widths, align)).rstrip() for row in cells]
    rule = "-" * max(len(text) for text in lines)
    return "\n".join([*([title] if title else []), rule, lines[0], rule, *lines[1:], rule])
