"""Files a test makes awkward or watches: denied permissions, snapshots of a tree."""

from __future__ import annotations

import builtins
import errno
import hashlib
import os
from pathlib import Path

import pytest

# --------------------------------------------------------------------------- permissions


class Denier:
    """Makes files and folders unreadable: ``chmod`` when that works, else (as root, who
    ignores permission bits) by making ``open`` and ``os.scandir`` fail for those paths
    exactly as the kernel would."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.as_root = os.geteuid() == 0
        self.denied: set[str] = set()
        self._chmodded: list[tuple[Path, int]] = []
        if self.as_root:
            real_open, real_scandir = builtins.open, os.scandir

            def guarded_open(file, *args, **kwargs):
                if isinstance(file, str | bytes | os.PathLike) and self._is_denied(file):
                    raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(file))
                return real_open(file, *args, **kwargs)

            def guarded_scandir(path="."):
                if self._is_denied(path):
                    raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))
                return real_scandir(path)

            monkeypatch.setattr(builtins, "open", guarded_open)
            monkeypatch.setattr(os, "scandir", guarded_scandir)

    def _is_denied(self, path: object) -> bool:
        try:
            return os.path.abspath(os.fsdecode(path)) in self.denied  # type: ignore[arg-type]
        except TypeError:
            return False

    def deny(self, path: Path) -> None:
        if self.as_root:
            self.denied.add(os.path.abspath(path))
        else:
            self._chmodded.append((path, path.stat().st_mode))
            path.chmod(0)

    def allow(self, path: Path) -> None:
        self.denied.discard(os.path.abspath(path))
        for p, mode in list(self._chmodded):
            if p == path:
                p.chmod(mode)
                self._chmodded.remove((p, mode))

    def restore(self) -> None:
        for path, mode in self._chmodded:
            path.chmod(mode)
        self._chmodded.clear()
        self.denied.clear()


# --------------------------------------------------------------------------- tree snapshots


def tree_snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every entry under ``root`` with its content hash, mtime and mode: proof of no writes."""
    out: dict[str, tuple[str, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            digest = ""
            if os.path.isfile(path) and not os.path.islink(path):
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            out[os.path.relpath(path, root)] = (digest, st.st_mtime_ns, st.st_mode)
    return out


def file_hashes(root: Path, skip: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(relative path, SHA-1) of every file below ``root`` but those named in ``skip``: to
    show that a reader wrote nothing."""
    import hashlib

    return sorted(
        (str(p.relative_to(root)), hashlib.sha1(p.read_bytes()).hexdigest())
        for p in root.rglob("*")
        if p.is_file() and p.name not in skip
    )
