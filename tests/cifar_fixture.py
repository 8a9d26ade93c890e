"""Small random CIFAR-10 data sets in the official python-version layout, for tests/benchmarks.

The official files were written by Python 2's cPickle (protocol 2), where every string is a
byte string. `Py2Pickler` reproduces that, so the fixtures exercise the same unpickling path
as the real download: bytes keys under encoding="bytes", str keys under encoding="latin1".

    from cifar_fixture import write_cifar10
    expected = write_cifar10(tmp_path, n_train_per_batch=10, n_test=10)
"""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


class Cifar10Arrays(NamedTuple):
    """What a loader should return for the written data set."""

    train_images: np.ndarray  # uint8 (5 * n_train_per_batch, 3, 32, 32), batches in order
    train_labels: np.ndarray  # int64
    test_images: np.ndarray  # uint8 (n_test, 3, 32, 32)
    test_labels: np.ndarray  # int64
    classes: list[str]


class Py2Pickler(pickle._Pickler):
    """Protocol-2 pickler that writes str and bytes as Python 2 `str` (SHORT_BINSTRING /
    BINSTRING opcodes) and names numpy's globals as numpy 1 did (numpy.core, not numpy._core)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, file):
        super().__init__(file, protocol=2)

    def save_py2_str(self, obj: str | bytes) -> None:
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str

    def save_global(self, obj, name=None):
        module = getattr(obj, "__module__", "") or ""
        if not module.startswith("numpy._core"):
            return super().save_global(obj, name)
        module = module.replace("numpy._core", "numpy.core", 1)
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)


def py2_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    Py2Pickler(buffer).dump(obj)
    return buffer.getvalue()


def _cifar10_files(
    n_train_per_batch: int, n_test: int, seed: int, python2: bool
) -> tuple[dict[str, bytes], Cifar10Arrays]:
    rng = np.random.default_rng(seed)
    dump = py2_pickle if python2 else pickle.dumps
    files, images, labels = {}, [], []
    for i, name in enumerate([*BATCHES, "test_batch"]):
        n = n_test if name == "test_batch" else n_train_per_batch
        data = rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)
        targets = rng.integers(0, 10, size=n).tolist()  # a list of ints, as in the originals
        batch_label = (
            "testing batch 1 of 1" if name == "test_batch" else f"training batch {i + 1} of 5"
        )
        files[name] = dump({
            "batch_label": batch_label,
            "labels": targets,
            "data": data,
            "filenames": [f"image_{i}_{j}.png" for j in range(n)],
        })  # fmt: skip
        images.append(data.reshape(n, 3, 32, 32))
        labels.append(np.asarray(targets, dtype=np.int64))
    files["batches.meta"] = dump(
        {"num_cases_per_batch": n_train_per_batch, "label_names": CLASSES, "num_vis": 3072}
    )
    expected = Cifar10Arrays(
        np.concatenate(images[:5]), np.concatenate(labels[:5]), images[5], labels[5], CLASSES
    )
    return files, expected


def write_cifar10(
    root, n_train_per_batch: int = 10, n_test: int = 10, seed: int = 0, python2: bool = True
) -> Cifar10Arrays:
    """Write root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} of random
    images; python2=False pickles with Python 3 instead (str keys whatever the encoding)."""
    files, expected = _cifar10_files(n_train_per_batch, n_test, seed, python2)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return expected


def write_cifar10_targz(
    root, n_train_per_batch: int = 10, n_test: int = 10, seed: int = 0, python2: bool = True
) -> Cifar10Arrays:
    """Write root/cifar-10-python.tar.gz holding cifar-10-batches-py/ as the official one."""
    files, expected = _cifar10_files(n_train_per_batch, n_test, seed, python2)
    Path(root).mkdir(parents=True, exist_ok=True)
    with tarfile.open(Path(root) / "cifar-10-python.tar.gz", "w:gz") as tar:
        folder = tarfile.TarInfo("cifar-10-batches-py")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        for name, content in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return expected
