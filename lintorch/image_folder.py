"""A folder of image files as a data set: ``PATH/train/<class>/<image>`` and
``PATH/test/<class>/<image>``, torchvision's ``ImageFolder`` layout.

The classes are the sorted names of train's class folders, and each class folder's images are
taken in ImageFolder's order (sorted, subfolders included, symlinks followed), so the labels are
the ones ``torchvision.datasets.ImageFolder`` would give. Files whose names do not end in one of
``IMAGE_EXTENSIONS`` are ignored, as ImageFolder ignores them.

The images are decoded once, by a pool of processes (a 32x32 JPEG decodes in tens of
microseconds, so threads would spend their time waiting for the interpreter), into the uint8
tensors every lintorch data set becomes. The result is cached (``image_cache.py``): a second run
reads one file instead of decoding again, and a changed, added or removed image means decoding
again. Nothing is ever written inside the data set's folder.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import numpy as np
import torch

from . import image_cache
from .files import one_line
from .rawdata import DATASETS, DataCorruptError, DataNotFoundError, RawData

# torchvision's IMG_EXTENSIONS, matched case-insensitively as ImageFolder does
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLITS = ("train", "test")
_CHUNK = 256  # images per task of the decoding pool: few enough tasks, a smooth progress bar


def load_image_folder(path: str | os.PathLike, progress: bool = True,
                      refresh: bool = False) -> RawData:
    """The image folder at ``path`` as a data set, from the cache when its images are unchanged.
    ``progress``: a progress bar on a terminal while decoding; ``refresh``: decode even so (and
    replace the cache)."""
    folder = Path(path).expanduser().absolute()
    if not folder.is_dir():
        raise DataNotFoundError(
            f"{folder} is not a folder; --dataset takes {', '.join(DATASETS)}, an .npz file or "
            "a folder holding train/<class>/<image> and test/<class>/<image>")
    classes, files = _list_images(folder)
    listed = files["train"] + files["test"]
    key = image_cache.cache_key(folder, listed)
    if not refresh and (cached := image_cache.read(folder, key)) is not None:
        return cached
    images = _decode_all([file for file, _ in listed], progress)
    raw = RawData(folder.name, classes, *_tensors(images, listed, len(files["train"])))
    image_cache.write(folder, key, raw)
    return raw


def _list_images(folder: Path) -> tuple[list[str], dict[str, list[tuple[str, int]]]]:
    """train's class names and, per split, (image file, label) in ImageFolder's order. The
    files are plain strings: pathlib would triple the time a cached load takes."""
    for split in SPLITS:
        if not (folder / split).is_dir():
            raise DataNotFoundError(f"{folder} has no {split}/ folder; an image folder holds "
                                    f"train/<class>/<image> and test/<class>/<image>")
    classes = sorted(e.name for e in os.scandir(folder / "train") if e.is_dir())
    if not classes:
        raise DataNotFoundError(f"{folder / 'train'} holds no class folders; put each class's "
                                "images in train/<class>/")
    files = {}
    for split in SPLITS:
        found = sorted(e.name for e in os.scandir(folder / split) if e.is_dir())
        if extra := [name for name in found if name not in classes]:
            raise DataCorruptError(f"{folder / split / extra[0]} is a class that train/ does not "
                                   f"have ({', '.join(classes)}); rename it or add it to train/")
        files[split] = []
        for name in found:
            images = _images_in(os.path.join(folder, split, name))
            if not images:
                raise DataCorruptError(f"{folder / split / name} holds no images (files ending "
                                       f"in {', '.join(IMAGE_EXTENSIONS)}); add some or remove "
                                       "the folder")
            files[split] += [(image, classes.index(name)) for image in images]
    return classes, files


def _images_in(class_folder: str) -> list[str]:
    # torchvision's make_dataset: walk sorted, follow links, file names sorted
    return [os.path.join(root, name)
            for root, _, names in sorted(os.walk(class_folder, followlinks=True))
            for name in sorted(names) if name.lower().endswith(IMAGE_EXTENSIONS)]


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
