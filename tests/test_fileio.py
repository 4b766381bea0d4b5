"""Writing a file whole or not at all, and a file's identity (clipseek.fileio)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from clipseek.fileio import identity, write_whole


def test_a_file_is_replaced_whole_or_left_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "note"
    assert write_whole(target, b"first") and target.read_bytes() == b"first"
    assert write_whole(target, b"second") and target.read_bytes() == b"second"
    # A write that cannot land (a folder where the file should go, a missing folder)
    # says so, keeps what was there and leaves no temporary file behind.
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "keep").write_text("kept")
    assert not write_whole(blocked, b"data")
    assert (blocked / "keep").read_text() == "kept"
    assert not write_whole(tmp_path / "missing" / "note", b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked", "note"]


def test_identity_changes_with_any_write_even_with_size_and_mtime_kept(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"abc")
    before = identity(path)
    assert identity(path) == before
    st = path.stat()
    time.sleep(0.02)  # past the kernel's clock tick, as any later process is
    path.write_bytes(b"xyz")  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime
    assert identity(path) != before  # the ctime tells
    with pytest.raises(OSError):
        identity(tmp_path / "gone")
