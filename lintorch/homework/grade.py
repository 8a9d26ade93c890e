"""The grader: the student's file is imported in a child process, never in the grader's own.

The child imports the file and runs the items' checks one after another, sending each result
through a pipe. The grader waits for each item at most ``timeout`` seconds: an item that hangs
(or a crash that kills the child) fails alone, and a new child goes on with the items left.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import multiprocessing
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from . import ITEMS

START_TIMEOUT_S = 300  # the child's own start (torch's import on a busy machine), not the student's


class GraderError(RuntimeError):
    """The grader itself could not run (its child process did not start)."""


def serve(path: str, items: list[str], conn) -> None:
    """The child: import the student's file, then check each item, reporting through ``conn``."""
    import numpy as np
    import torch

    from . import checks

    torch.set_num_threads(1)  # the checks' arrays are small; the timings are steadier so
    warnings.simplefilter("ignore")  # numpy's overflow warnings: the checks name the overflow
    np.seterr(all="ignore")
    checks.STUDENT_PATH = path
    conn.send(("ready",))
    quiet = io.StringIO()  # what the student's code prints is not the grader's to show
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        try:
            student = load(path)
        except (Exception, SystemExit) as e:
            conn.send(("import-error", f"your file does not import: {checks.one_line(e)}"
                                      f"{checks.where(e)}"))
            return
        conn.send(("imported",))
        for item in items:
            conn.send(("start", item))
            try:
                if not callable(getattr(student, item, None)):
                    raise checks.Fail(f"there is no function {item} in your file")
                conn.send(("done", item, True, checks.CHECKS[item](student)))
            except checks.Fail as e:
                conn.send(("done", item, False, str(e)))
            except Exception as e:  # the student's results tripped a check in a way not foreseen
                conn.send(("done", item, False, f"could not be checked: {checks.one_line(e)}"))


def load(path: str):
    """The student's module, from its file (its folder first on the import path)."""
    sys.path.insert(0, str(Path(path).parent))
    spec = importlib.util.spec_from_file_location("linear_classifier", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def grade(path: Path, items: list[str], timeout: float,
          report: Callable[[str, bool, str | None], None]) -> dict[str, bool]:
    """Check ``items`` of the student's file ``path``; ``report(item, passed, reason or note)``
    as each result arrives. Returns whether each item passed."""
    passed: dict[str, bool] = {}

    def done(item: str, ok: bool, message: str | None) -> None:
        passed[item] = ok
        report(item, ok, message)

    # Children are forked from a server process that has imported torch and run nothing (so no
    # thread pool is copied mid-use): a new child after a hang starts in a fraction of a second.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["lintorch.homework.checks"])
    pending = list(items)
    while pending:
        receive, send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=serve, args=(str(Path(path).resolve()), pending, send),
                            daemon=True)
        child.start()
        send.close()
        try:
            follow(receive, child, pending, timeout, done)
        finally:
            child.kill()
            child.join()
            receive.close()
        left = [item for item in pending if item not in passed]
        if len(left) == len(pending):  # the child died between items: nothing to blame on one
            for item in left:
                done(item, False, f"not checked: the grader's process stopped (exit code "
                                  f"{child.exitcode})")
        pending = [item for item in left if item not in passed]
    return passed


def follow(receive, child, pending: list[str], timeout: float, done) -> None:
    """Read the child's messages until it finishes, hangs or dies; a hung or killed item is
    reported failed, and the loop of ``grade`` starts a child for the items after it."""
    def wait(seconds: float):
        if receive.poll(seconds):
            try:
                return receive.recv()
            except EOFError:
                pass
        return None

    if wait(START_TIMEOUT_S) is None:
        raise GraderError(f"the grader's process did not start (exit code {child.exitcode})")
    message = wait(timeout)
    if message is None or message[0] == "import-error":
        child.join(1)
        why = message[1] if message else (
            f"importing your file did not finish within {timeout:g} s (code at the top level "
            f"of the file runs on import: an endless loop there?)" if child.exitcode is None
            else f"importing your file ended the process (exit code {child.exitcode})")
        for item in pending:
            done(item, False, why)
        return
    current, started = None, time.monotonic()
    while True:
        message = wait(max(0.0, timeout - (time.monotonic() - started)) if current else timeout)
        if message is None:
            if current is None:
                return  # every item is done and the child has finished
            child.join(1)  # a child that died has closed the pipe: reap it to see how it ended
            how = (f"did not finish within {timeout:g} s and was stopped (an endless loop?)"
                   if child.exitcode is None
                   else f"crashed the process running it (exit code {child.exitcode})")
            done(current, False, how)
            return
        if message[0] == "start":
            current, started = message[1], time.monotonic()
        elif message[0] == "done":
            done(*message[1:])
            current = None


def check_main(path: Path, items: list[str] | None, timeout: float) -> int:
    """``python -m lintorch.homework check``: each item's line, the score; 0 if all passed."""
    from . import version_line

    items = list(items or ITEMS)
    print(f"{version_line()}: grading {path}", flush=True)

    def report(item: str, ok: bool, message: str | None) -> None:
        text = f"  {'pass' if ok else 'FAIL'}  {item}"
        print(text + (f": {message}" if message else ""), flush=True)

    passed = grade(path, items, timeout, report)
    score = sum(passed.values())
    print(f"score {score}/{len(items)}")
    return 0 if score == len(items) else 1
