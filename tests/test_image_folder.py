"""A folder of images as a data set: lintorch's loader against torchvision's ImageFolder and the
pixels written here with Pillow; each bad folder's one line; the folder left untouched (the cache
of decoded arrays: test_image_cache.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_data import one_line_error
from test_train import run_cli

from lintorch import board, data, image_folder, sweep, train
from lintorch.data import DataCorruptError, DataError, DataNotFoundError

REPO = Path(__file__).resolve().parents[1]


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


def test_hidden_files_and_folders_are_ignored_everywhere(tmp_path):
    root = tmp_path / "pets"
    write_folder(root)
    reference = {split: torchvision_reference(root, split, ["cat", "dog", "frog"])
                 for split in ("train", "test")}
    (root / "train" / "cat" / "._000.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (root / "train" / ".ipynb_checkpoints").mkdir()  # would be a class of its own
    (root / "train" / "dog" / ".hidden").mkdir()
    for folder in [root / "train" / ".ipynb_checkpoints", root / "train" / "dog" / ".hidden",
                   root / "test" / "frog"]:  # readable images, hidden by their place or name
        Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(folder / ".x.png")
    (root / "test" / ".DS_Store").write_bytes(b"Bud1")
    raw = data.load_dataset(root)
    assert raw.classes == ["cat", "dog", "frog"]
    for split, x, y in [("train", raw.train_images, raw.train_labels),
                        ("test", raw.test_images, raw.test_labels)]:
        assert torch.equal(x, reference[split][0]) and torch.equal(y, reference[split][1])


def test_a_link_loop_is_read_once_with_a_warning_and_other_links_are_followed(tmp_path, capsys):
    root = tmp_path / "ab"
    write_folder(root, classes=("a", "b"), n_train=6)
    write_folder(tmp_path / "elsewhere", classes=("x",), n_train=2, seed=1)
    (root / "train" / "b" / "extra").symlink_to(tmp_path / "elsewhere" / "train" / "x")
    ref_x, ref_y = torchvision_reference(root, "train", ["a", "b"])  # before the loop
    assert len(ref_y) == 14  # 6 + 6, and the link's 2 in b, as ImageFolder reads it
    (root / "train" / "a" / "loop").symlink_to("..")
    raw = data.load_dataset(root)
    assert torch.equal(raw.train_images, ref_x) and torch.equal(raw.train_labels, ref_y)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning: skipping" in err
    assert str(root / "train" / "a" / "loop") in err


def test_a_class_folder_whose_name_is_not_utf8_trains(tmp_path, capsys):
    root = tmp_path / "pets"
    write_folder(root, classes=("cat", "dog"), n_train=6)
    for split in ("train", "test"):
        os.rename(os.fsencode(root / split / "dog"), os.fsencode(root / split) + b"/caf\xe9")
    real_names = sorted(os.listdir(root / "train"))
    raw = data.load_dataset(root)
    assert raw.classes == ["caf\ufffd", "cat"]
    json.dumps(raw.classes, ensure_ascii=False).encode("utf-8")
    print(raw.classes)
    assert "caf\ufffd" in capsys.readouterr().out
    for split, x, y in [("train", raw.train_images, raw.train_labels),
                        ("test", raw.test_images, raw.test_labels)]:
        ref_x, ref_y = torchvision_reference(root, split, real_names)
        assert torch.equal(x, ref_x) and torch.equal(y, ref_y)
    r = run_cli("--dataset", root, "--epochs", 1, "--val-size", 2, "--device", "cpu",
                "--logdir", tmp_path / "runs", "--run-name", "u")  # TensorBoard on, as by default
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    m = json.loads((tmp_path / "runs" / "u" / "metrics.json").read_text(encoding="utf-8"))
    assert list(m["per_class_test_accuracy"]) == ["caf\ufffd", "cat"]


def put(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def test_images_deeper_than_8_bits_are_scaled_by_their_type_not_crushed(tmp_path):
    root, rng = tmp_path / "deep", np.random.default_rng(0)
    written = {}
    for k, (split, name, ext, pixels) in enumerate([
            ("train", "a", "png", rng.integers(0, 65536, (5, 6)).astype(np.uint16)),  # I;16
            ("train", "a", "tif", rng.integers(0, 65536, (5, 6)).astype(np.int32)),  # I
            ("train", "b", "tif", rng.random((5, 6), np.float32)),  # F, 0..1
            ("test", "b", "png", np.full((5, 6), 65535, np.uint16))]):
        put(root / split / name / f"{k}.{ext}", pixels)
        top = 1 if pixels.dtype == np.float32 else 65535
        written[k] = np.rint(pixels.astype(np.float64) * 255 / top).astype(np.uint8)
    raw = data.load_dataset(root)
    assert raw.train_images.shape == (3, 1, 5, 6) and raw.test_images.shape == (1, 1, 5, 6)
    for k in range(3):
        assert np.array_equal(raw.train_images[k, 0].numpy(), written[k])
    assert int(raw.test_images.min()) == 255
    assert raw.train_images[2].float().mean() > 64  # the floats did not turn black


@pytest.mark.parametrize("pixels, says", [
    (np.full((5, 6), 2.0, np.float32), "float pixels (F) from 2 to 2"),
    (np.full((5, 6), np.nan, np.float32), "float pixels (F) from nan"),
    (np.full((5, 6), 70000, np.int32), "integer pixels (I) from 70000 to 70000"),
    (np.arange(30, dtype=np.uint16).reshape(5, 6), "integer pixels (I;16) all below 256")])
def test_deep_pixels_beyond_the_rule_are_refused_naming_the_file(tmp_path, pixels, says):
    write_folder(tmp_path / "d", mode="L")
    bad = tmp_path / "d" / "train" / "dog" / f"x.{'png' if pixels.dtype == np.uint16 else 'tif'}"
    put(bad, pixels)
    message = one_line_error(DataCorruptError, data.load_dataset, tmp_path / "d")
    assert f"{bad} has {says}" in message


def test_cmyk_and_palette_images_decode_as_imagefolders_rgb_without_warnings(tmp_path):
    root = tmp_path / "kinds"
    write_folder(root)
    palette = Image.fromarray(np.arange(30, dtype=np.uint8).reshape(5, 6), "P")
    palette.putpalette(list(np.random.default_rng(0).integers(0, 256, 768)))
    palette.info["transparency"] = bytes(range(0, 256, 8))  # Pillow warns converting this
    palette.save(root / "train" / "cat" / "000.png")
    Image.fromarray(np.full((5, 6, 4), 60, np.uint8), "CMYK").save(root / "test" / "dog" / "0.jpg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        raw = data.load_dataset(root)
    from torchvision.datasets import ImageFolder

    for split, x in [("train", raw.train_images), ("test", raw.test_images)]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the palette's, as ImageFolder converts to RGB
            ref = [np.array(img) for img, _ in ImageFolder(str(root / split))]
        assert torch.equal(x, torch.from_numpy(np.stack(ref)).permute(0, 3, 1, 2))


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


def test_the_odd_size_is_named_even_when_it_sorts_first(tmp_path):
    write_folder(tmp_path / "s", size=(8, 8))
    odd = tmp_path / "s" / "train" / "cat" / "000.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(odd)
    message = one_line_error(DataCorruptError, data.load_dataset, tmp_path / "s")
    assert f"{odd} is 16x16 pixels" in message and "most are 8x8" in message
    assert "001.png" not in message


def test_every_bad_image_is_reported_in_one_error(tmp_path):
    root = tmp_path / "b"
    write_folder(root, n_train=6)
    cat = root / "train" / "cat"
    png = (cat / "000.png").read_bytes()
    Image.fromarray(np.full((5, 6, 3), 99, np.uint8)).save(cat / "j.jpg", quality=95)
    jpeg = (cat / "j.jpg").read_bytes()
    undecodable = {"001.png": b"", "002.png": b"\x89PNG not really", "003.png": b"notes",
                   "004.png": png[:len(png) // 2], "j.jpg": jpeg[:len(jpeg) // 2]}
    for name, content in undecodable.items():
        (cat / name).write_bytes(content)
    odd = [root / "train" / "dog" / f"00{k}.png" for k in range(4)]
    for path in odd:
        Image.fromarray(np.zeros((7, 9, 3), np.uint8)).save(path)
    message = one_line_error(DataCorruptError, data.load_dataset, root)
    # the headers' faults first, then those found decoding
    assert all(f"{cat / name} cannot be decoded (" in message for name in ["001.png", "002.png",
                                                                          "003.png"])
    assert "and 2 more that cannot be decoded" in message
    assert "004.png" not in message and "j.jpg" not in message
    assert all(f"{path} is 9x7 pixels" in message for path in odd[:3])
    assert str(odd[3]) not in message and "and 1 more of other sizes, where most are 6x5" in message


def test_truncated_images_are_named(tmp_path):
    root = tmp_path / "t"
    write_folder(root, ext="jpg", size=(16, 16))
    for name in ("000.jpg", "001.jpg"):
        path = root / "test" / "frog" / name
        path.write_bytes(path.read_bytes()[:300])
    message = one_line_error(DataCorruptError, data.load_dataset, root)
    assert all(f"{root / 'test' / 'frog' / n} cannot be decoded" in message
               for n in ("000.jpg", "001.jpg"))


def test_a_link_to_nowhere_is_named(tmp_path):
    write_folder(tmp_path / "n")
    gone = tmp_path / "n" / "train" / "cat" / "gone.png"
    gone.symlink_to(tmp_path / "nothing.png")
    message = one_line_error(DataError, data.load_dataset, tmp_path / "n")
    assert f"{gone} cannot be read" in message


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_named_like_an_image_is_named_not_waited_on(tmp_path):
    write_folder(tmp_path / "f")
    fifo = tmp_path / "f" / "train" / "cat" / "pipe.png"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    script = ("import sys\nfrom lintorch import data\ntry:\n    data.load_dataset(sys.argv[1])\n"
              "except data.DataError as e:\n    print(e)")
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path / "f")], capture_output=True,
                       text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert f"{fifo} cannot be decoded" in r.stdout and "regular file" in r.stdout, r.stderr


def test_an_empty_test_split_is_refused(tmp_path):
    write_folder(tmp_path / "e")
    for folder in (tmp_path / "e" / "test").iterdir():
        shutil.rmtree(folder)
    (tmp_path / "e" / "test" / "readme.txt").write_text("the test images are coming")
    message = one_line_error(DataNotFoundError, data.load_dataset, tmp_path / "e")
    assert f"{tmp_path / 'e' / 'test'} holds no class folders" in message


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


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has ended; only its exit status is left


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_decoding_process_that_dies_is_one_line_no_hang_and_no_process_left(tmp_path):
    write_folder(tmp_path / "pets", n_train=8, n_test=2)
    pids = tmp_path / "pids"
    # a pool of 3 whatever this machine has; the worker decoding dog/002.png is killed, as the
    # out-of-memory killer would
    script = f"""
import os, signal, sys
from lintorch import image_folder, train
image_folder._CHUNK = 2
os.cpu_count, os.sched_getaffinity = (lambda: 3), (lambda pid: {{0, 1, 2}})
real = image_folder._decode
def dying(path):
    with open({str(pids)!r}, "a") as f:
        f.write(f"{{os.getpid()}}\\n")
    if path.endswith("dog/002.png"):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(path)
image_folder._decode = dying
sys.exit(train.main(sys.argv[1:]))
"""
    r = subprocess.run([sys.executable, "-c", script, "--dataset", str(tmp_path / "pets"),
                        "--logdir", str(tmp_path / "runs"), "--no-tensorboard", "--quiet"],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: a process decoding the images died"), r.stderr
    workers = {int(pid) for pid in pids.read_text().split()}
    assert len(workers) >= 2  # the one killed and at least one other
    deadline = time.monotonic() + 10
    while any(map(alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(alive, workers))


def test_the_pool_has_as_many_processes_as_cpus_this_process_may_use(tmp_path, monkeypatch):
    write_folder(tmp_path / "p", n_train=10)
    monkeypatch.setattr(image_folder, "_CHUNK", 4)  # 30 + 6 images: 9 tasks
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5}, raising=False)
    sizes, real = [], image_folder.ProcessPoolExecutor
    monkeypatch.setattr(image_folder, "ProcessPoolExecutor",
                        lambda workers, *a: sizes.append(workers) or real(workers, *a))
    pooled = data.load_dataset(tmp_path / "p")
    assert sizes and set(sizes) == {3}

    sizes.clear()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {7})  # taskset -c 7
    monkeypatch.setenv("LINTORCH_CACHE", str(tmp_path / "other-cache"))
    alone = data.load_dataset(tmp_path / "p")
    assert sizes == [] and torch.equal(alone.train_images, pooled.train_images)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
def test_decoding_takes_about_the_memory_of_the_images_once(tmp_path):
    # 50 images of 700x500 RGB, 52 MB decoded: stacking a list of them took three times that
    root = tmp_path / "big"
    for k in range(50):
        pixels = np.full((500, 700, 3), k, np.uint8)
        pixels[:, :, 1] = np.arange(700) % 256  # not constant, to be sure nothing is shared
        put(root / ("train" if k < 40 else "test") / f"c{k % 2}" / f"{k:02d}.png", pixels)
    # VmHWM, not ru_maxrss: that one keeps the peak of the process that forked this one
    script = """
import sys
from lintorch import image_folder
def kib(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status")
                if line.startswith(field + ":"))
before = kib("VmRSS")
raw = image_folder.load_image_folder(sys.argv[1], progress=False)
print((kib("VmHWM") - before) * 1024 / (raw.train_images.nbytes + raw.test_images.nbytes))
"""
    r = subprocess.run([sys.executable, "-c", script, str(root)], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr
    assert float(r.stdout) < 1.7, r.stdout  # the images, once, and an image's worth of work


def test_a_data_set_folder_whose_name_is_not_utf8_names_its_runs_printably(tmp_path):
    write_folder(tmp_path / "pets", classes=("cat", "dog"), n_train=6)
    root = os.fsencode(tmp_path) + b"/p\xe9ts"
    os.rename(os.fsencode(tmp_path / "pets"), root)
    r = run_cli("--dataset", os.fsdecode(root), "--epochs", 1, "--val-size", 2, "--device",
                "cpu", "--logdir", tmp_path / "runs")  # no --run-name: named after the folder
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("p\ufffdts-linear-softmax-")
    json.loads((run / "metrics.json").read_text(encoding="utf-8"))


def test_refresh_cache_decodes_a_cached_folder_again(tmp_path, monkeypatch):
    write_folder(tmp_path / "f")
    decodes = []
    real = image_folder._decode_all
    monkeypatch.setattr(image_folder, "_decode_all",
                        lambda *args, **kw: decodes.append(1) or real(*args, **kw))
    args = ["--dataset", tmp_path / "f", "--epochs", 1, "--val-size", 2, "--quiet",
            "--no-tensorboard", "--logdir", tmp_path / "runs"]
    assert train.main(list(map(str, args))) == 0 and train.main(list(map(str, args))) == 0
    assert len(decodes) == 1  # the second run read the cache
    assert train.main(list(map(str, [*args, "--refresh-cache"]))) == 0
    assert len(decodes) == 2
