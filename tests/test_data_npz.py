"""A data set of one's own as an .npz file: lintorch.data against files written here with
numpy.savez and statistics computed here with numpy."""

from __future__ import annotations

import io
import json
import os
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from test_data import one_line_error

from lintorch import data
from lintorch.data import DataCorruptError, DataNotFoundError


class MakesDirWhenUnpickled:
    """An object whose unpickling has a visible side effect, as malicious code would."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


def features(n: int, d: int = 5, seed: int = 0) -> np.ndarray:
    """float64 (n, d) whose columns have very different means and scales."""
    rng = np.random.default_rng(seed)
    return rng.normal(loc=10.0 * np.arange(d), scale=np.arange(1, d + 1), size=(n, d))


def traceable(n: int = 40, n_test: int = 9, x_train=None, x_test=None) -> dict:
    """Labels that are the example's index, so every split can be traced back to its rows."""
    return {
        "x_train": features(n) if x_train is None else x_train,
        "y_train": np.arange(n),
        "x_test": features(n_test, seed=1) if x_test is None else x_test,
        "y_test": np.arange(n_test),
    }


def save(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def overflowing_float32(path: Path, n: int = 60, d: int = 4) -> Path:
    """An .npz of n training rows, one feature 1e300: finite in the file's float64, inf in the
    default --dtype float32."""
    g = np.random.default_rng(0)
    x_train = g.normal(size=(n, d))
    x_train[n // 2, 0] = 1e300
    return save(path, x_train=x_train, y_train=g.integers(0, 3, n),
                x_test=g.normal(size=(10, d)), y_test=g.integers(0, 3, 10))


# --- loading ----------------------------------------------------------------------------------


def test_is_npz():
    assert data.is_npz("mine.npz") and data.is_npz(Path("a/b.NPZ"))
    assert not any(data.is_npz(name) for name in (*data.DATASETS, "x.npy", "npz", None))
    assert data.DATASETS == ("cifar10", "fashion-mnist", "mnist")


def test_float_features_round_trip(tmp_path):
    x_train, x_test = features(12), features(4, seed=1).astype(np.float32)
    y_train, y_test = np.array([0, 1, 2] * 4, np.int32), np.array([4, 0, 1, 2], np.uint8)
    path = save(
        tmp_path / "mine.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test
    )
    raw = data.load_dataset(path)
    assert raw.name == "mine"
    assert raw.classes == ["0", "1", "2", "3", "4"]  # C = max label + 1, over train and test
    assert raw.train_images.dtype == torch.float64 and raw.test_images.dtype == torch.float32
    assert raw.train_labels.dtype == raw.test_labels.dtype == torch.int64
    np.testing.assert_array_equal(raw.train_images.numpy(), x_train)
    np.testing.assert_array_equal(raw.test_images.numpy(), x_test)
    assert raw.train_labels.tolist() == y_train.tolist()
    assert raw.test_labels.tolist() == y_test.tolist()


def test_uint8_images_and_class_names_round_trip(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (10, 1, 8, 8), dtype=np.uint8),
        "y_train": rng.integers(0, 2, 10),
        "x_test": rng.integers(0, 256, (3, 1, 8, 8), dtype=np.uint8),
        "y_test": np.array([0, 1, 1]),
    }
    save(tmp_path / "pets.npz", **arrays, classes=["cat", "dog", "eel"])
    monkeypatch.chdir(tmp_path)
    raw = data.load_dataset("pets.npz")  # a relative path, as a str
    assert raw.name == "pets" and raw.classes == ["cat", "dog", "eel"]  # C = len(classes) = 3
    assert raw.train_images.dtype == torch.uint8
    for key in ("x_train", "x_test"):
        split = key.removeprefix("x_")
        np.testing.assert_array_equal(getattr(raw, f"{split}_images").numpy(), arrays[key])
        np.testing.assert_array_equal(getattr(raw, f"{split}_labels").numpy(), arrays[f"y_{split}"])


def test_hw_images_get_one_channel(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (6, 7, 8), dtype=np.uint8)
    path = save(
        tmp_path / "hw.npz", x_train=x, y_train=np.arange(6), x_test=x[:2], y_test=np.arange(2)
    )
    raw = data.load_dataset(path)
    np.testing.assert_array_equal(raw.train_images.numpy(), x[:, None])
    p = data.prepare(raw, val_size=2)
    assert p.image_shape == (1, 7, 8) and p.mean.shape == (1, 1, 1, 1)


# --- preparing --------------------------------------------------------------------------------


def test_standardize_per_feature(tmp_path):
    arrays = traceable()
    arrays["x_train"][:, 2] = 5.0  # a constant feature
    raw = data.load_dataset(save(tmp_path / "f.npz", **arrays))
    p = data.prepare(raw, val_size=8, preprocess="standardize", seed=1, dtype=torch.float64)
    assert p.image_shape == (5,) and p.mean.shape == p.std.shape == (1, 5)
    train = arrays["x_train"][p.train_y.numpy()]
    mean, std = train.mean(axis=0), train.std(axis=0)
    std[2] = 1  # left centred, not divided by ~0
    np.testing.assert_allclose(p.mean.numpy()[0], mean, rtol=1e-12)
    np.testing.assert_allclose(p.std.numpy()[0], std, rtol=1e-12)
    x = p.train_x.numpy()
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(x.std(axis=0), [1, 1, 0, 1, 1], atol=1e-12)
    val = arrays["x_train"][p.val_y.numpy()]
    np.testing.assert_allclose(p.val_x.numpy(), (val - mean) / std, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(p.test_x.numpy(), (arrays["x_test"] - mean) / std, atol=1e-12)


def test_standardize_a_tiny_scale_feature_in_float32(tmp_path):
    x_train = features(40)
    x_train[:, 0] *= 1e-9  # std ~1e-9: below float32's eps, and yet not constant
    raw = data.load_dataset(save(tmp_path / "f.npz", **traceable(x_train=x_train)))
    p = data.prepare(raw, val_size=8, preprocess="standardize")
    assert p.train_x.dtype == torch.float32
    np.testing.assert_allclose(p.train_x.numpy().std(axis=0), 1, rtol=1e-4)
    np.testing.assert_allclose(p.train_x.numpy().mean(axis=0), 0, atol=1e-4)


def test_standardize_per_channel_for_images(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (30, 2, 4, 4), dtype=np.uint8)
    images[:, 1] //= 4  # a second channel with other statistics
    arrays = {
        "x_train": images,
        "y_train": np.arange(30),
        "x_test": images[:3],
        "y_test": np.arange(3),
    }
    p = data.prepare(data.load_dataset(save(tmp_path / "i.npz", **arrays)), val_size=5)
    train = images[p.train_y.numpy()] / 255
    mean, std = train.mean(axis=(0, 2, 3)), train.std(axis=(0, 2, 3))
    assert p.image_shape == (2, 4, 4) and p.mean.shape == (1, 2, 1, 1)
    np.testing.assert_allclose(p.mean.flatten().numpy(), mean, atol=1e-6)
    np.testing.assert_allclose(p.std.flatten().numpy(), std, atol=1e-6)
    expected = (images[:3] / 255 - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(p.test_x.numpy(), expected, atol=1e-5)


def test_none_keeps_floats_and_scales_uint8(tmp_path):
    arrays = traceable()
    p = data.prepare(
        data.load_dataset(save(tmp_path / "f.npz", **arrays)),
        val_size=8,
        preprocess="none",
        dtype=torch.float64,
    )
    np.testing.assert_array_equal(p.test_x.numpy(), arrays["x_test"])
    np.testing.assert_array_equal(p.train_x.numpy(), arrays["x_train"][p.train_y.numpy()])
    assert p.mean.flatten().tolist() == [0] * 5 and p.std.flatten().tolist() == [1] * 5

    images = np.arange(2 * 64, dtype=np.uint8).reshape(2, 1, 8, 8)
    path = save(tmp_path / "u.npz", x_train=images, y_train=[0, 1], x_test=images, y_test=[1, 0])
    p = data.prepare(data.load_dataset(path), val_size=0, preprocess="none", dtype=torch.float64)
    np.testing.assert_array_equal(p.test_x.numpy(), images / 255)


def test_center_subtracts_the_mean_example(tmp_path):
    arrays = traceable()
    p = data.prepare(
        data.load_dataset(save(tmp_path / "f.npz", **arrays)),
        val_size=8,
        preprocess="center",
        dtype=torch.float64,
    )
    mean = arrays["x_train"][p.train_y.numpy()].mean(axis=0)
    np.testing.assert_allclose(p.mean.numpy()[0], mean, rtol=1e-12)
    np.testing.assert_allclose(p.test_x.numpy(), arrays["x_test"] - mean, atol=1e-12)


def test_prepare_leaves_the_raw_features_alone(tmp_path):
    # float32 features already of the training dtype: no conversion, so no copy by accident
    arrays = {key: a.astype(np.float32) if key[0] == "x" else a for key, a in traceable().items()}
    raw = data.load_dataset(save(tmp_path / "f.npz", **arrays))
    data.prepare(raw, val_size=8, preprocess="standardize")
    np.testing.assert_array_equal(raw.test_images.numpy(), arrays["x_test"])
    np.testing.assert_array_equal(raw.train_images.numpy(), arrays["x_train"])


def test_features_beyond_float32_are_refused_in_float32_and_train_in_float64(tmp_path):
    arrays = traceable()
    arrays["x_train"][3, 1] = -1e300  # finite in the file's float64, inf in float32
    raw = data.load_dataset(save(tmp_path / "big.npz", **arrays))
    message = one_line_error(data.DataError, data.prepare, raw, val_size=8)
    assert "1e+300" in message and "float32" in message and "--dtype float64" in message
    p = data.prepare(raw, val_size=8, preprocess="none", dtype=torch.float64)
    assert float(torch.cat([p.train_x, p.val_x]).min()) == -1e300


@pytest.mark.parametrize("dtype,scale", [(torch.float64, 1e300), (torch.float32, 3e38)])
def test_statistics_that_overflow_the_training_dtype_are_refused(tmp_path, dtype, scale):
    # float64: the standard deviation squares 1e300; float32: the mean sums 40 values of 3e38
    arrays = traceable()
    arrays["x_train"][:, 2] = scale * np.sign(features(40)[:, 2] - 20)
    raw = data.load_dataset(save(tmp_path / "big.npz", **arrays))
    message = one_line_error(data.DataError, data.prepare, raw, val_size=8, dtype=dtype)
    assert "overflow" in message and str(dtype).removeprefix("torch.") in message
    assert "rescale" in message


def test_validation_split_and_limit(tmp_path):
    arrays = traceable(n=30)
    raw = data.load_dataset(save(tmp_path / "f.npz", **arrays))
    p = data.prepare(raw, val_size=5, preprocess="none", seed=3, limit=10, dtype=torch.float64)
    assert len(p.val_y) == 5 and len(p.train_y) == 10 and len(p.test_y) == 9
    assert not set(p.val_y.tolist()) & set(p.train_y.tolist())
    np.testing.assert_array_equal(p.val_x.numpy(), arrays["x_train"][p.val_y.numpy()])
    again = data.prepare(raw, val_size=5, preprocess="none", seed=3)
    assert torch.equal(again.val_y, p.val_y) and len(again.train_y) == 25
    assert "30" in one_line_error(data.DataError, data.prepare, raw, val_size=30)


# --- bad files --------------------------------------------------------------------------------


def good() -> dict:
    return traceable(n=6, n_test=3)


BAD = {  # arrays to change (None: leave out) -> words the message must hold
    "missing key": ({"y_test": None}, ["y_test", "x_train, y_train, x_test, y_test"]),
    "train length": ({"y_train": np.arange(5)}, ["y_train", "(5,)", "6"]),
    "test length": ({"x_test": features(4)}, ["y_test", "4 examples"]),
    "float labels": ({"y_train": np.arange(6.0)}, ["y_train", "float64", "integer"]),
    "negative label": ({"y_test": np.array([0, -1, 2])}, ["y_test", "label -1", "[0, 6)"]),
    "label beyond classes": (
        {"classes": ["a", "b", "c", "d", "e"]},
        ["y_train", "label 5", "[0, 5)"],
    ),
    "nan": (
        {"x_train": np.where(np.eye(6, 5) > 0, np.nan, features(6))},
        ["x_train", "5 non-finite", "example 0"],
    ),
    "inf": (
        {"x_test": np.array([[0.0] * 5, [0.0] * 5, [np.inf, 0, 0, -np.inf, 0]])},
        ["x_test", "2 non-finite", "example 2"],
    ),
    "feature shapes": ({"x_test": features(3, d=4)}, ["(6, 5)", "(3, 4)", "feature shape"]),
    "no feature axis": ({"x_train": np.zeros(6), "x_test": np.zeros(3)}, ["(6,)", "(N, "]),
    "no features": (
        {"x_train": np.zeros((6, 0)), "x_test": np.zeros((3, 0))},
        ["x_train", "(6, 0)", "no features"],
    ),
    "empty": ({"x_test": np.zeros((0, 5)), "y_test": np.zeros(0, int)}, ["x_test", "no exa"]),
    "int features": ({"x_train": np.zeros((6, 5), np.int64)}, ["x_train", "uint8 or float"]),
    "2-D classes": ({"classes": [["a"] * 6] * 2}, ["classes", "(2, 6)", "1-D array of str"]),
    "numeric classes": ({"classes": np.arange(6)}, ["classes", "int64", "1-D array of str"]),
    "label past int64": (
        {"y_train": np.full(6, 2**64 - 1, np.uint64)},
        ["y_train", "label 18446744073709551615", "renumber"],
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_file(tmp_path, case):
    changes, words = BAD[case]
    arrays = {**good(), **changes}
    path = save(tmp_path / "bad.npz", **{k: v for k, v in arrays.items() if v is not None})
    message = one_line_error(DataCorruptError, data.load_dataset, path)
    assert str(path) in message
    for word in words:
        assert word in message


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.npz"
    message = one_line_error(DataNotFoundError, data.load_dataset, path)
    assert str(path) in message and "not found" in message


@pytest.mark.parametrize("content", [b"hello, not a zip", b"\x93NUMPY..."], ids=["text", "npy"])
def test_not_a_zip(tmp_path, content):
    path = tmp_path / "plain.npz"
    path.write_bytes(content)
    message = one_line_error(DataCorruptError, data.load_dataset, path)
    assert str(path) in message and "not an .npz" in message and "numpy.savez" in message


def test_damaged_zip(tmp_path):
    path = save(tmp_path / "d.npz", **good())
    content = path.read_bytes()
    path.write_bytes(content[:200] + bytes(100) + content[300:])  # the zip's index is intact
    message = one_line_error(DataCorruptError, data.load_dataset, path)
    assert str(path) in message and "damaged" in message
    path.write_bytes(content[:-100])  # cut off: no longer a readable zip
    message = one_line_error(DataCorruptError, data.load_dataset, path)
    assert str(path) in message and "not an .npz" in message


def test_pickled_objects_are_refused_unread(tmp_path):
    marker = tmp_path / "unpickled"
    arrays = {**good(), "x_train": np.array([MakesDirWhenUnpickled(str(marker))], dtype=object)}
    path = save(tmp_path / "evil.npz", **arrays)
    message = one_line_error(DataCorruptError, data.load_dataset, path)
    assert str(path) in message and "x_train" in message
    assert "object array" in message and "allow_pickle=False" in message
    assert not marker.exists()
    # the file does carry code: numpy, told to trust it, runs it
    with np.load(path, allow_pickle=True) as npz:
        npz["x_train"]
    assert marker.is_dir()


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize("member", ["x_train.npy", "classes"])
def test_a_member_that_is_not_an_array_is_named(tmp_path, member):
    # np.savez never writes these; a zip put together by hand can: np.load hands back bytes
    path = tmp_path / "raw.npz"
    with zipfile.ZipFile(path, "w") as z:
        for key, array in good().items():
            z.writestr(f"{key}.npy", npy(array) if f"{key}.npy" != member else b"raw bytes")
        if member == "classes":
            z.writestr("classes", b"cat,dog")
    message = one_line_error(DataCorruptError, data.load_dataset, path)
    key = member.removesuffix(".npy")
    assert str(path) in message and f"{key} is not a .npy array" in message


def test_longdouble_features_load_as_float64(tmp_path):
    arrays = good()
    x = arrays["x_train"].astype(np.longdouble)
    raw = data.load_dataset(save(tmp_path / "ld.npz", **{**arrays, "x_train": x}))
    assert raw.train_images.dtype == torch.float64
    np.testing.assert_array_equal(raw.train_images.numpy(), arrays["x_train"])


@pytest.mark.skipif(np.finfo(np.longdouble).max <= np.finfo(np.float64).max,
                    reason="longdouble is float64 here")
def test_longdouble_features_beyond_float64_are_one_line(tmp_path):
    x = good()["x_test"].astype(np.longdouble)
    x[1, 2] = np.longdouble("1e400")
    path = save(tmp_path / "ld.npz", **{**good(), "x_test": x})
    message = one_line_error(DataCorruptError, data.load_dataset, path)
    assert str(path) in message and "x_test" in message and "float64" in message


def test_uint8_labels_reach_255_for_256_classes(tmp_path):
    y = np.arange(256, dtype=np.uint8)
    path = save(tmp_path / "u8.npz", x_train=features(256), y_train=y, x_test=features(256),
                y_test=y[::-1].copy())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NumPy's overflow warning of 255 + 1 in uint8
        raw = data.load_dataset(path)
    assert raw.classes == [str(c) for c in range(256)]
    assert raw.train_labels.dtype == torch.int64
    assert raw.train_labels.tolist() == list(range(256))
    assert raw.test_labels.tolist() == list(range(255, -1, -1))


def test_class_names_that_cannot_be_printed_are_shown_as_best_they_can(tmp_path):
    # names read with os.listdir from a folder whose names are not UTF-8 hold lone surrogates,
    # which print, JSON and matplotlib refuse
    names = np.array(["caf\udce9", "b", "c", "d", "e", "f"])
    raw = data.load_dataset(save(tmp_path / "s.npz", **good(), classes=names))
    assert raw.classes == ["caf\ufffd", "b", "c", "d", "e", "f"]
    json.dumps(raw.classes, ensure_ascii=False).encode("utf-8")


def test_uint8_and_float_splits_are_refused(tmp_path):
    # uint8 is scaled by 1/255 and floats are not: the splits would differ 255-fold
    x = (np.arange(6 * 4) % 256).reshape(6, 4)
    path = save(tmp_path / "mixed.npz", **{**good(), "x_train": x.astype(np.uint8),
                                          "x_test": x[:3].astype(np.float32)})
    message = one_line_error(DataCorruptError, data.load_dataset, path)
    assert str(path) in message and "uint8" in message and "float32" in message


def zip_of(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, content in members.items():
            z.writestr(name, content)
    return path


def test_a_header_that_promises_more_than_memory_holds_is_one_line(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**13, 5)})
    members = {f"{key}.npy": npy(array) for key, array in good().items()}
    members["x_train.npy"] = header.getvalue() + bytes(240)  # damaged: 10**13 rows promised
    path = zip_of(tmp_path / "huge.npz", members)
    message = one_line_error(DataCorruptError, data.load_dataset, path)
    assert str(path) in message and "MemoryError" in message


@pytest.mark.parametrize("flag, method", [(1, 0), (0, 99)], ids=["encrypted", "compression 99"])
def test_a_member_zip_cannot_read_is_one_line(tmp_path, flag, method):
    path = zip_of(tmp_path / "z.npz", {f"{key}.npy": npy(a) for key, a in good().items()})
    content = bytearray(path.read_bytes())
    for signature, flags_at in [(b"PK\x03\x04", 6), (b"PK\x01\x02", 8)]:  # local, central
        at = content.find(signature) + flags_at  # the first member's general flags, method
        content[at:at + 4] = struct.pack("<HH", flag, method)
    path.write_bytes(content)
    message = one_line_error(DataCorruptError, data.load_dataset, path)
    assert str(path) in message and ("encrypted" in message or "compression" in message)
