"""Atomic writes: all or nothing, usual permissions, no temp files left."""

from __future__ import annotations

import stat

import pytest

from ckd.atomic import FILE_MODE, atomic_path, write_json_atomic, write_text_atomic


def test_written_files_get_umask_permissions_not_0600(tmp_path):
    write_text_atomic(tmp_path / "sub" / "a.txt", "hello")
    assert (tmp_path / "sub" / "a.txt").read_text() == "hello"
    assert stat.S_IMODE((tmp_path / "sub" / "a.txt").stat().st_mode) == FILE_MODE
    write_json_atomic(tmp_path / "b.json", {"k": 1})
    assert '"k": 1' in (tmp_path / "b.json").read_text()


def test_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "c.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.txt"]
