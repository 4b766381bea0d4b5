from __future__ import annotations

import os
from pathlib import Path

from clipseek.indexing.scanner import ScanOptions, scan


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def names(root: Path, **opts) -> set[str]:
    return {os.path.relpath(f.path, root) for f in scan([str(root)], ScanOptions(**opts))}


def test_extensions_in_any_case_recursively(tmp_path: Path) -> None:
    images = {
        "a.jpg",
        "b.JPEG",
        "c.Png",
        "d.bmp",
        "e.webp",
        "f.GIF",
        "g.tif",
        "h.TIFF",
        "sub/i.jpg",
    }
    for name in images:
        touch(tmp_path / name)
    touch(tmp_path / "notes.txt")
    touch(tmp_path / "raw.cr2")
    assert names(tmp_path) == images


def test_hidden_and_junk_are_skipped_unless_asked(tmp_path: Path) -> None:
    touch(tmp_path / "keep.jpg")
    touch(tmp_path / ".hidden.jpg")
    touch(tmp_path / ".secret" / "x.jpg")
    touch(tmp_path / "._keep.jpg")  # macOS resource fork
    touch(tmp_path / ".git" / "y.jpg")
    touch(tmp_path / "node_modules" / "pkg" / "logo.png")
    touch(tmp_path / "@eaDir" / "keep.jpg" / "SYNOPHOTO_THUMB_M.jpg")
    assert names(tmp_path) == {"keep.jpg"}
    assert names(tmp_path, include_hidden=True) == {"keep.jpg", ".hidden.jpg", ".secret/x.jpg"}


def test_exclude_globs_match_names_and_paths(tmp_path: Path) -> None:
    touch(tmp_path / "a.jpg")
    touch(tmp_path / "screenshots" / "b.png")
    touch(tmp_path / "c_thumb.jpg")
    assert names(tmp_path, excludes=("screenshots", "*_thumb.jpg")) == {"a.jpg"}
    assert names(tmp_path, excludes=(str(tmp_path / "screenshots") + "*",)) == {
        "a.jpg",
        "c_thumb.jpg",
    }


def test_symlinks_followed_without_looping(tmp_path: Path) -> None:
    root = tmp_path / "root"
    touch(root / "a" / "1.jpg")
    outside = tmp_path / "outside"
    touch(outside / "2.jpg")
    (root / "a" / "loop").symlink_to(root, target_is_directory=True)
    (root / "link-out").symlink_to(outside, target_is_directory=True)
    found = names(root)
    assert found == {"a/1.jpg", "link-out/2.jpg"}


def test_broken_symlink_and_missing_root_are_reported(tmp_path: Path) -> None:
    touch(tmp_path / "ok.jpg")
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    errors: list[tuple[str, str]] = []
    found = list(
        scan(
            [str(tmp_path), str(tmp_path / "missing")], on_error=lambda p, r: errors.append((p, r))
        )
    )
    assert [os.path.basename(f.path) for f in found] == ["ok.jpg"]
    assert (str(tmp_path / "dangling.jpg"), "broken symbolic link") in errors
    assert (str(tmp_path / "missing"), "no such file or folder") in errors


def test_file_info_has_size_and_mtime(tmp_path: Path) -> None:
    path = touch(tmp_path / "a.jpg", b"12345")
    os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_123_456_789))
    (info,) = scan([str(tmp_path)])
    assert (info.size, info.mtime_ns) == (5, 1_600_000_000_123_456_789)
