"""Atomic writes: whole files or none, readable like any other file the user makes."""

import os
import stat

import pytest

from deeptest_iot.fileio import atomic_write, atomic_write_json


def test_atomic_write_replaces_whole_file_with_normal_permissions(tmp_path):
    path = tmp_path / "sub" / "a.json"
    atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"a": 2}, indent=None)
    assert path.read_text() == '{"a": 2}\n'
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]  # no temp file left behind


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    path = tmp_path / "b.txt"
    path.write_text("old")

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write(path, boom)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["b.txt"]
