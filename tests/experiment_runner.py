"""Run an experiment script's main() in-process, as the experiment tests do."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load(name: str):
    # As ``python experiments/<name>.py`` runs it: its folder on sys.path, for ``import common``
    if str(REPO / "experiments") not in sys.path:
        sys.path.insert(0, str(REPO / "experiments"))
    spec = importlib.util.spec_from_file_location(f"experiment_{name}",
                                                  REPO / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run_main(name: str, argv: list[str]) -> tuple[dict, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = load(name).main(argv)
    return result, out.getvalue()


def image_folder(root: Path, n_train: int) -> Path:
    """root/pets: a folder of tiny images as ``--dataset FOLDER`` takes it (three classes,
    ``n_train`` training and 10 test images each)."""
    from test_image_folder import write_folder

    write_folder(root / "pets", n_train=n_train, n_test=10, size=(8, 8))
    return root / "pets"


def assert_runs_only_under(logdir: Path, experiment: str, name: str) -> Path:
    """The one folder ``logdir/experiment/<name>-<time>`` an experiment wrote, and nothing else
    in ``logdir``: a data set's path never becomes part of a run folder's."""
    assert [p.name for p in logdir.iterdir()] == [experiment]
    groups = list((logdir / experiment).iterdir())
    assert len(groups) == 1 and re.fullmatch(rf"{name}-\d{{8}}-\d{{6}}", groups[0].name), groups
    return groups[0]
