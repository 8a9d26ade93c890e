import argparse

import numpy as np
import torch
from experiment_runner import load

common = load("common")  # experiments/common.py, as the experiments import it


def test_format_table_aligns_left_columns_left_and_the_rest_right():
    text = common.format_table("Title", ["name", "n", "acc"],
                               [["linear", 3, "0.91"], ["mlp", 12, "0.9"]], left=1)
    assert text == ("Title\n"
                    "----------------\n"
                    "name     n   acc\n"
                    "----------------\n"
                    "linear   3  0.91\n"
                    "mlp     12   0.9\n"
                    "----------------")


def test_run_dir_makes_a_new_folder_each_call(tmp_path):
    a = common.run_dir(tmp_path, "exp", "fashion-mnist")
    b = common.run_dir(tmp_path, "exp", "fashion-mnist")
    assert a != b and a.is_dir() and b.is_dir()
    assert a.parent == b.parent == tmp_path / "exp"
    assert a.name.startswith("fashion-mnist-")


def test_torch_threads_sets_and_restores_the_count():
    before = torch.get_num_threads()
    with common.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with common.torch_threads(0):  # 0 leaves torch's default
        assert torch.get_num_threads() == before
    assert torch.get_num_threads() == before


def test_quick_test_images_span_a_test_set_sorted_by_class(tmp_path):
    # A folder's test images come class by class: the first 500 would be of one class.
    y_test = np.repeat(np.arange(4), 500)
    np.savez(tmp_path / "sorted.npz", x_train=np.zeros((300, 5), np.float32),
             y_train=np.arange(300) % 4, x_test=np.zeros((2000, 5), np.float32), y_test=y_test)
    args = argparse.Namespace(dataset=str(tmp_path / "sorted.npz"), data_root=None,
                              no_download=True, quick=True, seed=0, device="cpu")
    d = common.load_prepared(args, limit=None)
    assert len(d.test_y) == 500 and d.test_y.bincount().tolist() == [125] * 4
