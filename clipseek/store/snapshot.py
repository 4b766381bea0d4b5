"""How a reader sees a writer's changes without ever writing the index itself.

Chroma cannot open a folder read-only: opening a ``PersistentClient`` inserts a row into
``chroma.sqlite3`` (its ``acquire_write`` table), and a collection whose vector log is not
yet folded into the HNSW files is folded in, and the files rewritten, by whichever process
loads it first, reader or not. A reader that opened the index in place would therefore
write it (and fail on a read-only copy), and it would keep the vectors it loaded forever,
so that another process's run leaves it stale: answers miss new images and name deleted
ones ("Error finding id").

So a reader (a query, the app, ``clipseek serve``) opens a private *snapshot*: a copy of
``chroma.sqlite3`` in a temporary folder, with each vector folder either linked (when its
log is fully folded in, so nothing will be written there) or copied (when it is not).
The snapshot is taken under the shared data lock, so it is always a committed state.

A writer bumps the *generation* file (:data:`GENERATION_NAME`) after each committed
write; a reader compares a :func:`fingerprint` of the folder (that file, plus the size,
time and inode of Chroma's files) before it reads, and takes a new snapshot when it
changed. Snapshots of a process that died are removed by the next reader.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

from clipseek.fileio import write_whole
from clipseek.store.chroma_format import (
    DATABASE,
    DATABASE_FILES,
    SEGMENT_NAME,
    connect_readonly,
    release_known,
    settled_vector_segments,
)

#: The generation marker a writer replaces (atomically) after each committed write.
GENERATION_NAME = "clipseek-generation"
SNAPSHOT_PREFIX = "clipseek-read-"
_counter = itertools.count()
_counter_lock = threading.Lock()


def bump_generation(folder: str | os.PathLike[str]) -> None:
    """Tell readers that a write was committed: replace the marker with a new token.

    Best effort: on a full disk the marker cannot be written, but readers also compare
    the size and time of Chroma's own files, which every committed write changes.
    """
    with _counter_lock:
        n = next(_counter)
    token = f"{time.time_ns()} {os.getpid()} {n}\n"
    write_whole(Path(folder) / GENERATION_NAME, token.encode("ascii"))


def fingerprint(folder: str | os.PathLike[str]) -> tuple:
    """What changes whenever a writer commits: a handful of ``stat`` calls and one tiny read."""
    folder = Path(folder)
    parts: list[object] = []
    try:
        parts.append((folder / GENERATION_NAME).read_bytes())
    except OSError:
        parts.append(None)
    for name in DATABASE_FILES:
        parts.append(_stat(folder / name))
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        entries = []
    for entry in entries:
        if entry.is_dir(follow_symlinks=False) and SEGMENT_NAME.match(entry.name):
            try:
                files = sorted(os.scandir(entry.path), key=lambda e: e.name)
            except OSError:
                continue
            for item in files:
                parts.append((entry.name, item.name, _stat(Path(item.path))))
    return tuple(parts)


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


# --------------------------------------------------------------------------- snapshots


#: The largest share of memory (``/dev/shm``'s size) one snapshot may take there; a larger
#: one goes to the temporary folder on disk.
MEMORY_SHARE = 8


def snapshot_bases() -> list[Path]:
    """Every folder :func:`snapshot_base` may choose, for sweeping."""
    chosen = os.environ.get("CLIPSEEK_SNAPSHOT_DIR")
    if chosen:
        return [Path(chosen)]
    return [Path("/dev/shm"), Path(tempfile.gettempdir())]


def snapshot_base(needed: int) -> Path:
    """Where snapshots go: ``CLIPSEEK_SNAPSHOT_DIR``, else memory (``/dev/shm``) when it has
    room and the snapshot takes at most 1/:data:`MEMORY_SHARE` of it, else the temporary
    folder. Memory first also keeps queries working while the disk that holds the index
    (and often ``/tmp``) is full."""
    chosen = os.environ.get("CLIPSEEK_SNAPSHOT_DIR")
    if chosen:
        return Path(chosen)
    for candidate in ("/dev/shm", tempfile.gettempdir()):
        path = Path(candidate)
        try:
            usage = shutil.disk_usage(path)
            roomy = usage.free > 2 * needed + (64 << 20)
            if candidate == "/dev/shm":
                roomy = roomy and needed * MEMORY_SHARE <= usage.total
            if roomy and path.is_dir() and os.access(path, os.W_OK):
                return path
        except OSError:
            continue
    return Path(tempfile.gettempdir())


def take_snapshot(folder: str | os.PathLike[str]) -> Path:
    """Copy the committed state of ``folder`` into a new private folder; the caller holds the
    shared data lock. Raises OSError (e.g. ENOSPC) if it cannot be made."""
    folder = Path(folder)
    needed = sum((_stat(folder / n) or (0, 0, 0))[1] for n in DATABASE_FILES)
    base = snapshot_base(needed)
    base.mkdir(parents=True, exist_ok=True)
    sweep(base)
    target = Path(tempfile.mkdtemp(prefix=f"{SNAPSHOT_PREFIX}{os.getpid()}-", dir=base))
    try:
        for name in DATABASE_FILES:
            source = folder / name
            if source.exists():
                shutil.copyfile(source, target / name)
        settled = _settled_segments(target / DATABASE)
        for entry in os.scandir(folder):
            if not (entry.is_dir() and SEGMENT_NAME.match(entry.name)):
                continue
            if entry.name in settled:
                try:
                    os.symlink(os.path.abspath(entry.path), target / entry.name)
                    continue
                except OSError:  # no symlinks here (Windows without the privilege): copy
                    pass
            shutil.copytree(entry.path, target / entry.name)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target


def _settled_segments(database: Path) -> set[str]:
    """Vector segments whose log is fully folded into their files: a reader loads them as
    they are and never rewrites them, so a link is enough. Anything unexpected, or a
    chromadb release this reading was not tested with: none (everything is copied)."""
    if not release_known():
        return set()
    try:
        con = connect_readonly(database, timeout=1.0)
    except sqlite3.Error:
        return set()
    try:
        return settled_vector_segments(con)
    except (sqlite3.Error, ValueError, TypeError):
        return set()
    finally:
        con.close()


def remove_snapshot(path: str | os.PathLike[str]) -> None:
    """Remove a snapshot; links are removed, never followed."""
    shutil.rmtree(path, ignore_errors=True)


def sweep(base: Path) -> None:
    """Remove snapshots left by processes that are gone (killed, crashed)."""
    try:
        entries = list(os.scandir(base))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(SNAPSHOT_PREFIX):
            continue
        pid_text = entry.name[len(SNAPSHOT_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _alive(int(pid_text)):
            continue
        remove_snapshot(entry.path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
