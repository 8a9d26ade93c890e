"""File helpers every part of lintorch uses, importing nothing of lintorch: files written whole
or not at all, strict JSON, run folders of their own (and held by one process at a time), and an
exception as one line."""

from __future__ import annotations

import fcntl
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


LOCK = ".lock"  # in a run folder: held (flock) by the process that writes it
_held: dict[str, int] = {}  # folder -> the open lock file of this process


class FolderInUse(OSError):
    """Another process holds the run folder (``lock_folder``); str(e) is one line."""


def lock_folder(folder: str | os.PathLike) -> None:
    """Hold ``folder`` for this process until ``release_folders`` or its end, or refuse in one
    line: a folder it cannot write (before anything is computed for it), or one another process
    holds. The lock is an ``flock`` on ``folder/.lock``, which the system releases when the
    process ends in any way, so a crash cannot leave a run locked."""
    folder = Path(folder)
    if str(folder) in _held:
        return
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"cannot write in run folder {folder}: permission denied; make it "
                              "writable (chmod u+w) or resume as its owner")
    try:
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise OSError(f"cannot write in run folder {folder} ({one_line(e)})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.pread(fd, 20, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise FolderInUse(f"run folder {folder} is in use by another lintorch process (pid "
                          f"{pid}); wait for it to end, or resume a run of your own") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _held[str(folder)] = fd


def release_folders() -> None:
    """Let go of every run folder this process holds (``lock_folder``)."""
    while _held:
        os.close(_held.popitem()[1])  # closing the file releases its flock


def printable(name: str) -> str:
    """``name`` with U+FFFD for each lone surrogate, which print, JSON and TensorBoard refuse: a
    file name that is not UTF-8 arrives with one for each byte that is not."""
    return name.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def one_line(error: BaseException) -> str:
    """An exception as one line of at most 200 characters, for the middle of a message."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__
