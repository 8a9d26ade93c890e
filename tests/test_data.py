"""lintorch.data against independent references: torchvision's own readers, numpy, hand-made
files and hand-checked index arithmetic."""

from __future__ import annotations

import gzip
import io
import json
import pickle
import pickletools
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from cifar_fixture import CLASSES, py2_pickle, write_cifar10, write_cifar10_targz

from lintorch import data
from lintorch.data import DataCorruptError, DataError, DataNotFoundError, RawData

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@pytest.fixture(autouse=True)
def no_env_root(monkeypatch):
    monkeypatch.delenv("LINTORCH_DATA", raising=False)


def assert_matches_cifar(raw: RawData, expected) -> None:
    assert raw.name == "cifar10" and raw.classes == CLASSES
    assert raw.train_images.dtype == torch.uint8 and raw.train_labels.dtype == torch.int64
    assert raw.train_images.shape == (len(expected.train_labels), 3, 32, 32)
    np.testing.assert_array_equal(raw.train_images.numpy(), expected.train_images)
    np.testing.assert_array_equal(raw.train_labels.numpy(), expected.train_labels)
    np.testing.assert_array_equal(raw.test_images.numpy(), expected.test_images)
    np.testing.assert_array_equal(raw.test_labels.numpy(), expected.test_labels)


def one_line_error(error_type, fn, *args, **kwargs) -> str:
    with pytest.raises(error_type) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- CIFAR-10 ---------------------------------------------------------------------------------


def test_fixture_pickles_like_python2(tmp_path):
    write_cifar10(tmp_path, n_train_per_batch=3, n_test=2)
    content = (tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes()
    opcodes = {op.name for op, _, _ in pickletools.genops(content)}
    assert "SHORT_BINSTRING" in opcodes and "BINSTRING" in opcodes  # the pixels are > 255 bytes
    assert not opcodes & {"BINUNICODE", "SHORT_BINUNICODE", "BINBYTES", "SHORT_BINBYTES"}
    as_bytes = pickle.loads(content, encoding="bytes")
    as_latin1 = pickle.loads(content, encoding="latin1")
    assert set(as_bytes) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert set(as_latin1) == {"batch_label", "labels", "data", "filenames"}
    np.testing.assert_array_equal(as_bytes[b"data"], as_latin1["data"])
    meta = pickle.loads(
        (tmp_path / "cifar-10-batches-py" / "batches.meta").read_bytes(), encoding="bytes"
    )
    assert meta[b"label_names"][0] == b"airplane"


@pytest.mark.parametrize("python2", [True, False], ids=["bytes-keys", "str-keys"])
def test_cifar10_batches_folder(tmp_path, python2):
    expected = write_cifar10(tmp_path, n_train_per_batch=4, n_test=3, seed=1, python2=python2)
    assert_matches_cifar(data.load_dataset("cifar10", tmp_path, download=False), expected)


def test_cifar10_agrees_with_torchvision(tmp_path, monkeypatch):
    write_cifar10(tmp_path, n_train_per_batch=4, n_test=3, seed=2)
    # torchvision checks the md5 sums of the official files; ours are made up
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    raw = data.load_dataset("cifar10", tmp_path, download=False)
    for train, images, labels in [
        (True, raw.train_images, raw.train_labels),
        (False, raw.test_images, raw.test_labels),
    ]:
        reference = torchvision.datasets.CIFAR10(tmp_path, train=train, download=False)
        np.testing.assert_array_equal(images.permute(0, 2, 3, 1).numpy(), reference.data)
        assert labels.tolist() == reference.targets
        assert raw.classes == reference.classes


def test_cifar10_targz_is_extracted(tmp_path):
    expected = write_cifar10_targz(tmp_path, n_train_per_batch=3, n_test=2, seed=3)
    assert data.find_dataset(tmp_path) == "cifar10"
    assert_matches_cifar(data.load_dataset("cifar10", tmp_path, download=False), expected)
    assert (tmp_path / "cifar-10-batches-py" / "test_batch").is_file()
    assert not list(tmp_path.glob(".extract-*"))
    (tmp_path / "cifar-10-python.tar.gz").unlink()  # the next run reads the extracted folder
    assert_matches_cifar(data.load_dataset("cifar10", tmp_path, download=False), expected)


def test_cifar10_truncated_batch(tmp_path):
    write_cifar10(tmp_path, n_train_per_batch=3, n_test=2)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:5000])
    message = one_line_error(DataCorruptError, data.load_dataset, "cifar10", tmp_path, False)
    assert str(batch) in message


def test_cifar10_wrong_shape(tmp_path):
    write_cifar10(tmp_path, n_train_per_batch=3, n_test=2)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(py2_pickle({"data": np.zeros((2, 1000), np.uint8), "labels": [0, 1]}))
    message = one_line_error(DataCorruptError, data.load_dataset, "cifar10", tmp_path, False)
    assert str(batch) in message


@pytest.mark.parametrize("labels", [[0, 2**70], [0.5, 1.7], ["0", "1"]],
                         ids=["beyond int64", "fractions", "strings"])
def test_cifar10_labels_that_are_not_class_indices(tmp_path, labels):
    # 2**70 overflowed int64 in a traceback; fractions were cut to 0 and 1, strings parsed
    write_cifar10(tmp_path, n_train_per_batch=3, n_test=2)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(py2_pickle({"data": np.zeros((2, 3072), np.uint8), "labels": labels}))
    message = one_line_error(DataCorruptError, data.load_dataset, "cifar10", tmp_path, False)
    assert str(batch) in message and "labels" in message


def test_cifar10_class_names_that_cannot_be_printed_are_shown_as_best_they_can(tmp_path):
    # A Python 3 pickle can hold lone surrogates (a name decoded with surrogateescape, say);
    # print, JSON and matplotlib refuse them.
    write_cifar10(tmp_path, n_train_per_batch=3, n_test=2)
    names = ["caf\udce9", *CLASSES[1:]]
    meta = tmp_path / "cifar-10-batches-py" / "batches.meta"
    meta.write_bytes(pickle.dumps({"label_names": names}))
    raw = data.load_dataset("cifar10", tmp_path, download=False)
    assert raw.classes == ["caf\ufffd", *CLASSES[1:]]
    json.dumps(raw.classes, ensure_ascii=False).encode("utf-8")


def test_cifar10_refuses_code_in_pickles(tmp_path):
    write_cifar10(tmp_path, n_train_per_batch=3, n_test=2)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(pickle.dumps({"data": print}))  # any global besides numpy's array makers
    message = one_line_error(DataCorruptError, data.load_dataset, "cifar10", tmp_path, False)
    assert str(batch) in message and "builtins.print" in message


def test_cifar10_truncated_targz(tmp_path):
    write_cifar10_targz(tmp_path, n_train_per_batch=3, n_test=2)
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(archive.read_bytes()[:-3000])
    message = one_line_error(DataCorruptError, data.load_dataset, "cifar10", tmp_path, False)
    assert str(archive) in message
    assert not (tmp_path / "cifar-10-batches-py").exists()


def test_cifar10_targz_with_escaping_entry(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("../escaped")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    message = one_line_error(DataCorruptError, data.load_dataset, "cifar10", root, False)
    assert "../escaped" in message
    assert not (tmp_path / "escaped").exists()


# --- Fashion-MNIST and MNIST ------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    content = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    content += array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        content = gzip.compress(content)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def write_mnist_like(folder: Path, gz: bool, n_train: int = 12, n_test: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for key, array in arrays.items():
        write_idx(folder / (IDX_STEMS[key] + (".gz" if gz else "")), array)
    return arrays


def assert_matches_idx(raw: RawData, arrays) -> None:
    for key in ("train", "test"):
        images, labels = getattr(raw, f"{key}_images"), getattr(raw, f"{key}_labels")
        assert images.dtype == torch.uint8 and labels.dtype == torch.int64
        np.testing.assert_array_equal(images.numpy(), arrays[f"{key}_images"][:, None])
        np.testing.assert_array_equal(labels.numpy(), arrays[f"{key}_labels"])


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize(
    "name, sub",
    [
        ("fashion-mnist", "FashionMNIST/raw"),
        ("fashion-mnist", "fashion-mnist"),
        ("fashion-mnist", ""),
        ("mnist", "MNIST/raw"),
        ("mnist", ""),
    ],
)
def test_idx_layouts(tmp_path, name, sub, gz):
    arrays = write_mnist_like(tmp_path / sub, gz=gz)
    raw = data.load_dataset(name, tmp_path, download=False)
    assert raw.name == name and len(raw.classes) == 10
    assert raw.classes[0] == ("T-shirt/top" if name == "fashion-mnist" else "0")
    assert_matches_idx(raw, arrays)


def test_idx_agrees_with_torchvision(tmp_path):
    write_mnist_like(tmp_path / "FashionMNIST" / "raw", gz=False)
    raw = data.load_dataset("fashion-mnist", tmp_path, download=False)
    for train, images, labels in [
        (True, raw.train_images, raw.train_labels),
        (False, raw.test_images, raw.test_labels),
    ]:
        reference = torchvision.datasets.FashionMNIST(tmp_path, train=train, download=False)
        assert torch.equal(images[:, 0], reference.data)
        assert torch.equal(labels, reference.targets)
        assert raw.classes == reference.classes


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_idx_truncated(tmp_path, gz):
    write_mnist_like(tmp_path, gz=gz)
    path = tmp_path / (IDX_STEMS["test_images"] + (".gz" if gz else ""))
    path.write_bytes(path.read_bytes()[:-100])
    message = one_line_error(DataCorruptError, data.load_dataset, "mnist", tmp_path, False)
    assert str(path) in message


def test_idx_wrong_magic_and_count(tmp_path):
    write_mnist_like(tmp_path, gz=False)
    labels = tmp_path / IDX_STEMS["train_labels"]
    write_idx(labels, np.zeros((12, 1), np.uint8))  # two dimensions: magic 2050, not 2049
    message = one_line_error(DataCorruptError, data.load_dataset, "mnist", tmp_path, False)
    assert str(labels) in message and "2049" in message
    write_idx(labels, np.zeros(11, np.uint8))
    message = one_line_error(DataCorruptError, data.load_dataset, "mnist", tmp_path, False)
    assert str(labels) in message


@pytest.fixture(scope="module")
def debian_fashion_mnist():
    if not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    return data.load_dataset("fashion-mnist", DEBIAN_FASHION_MNIST, download=False)


def test_debian_fashion_mnist(debian_fashion_mnist, tmp_path):
    raw = debian_fashion_mnist
    assert raw.train_images.shape == (60000, 1, 28, 28)
    assert raw.test_images.shape == (10000, 1, 28, 28)
    assert raw.train_labels.bincount().tolist() == [6000] * 10
    assert raw.test_labels.bincount().tolist() == [1000] * 10
    # torchvision's reader works on unpacked files only
    from torchvision.datasets.mnist import read_image_file, read_label_file

    for key, stem in IDX_STEMS.items():
        unpacked = tmp_path / stem
        unpacked.write_bytes(gzip.decompress((DEBIAN_FASHION_MNIST / f"{stem}.gz").read_bytes()))
        read = read_image_file if "images" in key else read_label_file
        ours = getattr(raw, key)
        assert torch.equal(ours[:, 0] if "images" in key else ours, read(str(unpacked)))
    assert data.find_dataset(DEBIAN_FASHION_MNIST) == "fashion-mnist"
    assert data.find_dataset(DEBIAN_FASHION_MNIST.parent) == "fashion-mnist"


# --- finding the data -------------------------------------------------------------------------


def test_resolve_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert data.resolve_root(None) == tmp_path / "data"
    monkeypatch.setenv("LINTORCH_DATA", str(tmp_path / "env"))
    assert data.resolve_root(None) == tmp_path / "env"
    assert data.resolve_root("explicit") == tmp_path / "explicit"


def test_env_var_is_honoured(tmp_path, monkeypatch):
    expected = write_cifar10(tmp_path, n_train_per_batch=2, n_test=2)
    monkeypatch.setenv("LINTORCH_DATA", str(tmp_path))
    assert data.find_dataset() == "cifar10"
    assert_matches_cifar(data.load_dataset("cifar10", download=False), expected)


def test_find_dataset(tmp_path):
    assert data.find_dataset(tmp_path) is None
    write_mnist_like(tmp_path / "MNIST" / "raw", gz=True)
    assert data.find_dataset(tmp_path) is None  # MNIST is never picked by itself
    write_mnist_like(tmp_path / "FashionMNIST" / "raw", gz=True)
    assert data.find_dataset(tmp_path) == "fashion-mnist"
    write_cifar10(tmp_path, n_train_per_batch=2, n_test=2)
    assert data.find_dataset(tmp_path) == "cifar10"


@pytest.mark.parametrize("name", data.DATASETS)
def test_missing_without_download(tmp_path, name):
    message = one_line_error(DataNotFoundError, data.load_dataset, name, tmp_path, False)
    assert str(tmp_path) in message and "LINTORCH_DATA" in message and "--data-root" in message
    assert "--no-download" in message
    assert list(tmp_path.iterdir()) == []  # nothing was attempted


def test_failed_download(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no route to host")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    message = one_line_error(DataNotFoundError, data.load_dataset, "cifar10", tmp_path)
    assert "download failed" in message and "no route to host" in message
    assert str(tmp_path) in message and "LINTORCH_DATA" in message


def test_download_through_torchvision(tmp_path, monkeypatch):
    arrays = {}

    def fake_fashion_mnist(root, train, download):
        assert download and Path(root) == tmp_path
        arrays.update(write_mnist_like(Path(root) / "FashionMNIST" / "raw", gz=False))

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", fake_fashion_mnist)
    assert_matches_idx(data.load_dataset("fashion-mnist", tmp_path), arrays)


# --- Debian's system folder, when no data folder is named -----------------------------------


@pytest.fixture
def system_root(tmp_path, monkeypatch) -> Path:
    """An empty working directory, no LINTORCH_DATA, and a stand-in for /usr/share/datasets."""
    (tmp_path / "cwd").mkdir()
    (tmp_path / "system").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setattr(data, "SYSTEM_ROOTS", (tmp_path / "system",))
    return tmp_path / "system"


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist"])
def test_system_folder_without_a_data_root(system_root, name):
    arrays = write_mnist_like(system_root / name, gz=True)  # Debian's layout: the .gz files only
    assert_matches_idx(data.load_dataset(name, download=False), arrays)
    assert data.find_dataset() == ("fashion-mnist" if name == "fashion-mnist" else None)
    assert not Path("data").exists()


def test_local_data_comes_before_the_system_folder(system_root):
    system = write_mnist_like(system_root / "fashion-mnist", gz=True, seed=1)
    assert_matches_idx(data.load_dataset("fashion-mnist", download=False), system)
    local = write_mnist_like(Path("data") / "FashionMNIST" / "raw", gz=False, seed=2)
    assert_matches_idx(data.load_dataset("fashion-mnist", download=False), local)


def test_a_named_data_folder_wins_over_the_system_folder(system_root, tmp_path, monkeypatch):
    write_mnist_like(system_root / "fashion-mnist", gz=True, seed=1)
    named = tmp_path / "named"
    message = one_line_error(DataNotFoundError, data.load_dataset, "fashion-mnist", named, False)
    assert str(system_root) not in message
    assert data.find_dataset(named) is None
    mine = write_mnist_like(named, gz=False, seed=2)
    assert_matches_idx(data.load_dataset("fashion-mnist", named, download=False), mine)
    monkeypatch.setenv("LINTORCH_DATA", str(named))
    assert_matches_idx(data.load_dataset("fashion-mnist", download=False), mine)
    monkeypatch.setenv("LINTORCH_DATA", str(tmp_path / "empty"))
    assert data.find_dataset() is None
    one_line_error(DataNotFoundError, data.load_dataset, "fashion-mnist", download=False)


def test_missing_names_the_system_folder(system_root):
    message = one_line_error(DataNotFoundError, data.load_dataset, "fashion-mnist", None, False)
    assert str(system_root / "fashion-mnist") in message
    assert str(Path.cwd() / "data") in message and "--no-download" in message
    assert data.find_dataset() is None
    assert list(Path.cwd().iterdir()) == []


def test_download_still_goes_into_data(system_root, monkeypatch):
    arrays = {}

    def fake_fashion_mnist(root, train, download):
        assert Path(root) == Path.cwd() / "data"
        arrays.update(write_mnist_like(Path(root) / "FashionMNIST" / "raw", gz=False))

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", fake_fashion_mnist)
    assert_matches_idx(data.load_dataset("fashion-mnist"), arrays)


def test_debian_fashion_mnist_from_any_folder(debian_fashion_mnist, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert data.find_dataset() == "fashion-mnist"
    raw = data.load_dataset("fashion-mnist", download=False)
    assert torch.equal(raw.test_labels, debian_fashion_mnist.test_labels)
    assert torch.equal(raw.train_images, debian_fashion_mnist.train_images)
    assert list(tmp_path.iterdir()) == []


def test_unknown_dataset_is_taken_for_a_folder_that_is_not_there(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(data.DataNotFoundError, match="cifar10, fashion-mnist, mnist"):
        data.load_dataset("imagenet")


# --- prepare ----------------------------------------------------------------------------------


def make_raw(n=60, n_test=7, shape=(3, 4, 5), seed=0) -> RawData:
    """Random images whose labels are their indices, so every split can be traced back."""
    g = torch.Generator().manual_seed(seed)
    return RawData(
        name="toy",
        classes=[f"c{i}" for i in range(n)],
        train_images=torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8),
        train_labels=torch.arange(n),
        test_images=torch.randint(0, 256, (n_test, *shape), generator=g, dtype=torch.uint8),
        test_labels=torch.arange(n_test),
    )


def unit(images: torch.Tensor) -> np.ndarray:
    return images.numpy().astype(np.float64) / 255


def test_split_is_disjoint_and_seeded():
    raw = make_raw()
    p = data.prepare(raw, val_size=10, preprocess="none", seed=3)
    assert len(p.val_y) == 10 and len(p.train_y) == 50
    assert sorted(torch.cat([p.train_y, p.val_y]).tolist()) == list(range(60))
    np.testing.assert_allclose(p.train_x.numpy(), unit(raw.train_images[p.train_y]), atol=1e-6)
    np.testing.assert_allclose(p.val_x.numpy(), unit(raw.train_images[p.val_y]), atol=1e-6)
    np.testing.assert_allclose(p.test_x.numpy(), unit(raw.test_images), atol=1e-6)
    assert torch.equal(data.prepare(raw, val_size=10, seed=3).val_y, p.val_y)
    assert not torch.equal(data.prepare(raw, val_size=10, seed=4).val_y, p.val_y)
    assert p.image_shape == (3, 4, 5) and p.classes == raw.classes
    assert p.mean.flatten().tolist() == [0, 0, 0] and p.std.flatten().tolist() == [1, 1, 1]


def test_center_uses_the_training_mean_image():
    raw = make_raw()
    p = data.prepare(raw, val_size=10, preprocess="center", seed=1)
    mean = unit(raw.train_images[p.train_y]).mean(axis=0, keepdims=True)
    assert not np.allclose(mean, unit(raw.train_images).mean(axis=0, keepdims=True), atol=1e-3)
    np.testing.assert_allclose(p.mean.numpy(), mean, atol=1e-6)
    np.testing.assert_allclose(p.std.numpy(), 1)
    np.testing.assert_allclose(
        p.train_x.numpy(), unit(raw.train_images[p.train_y]) - mean, atol=1e-6
    )
    np.testing.assert_allclose(p.val_x.numpy(), unit(raw.train_images[p.val_y]) - mean, atol=1e-6)
    np.testing.assert_allclose(p.test_x.numpy(), unit(raw.test_images) - mean, atol=1e-6)


def test_standardize_uses_training_channel_statistics():
    raw = make_raw()
    p = data.prepare(raw, val_size=10, preprocess="standardize", seed=1)
    train = unit(raw.train_images[p.train_y])
    mean = train.mean(axis=(0, 2, 3), keepdims=True)
    std = train.std(axis=(0, 2, 3), keepdims=True)
    assert p.mean.shape == p.std.shape == (1, 3, 1, 1)
    np.testing.assert_allclose(p.mean.numpy(), mean, atol=1e-6)
    np.testing.assert_allclose(p.std.numpy(), std, atol=1e-6)
    np.testing.assert_allclose(p.train_x.numpy(), (train - mean) / std, atol=1e-5)
    np.testing.assert_allclose(p.test_x.numpy(), (unit(raw.test_images) - mean) / std, atol=1e-5)
    np.testing.assert_allclose(p.train_x.mean(dim=(0, 2, 3)).numpy(), 0, atol=1e-5)


def test_standardize_leaves_a_constant_channel_at_zero():
    raw = make_raw()
    raw.train_images[:, 1] = 7
    p = data.prepare(raw, val_size=5)
    assert torch.isfinite(p.train_x).all() and p.std[0, 1].item() == 1
    assert p.train_x[:, 1].abs().max() < 1e-6


def test_pixel_uses_training_statistics_of_each_pixel():
    raw = make_raw()
    p = data.prepare(raw, val_size=10, preprocess="pixel", seed=1)
    train = unit(raw.train_images[p.train_y])
    mean, std = train.mean(axis=0, keepdims=True), train.std(axis=0, keepdims=True)
    assert p.mean.shape == p.std.shape == (1, 3, 4, 5)
    np.testing.assert_allclose(p.mean.numpy(), mean, atol=1e-6)
    np.testing.assert_allclose(p.std.numpy(), std, atol=1e-6)
    np.testing.assert_allclose(p.train_x.mean(dim=0).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(p.train_x.std(dim=0, correction=0).numpy(), 1, atol=1e-5)
    # validation and test images go through the training split's statistics, not their own
    val, test = unit(raw.train_images[p.val_y]), unit(raw.test_images)
    np.testing.assert_allclose(p.val_x.numpy(), (val - mean) / std, atol=1e-5)
    np.testing.assert_allclose(p.test_x.numpy(), (test - mean) / std, atol=1e-5)
    assert not np.allclose(p.test_x.mean(dim=0).numpy(), 0, atol=1e-2)


def test_pixel_leaves_a_constant_pixel_centered():
    raw = make_raw()
    raw.train_images[:, 2, 0, 4] = 0  # a border pixel that is always 0 in training
    p = data.prepare(raw, val_size=5, preprocess="pixel")
    assert torch.isfinite(p.train_x).all() and torch.isfinite(p.test_x).all()
    assert p.mean[0, 2, 0, 4].item() == 0 and p.std[0, 2, 0, 4].item() == 1
    assert p.train_x[:, 2, 0, 4].abs().max() == 0
    np.testing.assert_allclose(p.test_x[:, 2, 0, 4].numpy(), unit(raw.test_images[:, 2, 0, 4]),
                               atol=1e-6)


def test_limit_keeps_validation_and_shrinks_training():
    raw = make_raw()
    full = data.prepare(raw, val_size=10, seed=2)
    p = data.prepare(raw, val_size=10, seed=2, limit=15)
    assert torch.equal(p.val_y, full.val_y) and len(p.train_y) == 15
    assert set(p.train_y.tolist()) <= set(full.train_y.tolist())
    assert torch.equal(data.prepare(raw, val_size=10, seed=2, limit=15).train_y, p.train_y)
    train = unit(raw.train_images[p.train_y])  # statistics of what is trained on
    np.testing.assert_allclose(p.mean.flatten().numpy(), train.mean(axis=(0, 2, 3)), atol=1e-6)
    assert len(data.prepare(raw, val_size=10, limit=1000).train_y) == 50


def test_float64():
    raw = make_raw()
    p = data.prepare(raw, val_size=10, preprocess="standardize", dtype=torch.float64)
    assert {t.dtype for t in (p.train_x, p.val_x, p.test_x, p.mean, p.std)} == {torch.float64}
    assert p.train_y.dtype == torch.int64
    train = unit(raw.train_images[p.train_y])
    mean, std = train.mean(axis=(0, 2, 3), keepdims=True), train.std(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose(p.train_x.numpy(), (train - mean) / std, rtol=1e-12, atol=1e-12)


def test_prepare_rejects_bad_arguments():
    raw = make_raw(n=20)
    empty = data.prepare(raw, val_size=0)
    assert empty.val_x.shape == (0, 3, 4, 5) and empty.val_y.shape == (0,)
    assert len(empty.train_y) == 20
    assert "20" in one_line_error(DataError, data.prepare, raw, val_size=20)
    one_line_error(DataError, data.prepare, raw, val_size=-1)
    one_line_error(DataError, data.prepare, raw, limit=0)
    with pytest.raises(ValueError, match="standardize"):
        data.prepare(raw, preprocess="whiten")


# --- batches and augmentation -----------------------------------------------------------------


def test_batch_indices_cover_each_index_once():
    batches = data.batch_indices(10, 3, torch.Generator().manual_seed(0), "cpu")
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    again = data.batch_indices(10, 3, torch.Generator().manual_seed(0), "cpu")
    assert all(torch.equal(a, b) for a, b in zip(batches, again))
    assert len(data.batch_indices(8, 4, torch.Generator(), "cpu")) == 2
    with pytest.raises(ValueError):
        data.batch_indices(8, 0, torch.Generator(), "cpu")


def windows(image: torch.Tensor, pad: int) -> list[torch.Tensor]:
    """Every crop of the zero-padded image and of its mirror image, by hand."""
    c, h, w = image.shape
    padded = torch.zeros(c, h + 2 * pad, w + 2 * pad, dtype=image.dtype)
    padded[:, pad : pad + h, pad : pad + w] = image
    return [
        view[:, dy : dy + h, dx : dx + w]
        for view in (padded, padded.flip(-1))
        for dy in range(2 * pad + 1)
        for dx in range(2 * pad + 1)
    ]


def test_augment_without_padding_only_flips():
    x = torch.arange(64 * 2 * 3 * 4, dtype=torch.float32).reshape(64, 2, 3, 4)
    out = data.augment(x, torch.Generator().manual_seed(0), pad=0)
    flipped = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x)]
    assert all(f != k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 54


def test_augment_crops_windows_of_the_padded_image():
    pad = 2
    x = torch.arange(64 * 2 * 3 * 4, dtype=torch.float32).reshape(64, 2, 3, 4) + 1
    out = data.augment(x, torch.Generator().manual_seed(1), pad=pad)
    assert out.shape == x.shape and out.dtype == x.dtype
    seen = set()
    for o, xi in zip(out, x):
        matches = [i for i, window in enumerate(windows(xi, pad)) if torch.equal(o, window)]
        assert len(matches) == 1  # pixel values are distinct and nonzero, so it is unique
        seen.add(matches[0])
    assert len(seen) > 20  # of 2 * 25 possible flips and offsets


def test_augment_is_deterministic_given_the_generator():
    x = torch.randn(16, 3, 8, 8)
    a = data.augment(x, torch.Generator().manual_seed(5))
    b = data.augment(x, torch.Generator().manual_seed(5))
    c = data.augment(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


# --- on a GPU ---------------------------------------------------------------------------------


@pytest.mark.cuda  # conftest.py skips it without a GPU
def test_cuda_matches_cpu():
    raw = make_raw()
    cpu = data.prepare(raw, val_size=10, seed=1)
    gpu = data.prepare(raw, val_size=10, seed=1, device="cuda")
    assert gpu.train_x.is_cuda and gpu.mean.is_cuda and gpu.test_y.is_cuda
    torch.testing.assert_close(gpu.train_x.cpu(), cpu.train_x)
    torch.testing.assert_close(gpu.test_x.cpu(), cpu.test_x)
    assert torch.equal(gpu.val_y.cpu(), cpu.val_y)

    # a CPU generator gives the same draws whatever the data's device
    on_cpu = data.batch_indices(50, 8, torch.Generator().manual_seed(0), "cpu")
    on_gpu = data.batch_indices(50, 8, torch.Generator().manual_seed(0), "cuda")
    assert all(b.is_cuda and torch.equal(a, b.cpu()) for a, b in zip(on_cpu, on_gpu))
    x = cpu.train_x[:16]
    expected = data.augment(x, torch.Generator().manual_seed(2))
    assert torch.equal(data.augment(x.cuda(), torch.Generator().manual_seed(2)).cpu(), expected)

    g = torch.Generator(device="cuda").manual_seed(3)
    (batch,) = data.batch_indices(16, 16, g, "cuda")
    out = data.augment(x.cuda()[batch], g)
    assert out.is_cuda and out.shape == x.shape
