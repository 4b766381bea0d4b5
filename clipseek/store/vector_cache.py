"""A copy of each index's vectors beside Chroma, laid out for one fast exact scan.

Reading every vector out of Chroma's files costs Python work per record (the label map,
the row ids, the write log): 1.6 s of a cold query at 100,000 pictures, 15 s at a
million. This cache holds the same vectors as one flat float32 matrix that numpy scans
in a single pass, with each row's SQLite row id beside it; a query reads the metadata
of its top answers only, from SQLite.

It is a cache, never the record:

- Chroma stays the system of record. The cache says which state of Chroma it copies:
  the collection, its metadata segment and Chroma's own sequence number of the last
  write that segment applied (:func:`~clipseek.store.chroma_format.applied_seq`), which
  every added, updated or deleted record moves on, whoever wrote it. A reader uses the
  cache only when that number, the record count and the file sizes agree with Chroma's
  files, and its checksums when the files are not the very ones the writer wrote;
  anything else (missing, stale, damaged) and the reader reads Chroma's files as before
  (:mod:`clipseek.store.direct`), saying nothing: slower, never wrong.
- Only a writer writes it, under the exclusive data lock, in the same locked step as the
  Chroma write it mirrors (:class:`JournaledCollection`), so a reader under the shared
  lock sees both or neither. A reader never writes it; the next index run (or
  ``clipseek repair``) rebuilds a missing or stale one from Chroma's files.
- Writes are appended (new rows, and the positions of rows replaced or deleted), so
  keeping it current costs what changed, and a reader that already read it reads only
  what was appended. When a quarter of the rows are dead it is written anew.

Layout: four files beside Chroma's in the database folder, named
``clipseek-vectors-<collection id>.<part>`` (files, not a folder: a folder there would
look like one of Chroma's own): ``vectors.f32`` (rows x dim, little-endian float32, unit
length), ``rowids.i64`` (each row's ``embeddings.id``), ``dead.i64`` (positions no longer
live), and ``manifest.json``, replaced whole after the others are written: the commit
point. They move with the folder (``repair`` moves them aside with Chroma's files).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipseek.fileio import identity, write_whole
from clipseek.store.chroma_format import (
    applied_seq,
    connect_readonly,
    ids_of,
    log_entries_between,
    record_count,
    rowids_of,
)

if TYPE_CHECKING:
    import numpy as np

    from clipseek.store.lock import DataLock

#: How the cache's files are named in the database folder (snapshots, damage checks and
#: the readers' change fingerprint look at Chroma's own files only).
CACHE_PREFIX = "clipseek-vectors-"
FORMAT = 1
MANIFEST = "manifest.json"
_FILES = ("vectors.f32", "rowids.i64", "dead.i64")
#: How much of the vectors a scan maps at a time: the process's memory holds this much
#: of the matrix, whatever the library's size. Smaller windows cost more than they save
#: here (100,000 rows: 0.05 s mapped whole, 0.06 s in 128 MB windows, 0.25 s in 8 MB).
WINDOW_BYTES = 128 << 20
#: Rows compared with Chroma's at a time by ``check`` (numpy's temporaries stay small).
_COMPARE_ROWS = 8192
#: Up to this many rows are looked up without sorting the row table (see positions_of).
_FEW = 8
#: Dead rows that make the writer write the cache anew (and at least this many).
_COMPACT_FRACTION = 4
_COMPACT_MIN = 4096


class CacheUnusable(Exception):
    """The cache is missing, stale or damaged: read Chroma's files instead."""


class CacheFiles:
    """The files of one collection's cache: ``files / "vectors.f32"`` is its path."""

    def __init__(self, location: str | os.PathLike[str], collection_id: str) -> None:
        self.base = Path(location)
        self.stem = f"{CACHE_PREFIX}{collection_id}"

    def __truediv__(self, part: str) -> Path:
        return self.base / f"{self.stem}.{part}"

    def temp(self, part: str, token: str) -> Path:
        return self.base / f".{self.stem}.{part}.{token}.tmp"

    def exists(self) -> bool:
        return (self / MANIFEST).exists()


def cache_folder(location: str | os.PathLike[str], collection_id: str) -> CacheFiles:
    return CacheFiles(location, collection_id)


def cached_collections(location: str | os.PathLike[str]) -> set[str]:
    """Collection ids that have (some of) a cache in the database folder."""
    out = set()
    with contextlib.suppress(OSError):
        for entry in os.scandir(location):
            if entry.name.startswith(CACHE_PREFIX):
                out.add(entry.name[len(CACHE_PREFIX) :].split(".", 1)[0])
    return out


@dataclass
class Manifest:
    collection: str
    segment: str
    dim: int
    #: Chroma's sequence number of the last write the copy includes.
    seq: int
    rows: int
    dead: int
    #: Changes when the files are written anew (a reader then reads them whole).
    epoch: str
    crc_vectors: int
    crc_rowids: int
    crc_dead: int
    #: Size, mtime, ctime and inode of each file as the writer left it: files with the
    #: same identity hold what was written (any write changes the ctime), so a reader
    #: need not checksum them.
    identities: list[list[int]]

    @property
    def live(self) -> int:
        return self.rows - self.dead

    def encode(self) -> bytes:
        return json.dumps({"format": FORMAT, **asdict(self)}).encode()


def read_manifest(folder: CacheFiles) -> Manifest:
    try:
        data = json.loads((folder / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise CacheUnusable("no cache") from None
    except (OSError, ValueError) as exc:
        raise CacheUnusable(f"the manifest cannot be read ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CacheUnusable("a manifest of another format")
    try:
        manifest = Manifest(
            collection=str(data["collection"]),
            segment=str(data["segment"]),
            dim=_int(data["dim"]),
            seq=_int(data["seq"]),
            rows=_int(data["rows"]),
            dead=_int(data["dead"]),
            epoch=str(data["epoch"]),
            crc_vectors=_int(data["crc_vectors"]),
            crc_rowids=_int(data["crc_rowids"]),
            crc_dead=_int(data["crc_dead"]),
            identities=[[_int(x) for x in item] for item in data["identities"]],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CacheUnusable(f"a garbled manifest ({exc})") from None
    if manifest.dead > manifest.rows or manifest.dim <= 0 or len(manifest.identities) != 3:
        raise CacheUnusable("a garbled manifest")
    return manifest


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a count")
    return value


def _identities(folder: CacheFiles) -> list[list[int]]:
    return [list(identity(folder / name)) for name in _FILES]


# --------------------------------------------------------------------------- reading


class CacheView:
    """One committed state of the cache, as a reader uses it: row ids and live rows in
    memory (8 bytes and 1 byte a picture), the vectors streamed or mapped from the file."""

    def __init__(
        self,
        folder: CacheFiles,
        manifest: Manifest,
        rowids: np.ndarray,
        alive: np.ndarray,
        verified: bool,
    ) -> None:
        self.folder = folder
        self.manifest = manifest
        self.rowids = rowids
        self.alive = alive
        self.count = manifest.live
        self.dim = manifest.dim
        #: The vectors' checksum was checked, or the files are the writer's own.
        self.verified = verified
        self._mapped: np.ndarray | None = None
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def _vector_bytes(self) -> int:
        return self.manifest.rows * self.dim * 4

    def scores(self, query: np.ndarray) -> np.ndarray:
        """Cosine similarity of ``query`` (unit length) with every row; dead rows -inf."""
        import numpy as np

        out = np.empty(self.manifest.rows, dtype=np.float32)
        for start, block in self._blocks(0):
            np.matmul(block, query, out=out[start : start + len(block)])
        if self.manifest.dead:
            out[~self.alive] = -np.inf
        return out

    def _blocks(self, first_row: int, crc: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """The rows from ``first_row`` on, a window of the file at a time, each mapped and
        let go in turn (no copy, and the process holds one window, whatever the size);
        checks the checksum on the way when the files are not known to be the writer's
        (raises CacheUnusable)."""
        import numpy as np

        dim, rows = self.dim, self.manifest.rows
        check = not self.verified
        path = self.folder / "vectors.f32"
        step = max(1, WINDOW_BYTES // (dim * 4))
        try:
            for start in range(first_row, rows, step):
                n = min(step, rows - start)
                block = np.memmap(
                    path, dtype="<f4", mode="r", offset=start * dim * 4, shape=(n, dim)
                )
                if check:
                    crc = zlib.crc32(block, crc)
                yield start, block
                del block  # unmapped here: its pages leave the process
        except (OSError, ValueError) as exc:  # a file shorter than its manifest says
            raise CacheUnusable(f"vectors.f32 cannot be read ({exc})") from None
        if check:
            if crc != self.manifest.crc_vectors:
                raise CacheUnusable("vectors.f32 does not match its checksum")
            self.verified = True

    def verify(self, first_row: int = 0, crc: int = 0) -> None:
        """Read the vectors from ``first_row`` on (``crc``: the checksum of those before),
        checking their checksum; raises CacheUnusable."""
        self.verified = False
        for _ in self._blocks(first_row, crc):
            pass

    def _map(self) -> np.ndarray:
        import numpy as np

        return np.memmap(
            self.folder / "vectors.f32", dtype="<f4", mode="r", shape=(self.manifest.rows, self.dim)
        )

    def matrix(self) -> np.ndarray:
        """Every row (dead ones too), mapped read-only; checked first if it must be."""
        if not self.verified:
            self.verify()
        if self._mapped is None:
            self._mapped = self._map()
        return self._mapped

    def read_rows(self, positions: np.ndarray) -> np.ndarray:
        """The rows at ``positions``, read from the file rather than mapped: a long-lived
        reader that reads a few rows per search keeps none of the file in its memory
        (mapped pages, and the kernel's fault-around, would stay). The caller made sure
        the file was checked (:meth:`verify`); raises CacheUnusable if it is cut short."""
        import numpy as np

        size = self.dim * 4
        out = np.empty((len(positions), self.dim), dtype="<f4")
        try:
            with (self.folder / "vectors.f32").open("rb", buffering=0) as fh:
                for n, position in enumerate(np.asarray(positions).tolist()):
                    fh.seek(position * size)
                    if fh.readinto(memoryview(out[n]).cast("B")) != size:
                        raise CacheUnusable("vectors.f32 is truncated")
        except OSError as exc:
            raise CacheUnusable(f"vectors.f32 cannot be read ({exc})") from None
        return out.astype(np.float32, copy=False)

    def scores_from(self, first_row: int, query: np.ndarray) -> np.ndarray:
        """Cosine similarity of ``query`` with the rows from ``first_row`` on (dead ones
        too), a window of the file at a time, as :meth:`scores`."""
        import numpy as np

        out = np.empty(max(0, self.manifest.rows - first_row), dtype=np.float32)
        for start, block in self._blocks(first_row):
            np.matmul(block, query, out=out[start - first_row : start - first_row + len(block)])
        return out

    def row(self, position: int) -> np.ndarray:
        import numpy as np

        if self._mapped is not None:
            return np.array(self._mapped[position], dtype=np.float32)
        with (self.folder / "vectors.f32").open("rb") as fh:
            fh.seek(position * self.dim * 4)
            data = fh.read(self.dim * 4)
        if len(data) != self.dim * 4:
            raise CacheUnusable("vectors.f32 is truncated")
        return np.frombuffer(data, dtype="<f4").astype(np.float32)

    def positions_of(self, rowids: Sequence[int]) -> np.ndarray:
        """The live row of each of ``rowids`` (-1 where there is none)."""
        import numpy as np

        if self._sorted is None and len(rowids) <= _FEW:
            # A few (a search by an indexed picture, a file served by id): a comparison
            # pass each, rather than sorting the whole table again after every commit.
            out = np.full(len(rowids), -1, dtype=np.int64)
            for n, rowid in enumerate(rowids):
                found = np.flatnonzero((self.rowids == int(rowid)) & self.alive)
                if found.size:
                    out[n] = found[-1]
            return out
        if self._sorted is None:
            live = np.flatnonzero(self.alive)
            order = np.argsort(self.rowids[live], kind="stable")
            self._sorted = (self.rowids[live][order], live[order])
        keys, places = self._sorted
        wanted = np.asarray(rowids, dtype=np.int64)
        at = np.searchsorted(keys, wanted)
        at = np.minimum(at, max(len(keys) - 1, 0))
        found = (len(keys) > 0) & (keys[at] == wanted) if len(keys) else np.zeros(len(wanted), bool)
        return np.where(found, places[at] if len(keys) else -1, -1)


def open_view(
    location: str | os.PathLike[str],
    collection_id: str,
    segment: str,
    dim: int,
    con: sqlite3.Connection,
    previous: CacheView | None = None,
) -> CacheView:
    """The cache of a collection if it copies Chroma's current state; raises
    CacheUnusable otherwise. The caller holds the shared data lock. ``previous``, a view
    this reader read before: when the writer has only appended since (the same epoch),
    only what it appended is read and checked (:func:`_caught_up`), so a long-lived
    reader follows a writer's commits at the cost of what they changed."""
    folder = cache_folder(location, collection_id)
    manifest = read_manifest(folder)
    if manifest.collection != collection_id or manifest.segment != segment:
        raise CacheUnusable("the cache of another collection")
    if dim and manifest.dim != dim:
        raise CacheUnusable("vectors of another size")
    try:
        seq = applied_seq(con, segment)
    except sqlite3.Error as exc:
        raise CacheUnusable(str(exc)) from None
    if seq is None or seq != manifest.seq:
        raise CacheUnusable("the cache is behind the index")
    try:
        sizes = [(folder / name).stat().st_size for name in _FILES]
        same_files = _identities(folder) == manifest.identities
    except OSError as exc:
        raise CacheUnusable(f"the cache cannot be read ({exc})") from None
    needed = (manifest.rows * manifest.dim * 4, manifest.rows * 8, manifest.dead * 8)
    if any(size < need for size, need in zip(sizes, needed, strict=True)):
        raise CacheUnusable("the cache is truncated")
    if _appended_to(previous, manifest):
        assert previous is not None
        return _caught_up(previous, manifest, con, same_files)
    try:
        records = record_count(con, segment)
    except sqlite3.Error as exc:
        raise CacheUnusable(str(exc)) from None
    if records != manifest.live:
        raise CacheUnusable("the cache counts other records")
    rowids = _rows_of(folder / "rowids.i64", 0, manifest.rows, 0, manifest.crc_rowids)
    dead = _rows_of(folder / "dead.i64", 0, manifest.dead, 0, manifest.crc_dead)
    alive = _alive(manifest, dead)
    view = CacheView(folder, manifest, rowids, alive, verified=same_files)
    _read_ahead(folder / "vectors.f32")
    return view


def _appended_to(previous: CacheView | None, manifest: Manifest) -> bool:
    """Whether ``manifest`` is ``previous``'s state with rows and dead marks appended
    (the writer's journal appends within an epoch; a compaction starts a new one)."""
    if previous is None:
        return False
    before = previous.manifest
    return (
        before.epoch == manifest.epoch
        and before.collection == manifest.collection
        and before.segment == manifest.segment
        and before.dim == manifest.dim
        and before.rows <= manifest.rows
        and before.dead <= manifest.dead
        and before.seq <= manifest.seq
    )


def _caught_up(
    previous: CacheView, manifest: Manifest, con: sqlite3.Connection, same_files: bool
) -> CacheView:
    """``previous`` brought up to ``manifest`` by reading only what was appended: the new
    row ids and dead marks (checked against the running checksums), and the new vectors'
    checksum when the files are not the writer's own. The record count (a pass over
    SQLite's index, 0.2 s at a million) is not taken again: the writer checked it against
    the same sequence number when it appended, and every new row's record is looked up
    here instead. In memory the row table is copied, not re-read (9 bytes a picture)."""
    import numpy as np

    before = previous.manifest
    folder = previous.folder
    new_ids = _rows_of(
        folder / "rowids.i64", before.rows, manifest.rows, before.crc_rowids, manifest.crc_rowids
    )
    new_dead = _rows_of(
        folder / "dead.i64", before.dead, manifest.dead, before.crc_dead, manifest.crc_dead
    )
    if new_dead.size and (int(new_dead.min()) < 0 or int(new_dead.max()) >= manifest.rows):
        raise CacheUnusable("the cache's row table is garbled")
    alive = np.concatenate([previous.alive, np.ones(new_ids.size, dtype=bool)])
    if new_dead.size:
        if not alive[new_dead].all():
            raise CacheUnusable("the cache's row table is garbled")  # a row dead twice
        alive[new_dead] = False
    if int(alive.sum()) != manifest.live:
        raise CacheUnusable("the cache's row table is garbled")
    live_new = new_ids[alive[before.rows :]].tolist()
    try:
        named = ids_of(con, manifest.segment, live_new) if live_new else {}
    except sqlite3.Error as exc:
        raise CacheUnusable(str(exc)) from None
    if len(named) != len(set(live_new)):  # (not np.unique: it imports numpy.ma, 40 ms)
        raise CacheUnusable("a new row of the cache names no record")
    rowids = np.concatenate([previous.rowids, new_ids])
    view = CacheView(folder, manifest, rowids, alive, verified=same_files)
    if not same_files and previous.verified:
        view.verify(before.rows, before.crc_vectors)  # the appended vectors only
    return view


def _rows_of(path: Path, first: int, stop: int, crc: int, expected: int) -> np.ndarray:
    """Entries ``first`` to ``stop`` of a file of little-endian int64, whose checksum
    from the start to ``stop`` must be ``expected`` (``crc``: that of the entries before
    ``first``)."""
    import numpy as np

    try:
        with path.open("rb") as fh:
            fh.seek(first * 8)
            data = fh.read((stop - first) * 8)
    except OSError as exc:
        raise CacheUnusable(f"the cache cannot be read ({exc})") from None
    if len(data) != (stop - first) * 8:
        raise CacheUnusable("the cache is truncated")
    if zlib.crc32(data, crc) != expected:
        raise CacheUnusable("the cache's row table does not match its checksum")
    return np.frombuffer(data, dtype="<i8").astype(np.int64)


def _alive(manifest: Manifest, dead: np.ndarray) -> np.ndarray:
    import numpy as np

    alive = np.ones(manifest.rows, dtype=bool)
    if dead.size:
        if int(dead.min()) < 0 or int(dead.max()) >= manifest.rows:
            raise CacheUnusable("the cache's row table is garbled")
        alive[dead] = False
    if int(alive.sum()) != manifest.live:
        raise CacheUnusable("the cache's row table is garbled")
    return alive


def _read_ahead(path: Path) -> None:
    """Ask the kernel to start reading the vectors now, in the background: a query opens
    the index while its text model loads, and scans the vectors after."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is None:
        return
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            advise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        finally:
            os.close(fd)


def _read_exactly(path: Path, size: int) -> bytes:
    with path.open("rb") as fh:
        data = fh.read(size)
    if len(data) != size:
        raise OSError(f"{path.name} is truncated")
    return data


# --------------------------------------------------------------------------- writing


def _unit_rows(vectors: Any, dim: int) -> np.ndarray:
    """As the direct reader scores them: rows off unit length divided by their norm."""
    import numpy as np

    matrix = np.array(vectors, dtype=np.float32, copy=True, ndmin=2)
    if matrix.shape[1] != dim:
        raise ValueError("vectors of another size")
    norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
    off = np.flatnonzero(np.abs(norms - 1.0) > 1e-5)
    if off.size:
        norms[norms == 0] = 1.0
        matrix[off] /= norms[off, None]
    return matrix


def write_cache(
    location: str | os.PathLike[str],
    collection_id: str,
    segment: str,
    seq: int,
    rowids: np.ndarray,
    matrix: np.ndarray,
    lock: DataLock | None = None,
    still_current: Any = None,
) -> bool:
    """Write a whole cache (new files beside the old, swapped in under the exclusive data
    lock if ``still_current()`` says Chroma has not moved on since it was read)."""
    import numpy as np

    folder = cache_folder(location, collection_id)
    epoch = uuid.uuid4().hex
    matrix = np.ascontiguousarray(matrix, dtype="<f4")
    ids = np.ascontiguousarray(rowids, dtype="<i8")
    temps = [folder.temp(name, epoch) for name in _FILES]
    try:
        crc = _write_array(temps[0], matrix)
        crc_rowids = _write_array(temps[1], ids)
        crc_dead = _write_array(temps[2], np.zeros(0, dtype="<i8"))
        with lock.exclusive() if lock is not None else contextlib.nullcontext():
            if still_current is not None and not still_current():
                return False
            for temp, name in zip(temps, _FILES, strict=True):
                os.replace(temp, folder / name)
            manifest = Manifest(
                collection=collection_id,
                segment=segment,
                dim=int(matrix.shape[1]),
                seq=int(seq),
                rows=int(matrix.shape[0]),
                dead=0,
                epoch=epoch,
                crc_vectors=crc,
                crc_rowids=crc_rowids,
                crc_dead=crc_dead,
                identities=_identities(folder),
            )
            return write_whole(folder / MANIFEST, manifest.encode())
    finally:
        for temp in temps:
            with contextlib.suppress(OSError):
                temp.unlink()


def _write_array(path: Path, array: np.ndarray) -> int:
    """Write ``array``'s bytes; returns their checksum."""
    data = memoryview(array).cast("B") if array.size else memoryview(b"")
    with path.open("wb") as fh:
        fh.write(data)
    return zlib.crc32(data)


def drop_cache(location: str | os.PathLike[str], collection_id: str) -> None:
    """Forget a collection's cache (its manifest first: readers stop using it at once),
    and every other file named after it: the approximate index built from it
    (:mod:`clipseek.store.partition`)."""
    folder = cache_folder(location, collection_id)
    for part in (MANIFEST, *_FILES):
        with contextlib.suppress(OSError):
            (folder / part).unlink()
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder.base):
            if entry.name.startswith(f"{folder.stem}."):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def drop_all_caches(location: str | os.PathLike[str]) -> None:
    for collection_id in cached_collections(location):
        drop_cache(location, collection_id)


@dataclass
class _Mark:
    """What a write is checked against: Chroma's sequence number before it, and the row
    ids the records it names had then."""

    seq: int
    manifest: Manifest
    before: dict[str, int]


class _Journal:
    """Keeps one collection's cache current through a writer's commits. Called with the
    exclusive data lock held (inside the Chroma write's own locked step); any failure
    drops the cache, which the next index run builds again."""

    def __init__(self, location: str, collection_id: str) -> None:
        self.location = location
        self.collection_id = collection_id
        self.folder = cache_folder(location, collection_id)
        self._segment: str | None = None
        #: The writer's copy of the row table (loaded on its first change).
        self._rowids: np.ndarray | None = None
        self._alive: np.ndarray | None = None
        self._epoch: str | None = None

    @contextlib.contextmanager
    def _sqlite(self) -> Iterator[sqlite3.Connection]:
        con = connect_readonly(Path(self.location) / "chroma.sqlite3")
        try:
            yield con
        finally:
            con.close()

    def _metadata_segment(self, con: sqlite3.Connection) -> str | None:
        if self._segment is None:
            row = con.execute(
                "SELECT id FROM segments WHERE collection = ? AND scope = 'METADATA'",
                (self.collection_id,),
            ).fetchone()
            self._segment = None if row is None else str(row[0])
        return self._segment

    def mark(self, ids: Sequence[str] | None) -> _Mark | None:
        """Before a write: None when there is no current cache to keep up to date."""
        if not (self.folder / MANIFEST).exists():
            return None
        try:
            manifest = read_manifest(self.folder)
            with self._sqlite() as con:
                segment = self._metadata_segment(con)
                if segment is None or manifest.segment != segment:
                    raise CacheUnusable("another segment")
                seq = applied_seq(con, segment)
                if seq != manifest.seq:
                    raise CacheUnusable("stale")
                before = rowids_of(con, segment, ids) if ids else {}
            return _Mark(seq, manifest, before)
        except Exception:  # a cache problem must never fail a write
            self.drop()
            return None

    def written(self, mark: _Mark | None, ids: Sequence[str], vectors: Any, deleted: bool) -> None:
        """After the write: append its rows (``vectors`` None: metadata only; ``deleted``:
        the records are gone), or drop the cache if the write was not what was asked."""
        if mark is None:
            return
        try:
            self._apply(mark, ids, vectors, deleted)
        except Exception:  # a cache problem must never fail a write
            self.drop()

    def _apply(self, mark: _Mark, ids: Sequence[str], vectors: Any, deleted: bool) -> None:
        import numpy as np

        manifest = mark.manifest
        with self._sqlite() as con:
            segment = manifest.segment
            seq = applied_seq(con, segment)
            # Each record named moves the number on by one: anything else means another
            # write came between, and this one cannot be mirrored.
            if seq is None or not _only_this_write(con, self.collection_id, mark.seq, seq, ids):
                raise CacheUnusable("the write was not the one marked")
            after = {} if deleted or vectors is None else rowids_of(con, segment, ids)
            live = record_count(con, segment)
        self._load_table(manifest)
        assert self._rowids is not None and self._alive is not None
        kill = np.zeros(0, dtype=np.int64)
        if deleted or vectors is not None:
            gone = np.fromiter(mark.before.values(), dtype=np.int64, count=len(mark.before))
            kill = np.flatnonzero(self._alive & np.isin(self._rowids, gone))
        new_rows = np.zeros((0, manifest.dim), dtype=np.float32)
        new_ids = np.zeros(0, dtype=np.int64)
        if vectors is not None and not deleted:
            if len(after) != len(ids):
                raise CacheUnusable("records missing after the write")
            new_rows = _unit_rows(vectors, manifest.dim)
            new_ids = np.array([after[i] for i in ids], dtype=np.int64)
        if manifest.live - kill.size + new_ids.size != live:
            raise CacheUnusable("the counts disagree")
        dead = manifest.dead + int(kill.size)
        rows = manifest.rows + int(new_ids.size)
        if dead >= _COMPACT_MIN and dead * _COMPACT_FRACTION >= rows:
            self._compact(manifest, seq, kill, new_ids, new_rows)
            return
        crc_vectors = _append(
            self.folder / "vectors.f32",
            manifest.rows * manifest.dim * 4,
            new_rows.astype("<f4"),
            manifest.crc_vectors,
        )
        crc_rowids = _append(
            self.folder / "rowids.i64",
            manifest.rows * 8,
            new_ids.astype("<i8"),
            manifest.crc_rowids,
        )
        crc_dead = _append(
            self.folder / "dead.i64", manifest.dead * 8, kill.astype("<i8"), manifest.crc_dead
        )
        updated = Manifest(
            **{
                **asdict(manifest),
                "seq": seq,
                "rows": rows,
                "dead": dead,
                "crc_vectors": crc_vectors,
                "crc_rowids": crc_rowids,
                "crc_dead": crc_dead,
                "identities": _identities(self.folder),
            }
        )
        if not write_whole(self.folder / MANIFEST, updated.encode()):
            raise CacheUnusable("the manifest cannot be written")
        self._alive[kill] = False
        self._rowids = np.concatenate([self._rowids, new_ids])
        self._alive = np.concatenate([self._alive, np.ones(new_ids.size, dtype=bool)])

    def _load_table(self, manifest: Manifest) -> None:
        import numpy as np

        if (
            self._rowids is not None
            and self._epoch == manifest.epoch
            and len(self._rowids) == manifest.rows
        ):
            return
        raw = _read_exactly(self.folder / "rowids.i64", manifest.rows * 8)
        dead = np.frombuffer(_read_exactly(self.folder / "dead.i64", manifest.dead * 8), "<i8")
        if zlib.crc32(raw) != manifest.crc_rowids:
            raise CacheUnusable("the row table does not match its checksum")
        self._rowids = np.frombuffer(raw, dtype="<i8").astype(np.int64)
        self._alive = np.ones(manifest.rows, dtype=bool)
        self._alive[dead.astype(np.int64)] = False
        self._epoch = manifest.epoch

    def _compact(
        self,
        manifest: Manifest,
        seq: int,
        kill: np.ndarray,
        new_ids: np.ndarray,
        new_rows: np.ndarray,
    ) -> None:
        """Write the live rows anew (the caller holds the exclusive lock already)."""
        import numpy as np

        assert self._rowids is not None and self._alive is not None
        alive = self._alive.copy()
        alive[kill] = False
        old = np.memmap(
            self.folder / "vectors.f32", dtype="<f4", mode="r", shape=(manifest.rows, manifest.dim)
        )
        matrix = np.concatenate([old[alive], new_rows])
        rowids = np.concatenate([self._rowids[alive], new_ids])
        del old
        if not write_cache(
            self.location, manifest.collection, manifest.segment, seq, rowids, matrix
        ):
            raise CacheUnusable("the cache cannot be written")
        self._rowids = None  # read again at the next change

    def drop(self) -> None:
        self._rowids = self._alive = None
        drop_cache(self.location, self.collection_id)


def _only_this_write(
    con: sqlite3.Connection, collection_id: str, before: int, seq: int, ids: Sequence[str]
) -> bool:
    """Whether the segment moved from ``before`` to ``seq`` by this write alone: one log
    entry per record named. The numbers are shared by the database's collections, so an
    index run's writes to its failures collection (deletes of records that succeeded now)
    move them on between two of its writes here: those are counted out. (Chroma prunes a
    collection's applied log entries when its vectors are saved; either count proves it.)"""
    if seq == before + len(ids):
        return True
    try:
        own, other = log_entries_between(con, collection_id, before, seq)
    except sqlite3.Error:
        return False
    return own == len(ids) or seq == before + len(ids) + other


def _append(path: Path, offset: int, array: np.ndarray, crc: int) -> int:
    """Write ``array`` at ``offset`` (past the committed part: anything a crashed writer
    left there is overwritten) and cut the file there; returns the running checksum."""
    data = memoryview(array).cast("B") if array.size else memoryview(b"")
    with path.open("r+b") as fh:
        fh.seek(offset)
        fh.write(data)
        fh.truncate(offset + len(data))
    return zlib.crc32(data, crc)


class JournaledCollection:
    """A writer's Chroma collection whose writes also keep the vector cache current;
    everything else is the collection's own."""

    def __init__(self, collection: Any, location: str) -> None:
        self._col = collection
        self._journal = _Journal(location, str(collection.id))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._col, name)

    def upsert(self, ids: Sequence[str], embeddings: Any = None, **kwargs: Any) -> Any:
        ids = list(ids)
        mark = self._journal.mark(ids)
        result = self._col.upsert(ids=ids, embeddings=embeddings, **kwargs)
        if embeddings is None:
            self._journal.drop()
        else:
            self._journal.written(mark, ids, embeddings, deleted=False)
        return result

    add = upsert

    def update(self, ids: Sequence[str], embeddings: Any = None, **kwargs: Any) -> Any:
        ids = list(ids)
        mark = self._journal.mark(ids)
        result = self._col.update(ids=ids, embeddings=embeddings, **kwargs)
        self._journal.written(mark, ids, embeddings, deleted=False)
        return result

    def delete(self, ids: Sequence[str] | None = None, **kwargs: Any) -> Any:
        if ids is None or kwargs.get("where") or kwargs.get("where_document"):
            result = self._col.delete(ids=ids, **kwargs)
            self._journal.drop()  # which records went is not known here
            return result
        ids = list(ids)
        mark = self._journal.mark(ids)
        result = self._col.delete(ids=ids, **kwargs)
        self._journal.written(mark, ids, None, deleted=True)
        return result


def note_identities(
    location: str, collection_id: str, manifest: Manifest, lock: DataLock | None
) -> None:
    """Files checked whole by a writer: note their identity, so readers trust them."""
    folder = cache_folder(location, collection_id)
    with lock.exclusive() if lock is not None else contextlib.nullcontext():
        updated = Manifest(**{**asdict(manifest), "identities": _identities(folder)})
        write_whole(folder / MANIFEST, updated.encode())


# --------------------------------------------------------------------------- checking


def verify_against(
    location: str | os.PathLike[str],
    collection_id: str,
    segment: str,
    dim: int,
    con: sqlite3.Connection,
    rowid_of: dict[str, int],
    vectors: dict[str, np.ndarray],
) -> str | None:
    """What is wrong with a collection's cache, compared with what Chroma holds
    (``rowid_of``: record id → row id; ``vectors``: record id → vector), or None when it
    is absent, stale (the next index run rebuilds it) or agrees in every row."""
    import numpy as np

    rowids = np.fromiter(rowid_of.values(), dtype=np.int64, count=len(rowid_of))
    comparison = CacheComparison(location, collection_id, segment, dim, con, rowids)
    ids = list(rowid_of)
    for start in range(0, len(ids), _COMPARE_ROWS):
        chunk = ids[start : start + _COMPARE_ROWS]
        stored = [vectors.get(i) for i in chunk]
        if any(v is None or v.shape != stored[0].shape for v in stored):
            return None  # records without a vector: the check reports those itself
        comparison.compare(rowids[start : start + len(chunk)], np.stack(stored))
    return comparison.verdict()


class CacheComparison:
    """A collection's cache against what Chroma holds, for a reader that walks Chroma's
    vectors in its own order (``check``: one pass over the vector files for both): it hands
    each batch of them to :meth:`compare`; :meth:`verdict` says what is wrong, or None when
    the cache is absent, stale (the next index run rebuilds it) or agrees in every row. The
    cache's rows are read by position (runs of rows at once), its checksum in one pass: its
    memory does not grow with the library."""

    def __init__(
        self,
        location: str | os.PathLike[str],
        collection_id: str,
        segment: str,
        dim: int,
        con: sqlite3.Connection,
        rowids: np.ndarray,
    ) -> None:
        import numpy as np

        self.view: CacheView | None = None
        self.problem: str | None = None
        #: A vector of another size than the cache's: no verdict (the check says why).
        self.undecided = False
        try:
            view = open_view(location, collection_id, segment, dim, con)
        except CacheUnusable as exc:
            text = str(exc)
            if text not in ("no cache", "the cache is behind the index"):
                self.problem = f"the vector cache of the index is unusable ({text})"
            return
        listed = np.sort(view.rowids[view.alive])
        known = np.sort(np.asarray(rowids, dtype=np.int64))
        if listed.shape != known.shape or bool((listed != known).any()):
            self.problem = "the vector cache of the index lists other records than the index"
            return
        self.view = view

    def compare(self, rowids: np.ndarray, vectors: np.ndarray) -> None:
        """Chroma's vectors of ``rowids`` (records the cache lists), in any order."""
        import numpy as np

        view = self.view
        if view is None or self.problem is not None or not len(rowids):
            return
        if vectors.ndim != 2 or vectors.shape[1] != view.dim:
            self.undecided = True
            return
        positions = view.positions_of(rowids)
        if bool((positions < 0).any()):
            self.problem = "the vector cache of the index lists other records than the index"
            return
        try:
            have = self._rows(positions)
        except CacheUnusable as exc:
            self.problem = f"the vector cache of the index is damaged ({exc})"
            return
        gap = _unit_rows(vectors, view.dim)
        np.subtract(gap, have, out=gap)
        if not float(np.abs(gap, out=gap).max()) <= 1e-5 and not np.allclose(
            have, _unit_rows(vectors, view.dim), atol=1e-5
        ):
            self.problem = "the vector cache of the index holds other vectors than the index"

    def _rows(self, positions: np.ndarray) -> np.ndarray:
        import numpy as np

        assert self.view is not None
        dim = self.view.dim
        out = np.empty((positions.size, dim), dtype=np.float32)
        order = np.argsort(positions, kind="stable")
        ordered = positions[order]
        starts = np.concatenate([[0], np.flatnonzero(np.diff(ordered) != 1) + 1, [ordered.size]])
        try:
            with (self.view.folder / "vectors.f32").open("rb") as fh:
                for begin, end in zip(starts[:-1].tolist(), starts[1:].tolist(), strict=True):
                    fh.seek(int(ordered[begin]) * dim * 4)
                    rows = np.fromfile(fh, dtype="<f4", count=(end - begin) * dim)
                    if rows.size < (end - begin) * dim:
                        raise CacheUnusable("vectors.f32 is truncated")
                    out[order[begin:end]] = rows.reshape(-1, dim)
        except OSError as exc:
            raise CacheUnusable(f"vectors.f32 cannot be read ({exc})") from None
        return out

    def verdict(self) -> str | None:
        """What is wrong with the cache (None: absent, stale, agreeing, or undecided).
        Checks the vectors' checksum, in one pass, unless a difference was found."""
        if self.problem is not None or self.view is None or self.undecided:
            return self.problem
        try:
            self.view.verify()
        except CacheUnusable as exc:
            return f"the vector cache of the index is damaged ({exc})"
        return None
