"""The file helpers: run folders of their own, files written whole or not at all, strict JSON."""

from __future__ import annotations

import json
import math
import threading

import pytest

from lintorch import files


def test_unique_dir_numbers_a_taken_name(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run-2").mkdir()
    assert files.unique_dir(tmp_path, "run") == tmp_path / "run-3"
    assert (tmp_path / "run-3").is_dir()  # created, not only named


def test_runs_started_at_the_same_moment_get_folders_of_their_own(tmp_path):
    start = threading.Barrier(8)
    made = []

    def one_run():
        start.wait()
        made.append(files.unique_dir(tmp_path / "runs", "same"))

    threads = [threading.Thread(target=one_run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 8 and all(p.is_dir() for p in made)


def test_json_is_written_atomically(tmp_path):
    path = tmp_path / "metrics.json"
    files.write_json(path, {"a": 1})
    with pytest.raises(TypeError):  # fails half-way through: not JSON-serializable
        files.write_json(path, {"b": 2, "c": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left


def test_json_is_strict_nan_and_infinity_become_null(tmp_path):
    path = tmp_path / "metrics.json"
    files.write_json(path, {"a": math.nan, "b": [1.5, -math.inf, {"c": math.inf}], "d": (2, "x")})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in JSON")) == {
        "a": None, "b": [1.5, None, {"c": None}], "d": [2, "x"]}


def test_a_temporary_file_of_a_name_near_the_limit_still_fits(tmp_path):
    # 255 bytes is the usual limit of one name; the temporary one must not pass it
    path = tmp_path / ("n" * 250)
    files.write_atomic(path, lambda tmp: tmp.write_text("whole"))
    assert path.read_text() == "whole"
