"""Checking an index without the model, and rebuilding its vector files from what it stored.

Where Chroma keeps what (``chroma.sqlite3`` and the hnswlib files) is described, and
read, in :mod:`clipseek.store.chroma_format`; repair reads them whatever chromadb's release
(it is there for when chromadb cannot be trusted with them) and checks its result with
chromadb.

``collection.get(include=["embeddings"])`` answers from the loaded vector files plus
the log, so it needs the files that may be damaged. Here both are read directly
(SQLite read-only, numpy over the files, a pickle reader that builds only plain
values), so a damaged graph, a garbled header or a crash inside Chroma does not stop
the vectors being recovered: the graph is rebuilt from them by a fresh Chroma index.
Nothing here imports chromadb or torch, except the self-search, which runs in a child
process so that a crash there is reported as damage instead of killing the caller.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipseek.errors import ClipseekError, DamagedIndexError, StoreError
from clipseek.store.aside import aside_folder, kept_sentence, prune_aside
from clipseek.store.chroma import Store
from clipseek.store.chroma_format import (
    DATABASE,
    SEGMENT_NAME,
    collection_metadata,
    collections,
    connect_readonly,
    label_map,
    logged_vectors,
    not_unit,
    pending_writes,
    read_hnsw_rows,
    read_metadata,
    record_rowids,
    segments,
    stored_norms,
    unit_rows,
)
from clipseek.store.integrity import find_damage
from clipseek.store.keys import ancestors, meta_text, path_from_meta, path_id
from clipseek.store.lock import LOCK_NAMES, WriterLock
from clipseek.store.records import COLLECTION_PREFIX, FAILURES_PREFIX, Record
from clipseek.store.snapshot import remove_snapshot, take_snapshot

if TYPE_CHECKING:
    import numpy as np

#: Left in the database folder while an index run writes; found at the next run's start,
#: it says the last run was interrupted, and the index is checked before it is used.
RUN_MARKER = "clipseek-run.marker"
#: How many neighbours a self-search asks for: a copy of a file has the same vector,
#: so a record need not come first, only among its exact equals.
_SELF_K = 10
#: Vectors ``clipseek check`` searches for by default, chosen at random (``--full``: all).
#: If a share f of the vectors could not find themselves, a sample of m finds at least
#: one of them with probability 1 - (1 - f)^m: for m = 2,000, 99.3 % when f = 0.25 %
#: and 99.995 % when f = 0.5 %. Every other check covers every record.
CHECK_SAMPLE = 2000


# --------------------------------------------------------------------------- reading


@dataclass
class StoredCollection:
    """One Chroma collection as its files hold it."""

    name: str
    collection_id: str
    metadata: dict[str, Any]
    #: Record id → metadata, from the SQLite metadata segment.
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Record id → vector, from the vector files and the write log.
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    #: What could not be read of the vector files (None: all of it).
    vector_problem: str | None = None
    #: Stored vector norms (``length.bin``) that are not those of unit vectors.
    norm_problem: str | None = None
    #: Writes in Chroma's log its metadata has not applied yet (id → added, or deleted):
    #: in flight, not damage.
    pending: dict[str, bool] = field(default_factory=dict)

    @property
    def is_failures(self) -> bool:
        return self.name.startswith(FAILURES_PREFIX)

    @property
    def slug(self) -> str:
        prefix = FAILURES_PREFIX if self.is_failures else COLLECTION_PREFIX
        return self.name[len(prefix) :]


def read_stored(location: str | os.PathLike[str]) -> list[StoredCollection]:
    """Every clipseek collection with its records and vectors, read without Chroma.

    Raises :class:`DamagedIndexError` when the SQLite file itself cannot be read: then
    nothing can be recovered without the images.
    """
    folder = Path(location)
    path = folder / DATABASE
    if not path.is_file():
        return []
    try:
        con = connect_readonly(path)
    except sqlite3.Error as exc:
        raise DamagedIndexError(_unreadable(folder, exc)) from None
    try:
        return _read_collections(con, folder)
    except sqlite3.Error as exc:
        raise DamagedIndexError(_unreadable(folder, exc)) from None
    finally:
        con.close()


def _unreadable(folder: Path, exc: BaseException) -> str:
    return (
        f"The index at {folder} cannot be read ({exc}), so its stored vectors cannot be "
        "recovered. Rebuild it from your images with `clipseek index --rebuild FOLDER...`."
    )


def _read_collections(con: sqlite3.Connection, folder: Path) -> list[StoredCollection]:
    out = []
    for collection_id, name in collections(con, prefixes=[COLLECTION_PREFIX, FAILURES_PREFIX]):
        col = StoredCollection(name, collection_id, collection_metadata(con, collection_id))
        scopes = {scope: segment for scope, segment, _ in segments(con, collection_id)}
        rowids = _read_records(con, scopes.get("METADATA"), col)
        if scopes.get("METADATA") is not None:
            col.pending = pending_writes(con, collection_id, scopes["METADATA"])
        _read_vectors(con, folder, scopes.get("VECTOR"), rowids, col)
        out.append(col)
    return out


def _read_records(
    con: sqlite3.Connection, segment: str | None, col: StoredCollection
) -> dict[int, str]:
    """Fill ``col.records``; returns SQLite row id → record id."""
    if segment is None:
        return {}
    rowids = {rowid: record_id for record_id, rowid in record_rowids(con, segment).items()}
    for rowid, meta in read_metadata(con, segment).items():
        record_id = rowids.get(rowid)
        if record_id is not None:
            col.records[record_id] = meta
    for record_id in rowids.values():
        col.records.setdefault(record_id, {})
    return rowids


def _read_vectors(
    con: sqlite3.Connection,
    folder: Path,
    segment: str | None,
    rowids: dict[int, str],
    col: StoredCollection,
) -> None:
    """The persisted vectors (vector files), then the write log replayed over them in order."""
    if segment is not None and SEGMENT_NAME.match(segment) and (folder / segment).is_dir():
        try:
            vectors, col.norm_problem = _hnsw_vectors(folder / segment, rowids)
            col.vectors.update(vectors)
        except (OSError, ValueError, struct.error) as exc:
            col.vector_problem = f"{segment}: {exc}"
    for record_id, vector in logged_vectors(con, col.collection_id).items():
        if vector is None:
            col.vectors.pop(record_id, None)
        else:
            col.vectors[record_id] = vector


def _hnsw_vectors(seg: Path, rowids: dict[int, str]) -> tuple[dict[str, np.ndarray], str | None]:
    """Vectors in ``data_level0.bin``, by record id; deleted elements are left out.

    Labels map to ids through ``index_metadata.pickle``, or, when that is unreadable,
    through SQLite's row ids, which Chroma uses as labels.
    """
    import numpy as np

    rows = read_hnsw_rows(seg)
    count = rows.header.count
    if count == 0:
        return {}, None
    label_to_id = label_map(seg) or dict(rowids)
    vectors = rows.vectors
    out = {}
    for i in range(count):
        if rows.deleted[i]:
            continue
        record_id = label_to_id.get(int(rows.labels[i]))
        if record_id is not None:
            out[record_id] = vectors[i]
    # Chroma keeps each vector's norm there to give back what was stored; clipseek
    # stores unit vectors, so anything else is damage (a reused vector would carry it).
    norms = stored_norms(seg, count)
    if norms.size < count or not (np.abs(norms[~rows.deleted] - 1.0) < 1e-3).all():
        return out, "length.bin holds norms that are not those of the stored vectors"
    return out, None


# --------------------------------------------------------------------------- check


@dataclass
class CheckReport:
    location: str
    #: Records (images) in the main collections.
    records: int = 0
    #: Of those, records whose vector a search by that vector returns.
    found_self: int = 0
    #: One sentence each; empty when the index is healthy.
    problems: list[str] = field(default_factory=list)
    #: Whether :func:`repair` can fix the problems from the stored vectors.
    repairable: bool = True
    #: The self-search looked for a random sample of the vectors, not every one.
    sampled: bool = False
    #: The self-search could not run at all (no verdict on the vector files).
    inconclusive: bool = False
    #: Of ``problems``, those of the vector cache beside the index (a rebuild of the
    #: cache fixes them; searches meanwhile read Chroma's files, never the cache).
    cache_problems: list[str] = field(default_factory=list)

    @property
    def only_cache(self) -> bool:
        return bool(self.problems) and self.problems == self.cache_problems

    @property
    def healthy(self) -> bool:
        return not self.problems

    def sentence(self) -> str:
        if self.healthy:
            if self.sampled:
                return (
                    f"The index at {self.location} is healthy: {self.records} images, every "
                    f"record has its vector, and {self.found_self} vectors chosen at random "
                    "each find themselves (`--full` searches for every one)."
                )
            return (
                f"The index at {self.location} is healthy: {self.records} images, every "
                "record has its vector and every vector finds itself."
            )
        fix = (
            "Run `clipseek repair` to rebuild it from the index (no model needed)."
            if self.only_cache
            else "Run `clipseek repair` to rebuild the vector files from the stored vectors "
            "(no model needed)."
            if self.repairable
            else "Rebuild it from your images with `clipseek index --rebuild FOLDER...`."
        )
        return f"The index at {self.location} is damaged: {self.problems[0]} {fix}"


def check(store: Store, *, self_search: bool = True, sample: int | None = None) -> CheckReport:
    """Whether records, vector files and metadata agree, and every vector finds itself.

    A reader: it never writes the index (Chroma writes whatever folder it opens, so the
    self-search opens a private snapshot), and it sees only committed states (the shared
    data lock is held from the structural check to the end of the self-search, so a
    writer's work in flight is never taken for damage; a writer waits meanwhile). The
    self-search loads Chroma in a child process, so that a crash there (a garbled file the
    structural check missed) is reported as damage and not as the death of this process.
    ``sample`` limits the self-search to that many vectors per collection, chosen at
    random (the automatic check after an interrupted run); every other check always
    covers every record.
    """
    report = CheckReport(store.location)
    if store.is_remote:
        report.problems.append("a Chroma server cannot be checked from here.")
        report.repairable = False
        return report
    folder = Path(store.location)
    with store.reading():
        # Asked for: every link is read, notes or not.
        damage = find_damage(folder, notes="ignore")
        if damage:
            report.problems.append(f"{damage}.")
        try:
            collections = read_stored(folder)
        except DamagedIndexError as exc:
            report.problems.append(str(exc).split(" (", 1)[0] + ".")
            report.repairable = False
            return report
        # A failures collection follows the key schema of its main collection.
        schemas = {c.slug: _schema(c) for c in collections if not c.is_failures}
        for col in collections:
            _check_collection(col, report, schemas.get(col.slug, _schema(col)))
        if not report.problems:
            _check_caches(store, collections, report)
        if report.problems or not self_search or not (folder / DATABASE).is_file():
            return report
        try:
            snapshot = take_snapshot(folder)
        except OSError as exc:
            report.problems.append(f"the self-search could not run ({exc}).")
            report.inconclusive = True
            report.repairable = False
            return report
        try:
            _self_search(str(snapshot), report, sample, collections)
        finally:
            remove_snapshot(snapshot)
    return report


def _check_caches(store: Store, collections: list[StoredCollection], report: CheckReport) -> None:
    """The vector cache of each index against what the index holds (vector_cache.py)."""
    from clipseek.store.chroma_format import record_rowids
    from clipseek.store.vector_cache import verify_against

    with store.reading():
        con = connect_readonly(Path(store.location) / "chroma.sqlite3")
        try:
            for col in collections:
                if col.is_failures:
                    continue
                row = con.execute(
                    "SELECT id FROM segments WHERE collection = ? AND scope = 'METADATA'",
                    (col.collection_id,),
                ).fetchone()
                if row is None:
                    continue
                segment = str(row[0])
                problem = verify_against(
                    store.location,
                    col.collection_id,
                    segment,
                    int(col.metadata.get("dim", 0) or 0),
                    con,
                    record_rowids(con, segment),
                    col.vectors,
                )
                if problem:
                    report.problems.append(f"{problem}.")
                    report.cache_problems.append(f"{problem}.")
        except sqlite3.Error:
            pass  # the checks before read the same file; they say what is wrong
        finally:
            con.close()


def _schema(col: StoredCollection) -> int:
    return int(col.metadata.get("clipseek_schema", 1) or 1)


def _check_collection(col: StoredCollection, report: CheckReport, schema: int) -> None:
    import numpy as np

    if col.norm_problem and not col.is_failures:  # failure records hold a zero vector
        report.problems.append(f"{col.norm_problem}.")
    if col.vector_problem:
        report.problems.append(
            f"the vector files of {col.name} cannot be read ({col.vector_problem})."
        )
    if not col.is_failures:
        report.records += len(col.records)
        # A record whose delete, or a vector whose record, is still only in Chroma's
        # write log is a writer's work in flight, which Chroma completes: not damage.
        missing = [i for i in col.records if i not in col.vectors and i not in col.pending]
        if missing:
            report.problems.append(
                f"{len(missing)} of {len(col.records)} records have no stored vector."
            )
        extra = [i for i in col.vectors if i not in col.records and not col.pending.get(i)]
        if extra:
            report.problems.append(f"{len(extra)} stored vectors belong to no record.")
        dim = int(col.metadata.get("dim", 0) or 0)
        bad: list[str] = []
        sized: list[tuple[str, np.ndarray]] = []
        for id_, vec in col.vectors.items():
            if id_ not in col.records:
                continue
            if dim and vec.shape != (dim,):
                bad.append(path_from_meta(col.records[id_]))
            else:
                sized.append((id_, vec))
        # numpy over blocks of vectors, not a call per vector
        for start in range(0, len(sized), 8192):
            chunk = sized[start : start + 8192]
            off = np.flatnonzero(~unit_rows(np, np.stack([vec for _, vec in chunk])))
            bad.extend(path_from_meta(col.records[chunk[j][0]]) for j in off.tolist())
        if bad:
            names = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
            report.problems.append(f"{not_unit(len(bad))} ({names}).")
    wrong = 0
    for id_, meta in col.records.items():
        path = path_from_meta(meta)
        if (
            not path
            or path_id(path) != id_
            or not isinstance(meta.get("size"), int)
            or not isinstance(meta.get("mtime_ns"), int)
            or meta.get("path") != meta_text(path, schema)
            or (meta.get("dirs") is not None and meta.get("dirs") != ancestors(path, schema))
        ):
            wrong += 1
    if wrong:
        report.problems.append(
            f"{wrong} records of {col.name} have metadata that does not match their path."
        )


def _self_search(
    location: str,
    report: CheckReport,
    sample: int | None = None,
    collections: list[StoredCollection] | None = None,
) -> None:
    """Run :func:`_self_search_child` in a child process and read its verdict. With a
    ``sample`` and the ``collections`` already read, the sampled vectors are handed to
    the child in a file, so it does not read every record again."""
    import tempfile

    payload = None
    if sample and collections is not None:
        payload = Path(tempfile.mkdtemp(prefix="clipseek-check-")) / "sample.npz"
        report.sampled = _write_sample(payload, collections, sample)
    try:
        _run_self_search(location, report, sample, payload)
    finally:
        if payload is not None:
            shutil.rmtree(payload.parent, ignore_errors=True)


def _write_sample(path: Path, collections: list[StoredCollection], sample: int) -> bool:
    """The vectors the child searches for (a random ``sample`` of each collection's), with
    each collection's record count; returns whether it is fewer than all of them."""
    import random

    import numpy as np

    arrays: dict[str, Any] = {}
    sampled = False
    for n, col in enumerate(c for c in collections if not c.is_failures):
        ids = [i for i in col.records if i in col.vectors]
        if 0 < sample < len(ids):
            ids = random.Random(0).sample(ids, sample)
            sampled = True
        arrays[f"name{n}"] = np.array(col.name)
        arrays[f"records{n}"] = np.array(_record_counts(col))
        arrays[f"ids{n}"] = np.array(ids, dtype=str)
        dim = int(col.metadata.get("dim", 0) or 0) or 1
        arrays[f"vectors{n}"] = (
            np.stack([col.vectors[i] for i in ids]) if ids else np.zeros((0, dim), np.float32)
        )
    np.savez(path, **arrays)
    return sampled


def _run_self_search(
    location: str, report: CheckReport, sample: int | None, payload: Path | None
) -> None:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH", "")]))
    env.setdefault("ANONYMIZED_TELEMETRY", "False")
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "clipseek.store.repair",
                "self-search",
                location,
                str(sample or 0),
                *([str(payload)] if payload is not None else []),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=3600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        report.problems.append(f"the self-search could not run ({exc}).")
        report.inconclusive = True
        report.repairable = False
        return
    if proc.returncode < 0:
        report.problems.append(
            f"Chroma crashed while searching the vector files (signal {-proc.returncode})."
        )
        return
    try:
        verdict = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = " ".join(proc.stderr.split())[-200:]
        report.problems.append(f"a search of the vector files failed ({tail or 'no answer'}).")
        return
    report.found_self = int(verdict.get("found", 0))
    problem = verdict.get("problem")
    if problem:
        report.problems.append(str(problem))


def _sample_from(payload: str) -> dict[str, tuple[tuple[int, ...], list[str], Any]]:
    """Collection name -> (record counts, ids, vectors) from :func:`_write_sample`'s file."""
    import numpy as np

    out = {}
    with np.load(payload) as data:
        n = 0
        while f"name{n}" in data:
            ids = [str(i) for i in data[f"ids{n}"].tolist()]
            counts = tuple(int(c) for c in data[f"records{n}"].tolist())
            out[str(data[f"name{n}"])] = (counts, ids, data[f"vectors{n}"])
            n += 1
    return out


def _usable(vec: np.ndarray, dim: int) -> bool:
    """A stored vector of the collection's size, finite and of unit length."""
    import numpy as np

    return (not dim or vec.shape[0] == dim) and bool(unit_rows(np, vec.reshape(1, -1))[0])


def _record_counts(col: StoredCollection) -> tuple[int, int]:
    """The records a collection lists, and as many once Chroma applies the writes still in
    its log (a writer's work in flight, not damage: see StoredCollection)."""
    applied = {i for i in col.records if col.pending.get(i) is not False}
    applied |= {i for i, added in col.pending.items() if added}
    return len(col.records), len(applied)


def _self_search_child(
    location: str, sample: int = 0, payload: str | None = None
) -> dict[str, Any]:
    """In the child: search every stored vector (or ``payload``'s sample) through Chroma;
    count those that find themselves among their exact equals."""
    import numpy as np

    store = Store(location, create=False)
    found = 0
    lost = 0
    try:
        if payload is not None:
            wanted = _sample_from(payload)
        else:
            wanted = {}
            for c in read_stored(location):
                if not c.is_failures:
                    ids = [i for i in c.records if i in c.vectors]
                    if 0 < sample < len(ids):
                        import random

                        ids = random.Random(0).sample(ids, sample)
                    vectors = np.stack([c.vectors[i] for i in ids]) if ids else None
                    wanted[c.name] = (_record_counts(c), ids, vectors)
        for col in store._collections():
            if col.name not in wanted:
                continue
            counts, ids, vectors = wanted[col.name]
            total = int(col.count())
            if total not in counts:
                return {
                    "found": found,
                    "problem": f"Chroma counts {total} records in {col.name}, "
                    f"the database lists {counts[0]}.",
                }
            k = min(_SELF_K, total)
            for start in range(0, len(ids), 256):
                chunk = ids[start : start + 256]
                res = col.query(
                    query_embeddings=np.asarray(vectors[start : start + 256], dtype=np.float32),
                    n_results=k,
                    include=["distances"],
                )
                for own, hits, dists in zip(chunk, res["ids"], res["distances"], strict=True):
                    if own in hits:
                        found += 1
                    elif len(hits) == k and dists and max(dists) < 1e-6:
                        found += 1  # more exact copies than k: it cannot be told apart
                    else:
                        lost += 1
    except (ClipseekError, Exception) as exc:
        return {"found": found, "problem": f"a search of the vector files failed ({exc})."}
    if lost:
        return {
            "found": found,
            "problem": f"{lost} of {found + lost} vectors cannot be found by searching for "
            "themselves.",
        }
    return {"found": found, "problem": None}


# --------------------------------------------------------------------------- repair


@dataclass
class RepairReport:
    location: str
    moved_to: str | None
    restored: int = 0
    #: Records without a usable vector: the next ``clipseek index`` embeds them again.
    dropped: int = 0
    after: CheckReport | None = None
    #: Only the vector cache beside the index was rebuilt.
    cache_only: bool = False

    def sentence(self) -> str:
        if self.cache_only:
            return (
                f"Rebuilt the vector cache of the index at {self.location} from the index; "
                "the index itself needed no repair."
            )
        text = (
            f"Repaired the index at {self.location}: {self.restored} images restored from "
            "their stored vectors without the model"
        )
        if self.dropped:
            text += (
                f"; {self.dropped} had no usable vector and are embedded again by the next "
                "`clipseek index` run"
            )
        if self.moved_to:
            moved = Path(self.moved_to)
            text += (
                f". The old files were moved to {moved} "
                f"({kept_sentence(moved.parent / Path(self.location).name)})"
            )
        return text + "."


def repair(
    store: Store,
    *,
    force: bool = False,
    on_progress: Callable[[str], None] | None = None,
    locked: bool = False,
    before: CheckReport | None = None,
) -> RepairReport | None:
    """Rebuild every collection from the stored vectors and metadata; None when healthy.

    The old files move to a sibling folder first (nothing is deleted), then a fresh
    Chroma index is written from the vectors read by :func:`read_stored`. Records
    whose vector is missing or garbled are left out, so the next index run sees them
    as new files and embeds them. Holds the writer lock unless ``locked`` says the
    caller holds it.
    """
    say = on_progress or (lambda _text: None)
    if store.reader:  # a repair writes: it opens the folder itself, never a reader's snapshot
        store = store.writer()
    lock = None if locked or store.is_remote else WriterLock(store.location)
    if store.is_remote:
        raise StoreError("`clipseek repair` works on a local index folder, not a Chroma server.")
    if lock is not None:
        lock.acquire(wait=False)
    try:
        if before is None:
            say("Checking the index")
            before = check(store)
        if before.healthy and not force:
            return None
        if not before.repairable:
            raise DamagedIndexError(before.sentence())
        if before.only_cache and not force:
            _rebuild_caches(store)
            report = RepairReport(store.location, None, cache_only=True)
            report.after = check(store)
            return report
        with store.reading():
            collections = read_stored(store.location)
        # The repaired index is written beside the old one and swapped in only when complete:
        # readers keep answering from the old files meanwhile, and a repair that is killed
        # (Ctrl-C, SIGKILL) leaves the index as it found it, not half rebuilt.
        staging = _fresh_staging(store)
        fresh = Store(str(staging))
        restored_total = dropped_total = 0
        for col in (c for c in collections if not c.is_failures):
            restored, dropped = _restore(fresh, col, collections)
            restored_total += restored
            dropped_total += dropped
            say(f"Restored {restored} images")
        fresh._forget_client()  # stop this process's Chroma there so everything is on disk
        say("Moving the old files aside")
        moved = move_aside(store, replacement=staging)
        store._committed()  # readers take the repaired index
        _rebuild_caches(store)
        report = RepairReport(store.location, moved)
        report.restored, report.dropped = restored_total, dropped_total
        report.after = check(store)
        return report
    finally:
        if lock is not None:
            lock.release()


def _rebuild_caches(store: Store) -> None:
    """Write every index's vector cache anew from the index (the caller holds the
    writer lock)."""
    from clipseek.store.cache_build import refresh_caches
    from clipseek.store.vector_cache import drop_all_caches

    drop_all_caches(store.location)
    refresh_caches(store.location, store._lock)


STAGING_SUFFIX = ".repairing"


def _fresh_staging(store: Store) -> Path:
    """An empty sibling folder for the repaired index (a killed repair's leftover, which
    nothing else uses while the writer lock is held, is removed first)."""
    folder = Path(store.location)
    staging = folder.with_name(f"{folder.name}{STAGING_SUFFIX}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def move_aside(store: Store, replacement: Path | None = None) -> str:
    """Move everything but the lock files to ``<db>.damaged-<time>``; returns where.
    With ``replacement``, that folder's files then take their place (a few renames).
    Only the newest few such copies are kept (:mod:`clipseek.store.aside`)."""
    folder = Path(store.location)
    store._forget_client()
    target = aside_folder(folder)
    with store.writing():
        try:
            target.mkdir(parents=True)
            for item in folder.iterdir():
                if item.name not in LOCK_NAMES and item.name != RUN_MARKER:
                    shutil.move(str(item), str(target / item.name))
            if replacement is not None:
                for item in replacement.iterdir():
                    if item.name not in LOCK_NAMES:
                        shutil.move(str(item), str(folder / item.name))
                shutil.rmtree(replacement, ignore_errors=True)
        except OSError as exc:
            raise StoreError(
                f"The index at {folder} could not be moved aside to {target} "
                f"({exc.strerror or exc}); move it by hand, then run `clipseek repair` on "
                "the moved copy with --db."
            ) from None
    store._health_checked = store._structure_checked = False
    prune_aside(folder)
    return str(target)


def _restore(
    store: Store, col: StoredCollection, everything: Iterable[StoredCollection]
) -> tuple[int, int]:

    dim = int(col.metadata.get("dim", 0) or 0)
    model_key = str(col.metadata.get("model_key", ""))
    index = store.create_index(
        model_key, str(col.metadata.get("model_name", model_key)), col.slug, dim
    )
    created = col.metadata.get("created")
    if created:
        with suppress(Exception):
            meta = {k: v for k, v in index._meta.items() if not k.startswith("hnsw:")}
            meta["created"] = created
            index._col.modify(metadata=meta)
            index._meta = meta
    try:
        roots = [str(r) for r in json.loads(str(col.metadata.get("roots", "[]")))]
    except ValueError:
        roots = []
    records = []
    dropped = 0
    for id_, meta in col.records.items():
        vec = col.vectors.get(id_)
        path = path_from_meta(meta)
        if vec is None or not path or path_id(path) != id_ or not _usable(vec, dim):
            dropped += 1
            continue
        extra = {
            k: v
            for k, v in meta.items()
            if k not in ("path", "path_b64", "dirs", "size", "mtime_ns", "width", "height")
            and isinstance(v, str | int | float | bool)
        }
        records.append(
            Record(
                path,
                vec,
                int(meta.get("size", -1)),
                int(meta.get("mtime_ns", -1)),
                int(meta.get("width", 0) or 0),
                int(meta.get("height", 0) or 0),
                extra=extra,
            )
        )
    for start in range(0, len(records), 1000):
        index.upsert(records[start : start + 1000])
    if roots:
        _set_roots(index, roots)
    for other in everything:
        if other.is_failures and other.slug == col.slug and other.records:
            failures = []
            for meta in other.records.values():
                path = path_from_meta(meta)
                if path:
                    failures.append(
                        (
                            path,
                            int(meta.get("size", -1)),
                            int(meta.get("mtime_ns", -1)),
                            str(meta.get("reason", "unreadable")),
                        )
                    )
            index.record_failures(failures)
    return len(records), dropped


def _set_roots(index: Any, roots: list[str]) -> None:
    """Roots are stored as text already; keep them as they were."""
    meta = {k: v for k, v in index._meta.items() if not k.startswith("hnsw:")}
    meta["roots"] = json.dumps(sorted(set(roots)))
    with suppress(Exception):
        index._col.modify(metadata=meta)
        index._meta = meta


# --------------------------------------------------------------------------- interrupted runs


class RunMarker:
    """A file present while an index run writes: left behind, the run was interrupted."""

    def __init__(self, location: str) -> None:
        self.path = Path(location) / RUN_MARKER

    def begin(self) -> bool:
        """Mark a run as started; returns whether the previous one never finished."""
        interrupted = self.path.exists()
        with suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(
                json.dumps({"pid": os.getpid(), "started": datetime.now().isoformat()})
            )
        return interrupted

    def end(self) -> None:
        with suppress(OSError):
            self.path.unlink(missing_ok=True)


def _main(argv: list[str]) -> int:
    if len(argv) in (3, 4) and argv[0] == "self-search":
        print(json.dumps(_self_search_child(argv[1], int(argv[2]), *argv[3:])))
        return 0
    print("usage: python -m clipseek.store.repair self-search DB SAMPLE [FILE]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
