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
tensors every lintorch data set becomes: grayscale if all images are, else RGB (alpha dropped).
Images deeper than 8 bits become 8-bit grayscale by a fixed scale, never per image: integers
(16-bit, mode I;16, and 32-bit, mode I) map 0..65535 onto 0..255, and floats (mode F) 0..1;
pixels outside that range, and integer images whose pixels all lie below 256 (which would turn
black), are refused. Every image that cannot be decoded or whose size differs from the one most
images share is named in one error, the first few by name and the others counted.

The result is cached (``image_cache.py``): a second run reads one file instead of decoding
again, and a changed, added or removed image means decoding again. Nothing is ever written inside
the data set's folder.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from itertools import starmap
from pathlib import Path

import numpy as np
import torch

from . import image_cache
from .files import one_line, printable
from .rawdata import DATASETS, DataCorruptError, DataError, DataNotFoundError, RawData

# torchvision's IMG_EXTENSIONS, matched case-insensitively as ImageFolder does
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLITS = ("train", "test")
_CHUNK = 256  # images per task of the decoding pool: few enough tasks, a smooth progress bar
_CHUNK_BYTES = 1 << 22  # and at most 4 MiB of decoded pixels: what a task sends back at once
_NAMED = 3  # bad images named in the error; the others are counted


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
    try:
        classes, files = _list_images(folder)
        listed = files["train"] + files["test"]
        key = image_cache.cache_key(folder, listed)
    except OSError as e:  # a folder one may not read, a link to nowhere
        raise DataError(f"{e.filename or folder} cannot be read ({one_line(e)}); fix or remove "
                        "it") from None
    raw = None if refresh else image_cache.read(folder, key)
    if raw is None:
        x = _decode_all([file for file, _ in listed], progress)
        y = torch.tensor([label for _, label in listed], dtype=torch.int64)
        n = len(files["train"])
        raw = RawData(folder.name, classes, x[:n], y[:n], x[n:], y[n:])
        image_cache.write(folder, key, raw)
    raw.name = printable(folder.name)
    return raw


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


def _gray(mode: str) -> bool:
    return mode in ("1", "L", "LA", "La", "F") or mode.startswith("I")


def _decode(path: str) -> np.ndarray:
    """One image as uint8 (H, W) if it is grayscale, else (H, W, 3) RGB (alpha dropped)."""
    from PIL import Image

    with Image.open(path) as image:
        if image.mode == "F" or image.mode.startswith("I"):
            return _deep(np.asarray(image), image.mode, path)
        if _gray(image.mode):
            return np.asarray(image.convert("L"))
        # via RGBA: a palette's transparency would otherwise make Pillow warn, once per worker
        return np.asarray(image.convert("RGBA" if image.mode == "P" else "RGB"))[..., :3]


def _deep(pixels: np.ndarray, mode: str, path: str) -> np.ndarray:
    """An image of more than 8 bits as uint8, by the rule of the module's docstring."""
    top, kind = (1, "float") if mode == "F" else (65535, "integer")
    low, high = (pixels.min(), pixels.max()) if pixels.size else (0, 0)
    if not 0 <= low <= high <= top:  # NaN fails this too
        raise DataCorruptError(f"{path} has {kind} pixels ({mode}) from {low:g} to {high:g}; "
                               f"lintorch reads {kind} pixels as 0..{top}: rescale it")
    if kind == "integer" and 0 < high < 256:
        raise DataCorruptError(f"{path} has integer pixels ({mode}) all below 256, which would "
                               "turn black scaled from 0..65535: save it as 8-bit")
    return np.rint(pixels * (255 / top)).astype(np.uint8)


def _why(path: str, error: Exception) -> str:
    if isinstance(error, DataCorruptError):
        return str(error)
    return f"{path} cannot be decoded ({one_line(error)})"


def _probe(paths: list[str]) -> list[tuple[int, int, bool] | str]:
    """Each image's (height, width, grayscale) from its header, or why it cannot be opened."""
    from PIL import Image

    found = []
    for path in paths:
        try:
            if not os.path.isfile(path):  # a FIFO would block Image.open
                raise OSError("not a regular file")
            with Image.open(path) as image:
                found.append((image.height, image.width, _gray(image.mode)))
        except Exception as e:  # a damaged image fails in many ways: OSError, ValueError, ...
            found.append(_why(path, e))
    return found


def _fill(paths: list[str | None], shape: tuple[int, int, int]
          ) -> tuple[np.ndarray, list[str]]:
    """``paths`` (None: skipped, left black) decoded into a (len(paths), C, H, W) array, and what
    was wrong with the others."""
    out = np.zeros((len(paths), *shape), np.uint8)
    problems = []
    for row, path in zip(out, paths):
        try:
            image = None if path is None else _decode(path)
            if image is not None and image.shape[:2] != shape[1:]:  # its header said otherwise
                problems.append(f"{path} is {image.shape[1]}x{image.shape[0]} pixels")
            elif image is not None:  # a grayscale image among colour ones becomes grey RGB
                row[...] = image.transpose(2, 0, 1) if image.ndim == 3 else image
        except Exception as e:
            problems.append(_why(path, e))
    return out, problems


def _decode_all(paths: list[str], progress: bool) -> torch.Tensor:
    """The images as one (N, C, H, W) uint8 tensor, each chunk copied into place as it comes
    (stacking them took three times their size), or one error naming the bad ones: their
    headers first, then the pixels."""
    headers = [header for found in _parallel(
        _probe, [(paths[i:i + _CHUNK],) for i in range(0, len(paths), _CHUNK)], progress,
        "reading image headers") for header in found]
    bad = [header for header in headers if isinstance(header, str)]
    good = {i: header for i, header in enumerate(headers) if not isinstance(header, str)}
    sizes = Counter(header[:2] for header in good.values())
    height, width = sizes.most_common(1)[0][0] if sizes else (0, 0)
    odd = [f"{paths[i]} is {w}x{h} pixels" for i, (h, w, _) in good.items()
           if (h, w) != (height, width)]
    todo = [path if i in good and good[i][:2] == (height, width) else None
            for i, path in enumerate(paths)]
    shape = (1 if all(gray for _, _, gray in good.values()) else 3, height, width)
    images = np.empty((len(paths), *shape), np.uint8)
    step = max(1, min(_CHUNK, _CHUNK_BYTES // max(1, images[:1].nbytes)))
    starts = range(0, len(paths), step)
    for start, (chunk, problems) in zip(starts, _parallel(
            _fill, [(todo[i:i + step], shape) for i in starts], progress, "decoding images")):
        images[start:start + len(chunk)] = chunk
        bad += problems
    problems = [_few(bad, "that cannot be decoded")] if bad else []
    if odd:
        problems.append(f"{_few(odd, 'of other sizes')}, where most are {width}x{height}")
    if problems:
        raise DataCorruptError("; ".join(problems) + "; replace or remove them: all images must "
                               "decode and share one size")
    return torch.from_numpy(images)


def _few(problems: list[str], more: str) -> str:
    shown = ", ".join(problems[:_NAMED])
    return shown + (f" and {len(problems) - _NAMED} more {more}" if len(problems) > _NAMED else "")


def _cpus() -> int:
    # the CPUs this process may use (taskset, a container's cpuset), not all the machine's
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _ignore_signals() -> None:
    # Ctrl-C and SIGTERM are the parent's to handle (it stops the pool); a worker that took
    # them too would print a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _parallel(fn, tasks: list[tuple], progress: bool, desc: str):
    """``fn(*task)`` for each task, in order as each comes, by a pool of processes when there
    are several."""
    from tqdm import tqdm

    workers = min(_cpus(), len(tasks))
    # fork, as torch's DataLoader workers on Linux: no interpreter to start, nothing to import
    context = multiprocessing.get_context("fork") if sys.platform == "linux" else None
    pool = ProcessPoolExecutor(workers, context, _ignore_signals) if workers > 1 else None
    bar = tqdm(total=sum(len(task[0]) for task in tasks), desc=desc, unit="image", leave=False,
               disable=not (progress and sys.stderr.isatty()))
    try:
        for task, result in zip(tasks, starmap(fn, tasks) if pool is None else
                                _in_order([pool.submit(fn, *task) for task in tasks])):
            bar.update(len(task[0]))
            yield result
    except BrokenProcessPool:  # the pool has stopped the other workers, which might hang
        raise DataError("a process decoding the images died (killed? out of memory?); run "
                        "again, with more memory free if it happens again") from None
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        bar.close()


def _in_order(futures: list[Future]):
    """Each future's result, in order. Waited for in slices of 0.1 s: Ctrl-C (or SIGTERM) may be
    delivered to one of the pool's threads, and a main thread blocked until the result came
    would not notice it before then (seen here: the whole decoding went on after a Ctrl-C)."""
    while futures:
        future = futures.pop(0)  # and its result let go of once used
        while not wait([future], timeout=0.1).done:
            pass
        yield future.result()
