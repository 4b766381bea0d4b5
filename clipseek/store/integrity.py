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
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipseek.errors import DamagedIndexError, StoreError
from clipseek.fileio import identity, write_whole


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


def damaged_message(location: str | os.PathLike[str], detail: str) -> str:
    return (
        f"The index at {location} is damaged ({detail}). Rebuild it from your images with "
        "`clipseek index --rebuild FOLDER...`; your images are never modified."
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


_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_HNSW_FILES = ("header.bin", "data_level0.bin", "length.bin", "link_lists.bin")
_HNSW_HEADER = struct.Struct("<I6Q")  # version, offsetLevel0, max, count, size/element, ...
_HNSW_HEADER_SIZE = 100


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
    segments = [d for d in _subfolders(folder) if _UUID.match(d.name)]
    persisted = [d for d in segments if any((d / f).exists() for f in _HNSW_FILES)]
    database = folder / "chroma.sqlite3"
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
    checked = _GraphChecks(folder) if notes in ("read", "keep") else None
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
#: The files of a graph whose identity a note records: its links and its header.
_GRAPH_FILES = ("header.bin", "data_level0.bin", "link_lists.bin")


class _GraphChecks:
    """Which segments' links were checked, and the identity of their files when they were.

    Reading every link costs numpy's import and a pass over the vector file: a large part of
    a re-index that finds nothing to do, on every run. A note kept by the writer (under its
    lock) spares that while the files are the very ones checked: the same size, mtime,
    ctime and inode. Any write to them (Chroma's, a repair's, a stray one) changes the
    ctime, which no program can set back, so a changed file is always read again.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / GRAPH_CHECKED
        self.noted: dict[str, list[list[int]]] = {}
        self.changed = False
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self.path.read_text())
            if isinstance(data, dict) and isinstance(data.get("segments"), dict):
                self.noted = data["segments"]

    @staticmethod
    def identity(seg: Path) -> list[list[int]] | None:
        try:  # lists, as the note's JSON gives them back
            return [list(identity(seg / name)) for name in _GRAPH_FILES]
        except OSError:
            return None

    def known(self, seg: Path, identity: list[list[int]] | None) -> bool:
        return identity is not None and self.noted.get(seg.name) == identity

    def passed(self, seg: Path, identity: list[list[int]] | None) -> None:
        if identity is not None and self.noted.get(seg.name) != identity:
            self.noted[seg.name] = identity
            self.changed = True

    def save(self, present: set[str]) -> None:
        """Write the note whole or not at all, for the segments ``present`` only (a rebuilt
        index has new ones); a failure only costs the next run a check."""
        gone = set(self.noted) - present
        for name in gone:
            del self.noted[name]
        if self.changed or gone:
            write_whole(self.path, json.dumps({"version": 1, "segments": self.noted}).encode())


def _segment_damage(seg: Path, checked: _GraphChecks | None = None) -> str | None:
    sizes: dict[str, int] = {}
    for name in (*_HNSW_FILES, "index_metadata.pickle"):
        with contextlib.suppress(OSError):
            sizes[name] = (seg / name).stat().st_size
    for name in _HNSW_FILES:
        if name not in sizes:
            return f"{name} is missing"
    try:
        with (seg / "header.bin").open("rb") as fh:
            header = fh.read(_HNSW_HEADER_SIZE + 1)
    except OSError as exc:
        return f"header.bin cannot be read: {exc.strerror or exc}"
    if len(header) < _HNSW_HEADER.size:
        return "header.bin is truncated"
    version, _offset, max_elements, count, per_element, *_ = _HNSW_HEADER.unpack_from(header)
    if version != 1:
        return None  # a layout this check does not know; leave it to Chroma
    if len(header) != _HNSW_HEADER_SIZE:
        return "header.bin has the wrong size"
    if not 0 < per_element < 1 << 24 or count > max_elements:
        return "header.bin is garbled"
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
    problem = graph_damage(seg, header)
    if problem is None and checked is not None:
        checked.passed(seg, identity)
    return problem


#: The whole hnswlib header as Chroma's fork writes it (version 1, 100 bytes): version,
#: offsetLevel0, max_elements, cur_element_count, size_data_per_element, label_offset,
#: offsetData, maxlevel, enterpoint_node, maxM, maxM0, M, mult, ef_construction.
HNSW_HEADER_FULL = struct.Struct("<I6QiIQQQdQ")


@dataclass(frozen=True)
class HnswHeader:
    count: int
    per_element: int
    label_offset: int
    data_offset: int
    max_level: int
    entry_point: int
    max_m: int
    max_m0: int

    @property
    def dim(self) -> int:
        return (self.label_offset - self.data_offset) // 4


def parse_header(header: bytes) -> HnswHeader | str:
    """The header's fields, or why they cannot describe a real index."""
    if len(header) < HNSW_HEADER_FULL.size:
        return "header.bin is truncated"
    (_v, offset0, _max, count, per, label_off, data_off, max_level, entry, max_m, max_m0, *_) = (
        HNSW_HEADER_FULL.unpack_from(header)
    )
    if (
        offset0 != 0
        or not 0 < max_m <= 4096
        or not 0 < max_m0 <= 8192
        or data_off != 4 + 4 * max_m0
        or not data_off < label_off
        or (label_off - data_off) % 4
        or label_off + 8 != per
        or not -1 <= max_level < 64
    ):
        return "header.bin is garbled"
    if count and not (max_level >= 0 and entry < count):
        return "header.bin is garbled"
    return HnswHeader(count, per, label_off, data_off, max_level, entry, max_m, max_m0)


def graph_damage(seg: Path, header_bytes: bytes) -> str | None:
    """Check every neighbour link of the HNSW graph against the element count.

    hnswlib follows links without bounds checks, so one garbled link in
    ``data_level0.bin`` or ``link_lists.bin`` makes the first search that reaches it
    read outside the index and crash the process (exit 139, no message). This reads
    the link lists with numpy, without Chroma: about as much reading as Chroma's own
    load of the files, which the operating system then has cached for it.
    """
    import numpy as np

    head = parse_header(header_bytes)
    if isinstance(head, str):
        return head
    count = head.count
    try:
        level0 = np.memmap(seg / "data_level0.bin", dtype=np.uint8, mode="r")
    except (OSError, ValueError) as exc:
        return f"data_level0.bin cannot be read: {_short(exc)}"
    if level0.size < count * head.per_element:
        return "data_level0.bin is truncated"
    links = np.ndarray(
        shape=(count, 1 + head.max_m0),
        dtype="<u4",
        buffer=level0,
        offset=0,
        strides=(head.per_element, 4),
    )
    if _links_damaged(np, links, head.max_m0, count):
        return "data_level0.bin has links out of range"
    del links, level0
    try:
        upper = np.fromfile(seg / "link_lists.bin", dtype="<u4")
    except (OSError, ValueError) as exc:
        return f"link_lists.bin cannot be read: {_short(exc)}"
    per_level = 1 + head.max_m  # uint32 words per upper-level list
    # Each element: one word (its upper lists' size in bytes), then those lists. Most
    # elements have none (a zero word), so the walk jumps from one nonzero word to the
    # next instead of visiting every element in Python.
    total = int(upper.size)
    nonzero = np.flatnonzero(upper)
    pos = 0
    element = 0
    starts: list[int] = []
    levels: dict[int, int] = {}
    while element < count:
        k = int(np.searchsorted(nonzero, pos))
        nxt = int(nonzero[k]) if k < nonzero.size else total
        if element + (nxt - pos) >= count:  # the remaining elements have no upper lists
            pos += count - element
            break
        element += nxt - pos
        pos = nxt
        size = int(upper[pos])
        if size % (4 * per_level):
            return "link_lists.bin is garbled"
        level = size // (4 * per_level)
        levels[element] = level
        starts.extend(range(pos + 1, pos + 1 + level * per_level, per_level))
        pos += 1 + size // 4
        element += 1
    if pos > total:
        return "link_lists.bin is truncated"
    if levels.get(head.entry_point, 0) != head.max_level or max(levels.values(), default=0) > (
        head.max_level
    ):
        return "link_lists.bin does not match header.bin"
    if starts:
        index = np.asarray(starts)[:, None] + np.arange(per_level)
        if _links_damaged(np, upper[index], head.max_m, count):
            return "link_lists.bin has links out of range"
    return None


def _links_damaged(np: Any, lists: Any, width: int, count: int) -> bool:
    """Whether any list (first word: its length) is too long or names a missing element."""
    lengths = lists[:, 0] & 0xFFFF
    if (lengths > width).any():
        return True
    used = np.arange(width) < lengths[:, None]
    return bool((lists[:, 1:][used] >= count).any())
