"""Recognising a file: the hash of its ends, and whether its stat still matches its record."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clipseek.indexing.scanner import FileInfo
    from clipseek.store import StoredEntry

#: Bytes hashed at each end of a file to recognise it under another name.
HASH_SPAN = 1 << 20


def content_hash(path: str, size: int) -> str:
    """A fingerprint of a file's bytes: its size and the SHA-256 of its first and last MiB.

    Reading 2 MiB costs a few milliseconds, against tens for decoding a photo; a match
    needs equal sizes *and* equal ends, which different photos do not share.
    """
    digest = hashlib.sha256(b"%d:" % size)
    with open(path, "rb") as fh:
        digest.update(fh.read(HASH_SPAN))
        if size > HASH_SPAN:
            fh.seek(max(HASH_SPAN, size - HASH_SPAN))
            digest.update(fh.read(HASH_SPAN))
    return digest.hexdigest()


def stat_extra(info: FileInfo) -> dict[str, int]:
    """The identity fields stored with a record (absent when the platform has none)."""
    return {"ctime_ns": info.ctime_ns, "inode": info.inode} if info.ctime_ns else {}


def identity_changed(entry: StoredEntry, info: FileInfo) -> bool:
    """Whether the file was replaced or rewritten although size and mtime match."""
    ctime = entry.extra.get("ctime_ns")
    inode = entry.extra.get("inode")
    if ctime is None or not info.ctime_ns:
        return False
    return int(ctime) != info.ctime_ns or int(inode or 0) != info.inode


def identity_unknown(entry: StoredEntry, info: FileInfo) -> bool:
    return bool(info.ctime_ns) and entry.extra.get("ctime_ns") is None


def same_stat(entry: StoredEntry, info: FileInfo) -> bool:
    return (entry.size, entry.mtime_ns) == (info.size, info.mtime_ns)
