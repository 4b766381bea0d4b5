"""Telling a damaged index from a healthy one, and store failures from each other.

A structural check of Chroma's files runs before Chroma opens them (a garbled vector
file can crash the process), and every failed call into Chroma is sorted into what the
user can do about it: free disk space, fix permissions, or rebuild.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from clipseek.errors import DamagedIndexError, StoreError
from clipseek.fileio import identity, write_whole
from clipseek.store.chroma_format import (
    DATABASE,
    HNSW_FILES,
    HNSW_HEADER_SIZE,
    HNSW_VERSION,
    SEGMENT_NAME,
    graph_damage,
    header_fields,
    parse_header,
    release_known,
)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


# --------------------------------------------------------------------------- failures


def _chroma_errors() -> tuple[type[BaseException], ...]:
    """What a call into Chroma may raise: its Rust core panics with a BaseException."""
    runtime = sys.modules.get("pyo3_runtime")
    panic = getattr(runtime, "PanicException", None)
    return (Exception, panic) if isinstance(panic, type) else (Exception,)


_DISK_FULL = re.compile(r"no space left|disk is full|database or disk is full|quota exceeded", re.I)
_READ_ONLY = re.compile(r"readonly database|read-only file system|permission denied", re.I)
_DAMAGED = re.compile(
    r"malformed|not a database|disk image|hnsw|deserializ|corrupt|no such table|"
    r"unexpected end of file|failed to fill whole buffer",
    re.I,
)


def _kind(exc: BaseException) -> str:
    """Sort a store failure into what the user can do about it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    texts = []
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return "full"
        if isinstance(current, OSError) and current.errno in (errno.EROFS, errno.EACCES):
            return "readonly"
        texts.append(str(current))
        current = current.__cause__ or current.__context__
    text = " ".join(texts)
    if _DISK_FULL.search(text):
        return "full"
    if _READ_ONLY.search(text):
        return "readonly"
    if _DAMAGED.search(text):
        return "damaged"
    return "other"


#: Below this much free space a failed write is put down to a full disk.
_NEARLY_FULL = 16 << 20


def _free_bytes(location: str) -> int | None:
    """Free space on the disk holding ``location`` (None for a server or if unknown)."""
    import shutil

    if location.startswith(("http://", "https://")):
        return None
    path = Path(location)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _human(size: int | None) -> str:
    value = float(size or 0)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


#: Damage to the database itself: its records are lost, so only the images can rebuild it.
_DATABASE_DAMAGE = re.compile(
    r"chroma\.sqlite3|malformed|not a database|disk image|no such table|file is not a database",
    re.I,
)


def damaged_message(location: str | os.PathLike[str], detail: str) -> str:
    """What is damaged and the least the user must do: `clipseek repair` rebuilds the vector
    files from the stored vectors (no model), unless the database itself is damaged."""
    if _DATABASE_DAMAGE.search(detail):
        return (
            f"The index at {location} is damaged ({detail}). Rebuild it from your images "
            "with `clipseek index --rebuild FOLDER...`; your images are never modified."
        )
    return (
        f"The index at {location} is damaged ({detail}). Run `clipseek repair`: it rebuilds "
        "the vector files from the stored vectors without the model (pictures whose vector "
        "is lost are embedded again by the next `clipseek index`); your images are never "
        "modified."
    )


def store_error(location: str, doing: str, exc: BaseException) -> StoreError:
    """A message for a failed store call that names the index and says what to do."""
    detail = _short(exc)
    kind = _kind(exc)
    free = _free_bytes(location)
    if kind in ("other", "damaged") and free is not None and free < _NEARLY_FULL:
        kind = "full"  # Chroma's own words for it vary ("Error in compaction", ...)
    if kind == "full":
        room = f"{_human(free)} free" if free is not None else detail
        return StoreError(
            f"The disk holding the index at {location} is full ({room}; {detail}). Free some "
            "space and run `clipseek index` again; what was indexed so far is kept."
        )
    if kind == "readonly":
        return StoreError(
            f"The index at {location} cannot be written ({detail}). Check its permissions, "
            "or choose another place with --db PATH or CLIPSEEK_DB."
        )
    if kind == "damaged":
        return DamagedIndexError(damaged_message(location, detail))
    return StoreError(
        f"{doing} the index at {location} failed ({detail}). If this keeps happening, "
        "rebuild it with `clipseek index --rebuild FOLDER...`."
    )


# --------------------------------------------------------------------------- damage


def find_damage(folder: Path, *, notes: str = "ignore") -> str | None:
    """A quick structural check of a Chroma folder: stat calls and two small reads.

    Chroma keeps metadata in ``chroma.sqlite3`` and each collection's vectors in a
    folder of hnswlib files it rewrites in place. A missing or truncated file there
    makes Chroma return wrong results or crash the process, so it is caught here
    first. Checks only what is certain for the file versions it knows.

    ``notes``: "read" skips the graphs whose files are still the ones a writer noted in
    :data:`GRAPH_CHECKED` after their links passed (see :class:`_GraphChecks`); "keep"
    also notes the graphs that pass, for a caller holding the writer lock; "ignore"
    reads every graph.
    """
    if not folder.is_dir():
        return None
    segments = [d for d in _subfolders(folder) if SEGMENT_NAME.match(d.name)]
    persisted = [d for d in segments if any((d / f).exists() for f in HNSW_FILES)]
    database = folder / DATABASE
    try:
        size = database.stat().st_size
    except FileNotFoundError:
        return "chroma.sqlite3 is missing" if persisted else None
    except OSError as exc:
        return f"chroma.sqlite3 cannot be read: {exc.strerror or exc}"
    if size == 0:
        return "chroma.sqlite3 is empty" if persisted else None
    try:
        with database.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        return f"chroma.sqlite3 cannot be read: {exc.strerror or exc}"
    if head != b"SQLite format 3\x00":
        return "chroma.sqlite3 is not a SQLite database"
    checked = _GraphChecks(folder, keeping=notes == "keep") if notes in ("read", "keep") else None
    for seg in persisted:
        problem = _segment_damage(seg, checked)
        if problem:
            return f"{seg.name}/{problem}"
    if checked is not None and notes == "keep":
        checked.save({seg.name for seg in persisted})
    return None


def _subfolders(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir()]
    except OSError:
        return []


#: The file in an index folder where writers note the graphs whose links they checked.
GRAPH_CHECKED = "clipseek-graph-checked.json"
#: The files of a graph a note vouches for: what hnswlib follows, and the label map.
_GRAPH_FILES = ("header.bin", "data_level0.bin", "link_lists.bin", "index_metadata.pickle")
_NOTE_VERSION = 2


def _digests(seg: Path) -> list[int] | None:
    """A CRC-32 of each of a graph's files: what a note vouches for, read in full."""
    import zlib

    out = []
    try:
        for name in _GRAPH_FILES:
            crc = 0
            with (seg / name).open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    crc = zlib.crc32(chunk, crc)
            out.append(crc)
    except OSError:
        return None
    return out


class _GraphChecks:
    """Which segments' links were checked, and the identity and contents of their files
    when they were.

    Reading every link costs numpy's import and a pass over the vector file, on every
    re-index that finds nothing to do. A note kept by the writer (under its lock) spares
    the import and the checks while the files are the very ones checked: the same size,
    mtime, ctime and inode, and the same bytes. Only what it hashed is vouched for: the
    disk's own damage (bit rot) changes no identity, only the bytes. The header's fields
    and the files' sizes are checked whatever a note says.
    """

    def __init__(self, folder: Path, keeping: bool = False) -> None:
        self.path = folder / GRAPH_CHECKED
        self.noted: dict[str, dict[str, Any]] = {}
        self.changed = False
        #: Whether passing graphs are noted (a caller holding the writer lock).
        self.keeping = keeping
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self.path.read_text())
            if (
                isinstance(data, dict)
                and data.get("version") == _NOTE_VERSION
                and isinstance(data.get("segments"), dict)
            ):
                self.noted = {k: v for k, v in data["segments"].items() if isinstance(v, dict)}

    @staticmethod
    def identity(seg: Path) -> list[list[int]] | None:
        try:  # lists, as the note's JSON gives them back
            return [list(identity(seg / name)) for name in _GRAPH_FILES]
        except OSError:
            return None

    def known(self, seg: Path, identity: list[list[int]] | None) -> bool:
        noted = self.noted.get(seg.name)
        if identity is None or noted is None or noted.get("identity") != identity:
            return False
        return noted.get("crc32") == _digests(seg)

    def passed(self, seg: Path, identity: list[list[int]] | None, digests: list[int]) -> None:
        entry = {"identity": identity, "crc32": digests}
        if identity is not None and self.noted.get(seg.name) != entry:
            self.noted[seg.name] = entry
            self.changed = True

    def save(self, present: set[str]) -> None:
        """Write the note whole or not at all, for the segments ``present`` only (a rebuilt
        index has new ones); a failure only costs the next run a check."""
        gone = set(self.noted) - present
        for name in gone:
            del self.noted[name]
        if self.changed or gone:
            note = {"version": _NOTE_VERSION, "segments": self.noted}
            write_whole(self.path, json.dumps(note).encode())


def _segment_damage(seg: Path, checked: _GraphChecks | None = None) -> str | None:
    sizes: dict[str, int] = {}
    for name in (*HNSW_FILES, "index_metadata.pickle"):
        with contextlib.suppress(OSError):
            sizes[name] = (seg / name).stat().st_size
    for name in HNSW_FILES:
        if name not in sizes:
            return f"{name} is missing"
    try:
        with (seg / "header.bin").open("rb") as fh:
            header = fh.read(HNSW_HEADER_SIZE + 1)
    except OSError as exc:
        return f"header.bin cannot be read: {exc.strerror or exc}"
    fields = header_fields(header)
    if fields is None:
        return "header.bin is truncated"
    version, max_elements, count, per_element = fields
    if version != HNSW_VERSION:
        # On a chromadb release this module was tested with, a header it does not know is
        # damage (every query would fail); on another, a layout to leave to Chroma.
        return f"header.bin has an unknown version ({version})" if release_known() else None
    if len(header) != HNSW_HEADER_SIZE:
        return "header.bin has the wrong size"
    if not 0 < per_element < 1 << 24 or count > max_elements:
        return "header.bin is garbled"
    head = parse_header(header)  # the graph's bounds, cheap, whatever a note says
    if isinstance(head, str):
        return head
    if sizes["data_level0.bin"] < count * per_element:
        return "data_level0.bin is truncated"
    if sizes["length.bin"] < 4 * count:
        return "length.bin is truncated"
    if count and not sizes.get("index_metadata.pickle"):
        return "index_metadata.pickle is missing"
    if not count:
        return None
    # Taken before the check: a file changed after it no longer matches the note.
    identity = _GraphChecks.identity(seg) if checked is not None else None
    if checked is not None and checked.known(seg, identity):
        return None
    digests = _digests(seg) if checked is not None and checked.keeping else None
    problem = graph_damage(seg, header)
    if problem is None and checked is not None and digests is not None:
        checked.passed(seg, identity, digests)
    return problem
