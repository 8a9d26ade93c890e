"""A folder of image files as a data set: ``PATH/train/<class>/<image>`` and
``PATH/test/<class>/<image>``, torchvision's ``ImageFolder`` layout.

The classes are the sorted names of train's class folders, and each class folder's images are
taken in ImageFolder's order (sorted, subfolders included, symlinks followed), so the labels are
the ones ``torchvision.datasets.ImageFolder`` would give, with one exception: files and folders
whose names start with a dot (macOS's ``._photo.jpg``, ``.ipynb_checkpoints/``, ``.DS_Store``)
are ignored everywhere, where ImageFolder takes them as images and classes. Files whose names do
not end in one of ``IMAGE_EXTENSIONS`` are ignored, as ImageFolder ignores them. Within a class
each folder is read once: a link back to a folder already read (``a/loop -> ..``) is skipped
with a warning, where ImageFolder would go round the loop. A class folder whose name is not
UTF-8 is read by its own name, and listed with U+FFFD for the bytes that are not.

The images are decoded once, by a pool of processes (a 32x32 JPEG decodes in tens of
microseconds, so threads would spend their time waiting for the interpreter), into the uint8
tensors every lintorch data set becomes. The result is cached under ``cache_dir()``, keyed by
every image's path, size and modification time: a second run reads one file instead of decoding
again, and a changed, added or removed image means decoding again. Nothing is ever written
inside the data set's folder.
"""

from __future__ import annotations

import glob
import hashlib
import multiprocessing
import os
import signal
import sys
import zipfile
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import numpy as np
import torch

from .files import one_line, write_atomic
from .rawdata import DATASETS, DataCorruptError, DataError, DataNotFoundError, RawData

# torchvision's IMG_EXTENSIONS, matched case-insensitively as ImageFolder does
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLITS = ("train", "test")
# Bumped whenever decoding changes what the arrays hold, so that old caches are not reused.
_CACHE_FORMAT = 2
_CHUNK = 256  # images per task of the decoding pool: few enough tasks, a smooth progress bar


def cache_dir() -> Path:
    """Where decoded image folders are cached: ``$LINTORCH_CACHE``, else
    ``$XDG_CACHE_HOME/lintorch``, else ``~/.cache/lintorch``."""
    if os.environ.get("LINTORCH_CACHE"):
        return Path(os.environ["LINTORCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "lintorch"


def load_image_folder(path: str | os.PathLike, progress: bool = True) -> RawData:
    """The image folder at ``path`` as a data set, from the cache when its images are unchanged.
    ``progress``: a progress bar on a terminal while decoding."""
    folder = Path(path).expanduser().absolute()
    if not folder.is_dir():
        raise DataNotFoundError(
            f"{folder} is not a folder; --dataset takes {', '.join(DATASETS)}, an .npz file or "
            "a folder holding train/<class>/<image> and test/<class>/<image>")
    try:
        classes, files = _list_images(folder)
        listed = files["train"] + files["test"]
        key = _cache_key(folder, listed)
    except OSError as e:  # a folder one may not read, a link to nowhere
        raise DataError(f"{e.filename or folder} cannot be read ({one_line(e)}); fix or remove "
                        "it") from None
    raw = _read_cache(key, folder)
    if raw is None:
        images = _decode_all([file for file, _ in listed], progress)
        raw = RawData(folder.name, classes, *_tensors(images, listed, len(files["train"])))
        _write_cache(key, folder, raw)
    raw.name = printable(folder.name)
    return raw


def printable(name: str) -> str:
    """``name`` with U+FFFD for each lone surrogate, which print, JSON and matplotlib refuse: a
    file name that is not UTF-8 arrives with one for each byte that is not."""
    return name.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _list_images(folder: Path) -> tuple[list[str], dict[str, list[tuple[str, int]]]]:
    """train's class names (as shown) and, per split, (image file, label) in ImageFolder's order.
    The files are plain strings: pathlib would triple the time a cached load takes."""
    for split in SPLITS:
        if not (folder / split).is_dir():
            raise DataNotFoundError(f"{folder} has no {split}/ folder; an image folder holds "
                                    f"train/<class>/<image> and test/<class>/<image>")
    found = {split: sorted(e.name for e in os.scandir(folder / split)
                           if e.is_dir() and not e.name.startswith(".")) for split in SPLITS}
    for split in SPLITS:  # an empty test/ would report an accuracy of nan
        if not found[split]:
            raise DataNotFoundError(f"{folder / split} holds no class folders; put each class's "
                                    f"images in {split}/<class>/")
    classes, files = found["train"], {}
    for split in SPLITS:
        if extra := [name for name in found[split] if name not in classes]:
            raise DataCorruptError(f"{folder / split / extra[0]} is a class that train/ does not "
                                   f"have ({', '.join(classes)}); rename it or add it to train/")
        files[split] = []
        above = {_id(folder), _id(folder / split)}  # a link up to them would loop
        for name in found[split]:
            images = _images_in(os.path.join(folder, split, name), above)
            if not images:
                raise DataCorruptError(f"{folder / split / name} holds no images (files ending "
                                       f"in {', '.join(IMAGE_EXTENSIONS)}); add some or remove "
                                       "the folder")
            files[split] += [(image, classes.index(name)) for image in images]
    return [printable(name) for name in classes], files


def _id(path: str | os.PathLike) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _images_in(class_folder: str, above: set[tuple[int, int]]) -> list[str]:
    """torchvision's make_dataset (walk sorted, follow links, file names sorted) without hidden
    entries, reading each folder once; ``above``: the folders above, already being read."""
    seen = {*above, _id(class_folder)}
    found = []
    for root, folders, names in os.walk(class_folder, onerror=_raise, followlinks=True):
        kept = []
        for name in sorted(n for n in folders if not n.startswith(".")):
            if (where := _id(os.path.join(root, name))) in seen:
                print(f"warning: skipping {os.path.join(root, name)}: it leads back to "
                      f"{os.path.realpath(os.path.join(root, name))}, already read (a link "
                      "loop?)", file=sys.stderr)
            else:
                seen.add(where)
                kept.append(name)
        folders[:] = kept
        found += [(root, name) for name in names
                  if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)]
    return [os.path.join(root, name) for root, name in sorted(found)]


def _raise(error: OSError) -> None:
    raise error  # os.walk would skip a folder it cannot read, and its images with it


def _decode(path: str) -> np.ndarray:
    """One image as uint8 (H, W) if it is grayscale, else (H, W, 3) RGB (alpha dropped)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit grayscale: top 8 bits
                return (np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8)
            mode = "L" if image.mode in ("1", "L", "LA") else "RGB"
            return np.asarray(image.convert(mode), dtype=np.uint8)
    except Exception as e:  # a damaged image fails in many ways: OSError, ValueError, bombs, ...
        raise DataCorruptError(f"{path} cannot be decoded as an image ({one_line(e)}); replace "
                               "or remove it") from None


def _decode_chunk(paths: list[str]) -> list[np.ndarray]:
    return [_decode(path) for path in paths]


def _ignore_signals() -> None:
    # Ctrl-C and SIGTERM are the parent's to handle (it stops the pool); a worker that took
    # them too would print a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _decode_all(paths: list[str], progress: bool) -> list[np.ndarray]:
    from tqdm import tqdm

    chunks = [paths[i:i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    workers = min(os.cpu_count() or 1, len(chunks))
    # fork, as torch's DataLoader workers on Linux: no interpreter to start, nothing to import
    context = multiprocessing.get_context("fork") if sys.platform == "linux" else None
    pool = ProcessPoolExecutor(workers, context, _ignore_signals) if workers > 1 else None
    bar = tqdm(total=len(paths), desc="decoding images", unit="image", leave=False,
               disable=not (progress and sys.stderr.isatty()))
    decoded = []
    try:
        results = (map(_decode_chunk, chunks) if pool is None
                   else _in_order([pool.submit(_decode_chunk, chunk) for chunk in chunks]))
        for chunk, arrays in zip(chunks, results):
            decoded += arrays
            bar.update(len(chunk))
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return decoded


def _in_order(futures: list[Future]):
    """Each future's result, in order. Waited for in slices of 0.1 s: Ctrl-C (or SIGTERM) may be
    delivered to one of the pool's threads, and a main thread blocked until the result came
    would not notice it before then (seen here: the whole decoding went on after a Ctrl-C)."""
    for future in futures:
        while True:
            try:
                yield future.result(timeout=0.1)
                break
            except FutureTimeout:
                continue


def _tensors(images: list[np.ndarray], files: list[tuple[str, int]], n_train: int
             ) -> tuple[torch.Tensor, ...]:
    """Train's and test's (N, C, H, W) uint8 images, RGB unless every image is grayscale, and
    their (N,) int64 labels, from the images of both splits, train's first."""
    expected = images[0].shape[:2]
    for image, (file, _) in zip(images, files):
        if image.shape[:2] != expected:
            raise DataCorruptError(
                f"{file} is {image.shape[1]}x{image.shape[0]} pixels, the others "
                f"{expected[1]}x{expected[0]} (the size of {files[0][0]}); all images must "
                "share one size")
    if all(image.ndim == 2 for image in images):
        stacked = np.stack(images)[:, None]
    else:  # a grayscale image among colour ones becomes grey RGB
        stacked = np.stack([np.repeat(image[..., None], 3, 2) if image.ndim == 2 else image
                            for image in images]).transpose(0, 3, 1, 2)
    x = torch.from_numpy(np.ascontiguousarray(stacked))
    y = torch.tensor([label for _, label in files], dtype=torch.int64)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


# The cache: one uncompressed .npz per folder, read without unpickling


def _cache_key(folder: Path, listed: list[tuple[str, int]]) -> str:
    h = hashlib.sha256(f"{_CACHE_FORMAT}\0{folder}".encode("utf-8", "surrogateescape"))
    for path, label in listed:
        st = os.stat(path)
        h.update(f"\0{path}\0{label}\0{st.st_size}\0{st.st_mtime_ns}"
                 .encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:32]


def _cache_file(key: str, folder: Path) -> Path:
    # The folder's own prefix lets a new cache of it replace the old one (see _write_cache).
    prefix = hashlib.sha256(str(folder).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return cache_dir() / "image-folders" / f"{folder.name}-{prefix}-{key}.npz"


def _read_cache(key: str, folder: Path) -> RawData | None:
    path = _cache_file(key, folder)
    try:
        with np.load(path, allow_pickle=False) as npz:
            a = {name: npz[name] for name in npz.files}
        raw = RawData(folder.name, a["classes"].tolist(),
                      *(torch.from_numpy(a[f"{split}_{part}"]) for split in SPLITS
                        for part in ("images", "labels")))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # no cache, or a damaged one: decode again
    return raw


def _write_cache(key: str, folder: Path, raw: RawData) -> None:
    """Save the decoded arrays; a cache that cannot be written costs the next run a decode, so
    it is a warning, not an error."""
    path = _cache_file(key, folder)
    arrays = {"classes": np.array(raw.classes, dtype=str),
              "train_images": raw.train_images.numpy(), "train_labels": raw.train_labels.numpy(),
              "test_images": raw.test_images.numpy(), "test_labels": raw.test_labels.numpy()}

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # np.savez would add .npz to a file name without it
            np.savez(f, **arrays)

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, save)  # whole or not at all, for processes reading it meanwhile
        for old in path.parent.glob(glob.escape(path.name.rsplit("-", 1)[0]) + "-*.npz"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError as e:
        print(f"warning: could not cache the decoded images in {path.parent} ({e}); set "
              "LINTORCH_CACHE to a writable folder to skip decoding next time", file=sys.stderr)

