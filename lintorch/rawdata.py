"""What every data set is, whichever reader made it (``data.py``'s, ``image_folder.py``'s):
``RawData``, and the errors a data set can raise, each one line a user can act on."""

from __future__ import annotations

from dataclasses import dataclass

import torch

DATASETS = ("cifar10", "fashion-mnist", "mnist")  # the built-in data sets, by name


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
