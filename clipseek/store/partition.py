"""An approximate index beside the vector cache: the cache's rows split into lists around
k-means centres (an inverted file), so that a long-lived reader answers a search by
scanning a few lists instead of every row.

An exact scan of the cache reads every vector: 2 GB per query at a million pictures,
fine for a one-shot ``clipseek query``, far too slow for the app and ``clipseek serve``,
which answer many. Here a query scores the centres (a few thousand), scans the rows of the
:data:`NPROBE` nearest lists from a list-ordered bfloat16 copy (half the bytes, contiguous
per list; bfloat16 rather than float16 because numpy widens it to float32 with a shift,
twice as fast as its float16 conversion), and rescores its best candidates exactly from
the cache's float32 rows: the scores it returns are the exact ones, and only which rows
are looked at is approximate (recall@10 against exact search: docs/PERFORMANCE.md, issue
24). ``clipseek duplicates`` uses the centres alone
(:func:`clipseek.search.duplicates.partition_pairs`), and stays exact.

It is a cache of a cache, never the record:

- It names the state of the vector cache it was built from: the cache's epoch (which
  changes whenever the cache is written anew, when positions change) and how many of its
  rows it covers. Rows the writer appended to the cache since (the tail) are scanned
  exactly; rows marked dead since are masked by the cache's own dead list. A partition of
  another epoch, or damaged, or missing, is not used: the reader scans exactly, saying
  nothing (slower, never wrong).
- Only a writer writes it (:func:`build_partition`, from
  :func:`~clipseek.store.cache_build.refresh_caches`: the end of an index run and
  ``clipseek repair``), new files swapped in under the exclusive data lock, the manifest
  last; a reader never writes it.

Layout: five files beside the cache's, ``clipseek-vectors-<collection id>.<part>`` with
parts ``ivf-centroids.f32`` (lists x dim, unit rows), ``ivf-offsets.i64`` (lists + 1:
where each list starts in the next two), ``ivf-positions.i64`` (each listed row's
position in the cache), ``ivf-rows.bf16`` (those rows as bfloat16, in list order) and
``ivf-manifest.json`` (checksums and the identity of each file as the writer left it).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import uuid
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipseek.fileio import identity, write_whole
from clipseek.store.vector_cache import (
    CacheFiles,
    CacheUnusable,
    CacheView,
    cache_folder,
    open_view,
)

if TYPE_CHECKING:
    import numpy as np

    from clipseek.store.lock import DataLock

FORMAT = 1
MANIFEST = "ivf-manifest.json"
_PARTS = ("ivf-centroids.f32", "ivf-offsets.i64", "ivf-positions.i64", "ivf-rows.bf16")
#: Every file of a partition, manifest included (``drop_cache`` removes them with the cache).
PARTS = (MANIFEST, *_PARTS)

#: Live rows from which an index run builds a partition: below it an exact scan of the
#: cache is cheap enough for every reader (docs/PERFORMANCE.md, issue 24).
MIN_ROWS = 100_000
#: Lists scanned per query (the nearest centres first).
NPROBE = 32
#: Candidates rescored exactly from the float32 rows: at least this many, and 4 per answer.
RESCORE = 64
#: The partition is built anew when the rows appended after it (scanned exactly by every
#: query) pass this fraction of the rows it covers.
TAIL_FRACTION = 0.1
#: k-means: rows sampled per list to train on (at most SAMPLE_MAX: the training's cost
#: is sample x lists per iteration), iterations, and the seed (the same rows give the same
#: partition). 32 a list left recall@10 at 0.9945 at 100,000 rows, 64 at 1.000.
SAMPLE_PER_LIST = 64
SAMPLE_MAX = 131_072
ITERATIONS = 6
SEED = 20241
#: Rows scored against the centres at a time while building (bounds its memory).
_BLOCK = 8192


class PartitionUnusable(Exception):
    """The partition is missing, stale or damaged: scan the cache exactly instead."""


def list_count(rows: int) -> int:
    """How many lists for ``rows`` rows: about 4 √rows (a few hundred rows a list at a
    million), the usual choice for an inverted file; each list holds 8 rows at least."""
    return max(1, min(round(4 * math.sqrt(rows)), rows // 8))


@dataclass
class PartitionManifest:
    collection: str
    #: The vector cache's epoch and rows this partition was built from.
    epoch: str
    rows: int
    dim: int
    lists: int
    #: Rows listed (the live rows of the cache's first ``rows`` when it was built).
    count: int
    crc_centroids: int
    crc_offsets: int
    crc_positions: int
    crc_rows: int
    identities: list[list[int]]

    def encode(self) -> bytes:
        return json.dumps({"format": FORMAT, **asdict(self)}).encode()


def read_manifest(folder: CacheFiles) -> PartitionManifest:
    try:
        data = json.loads((folder / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise PartitionUnusable("no partition") from None
    except (OSError, ValueError) as exc:
        raise PartitionUnusable(f"the manifest cannot be read ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PartitionUnusable("a manifest of another format")
    try:
        manifest = PartitionManifest(
            collection=str(data["collection"]),
            epoch=str(data["epoch"]),
            rows=_count(data["rows"]),
            dim=_count(data["dim"]),
            lists=_count(data["lists"]),
            count=_count(data["count"]),
            crc_centroids=_count(data["crc_centroids"]),
            crc_offsets=_count(data["crc_offsets"]),
            crc_positions=_count(data["crc_positions"]),
            crc_rows=_count(data["crc_rows"]),
            identities=[[_count(x) for x in item] for item in data["identities"]],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PartitionUnusable(f"a garbled manifest ({exc})") from None
    if (
        manifest.lists == 0
        or manifest.dim == 0
        or manifest.count > manifest.rows
        or len(manifest.identities) != len(_PARTS)
    ):
        raise PartitionUnusable("a garbled manifest")
    return manifest


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a count")
    return value


def _identities(folder: CacheFiles) -> list[list[int]]:
    return [list(identity(folder / name)) for name in _PARTS]


# --------------------------------------------------------------------------- reading


class Partition:
    """One committed partition as a reader uses it: centres, offsets and positions in
    memory (a few MB at a million rows), the bfloat16 rows read from their file as
    searches need them."""

    def __init__(
        self,
        folder: CacheFiles,
        manifest: PartitionManifest,
        centroids: np.ndarray,
        offsets: np.ndarray,
        positions: np.ndarray,
        stamp: tuple,
    ) -> None:
        self.folder = folder
        self.manifest = manifest
        self.centroids = centroids
        self.offsets = offsets
        self.positions = positions
        #: The manifest's identity when read: a reader reads the partition again when it moves.
        self.stamp = stamp

    def fits(self, view: CacheView) -> bool:
        """Whether it was built from (an earlier state of) this very cache: the same epoch
        (positions mean the same rows), and no more rows than the cache has now."""
        return (
            self.manifest.collection == view.manifest.collection
            and self.manifest.epoch == view.manifest.epoch
            and self.manifest.rows <= view.manifest.rows
            and self.manifest.dim == view.dim
        )

    def search(
        self, view: CacheView, query: np.ndarray, k: int, nprobe: int = NPROBE
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The positions of (about) the ``k`` best live rows and their exact scores, best
        first; None when the lists scanned hold too few live rows to answer ``k`` (the
        caller scans exactly). ``view`` must have been verified (its rows rescore)."""
        import numpy as np

        lists = self.manifest.lists
        nprobe = min(nprobe, lists)
        # einsum, not BLAS: for these small products numpy's own single-threaded loop is
        # as fast, and never waits on BLAS threads a busy machine has descheduled (which
        # made a search 5x slower beside the text encoder: docs/PERFORMANCE.md, issue 24)
        near = np.einsum("ij,j->i", self.centroids, query)
        probe = np.argpartition(-near, nprobe - 1)[:nprobe] if nprobe < lists else np.arange(lists)
        spans = [(int(self.offsets[i]), int(self.offsets[i + 1])) for i in np.sort(probe)]
        places = np.concatenate([self.positions[a:b] for a, b in spans])
        rough = np.einsum("ij,j->i", from_bfloat16(self._read(spans, len(places))), query)
        if view.manifest.dead:
            rough[~view.alive[places]] = -np.inf
        # The tail: rows appended to the cache since the partition was built, exactly.
        first, last = self.manifest.rows, view.manifest.rows
        if last > first:
            tail_scores = view.scores_from(first, query)
            tail_places = np.arange(first, last, dtype=np.int64)
            if view.manifest.dead:
                tail_scores[~view.alive[first:last]] = -np.inf
            places = np.concatenate([places, tail_places])
            rough = np.concatenate([rough, tail_scores])
        usable = int(np.isfinite(rough).sum())
        if usable < min(k, view.count):
            return None
        m = min(usable, max(RESCORE, 4 * k))
        best = np.argpartition(-rough, m - 1)[:m] if m < len(rough) else np.arange(len(rough))
        best = best[np.isfinite(rough[best])]
        chosen = np.sort(places[best])
        exact = np.einsum("ij,j->i", view.read_rows(chosen), query)
        order = np.lexsort((chosen, -exact))[:k]
        return chosen[order], exact[order]

    def _read(self, spans: list[tuple[int, int]], count: int) -> np.ndarray:
        """The bfloat16 rows of these lists, read from the file (each list is one read;
        nothing stays mapped, so a long-lived reader's memory does not grow with what it
        searched)."""
        import numpy as np

        size = self.manifest.dim * 2
        out = np.empty((count, self.manifest.dim), dtype="<u2")
        flat = memoryview(out).cast("B")
        at = 0
        with (self.folder / _PARTS[3]).open("rb", buffering=0) as fh:
            for a, b in spans:
                want = (b - a) * size
                fh.seek(a * size)
                if fh.readinto(flat[at : at + want]) != want:
                    raise OSError("ivf-rows.bf16 is truncated")
                at += want
        return out


def open_partition(view: CacheView, check_rows: bool = False) -> Partition:
    """The partition of the cache ``view`` reads, if it was built from that cache and its
    files are whole; raises PartitionUnusable otherwise. The caller holds the shared
    data lock. Checks the bfloat16 rows' checksum when the files are not the writer's own
    (a copied folder: once per reader), or when ``check_rows`` says so."""
    import numpy as np

    folder = view.folder
    manifest = read_manifest(folder)
    try:
        stamp = identity(folder / MANIFEST)
        sizes = [(folder / name).stat().st_size for name in _PARTS]
        same_files = _identities(folder) == manifest.identities and not check_rows
    except OSError as exc:
        raise PartitionUnusable(f"the partition cannot be read ({exc})") from None
    lists, dim, count = manifest.lists, manifest.dim, manifest.count
    needed = (lists * dim * 4, (lists + 1) * 8, count * 8, count * dim * 2)
    if sizes != list(needed):
        raise PartitionUnusable("the partition's files are not the size they should be")
    try:
        raw_centroids = (folder / _PARTS[0]).read_bytes()
        raw_offsets = (folder / _PARTS[1]).read_bytes()
        raw_positions = (folder / _PARTS[2]).read_bytes()
    except OSError as exc:
        raise PartitionUnusable(f"the partition cannot be read ({exc})") from None
    if (
        zlib.crc32(raw_centroids) != manifest.crc_centroids
        or zlib.crc32(raw_offsets) != manifest.crc_offsets
        or zlib.crc32(raw_positions) != manifest.crc_positions
    ):
        raise PartitionUnusable("the partition does not match its checksums")
    centroids = np.frombuffer(raw_centroids, dtype="<f4").reshape(lists, dim)
    offsets = np.frombuffer(raw_offsets, dtype="<i8").astype(np.int64)
    positions = np.frombuffer(raw_positions, dtype="<i8").astype(np.int64)
    if (
        offsets[0] != 0
        or offsets[-1] != count
        or bool((np.diff(offsets) < 0).any())
        or (count and (int(positions.min()) < 0 or int(positions.max()) >= manifest.rows))
    ):
        raise PartitionUnusable("the partition's lists are garbled")
    if not same_files and _checksum(folder / _PARTS[3]) != manifest.crc_rows:
        raise PartitionUnusable("ivf-rows.bf16 does not match its checksum")
    partition = Partition(folder, manifest, centroids, offsets, positions, stamp)
    if not partition.fits(view):
        raise PartitionUnusable("the partition of another state of the cache")
    return partition


def _checksum(path: Path) -> int:
    """CRC-32 of a file, read a block at a time (not mapped: see :meth:`Partition._read`)."""
    crc = 0
    try:
        with path.open("rb", buffering=0) as fh:
            while block := fh.read(16 << 20):
                crc = zlib.crc32(block, crc)
    except OSError as exc:
        raise PartitionUnusable(f"the partition cannot be read ({exc})") from None
    return crc


def manifest_stamp(view: CacheView) -> tuple | None:
    """The partition manifest's identity (None when there is none): one ``stat``, so a
    long-lived reader notices a partition built since it last looked."""
    try:
        return identity(view.folder / MANIFEST)
    except OSError:
        return None


# --------------------------------------------------------------------------- building


def train_centroids(sample: np.ndarray, lists: int, iterations: int = ITERATIONS) -> np.ndarray:
    """Spherical k-means of unit rows: ``lists`` unit centres. Deterministic (seeded):
    the same rows give the same centres."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    sample = np.asarray(sample, dtype=np.float32)
    lists = max(1, min(lists, len(sample)))
    centroids = sample[np.sort(rng.choice(len(sample), lists, replace=False))].copy()
    for _ in range(iterations):
        assign = _nearest(sample, centroids)[0]
        sums = np.zeros_like(centroids)
        for start in range(0, len(sample), _BLOCK):  # np.add.at is 20x slower
            chosen = assign[start : start + _BLOCK]
            order = np.argsort(chosen, kind="stable")
            ranked = chosen[order]
            firsts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
            block = sample[start : start + _BLOCK][order]
            sums[ranked[firsts]] += np.add.reduceat(block, firsts, axis=0)
        empty = np.flatnonzero(np.bincount(assign, minlength=lists) == 0)
        if empty.size:  # a centre nobody chose: start it again at a random row
            sums[empty] = sample[rng.choice(len(sample), empty.size, replace=False)]
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        centroids = (sums / norms).astype(np.float32)
    return centroids


def _nearest(rows: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's nearest centre and its score, a block at a time."""
    import numpy as np

    assign = np.empty(len(rows), dtype=np.int64)
    score = np.empty(len(rows), dtype=np.float32)
    for start in range(0, len(rows), _BLOCK):
        sims = np.asarray(rows[start : start + _BLOCK], dtype=np.float32) @ centroids.T
        assign[start : start + len(sims)] = sims.argmax(axis=1)
        score[start : start + len(sims)] = sims.max(axis=1)
    return assign, score


def build_partition(
    view: CacheView,
    lock: DataLock | None = None,
    lists: int | None = None,
    still_current: Callable[[], bool] | None = None,
) -> bool:
    """Build the partition of the cache ``view`` reads (a writer, holding the writer lock:
    the cache does not change under it but by this process), new files beside the old,
    swapped in under the exclusive data lock if ``still_current()`` says the cache was
    not written anew meanwhile. Returns whether it was written."""
    import numpy as np

    folder = view.folder
    manifest = view.manifest
    dim, covered = view.dim, manifest.rows
    live = np.flatnonzero(view.alive[:covered])
    if live.size == 0:
        return False
    matrix = view.matrix()  # verified first if it must be
    lists = list_count(int(live.size)) if lists is None else max(1, min(lists, int(live.size)))
    rng = np.random.default_rng(SEED)
    take = min(int(live.size), SAMPLE_PER_LIST * lists, SAMPLE_MAX)
    sample = np.asarray(matrix[np.sort(rng.choice(live, take, replace=False))], np.float32)
    centroids = train_centroids(sample, lists)
    del sample
    assign = np.empty(live.size, dtype=np.int64)
    for start in range(0, live.size, _BLOCK):
        chunk = live[start : start + _BLOCK]
        block = matrix[int(chunk[0]) : int(chunk[-1]) + 1][chunk - chunk[0]]
        assign[start : start + len(chunk)] = _nearest(block, centroids)[0]
    order = np.argsort(assign, kind="stable")
    positions = live[order].astype("<i8")
    offsets = np.searchsorted(assign[order], np.arange(lists + 1)).astype("<i8")
    token = uuid.uuid4().hex
    temps = [folder.temp(name, token) for name in _PARTS]
    try:
        crcs = [
            _write(temps[0], np.ascontiguousarray(centroids, dtype="<f4")),
            _write(temps[1], offsets),
            _write(temps[2], positions),
        ]
        crc = 0
        with temps[3].open("wb") as fh:
            for start in range(0, len(positions), _BLOCK):
                rows = np.asarray(matrix[np.sort(positions[start : start + _BLOCK])])
                # in list order: the sort above only made the read sequential
                back = np.argsort(np.argsort(positions[start : start + _BLOCK], kind="stable"))
                data = to_bfloat16(rows[back])
                fh.write(memoryview(data).cast("B"))
                crc = zlib.crc32(data, crc)
        crcs.append(crc)
        with lock.exclusive() if lock is not None else contextlib.nullcontext():
            if still_current is not None and not still_current():
                return False
            with contextlib.suppress(OSError):
                (folder / MANIFEST).unlink()  # readers stop using the old one first
            for temp, name in zip(temps, _PARTS, strict=True):
                os.replace(temp, folder / name)
            written = PartitionManifest(
                collection=manifest.collection,
                epoch=manifest.epoch,
                rows=covered,
                dim=dim,
                lists=lists,
                count=len(positions),
                crc_centroids=crcs[0],
                crc_offsets=crcs[1],
                crc_positions=crcs[2],
                crc_rows=crcs[3],
                identities=_identities(folder),
            )
            return write_whole(folder / MANIFEST, written.encode())
    finally:
        for temp in temps:
            with contextlib.suppress(OSError):
                temp.unlink()


def to_bfloat16(rows: np.ndarray) -> np.ndarray:
    """float32 rows as bfloat16 bit patterns (the top half of each float, rounded to
    nearest even), little-endian uint16."""
    import numpy as np

    bits = np.ascontiguousarray(rows, dtype="<f4").view("<u4")
    rounded = (bits + (0x7FFF + ((bits >> 16) & 1))) >> 16
    return rounded.astype("<u2")


def from_bfloat16(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns back to float32 (exactly: the low half is zero)."""
    import numpy as np

    wide = np.empty(bits.shape, dtype=np.uint32)
    np.copyto(wide, bits)
    np.left_shift(wide, 16, out=wide)
    return wide.view(np.float32)


def _write(path: Path, array: np.ndarray) -> int:
    data = memoryview(array).cast("B") if array.size else memoryview(b"")
    with path.open("wb") as fh:
        fh.write(data)
    return zlib.crc32(data)


def wanted(view: CacheView, min_rows: int = MIN_ROWS) -> bool:
    """Whether a writer should build the partition of this cache now: it is large enough,
    and its partition is missing, of another state, damaged, or trails the cache by more
    than :data:`TAIL_FRACTION` of its rows (appended, or died since)."""
    if view.count < min_rows:
        return False
    try:
        partition = open_partition(view)
    except PartitionUnusable:
        return True
    return _trailing(partition, view)


def _trailing(partition: Partition, view: CacheView) -> bool:
    manifest = partition.manifest
    tail = view.manifest.rows - manifest.rows
    died = manifest.count - int(view.alive[: manifest.rows].sum())
    return tail + died > TAIL_FRACTION * max(manifest.count, 1)


def refresh_partition(
    view: CacheView,
    lock: DataLock | None = None,
    min_rows: int = MIN_ROWS,
    still_current: Callable[[], bool] | None = None,
) -> bool:
    """What an index run does at its end (a writer): build the partition if
    :func:`wanted` says so; else, when its files are whole but not the writer's own (a
    copied folder), note their identity so readers need not check them again. Returns
    whether it built one."""
    if view.count < min_rows:
        return False
    try:
        partition = open_partition(view)
    except PartitionUnusable:
        partition = None
    if partition is None or _trailing(partition, view):
        return build_partition(view, lock, still_current=still_current)
    current = _identities(view.folder)
    if current != partition.manifest.identities:
        with lock.exclusive() if lock is not None else contextlib.nullcontext():
            updated = PartitionManifest(**{**asdict(partition.manifest), "identities": current})
            write_whole(view.folder / MANIFEST, updated.encode())
    return False


def drop_partition(location: str | os.PathLike[str], collection_id: str) -> None:
    folder = cache_folder(location, collection_id)
    for part in PARTS:
        with contextlib.suppress(OSError):
            (folder / part).unlink()


# --------------------------------------------------------------------------- checking


def verify_partition(view: CacheView) -> str | None:
    """What is wrong with the partition of the cache ``view`` reads (a verified view:
    ``check`` compares the cache with Chroma first), or None when it is absent, of
    another state of the cache (the next index run builds it anew), or whole: every
    file matches its checksum, every live row it covers is listed exactly once, and each
    listed bfloat16 row is its cache row (to bfloat16's precision). Reads a block at a
    time: its memory does not grow with the library."""
    import numpy as np

    try:
        manifest = read_manifest(view.folder)
    except PartitionUnusable as exc:
        return None if str(exc) == "no partition" else f"the approximate index is unusable ({exc})"
    if manifest.epoch != view.manifest.epoch or manifest.rows > view.manifest.rows:
        return None
    try:
        partition = open_partition(view, check_rows=True)
    except PartitionUnusable as exc:
        return f"the approximate index is damaged ({exc})"
    seen = np.bincount(partition.positions, minlength=manifest.rows)
    if bool((seen > 1).any()):
        return "the approximate index lists a picture twice"
    if bool((view.alive[: manifest.rows] & (seen == 0)).any()):
        return "the approximate index leaves out pictures"
    matrix = view.matrix()
    for start in range(0, manifest.count, _BLOCK):
        places = partition.positions[start : start + _BLOCK]
        stop = start + len(places)
        stored = from_bfloat16(partition._read([(start, stop)], len(places)))
        if not np.allclose(stored, matrix[places], atol=1e-2):
            return "the approximate index holds other vectors than the vector cache"
    return None


def check_partition(
    location: str | os.PathLike[str],
    collection_id: str,
    segment: str,
    dim: int,
    con: sqlite3.Connection,
) -> str | None:
    """For ``clipseek check`` (store/repair.py), beside
    :func:`~clipseek.store.vector_cache.verify_against`: what is wrong with a collection's
    partition, or None. A cache that is absent, stale or damaged is that check's to
    report (and then the partition is not used anyway); ``repair`` (``refresh_caches``)
    builds a damaged partition anew."""
    try:
        view = open_view(location, collection_id, segment, dim, con)
        view.verify()
    except CacheUnusable:
        return None
    return verify_partition(view)
