"""What every data set is, whichever reader made it (``data.py``'s, ``image_folder.py``'s):
``RawData``, the names a data set goes by, and the errors a data set can raise, each one line a
user can act on. Light to import: the config and the command lines read it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

DATASETS = ("cifar10", "fashion-mnist", "mnist")  # the built-in data sets, by name
PREPROCESS = ("none", "center", "standardize", "pixel")  # data.prepare's, by name


class DataError(Exception):
    """A data problem the user can fix; str(e) is one line, shown without a traceback."""


class DataNotFoundError(DataError):
    """The data set is neither on disk nor downloadable."""


class DataCorruptError(DataError):
    """A data file is there but cannot be what it claims to be (truncated, wrong format)."""


@dataclass
class RawData:
    """A data set as stored, on the CPU: int64 labels and features (N, ...), uint8 or float;
    images are (N, channels, H, W)."""

    name: str
    classes: list[str]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def resolve_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: `root` if given, else $LINTORCH_DATA, else ./data."""
    if root is None:
        root = os.environ.get("LINTORCH_DATA") or "data"
    return Path(root).expanduser().absolute()


def is_npz(name: str | os.PathLike) -> bool:
    """Whether `name` is the path of an .npz file (a data set of one's own), not a built-in name."""
    return isinstance(name, (str, os.PathLike)) and os.fsdecode(name).lower().endswith(".npz")


def kind(name: str | os.PathLike) -> str:
    """What data set `name` names: one of DATASETS, "npz" (an .npz file) or "folder" (any other
    path: a folder of images, see lintorch/image_folder.py)."""
    if is_npz(name):
        return "npz"
    return name if name in DATASETS else "folder"
