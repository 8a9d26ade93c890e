"""File helpers every part of lintorch uses, importing nothing of lintorch: files written whole
or not at all, strict JSON, run folders of their own, and an exception as one line."""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it to ``path``: a crash
    or a kill leaves the old file or the new one, never half of one."""
    path = Path(path)
    # a name of its own, so that two threads or processes writing one path do not collide;
    # short, so that a name near the 255-byte limit still has room for it
    tmp = path.with_name(f".{path.name[:200]}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def strict(obj):
    """``obj`` with every float that is NaN or infinite replaced by None: JSON has no NaN, and
    strict readers (JavaScript, jq) refuse Python's bare ``NaN``."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj) -> None:
    """``obj`` as strict JSON (NaN and infinity written as null), atomically."""
    text = json.dumps(strict(obj), indent=2, allow_nan=False)
    write_atomic(path, lambda tmp: tmp.write_text(text))


def unique_dir(logdir: str | os.PathLike, name: str) -> Path:
    """Create and return ``logdir/name``, or ``name-2``, ``name-3``, ... if taken.

    ``mkdir`` refuses a folder that exists, so two runs started at the same moment with the
    same name each get a folder of their own (checking first, then creating, would not).
    """
    Path(logdir).mkdir(parents=True, exist_ok=True)
    k = 1
    while True:
        path = Path(logdir) / (name if k == 1 else f"{name}-{k}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            k += 1


def printable(name: str) -> str:
    """``name`` with U+FFFD for each lone surrogate, which print, JSON and TensorBoard refuse: a
    file name that is not UTF-8 arrives with one for each byte that is not."""
    return name.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def one_line(error: BaseException) -> str:
    """An exception as one line of at most 200 characters, for the middle of a message."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__
