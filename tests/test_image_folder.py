"""A folder of images as a data set: lintorch's loader against torchvision's ImageFolder and the
pixels written here with Pillow; each bad folder's one line; the folder left untouched (the cache
of decoded arrays: test_image_cache.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_data import one_line_error
from test_train import run_cli

from lintorch import board, data, image_folder, sweep, train
from lintorch.data import DataCorruptError, DataNotFoundError


def write_folder(root: Path, classes=("cat", "dog", "frog"), n_train=4, n_test=2, size=(6, 5),
                 mode="RGB", ext="png", seed=0, test_classes=None) -> dict[str, np.ndarray]:
    """root/{train,test}/<class>/<k>.<ext> of random pixels; returns each file's pixels."""
    rng = np.random.default_rng(seed)
    pixels = {}
    for split, n, names in [("train", n_train, classes), ("test", n_test,
                                                         test_classes or classes)]:
        for name in names:
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for k in range(n):
                shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
                # smooth images, so that JPEG keeps them close to what was written
                base = rng.integers(40, 216, shape[-1:] if mode == "RGB" else (1,))
                array = np.clip(base + rng.integers(-20, 21, shape), 0, 255).astype(np.uint8)
                path = root / split / name / f"{k:03d}.{ext}"
                Image.fromarray(array, mode).save(path, quality=95) if ext == "jpg" else \
                    Image.fromarray(array, mode).save(path)
                pixels[str(path)] = array
    return pixels


def snapshot(root: Path) -> list:
    """Every file and folder under root with its size and modification time."""
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in [root, *root.rglob("*")])


def torchvision_reference(root: Path, split: str, classes: list[str]):
    """(images (N, C, H, W) uint8, labels) as torchvision's ImageFolder reads the split, its
    labels mapped to train's classes by name."""
    from torchvision.datasets import ImageFolder

    folder = ImageFolder(str(root / split), loader=lambda p: np.asarray(Image.open(p)))
    images = [torch.from_numpy(np.array(img)) for img, _ in folder]
    x = torch.stack([img.permute(2, 0, 1) if img.ndim == 3 else img[None] for img in images])
    y = torch.tensor([classes.index(folder.classes[label]) for _, label in folder.samples])
    return x, y


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LINTORCH_CACHE", str(tmp_path / "cache"))


# --- what is read -----------------------------------------------------------------------------


def test_layout_and_labels_are_torchvisions_image_folders(tmp_path):
    root = tmp_path / "pets"
    write_folder(root, test_classes=("cat", "frog"))  # test need not have every class
    (root / "train" / "dog" / "more").mkdir()
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(root / "train" / "dog" / "more" / "x.PNG")
    (root / "train" / "dog" / "notes.txt").write_text("not an image: ignored, as torchvision does")
    raw = data.load_dataset(root)
    assert raw.name == "pets" and raw.classes == ["cat", "dog", "frog"]
    for split, x, y in [("train", raw.train_images, raw.train_labels),
                        ("test", raw.test_images, raw.test_labels)]:
        ref_x, ref_y = torchvision_reference(root, split, raw.classes)
        assert x.dtype == torch.uint8 and x.shape == ref_x.shape
        assert torch.equal(x, ref_x) and torch.equal(y, ref_y)
    assert raw.train_images.shape == (13, 3, 5, 6)  # 4 + 4 + 1 + 4 images of 6x5 pixels
    assert raw.test_labels.tolist() == [0, 0, 2, 2]  # frog keeps train's label 2


def test_jpeg_images_decode_close_to_the_pixels_written(tmp_path):
    pixels = write_folder(tmp_path / "j", ext="jpg", size=(16, 16))
    raw = data.load_dataset(tmp_path / "j")
    ref_x, _ = torchvision_reference(tmp_path / "j", "train", raw.classes)
    assert torch.equal(raw.train_images, ref_x)
    written = np.stack([pixels[p] for p in sorted(pixels) if "/train/" in p]).transpose(0, 3, 1, 2)
    error = np.abs(raw.train_images.numpy().astype(int) - written).mean()
    assert error < 8  # JPEG changes pixels a little, not wholesale


def test_grayscale_images_give_one_channel(tmp_path):
    pixels = write_folder(tmp_path / "g", mode="L")
    raw = data.load_dataset(tmp_path / "g")
    assert raw.train_images.shape == (12, 1, 5, 6) and raw.test_images.shape == (6, 1, 5, 6)
    first = str(tmp_path / "g" / "train" / "cat" / "000.png")
    assert np.array_equal(raw.train_images[0, 0].numpy(), pixels[first])


def test_grayscale_among_colour_images_becomes_grey_rgb(tmp_path):
    root = tmp_path / "mixed"
    pixels = write_folder(root)
    grey = np.arange(30, dtype=np.uint8).reshape(5, 6)
    Image.fromarray(grey, "L").save(root / "test" / "dog" / "000.png")
    raw = data.load_dataset(root)
    assert raw.train_images.shape[1] == raw.test_images.shape[1] == 3
    assert all(np.array_equal(raw.test_images[2, c].numpy(), grey) for c in range(3))
    assert np.array_equal(raw.test_images[0].numpy().transpose(1, 2, 0),
                          pixels[str(root / "test" / "cat" / "000.png")])


def test_many_images_are_decoded_by_a_pool_of_processes_alike(tmp_path, monkeypatch):
    write_folder(tmp_path / "many", n_train=30, n_test=5)
    serial = data.load_dataset(tmp_path / "many")
    monkeypatch.setattr(image_folder, "_CHUNK", 7)  # 90 + 15 images: several chunks each
    monkeypatch.setenv("LINTORCH_CACHE", str(tmp_path / "other-cache"))
    pooled = data.load_dataset(tmp_path / "many")
    assert torch.equal(serial.train_images, pooled.train_images)
    assert torch.equal(serial.test_labels, pooled.test_labels)


def test_prepared_images_standardize_per_channel(tmp_path):
    write_folder(tmp_path / "p", n_train=10)
    d = data.prepare(data.load_dataset(tmp_path / "p"), val_size=3)
    assert d.image_shape == (3, 5, 6)
    torch.testing.assert_close(d.train_x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)


# --- bad folders: one line each, naming what to fix ----------------------------------------


def test_an_image_that_cannot_be_decoded_is_named(tmp_path):
    write_folder(tmp_path / "b")
    bad = tmp_path / "b" / "train" / "dog" / "001.png"
    bad.write_bytes(b"\x89PNG not really")
    message = one_line_error(DataCorruptError, data.load_dataset, tmp_path / "b")
    assert str(bad) in message and "cannot be decoded" in message


def test_an_image_of_another_size_is_named_with_both_sizes(tmp_path):
    write_folder(tmp_path / "s")
    odd = tmp_path / "s" / "test" / "frog" / "001.png"
    Image.fromarray(np.zeros((7, 9, 3), np.uint8)).save(odd)
    message = one_line_error(DataCorruptError, data.load_dataset, tmp_path / "s")
    assert str(odd) in message and "9x7" in message and "6x5" in message


def test_a_test_class_that_train_does_not_have(tmp_path):
    write_folder(tmp_path / "c", test_classes=("cat", "owl"))
    message = one_line_error(DataCorruptError, data.load_dataset, tmp_path / "c")
    assert "owl" in message and "train/" in message


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_missing_split_folder(tmp_path, split):
    write_folder(tmp_path / "m")
    os.rename(tmp_path / "m" / split, tmp_path / "m" / f"old-{split}")
    message = one_line_error(DataNotFoundError, data.load_dataset, tmp_path / "m")
    assert f"no {split}/" in message


def test_a_class_folder_with_no_images(tmp_path):
    write_folder(tmp_path / "e")
    (tmp_path / "e" / "train" / "empty").mkdir()
    (tmp_path / "e" / "train" / "empty" / "readme.txt").write_text("no images here")
    message = one_line_error(DataCorruptError, data.load_dataset, tmp_path / "e")
    assert str(tmp_path / "e" / "train" / "empty") in message and "no images" in message


def test_a_path_that_is_no_folder(tmp_path):
    message = one_line_error(DataNotFoundError, data.load_dataset, tmp_path / "nowhere")
    assert "nowhere" in message and "cifar10, fashion-mnist, mnist" in message


# --- the folder is only read; the cache ------------------------------------------------------


def test_the_folder_is_left_untouched(tmp_path):
    write_folder(tmp_path / "ro", ext="jpg")
    before = snapshot(tmp_path / "ro")
    data.load_dataset(tmp_path / "ro")
    data.load_dataset(tmp_path / "ro")  # from the cache
    assert snapshot(tmp_path / "ro") == before
    assert list((tmp_path / "cache" / "image-folders").glob("ro-*"))  # cached elsewhere


# --- through training: fit, the CLI, the sweep ----------------------------------------------


def test_fit_on_a_folder_takes_the_folder_defaults_and_logs_templates(tmp_path):
    write_folder(tmp_path / "pets", n_train=12, n_test=3)
    cfg = train.TrainConfig(dataset=str(tmp_path / "pets"), epochs=2, val_size=6, quiet=True,
                            logdir=str(tmp_path / "runs"))
    assert cfg.resolved().lr == train.DATASET_DEFAULTS["cifar10"]["linear"]["lr"]
    m = train.fit(cfg)
    assert Path(m["run_dir"]).name.startswith("pets-linear-softmax-")
    assert list(m["per_class_test_accuracy"]) == ["cat", "dog", "frog"]
    assert "templates" in board.read_tags(m["run_dir"])["images"]


def test_the_cli_trains_on_a_folder_and_refuses_a_bad_one_in_one_line(tmp_path):
    write_folder(tmp_path / "pets", n_train=12, n_test=3, mode="L")
    ok = run_cli("--dataset", tmp_path / "pets", "--epochs", 1, "--val-size", 6, "--logdir",
                 tmp_path / "runs", "--run-name", "f", "--no-tensorboard")
    assert ok.returncode == 0, ok.stderr
    m = json.loads((tmp_path / "runs" / "f" / "metrics.json").read_text())
    assert m["config"]["dataset"] == str(tmp_path / "pets")

    Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / "pets" / "test" / "dog" / "x.png")
    bad = run_cli("--dataset", tmp_path / "pets", "--logdir", tmp_path / "runs")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1, bad.stderr
    assert "x.png is 3x3 pixels" in bad.stderr and "Traceback" not in bad.stderr


def test_the_cli_calls_a_path_that_is_no_folder_a_usage_error(tmp_path):
    r = run_cli("--dataset", tmp_path / "nowhere")
    assert r.returncode == 2 and "no such folder" in r.stderr and "Traceback" not in r.stderr


def test_the_sweep_trains_on_a_folder(tmp_path):
    write_folder(tmp_path / "pets", n_train=12, n_test=3)
    cfg = train.TrainConfig(dataset=str(tmp_path / "pets"), epochs=1, val_size=6, quiet=True,
                            logdir=str(tmp_path / "runs"), tensorboard=False)
    result = sweep.run(cfg, [0.01, 0.1], [0.0])
    assert len(result["models"]) == 2 and result["best"] is not None


@pytest.mark.slow
def test_torchrun_trains_on_a_folder_decoded_once_what_one_process_trains(tmp_path):
    from test_distributed import flags, one_process, torchrun, weights

    write_folder(tmp_path / "pets", n_train=20, n_test=4)
    recipe = {"epochs": 2, "batch-size": 8, "val-size": 10, "no-tensorboard": True}
    r = torchrun("lintorch.train", flags(tmp_path / "pets", tmp_path / "ddp", **recipe,
                                         **{"run-name": "r"}))
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(list((tmp_path / "cache" / "image-folders").glob("pets-*"))) == 1
    model, _ = one_process(flags(tmp_path / "pets", tmp_path / "one", **recipe))
    for name, w in weights(tmp_path / "ddp" / "r").items():
        torch.testing.assert_close(w, dict(model.named_parameters())[name].detach(),
                                   rtol=1e-9, atol=1e-12)


def test_ctrl_c_reaches_a_main_thread_waiting_for_the_decoding_pool():
    # The signal lands on another thread, as the kernel may choose; the main thread must still
    # notice it while it waits for the pool, not once the pool is done.
    import signal
    import threading
    import time
    from concurrent.futures import ProcessPoolExecutor

    bystander = threading.Thread(target=time.sleep, args=(3,))
    bystander.start()
    with ProcessPoolExecutor(1) as pool:
        future = pool.submit(time.sleep, 8)  # Ctrl-C ignored: 8 s; noticed: about 0.6 s
        threading.Timer(0.5, signal.pthread_kill, (bystander.ident, signal.SIGINT)).start()
        t0 = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            list(image_folder._in_order([future]))
        assert time.perf_counter() - t0 < 4  # half of it: room for a busy machine
    bystander.join()
