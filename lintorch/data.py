"""Image classification data sets as whole tensors, and their preparation for training.

CIFAR-10, Fashion-MNIST and MNIST are small enough to live in memory (and on the GPU) as one
tensor each: read straight from their distribution formats (or one's own .npz of arrays, or a
folder of image files, lintorch/image_folder.py) into tensors, with no DataLoader and no
per-image transforms, so that a training step is just indexing into a tensor.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
import torch.nn.functional as F

from .files import one_line, printable
from .image_folder import load_image_folder
from .rawdata import (  # noqa: F401  (data.DataError and the rest: the names users know)
    DATASETS,
    PREPROCESS,
    DataCorruptError,
    DataError,
    DataNotFoundError,
    RawData,
    is_npz,
    kind,
    resolve_root,
)

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck"]  # fmt: skip
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot"]  # fmt: skip
MNIST_CLASSES = [str(digit) for digit in range(10)]

_TITLES = {"cifar10": "CIFAR-10", "fashion-mnist": "Fashion-MNIST", "mnist": "MNIST"}
_POINT_ELSEWHERE = "Point --data-root or LINTORCH_DATA at a folder that holds it."
# Where Debian's dataset-fashion-mnist puts its four .gz files: <root>/fashion-mnist. Looked in
# only when no folder was named, so --data-root and LINTORCH_DATA always win.
SYSTEM_ROOTS = (Path("/usr/share/datasets"),)


def short_name(name: str | os.PathLike) -> str:
    """A name for run folders and titles: the built-in name, the .npz file's stem, the folder's
    name; printable (a name that is not UTF-8 shows U+FFFD for the bytes that are not)."""
    if kind(name) == "npz":
        return printable(Path(name).stem)
    return printable(Path(name).absolute().name) if kind(name) == "folder" else name


def load_dataset(name: str | os.PathLike, root: str | os.PathLike | None = None,
                 download: bool = True, progress: bool = True, refresh: bool = False) -> RawData:
    """Load data set `name` from `root` (see resolve_root), else from Debian's SYSTEM_ROOTS when
    no root was named, else download it into `root`. `name` is one of DATASETS, the path of an
    .npz file, or the path of an image folder (decoded once, with a progress bar if `progress`,
    then read from a cache unless `refresh`; `root` plays no part in either)."""
    if kind(name) == "npz":
        return _load_npz(Path(name).expanduser())
    if kind(name) == "folder":
        return load_image_folder(name, progress, refresh)
    if name == "cifar10":
        return _load_cifar10(resolve_root(root), download)
    return _load_idx_dataset(name, resolve_root(root), download, _idx_folders(name, root))


def find_dataset(root: str | os.PathLike | None = None) -> str | None:
    """The first of cifar10, fashion-mnist found where load_dataset looks (never downloads)."""
    folders, root = _idx_folders("fashion-mnist", root), resolve_root(root)
    if _cifar10_complete(root / _CIFAR_DIR) or (root / _CIFAR_TAR).is_file():
        return "cifar10"
    return "fashion-mnist" if _find_idx_files(folders) is not None else None


def _download(name: str, root: Path, download: bool, expected: str) -> None:
    """Let torchvision fetch the data set into `root`, or say clearly why there is none."""
    missing = f"{_TITLES[name]} not found under {root} (expected {expected})"
    if not download:
        raise DataNotFoundError(f"{missing}; downloading is off (--no-download). "
                                f"{_POINT_ELSEWHERE}")
    try:
        import torchvision.datasets as tvd

        dataset = {"cifar10": tvd.CIFAR10, "fashion-mnist": tvd.FashionMNIST, "mnist": tvd.MNIST}
        dataset[name](str(root), train=True, download=True)
    except Exception as e:  # no network shows up as any of a dozen exception types
        raise DataNotFoundError(f"{missing}; download failed (offline? --no-download skips "
                                f"trying): {one_line(e)}. {_POINT_ELSEWHERE}") from e


# CIFAR-10, python version: pickled dicts {data: uint8 (N, 3072) in CHW order, labels: [int]}
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_TAR = "cifar-10-python.tar.gz"
_CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
_CIFAR_TEST, _CIFAR_META = "test_batch", "batches.meta"
# A data file can come from anywhere and unpickling runs whatever it names: allow only what
# rebuilds numpy arrays (as pickled by Python 2, numpy 1 and numpy 2).
_CIFAR_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}  # fmt: skip
# Python >= 3.12 warns unless told how to filter; older Pythons rely on the checks below.
_TAR_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _cifar10_complete(folder: Path) -> bool:
    return all((folder / file).is_file() for file in [*_CIFAR_TRAIN, _CIFAR_TEST])


def _load_cifar10(root: Path, download: bool) -> RawData:
    folder = root / _CIFAR_DIR
    if not _cifar10_complete(folder) and (root / _CIFAR_TAR).is_file():
        _extract_cifar10(root / _CIFAR_TAR, root)
    if not _cifar10_complete(folder):
        expected = f"{folder}/ with data_batch_1..5 and test_batch, or {root / _CIFAR_TAR}"
        _download("cifar10", root, download, expected)
        if not _cifar10_complete(folder):
            raise DataNotFoundError(f"CIFAR-10 download left no {expected}. {_POINT_ELSEWHERE}")

    train = [_read_cifar_batch(folder / file) for file in _CIFAR_TRAIN]
    test_images, test_labels = _read_cifar_batch(folder / _CIFAR_TEST)
    train_images, train_labels = (np.concatenate(arrays) for arrays in zip(*train))
    return RawData("cifar10", _read_cifar_classes(folder / _CIFAR_META),
                   torch.from_numpy(train_images).reshape(-1, 3, 32, 32),
                   torch.from_numpy(train_labels),
                   torch.from_numpy(test_images).reshape(-1, 3, 32, 32),
                   torch.from_numpy(test_labels))


def _extract_cifar10(archive: Path, root: Path) -> None:
    """Unpack the archive into `root`, going through a scratch folder so that a failed or
    interrupted extraction never leaves half-written batch files that look complete."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                path = PurePosixPath(member.name)
                escapes = path.is_absolute() or ".." in path.parts
                if escapes or not (member.isfile() or member.isdir()):
                    raise DataCorruptError(f"{archive} holds an unsafe entry {member.name!r}")
            with tempfile.TemporaryDirectory(dir=root, prefix=".extract-") as scratch:
                tar.extractall(scratch, members=members, **_TAR_FILTER)
                unpacked = Path(scratch) / _CIFAR_DIR
                if not _cifar10_complete(unpacked):
                    raise DataCorruptError(f"{archive} holds no {_CIFAR_DIR}/ with "
                                           "data_batch_1..5 and test_batch")
                (root / _CIFAR_DIR).mkdir(exist_ok=True)
                for file in unpacked.iterdir():
                    os.replace(file, root / _CIFAR_DIR / file.name)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataCorruptError(f"{archive} is truncated or not a .tar.gz ({one_line(e)})") from e
    except OSError as e:
        raise DataError(f"cannot extract {archive} into {root}: {one_line(e)}") from e


def _unpickle(path: Path) -> dict:
    """A CIFAR pickle as a dict with str keys, whether Python 2 (bytes keys) or 3 wrote it."""
    try:
        with open(path, "rb") as f:
            entry = _ArrayUnpickler(f, encoding="bytes").load()
    except OSError as e:
        raise DataError(f"cannot read {path}: {one_line(e)}") from e
    except Exception as e:  # a damaged pickle fails in many ways: EOFError, UnpicklingError, ...
        raise DataCorruptError(f"{path} is truncated or not a CIFAR pickle ({one_line(e)})") from e
    if not isinstance(entry, dict):
        raise DataCorruptError(f"{path} holds a {type(entry).__name__}, not a CIFAR dict")
    return {key.decode("latin1") if isinstance(key, bytes) else key: v for key, v in entry.items()}


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    entry = _unpickle(path)
    images = entry.get("data")
    try:  # as they are: asking for int64 would cut 0.5 to 0, parse "1" and overflow on 2**70
        labels = np.asarray(entry.get("labels"))
    except (TypeError, ValueError):
        labels = None
    ok = (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 2
          and images.shape[1] == 3 * 32 * 32 and labels is not None and labels.dtype.kind in "iu"
          and labels.shape == (len(images),) and bool(((labels >= 0) & (labels < 10)).all()))
    if not ok:
        raise DataCorruptError(f"{path} does not hold 'data' as uint8 (N, 3072) with N integer "
                               "'labels' in 0..9")
    return images, labels.astype(np.int64)


def _read_cifar_classes(path: Path) -> list[str]:
    if not path.is_file():  # only the names live there; they are well known
        return list(CIFAR10_CLASSES)
    names = _unpickle(path).get("label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise DataCorruptError(f"{path} does not hold 10 'label_names'")
    return [name.decode("latin1") if isinstance(name, bytes) else printable(str(name))
            for name in names]


# Fashion-MNIST and MNIST: four idx files, each optionally gzipped
_IDX_STEMS = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
              "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
# torchvision's layout, a folder named after the data set (as Debian's), or the root itself
_IDX_FOLDERS = {"fashion-mnist": ("FashionMNIST/raw", "fashion-mnist", ""),
                "mnist": ("MNIST/raw", "mnist", "")}


def _idx_folders(name: str, root: str | os.PathLike | None) -> list[Path]:
    """Where data set `name` may be: under the data folder, then, if none was named, Debian's."""
    system = () if root is not None or os.environ.get("LINTORCH_DATA") else SYSTEM_ROOTS
    local = [resolve_root(root) / sub for sub in _IDX_FOLDERS[name]]
    return local + [Path(s) / name for s in system]


def _find_idx_files(folders: list[Path]) -> dict[str, Path] | None:
    for folder in folders:
        # prefer the unpacked file: no gunzip on every run
        files = {key: next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None)
                 for key, stem in _IDX_STEMS.items()}
        if all(files.values()):
            return files
    return None


def _load_idx_dataset(name: str, root: Path, download: bool, folders: list[Path]) -> RawData:
    files = _find_idx_files(folders)
    if files is None:
        places = ", ".join(map(str, folders))
        expected = f"{', '.join(_IDX_STEMS.values())}, each optionally .gz, in one of {places}"
        _download(name, root, download, expected)
        files = _find_idx_files(folders)
        if files is None:
            raise DataNotFoundError(f"{_TITLES[name]} download left no {expected}.")

    arrays = {key: _read_idx(path, ndim=3 if "images" in key else 1) for key, path in files.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            raise DataCorruptError(f"{files[f'{split}_images']} holds {len(images)} images but "
                                   f"{files[f'{split}_labels']} holds {len(labels)} labels")
        if labels.size and labels.max() >= 10:
            raise DataCorruptError(f"{files[f'{split}_labels']} holds labels beyond 0..9")
    a = {key: torch.from_numpy(array) for key, array in arrays.items()}
    return RawData(name, list(FASHION_MNIST_CLASSES if name == "fashion-mnist" else MNIST_CLASSES),
                   a["train_images"].unsqueeze(1), a["train_labels"].long(),
                   a["test_images"].unsqueeze(1), a["test_labels"].long())


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An idx file of unsigned bytes: magic 0x0800 + ndim, ndim big-endian uint32 sizes, data."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            data = f.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataCorruptError(f"{path} is truncated or not gzip ({one_line(e)})") from e
    except OSError as e:
        raise DataError(f"cannot read {path}: {one_line(e)}") from e

    magic, header = 0x0800 + ndim, 4 + 4 * ndim  # 2049 for labels, 2051 for images
    if len(data) < header or int.from_bytes(data[:4], "big") != magic:
        raise DataCorruptError(f"{path} is not an idx file (magic number {magic} expected)")
    shape = tuple(int(size) for size in np.frombuffer(data, ">u4", count=ndim, offset=4))
    if len(data) - header != math.prod(shape):
        raise DataCorruptError(f"{path} is truncated or overlong: its header promises {shape} = "
                               f"{math.prod(shape)} bytes of data, it holds {len(data) - header}")
    # copied, because torch wants writable memory and `data` is immutable bytes
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape).copy()


# One's own data: an .npz of x_train (N, ...), y_train (N,), x_test, y_test and maybe classes
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_NPZ_HOW = "save it with numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"


# Labels are class indices: a label past this is an ID or a mistake, and C = max + 1 names would
# fill the memory (a uint64 label near 2**64 would also wrap when widened to int64).
_MAX_CLASSES = 2**20


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of the .npz at `path` that lintorch uses, read without unpickling anything."""
    if not path.is_file():
        raise DataNotFoundError(f"{path} not found; give the path of an .npz data set")
    if not zipfile.is_zipfile(path):  # else np.load would try it as a pickle, and blame that
        raise DataCorruptError(f"{path} is unreadable or not an .npz (zip) file; {_NPZ_HOW}")
    a, key = {}, None
    try:
        with np.load(path, allow_pickle=False) as npz:
            if missing := [key for key in _NPZ_KEYS if key not in npz.files]:
                raise DataCorruptError(f"{path} has no {', '.join(missing)}; it needs "
                                       f"{', '.join(_NPZ_KEYS)} (classes optional) and holds "
                                       f"{', '.join(npz.files) or 'nothing'}")
            for key in [key for key in npz.files if key in (*_NPZ_KEYS, "classes")]:
                a[key] = npz[key]
                if not isinstance(a[key], np.ndarray):  # a zip member without .npy's header
                    raise DataCorruptError(f"{path}: {key} is not a .npy array (its bytes lack "
                                           f"the .npy header); {_NPZ_HOW}")
    # RuntimeError: an encrypted member, or an unknown compression; MemoryError: a header that
    # promises more than there is memory for (a damaged one, or a data set too big)
    except (ValueError, OSError, EOFError, RuntimeError, MemoryError, zlib.error,
            zipfile.BadZipFile) as e:
        if isinstance(e, ValueError) and "allow_pickle" in str(e):
            raise DataCorruptError(f"{path}: {key} is an object array; loading it would unpickle, "
                                   "which can run code, so it is refused (allow_pickle=False). "
                                   "Save plain numbers (names as str)") from None
        raise DataCorruptError(f"{path} is damaged ({one_line(e)}); {_NPZ_HOW}") from e
    return a


def _load_npz(path: Path) -> RawData:
    a = _read_npz(path)

    def bad(problem: str) -> DataCorruptError:
        return DataCorruptError(f"{path}: {problem}")

    x_train, x_test = a["x_train"], a["x_test"]
    if x_train.ndim < 2 or x_train.shape[1:] != x_test.shape[1:]:
        raise bad(f"x_train is {x_train.shape}, x_test {x_test.shape}; give both as "
                  "(N, features...) with one feature shape")  # fmt: skip
    if not math.prod(x_train.shape[1:]):  # a model of 0 inputs would fail with no word why
        raise bad(f"x_train is {x_train.shape}: its examples hold no features")
    if (x_train.dtype == np.uint8) != (x_test.dtype == np.uint8):  # one would be scaled by 1/255
        raise bad(f"x_train is {x_train.dtype}, x_test {x_test.dtype}; give both uint8 (scaled "
                  "by 1/255) or both float (used as they are)")
    for split in ("train", "test"):
        x, y = a[f"x_{split}"], a[f"y_{split}"]
        if x.dtype != np.uint8 and x.dtype.kind != "f":
            raise bad(f"x_{split} is {x.dtype}; features must be uint8 or float")
        if len(x) < 1:
            raise bad(f"x_{split} holds no examples; each split needs at least 1")
        if y.shape != (len(x),):
            raise bad(f"y_{split} has shape {y.shape} but x_{split} holds {len(x)} examples; "
                      "give one label per example")  # fmt: skip
        if y.dtype.kind not in "iu":
            raise bad(f"y_{split} is {y.dtype}; labels must be integer class indices")
        if (top := y.max()) >= _MAX_CLASSES:
            raise bad(f"y_{split} holds label {top}; labels must be class indices 0..C-1 with C "
                      f"at most {_MAX_CLASSES:,}: renumber them")  # fmt: skip
        a[f"y_{split}"] = y.astype(np.int64)  # before any arithmetic: uint8's 255 + 1 is 0
        if x.dtype.kind == "f" and not (finite := np.isfinite(x)).all():
            first = int((~finite).reshape(len(x), -1).any(1).argmax())
            raise bad(f"x_{split} holds {(~finite).sum()} non-finite values (NaN or inf), the "
                      f"first in example {first}; remove or replace them")  # fmt: skip
        if x.dtype.kind == "f" and x.dtype.itemsize > 8:  # longdouble, which torch lacks
            if (biggest := np.abs(x).max()) > np.finfo(np.float64).max:
                raise bad(f"x_{split} holds values up to {biggest:.3g}, beyond float64's range "
                          f"(+-{np.finfo(np.float64).max:.3g}); rescale them")  # fmt: skip
            a[f"x_{split}"] = x.astype(np.float64)
    n_labels = max(a["y_train"].max(), a["y_test"].max()) + 1
    names = a["classes"] if "classes" in a else np.arange(n_labels).astype(str)
    if names.ndim != 1 or names.dtype.kind != "U":
        raise bad(f"classes is {names.dtype} of shape {names.shape}; it must be a 1-D array of "
                  "strings, one name per class")  # fmt: skip
    classes, c = [printable(name) for name in names.tolist()], len(names)
    for split in ("train", "test"):
        y = a[f"y_{split}"]
        if (outside := y[(y < 0) | (y >= c)]).size:
            raise bad(f"y_{split} holds label {outside[0]}, outside [0, {c}) for C = {c} classes "
                      "(C = len(classes) if given); labels must be 0..C-1")  # fmt: skip

    def tensor(x: np.ndarray) -> torch.Tensor:
        x = x[:, None] if x.ndim == 3 else x  # (N, H, W): one-channel images, like MNIST's
        return torch.from_numpy(x.astype(x.dtype.newbyteorder("="), copy=False))

    return RawData(path.stem, classes, tensor(a["x_train"]), torch.from_numpy(a["y_train"]),
                   tensor(a["x_test"]), torch.from_numpy(a["y_test"]))


# Preparation for training: splits, preprocessing, batches, augmentation
@dataclass
class Prepared:
    """Float tensors on the training device: x = (features - mean) / std (uint8 ones / 255),
    mean and std from the training split. image_shape is one example's: (C, H, W) for images."""

    classes: list[str]
    image_shape: tuple[int, ...]
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


def prepare(raw: RawData, val_size: int | None = None, preprocess: str = "standardize",
            seed: int = 0, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
            limit: int | None = None) -> Prepared:
    """Split `val_size` random training examples off for validation (None: 1,000, or a tenth of
    the training examples when that is fewer), keep at most `limit` of the rest for training,
    and preprocess all splits with statistics of the training split.
    none: x as is (uint8: x / 255); center: minus the mean example; standardize: mean and std per
    channel of images (N, C, H, W), else per feature; pixel: mean and std per feature (each pixel
    of each channel its own)."""
    if preprocess not in PREPROCESS:
        raise ValueError(f"unknown preprocessing {preprocess!r}; choose one of {PREPROCESS}")
    n = len(raw.train_labels)
    if val_size is None:
        val_size = min(1000, n // 10)
    if not 0 <= val_size < n:
        raise DataError(f"a validation split of {val_size} must leave training images, and the "
                        f"training split holds {n}: give a smaller --val-size (0 for none)")
    if limit is not None and limit < 1:
        raise DataError(f"limit must be at least 1, got {limit}")

    finfo = torch.finfo(dtype)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:val_size], order[val_size:][:limit]

    def to_unit(images: torch.Tensor) -> torch.Tensor:
        # uint8 crosses to the device at a quarter of float32's bytes; convert on arrival. The
        # copy keeps the in-place normalization below off raw's own float tensors.
        x = images.to(device).to(dtype, copy=True)
        narrowed = images.is_floating_point() and torch.finfo(images.dtype).max > finfo.max
        if narrowed and not torch.isfinite(x).all():
            raise _overflow(images, dtype, f"(largest {finfo.max:.3g})")
        return x.div_(255) if images.dtype == torch.uint8 else x

    train_x = to_unit(raw.train_images[train_idx])
    # standardize: per channel of images, else per feature; pixel: per feature always
    dims = (0, 2, 3) if train_x.ndim == 4 and preprocess != "pixel" else 0
    ones = torch.ones_like(train_x[:1].mean(dim=dims, keepdim=True))
    if preprocess in ("standardize", "pixel"):
        mean = train_x.mean(dim=dims, keepdim=True)
        std = train_x.std(dim=dims, keepdim=True, correction=0)
        # a constant channel or feature is left centered rather than divided by ~0 (rounding)
        constant = train_x.amax(dim=dims, keepdim=True) == train_x.amin(dim=dims, keepdim=True)
        std = torch.where(constant, ones, std)
    elif preprocess == "center":
        mean, std = train_x.mean(dim=0, keepdim=True), ones
    else:
        mean, std = torch.zeros_like(ones), ones
    if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
        raise _overflow(train_x, dtype, f"in the mean or standard deviation of --preprocess "
                                        f"{preprocess}")

    def normalize(x: torch.Tensor) -> torch.Tensor:
        return x.sub_(mean).div_(std)

    return Prepared(
        classes=list(raw.classes), image_shape=tuple(raw.train_images.shape[1:]),
        train_x=normalize(train_x), train_y=raw.train_labels[train_idx].to(device),
        val_x=normalize(to_unit(raw.train_images[val_idx])),
        val_y=raw.train_labels[val_idx].to(device),
        test_x=normalize(to_unit(raw.test_images)), test_y=raw.test_labels.to(device),
        mean=mean, std=std)


def _overflow(x: torch.Tensor, dtype: torch.dtype, where: str) -> DataError:
    """Features finite as stored that become inf in the training dtype: wrong advice would follow
    (the loss turns inf, and a smaller --lr cannot help), so this is said instead."""
    lo, hi = torch.aminmax(x)
    way_out = "train with --dtype float64 or rescale them" if dtype != torch.float64 else (
        "rescale them")
    return DataError(f"features as large as {max(-float(lo), float(hi)):.3g} overflow "
                     f"{str(dtype).removeprefix('torch.')} {where}; {way_out}")


def batch_indices(n: int, batch_size: int, generator: torch.Generator,
                  device: str | torch.device | None = None) -> list[torch.Tensor]:
    """A random order of range(n) cut into batches, the last one maybe smaller: drawn where
    `generator` lives (so a CPU generator also serves a GPU run), then moved to `device` (default:
    the generator's)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    order = torch.randperm(n, generator=generator, device=generator.device)
    return list(order.to(device or generator.device).split(batch_size))


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Flip each image of the batch x (N, C, H, W) left-right with probability 1/2 and cut it at
    a random offset out of its zero-padded version, all images at once on x's device. Zero is the
    mean after centering/standardizing, so padding is with average pixels. Random numbers come
    from `generator` alone (on the CPU or on x's device)."""
    if pad < 0:
        raise ValueError(f"pad must be at least 0, got {pad}")
    n, c, h, w = x.shape
    flip = torch.randint(0, 2, (n, 1), generator=generator, device=generator.device)
    offsets = torch.randint(0, 2 * pad + 1, (2, n, 1), generator=generator, device=generator.device)
    flip, (dy, dx) = flip.to(x.device).bool(), offsets.to(x.device)

    # Image i is padded[i, :, dy + r, dx + k] for r < h, k < w. Flipping the padded image maps
    # column j to (w + 2 pad - 1) - j, so a flip is just another column index: one gather.
    r, k = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    rows = dy + r  # (n, h)
    cols = torch.where(flip, w + 2 * pad - 1 - dx - k, dx + k)  # (n, w)
    padded = F.pad(x, (pad, pad, pad, pad))
    i, ch = torch.arange(n, device=x.device), torch.arange(c, device=x.device)
    return padded[i[:, None, None, None], ch[:, None, None], rows[:, None, :, None],
                  cols[:, None, None]]
