"""Two small file operations that the store, the quick check and the runtime share."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path


def write_whole(path: Path, data: bytes) -> bool:
    """Write ``path`` whole or not at all: readers see the old file or the new one, never
    half of it. Best effort, for files that only save work (markers, notes, caches): a
    failure (a full disk, a read-only folder) leaves no temporary file and returns False."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        temp.write_bytes(data)
        os.replace(temp, path)
    except OSError:
        with contextlib.suppress(OSError):
            temp.unlink()
        return False
    return True


def identity(path: str | os.PathLike[str]) -> tuple[int, int, int, int]:
    """Size, mtime, ctime and inode of ``path`` (raises OSError). Any write to the file
    changes its ctime, which no program can set back, so an unchanged identity means
    unchanged contents (short of the disk itself going bad)."""
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
