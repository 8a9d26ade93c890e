import os

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def one_thread():
    # Modules of tiny tensors: extra intra-op threads buy nothing, and on a busy machine their
    # spin-waiting made such modules ~10x slower. Restored afterwards for the other modules.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def cache_outside_home(tmp_path_factory):
    # Decoded image folders are cached in ~/.cache/lintorch by default; tests keep theirs (and
    # their subprocesses') in a folder of the session.
    os.environ["LINTORCH_CACHE"] = str(tmp_path_factory.mktemp("lintorch-cache"))
    yield
