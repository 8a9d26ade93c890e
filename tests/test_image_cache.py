"""The cache of decoded image folders: read instead of decoding while the images are unchanged,
decoded again after any change (ctime included) or when asked, whole or absent, never a pickle,
file names of bounded length."""

from __future__ import annotations

import os
import pickle
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_image_folder import write_folder

from lintorch import data, image_cache, image_folder


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LINTORCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def decoded(monkeypatch) -> list[str]:
    """The images decoded from here on (the pool is not used for these few)."""
    paths: list[str] = []
    real_decode = image_folder._decode
    monkeypatch.setattr(image_folder, "_decode", lambda p: paths.append(p) or real_decode(p))
    return paths


def cached(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "image-folders").iterdir())


def test_a_second_load_reads_the_cache_and_a_changed_image_is_decoded_again(tmp_path, decoded):
    root = tmp_path / "k"
    write_folder(root)
    first = data.load_dataset(root)
    assert len(decoded) == 18
    second = data.load_dataset(root)
    assert len(decoded) == 18 and torch.equal(first.train_images, second.train_images)
    assert second.classes == first.classes and torch.equal(first.test_labels, second.test_labels)
    assert torch.equal(first.test_images, second.test_images) and second.name == "k"

    changed = root / "train" / "cat" / "002.png"
    Image.fromarray(np.full((5, 6, 3), 7, np.uint8)).save(changed)
    third = data.load_dataset(root)
    assert len(decoded) == 36 and int(third.train_images[2].max()) == 7
    assert len(cached(tmp_path)) == 1  # replaced


def test_an_edit_that_keeps_size_and_mtime_is_decoded_again(tmp_path):
    # PPM and BMP files of one size are all the same length; a tool that restores the mtime
    # (rsync -t, cp -p, an editor) leaves only the inode change time (ctime) to tell.
    root = tmp_path / "p"
    write_folder(root, ext="ppm")
    data.load_dataset(root)
    image = root / "train" / "dog" / "001.ppm"
    before = image.stat()
    while True:  # ctime ticks with the kernel's clock (a few ms): edit until it has moved
        Image.fromarray(np.full((5, 6, 3), 9, np.uint8)).save(image)
        os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns))
        if image.stat().st_ctime_ns != before.st_ctime_ns:
            break
        time.sleep(0.01)
    after = image.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    raw = data.load_dataset(root)
    assert (raw.train_images[5] == 9).all()  # cat 0-3, dog 0, dog 1


def test_refresh_decodes_again_and_replaces_the_cache(tmp_path, decoded):
    write_folder(tmp_path / "r")
    first = image_folder.load_image_folder(tmp_path / "r")
    [file] = cached(tmp_path)
    inode = file.stat().st_ino
    refreshed = image_folder.load_image_folder(tmp_path / "r", refresh=True)
    assert len(decoded) == 36 and torch.equal(first.train_images, refreshed.train_images)
    assert cached(tmp_path) == [file] and file.stat().st_ino != inode  # written anew
    image_folder.load_image_folder(tmp_path / "r")
    assert len(decoded) == 36


@pytest.mark.parametrize("name", ["x" * 250, "\u00fc" * 125],  # the most is 255 bytes
                         ids=["250 ASCII bytes", "250 bytes of UTF-8"])
def test_a_folder_with_a_long_name_is_cached(tmp_path, decoded, name, capsys):
    write_folder(tmp_path / name)
    first = data.load_dataset(tmp_path / name)
    second = data.load_dataset(tmp_path / name)
    assert capsys.readouterr().err == "" and len(decoded) == 18
    assert first.name == second.name == name
    [file] = cached(tmp_path)
    assert len(os.fsencode(file.name)) <= 255


@pytest.mark.parametrize("damage", ["truncated", "cut short", "cut in the images", "a pickle"])
def test_a_damaged_cache_is_decoded_again_and_never_unpickled(tmp_path, monkeypatch, damage):
    write_folder(tmp_path / "d")
    first = data.load_dataset(tmp_path / "d")
    [file] = cached(tmp_path)
    content = file.read_bytes()
    if damage == "a pickle":
        with open(file, "wb") as f:
            np.save(f, np.array([{"not": "an image"}], dtype=object), allow_pickle=True)

        def unpickled(*args, **kwargs):
            raise AssertionError("the cache was unpickled")

        monkeypatch.setattr(pickle, "load", unpickled)
        monkeypatch.setattr(pickle, "loads", unpickled)
    else:
        file.write_bytes({"truncated": content[:100], "cut short": content[:-1],
                          "cut in the images": content[:len(content) // 2]}[damage])
    again = data.load_dataset(tmp_path / "d")
    assert torch.equal(again.train_images, first.train_images)
    assert torch.equal(again.test_labels, first.test_labels) and again.classes == first.classes
    assert file.read_bytes() == content  # written anew


def test_the_cached_images_can_be_changed_without_changing_the_cache(tmp_path):
    write_folder(tmp_path / "c")
    first = data.load_dataset(tmp_path / "c")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns of read-only memory
        second = data.load_dataset(tmp_path / "c")
        second.train_images.zero_()
        second.test_images += 1
    third = data.load_dataset(tmp_path / "c")
    assert torch.equal(third.train_images, first.train_images)
    assert torch.equal(third.test_images, first.test_images)


def test_a_new_cache_removes_the_older_caches_of_its_folder_only(tmp_path):
    write_folder(tmp_path / "f")
    write_folder(tmp_path / "g")
    data.load_dataset(tmp_path / "g")
    raw = data.load_dataset(tmp_path / "f")
    folder = (tmp_path / "f").absolute()
    [old, other] = cached(tmp_path)  # f's, g's
    stale = old.with_name(old.name.rsplit("-", 1)[0] + "-" + "0" * 32 + ".npz")  # format 1
    newer = image_cache.cache_file(folder, "1" * 32)  # another run's, written meanwhile
    for p in (stale, newer):
        shutil.copy(old, p)
    future = time.time_ns() + 60 * 10**9
    os.utime(newer, ns=(future, future))
    image_cache.write(folder, "2" * 32, raw)
    assert cached(tmp_path) == [newer, image_cache.cache_file(folder, "2" * 32), other]


def test_an_unwritable_cache_is_a_one_line_warning(tmp_path, monkeypatch, capsys):
    write_folder(tmp_path / "w")
    (tmp_path / "blocker").write_text("a file where the cache folder would go")
    monkeypatch.setenv("LINTORCH_CACHE", str(tmp_path / "blocker"))
    raw = data.load_dataset(tmp_path / "w")
    assert raw.train_images.shape == (12, 3, 5, 6)
    err = capsys.readouterr().err
    assert "LINTORCH_CACHE" in err and err.count("\n") == 1


def test_the_cache_lives_where_the_environment_says(monkeypatch, tmp_path):
    monkeypatch.delenv("LINTORCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert image_cache.cache_dir() == tmp_path / "xdg" / "lintorch"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert image_cache.cache_dir() == Path.home() / ".cache" / "lintorch"
