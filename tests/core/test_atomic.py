"""Outputs appear whole or not at all, with normal permissions."""
from __future__ import annotations

import os
import stat

import pytest

from core.atomic import atomic_output


def test_success_replaces_with_normal_permissions(tmp_path):
    target = tmp_path / "out.vmd"
    target.write_bytes(b"old")
    old_umask = os.umask(0o022)
    try:
        with atomic_output(target) as tmp:
            assert tmp.parent == tmp_path and tmp != target
            tmp.write_bytes(b"new")
            assert target.read_bytes() == b"old"  # nothing visible until the writer is done
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["out.vmd"]


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.npz"
    target.write_bytes(b"keep me")
    with pytest.raises(RuntimeError):
        with atomic_output(target, suffix=".tmp.npz") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("writer failed")
    assert target.read_bytes() == b"keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]
