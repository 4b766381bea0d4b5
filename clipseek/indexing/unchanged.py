"""Nothing to do, nothing imported: a re-index of an unchanged tree without chromadb.

Most index runs after the first find nothing changed. Deciding that through chromadb
costs its import (over a second on a small machine) before a single file is compared.
Here the index's records are read straight from Chroma's SQLite file, read-only, the
way ``clipseek info`` reads its numbers (:mod:`clipseek.store.chroma_format`), and
compared with a scan of the folders: when every file is there with the size, mtime, ctime
and inode the index recorded, and nothing else is, the run is over. Files that failed to
read and have not changed since are named again, as the normal path names them.

When some files differ, the comparison (:class:`TreeDelta`) goes to the normal path, which
then looks up only those records, by id, instead of reading every record through chromadb
and scanning again: a run that adds a thousand files to a million costs the thousand.
Anything not understood (a chromadb release that reading was not tested with, another
Chroma layout, writes not yet applied, a scan error, a new root, ``--rebuild``, records
from before ctime, inode and photo dates were kept) gives no comparison, and the normal
path does it all itself.

The caller holds the index's writer lock, so no other run writes while this reads.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from clipseek.fileio import identity, write_whole
from clipseek.indexing.events import (
    FileFailed,
    IndexFinished,
    IndexSummary,
    PlanReady,
    ScanProgress,
)
from clipseek.indexing.scanner import (
    FileInfo,
    PseudoFilesystems,
    ScanOptions,
    normalise_root,
    scan,
)
from clipseek.photos.imaging import worth_retrying
from clipseek.store import chroma_format as chroma
from clipseek.store.chroma_format import DATABASE, release_known
from clipseek.store.keys import KEY_SCHEMA, meta_text, path_from_meta, path_id
from clipseek.store.records import COLLECTION_PREFIX, FAILURES_PREFIX, HNSW_CONFIG

if TYPE_CHECKING:
    from clipseek.indexing.events import EventHandler
    from clipseek.indexing.options import IndexOptions
    from clipseek.models.catalogue import ModelSpec

#: The metadata of each record this check compares, with the column that holds it.
_COMPARED = (
    ("path", "string"),
    ("path_b64", "string"),
    ("size", "int"),
    ("mtime_ns", "int"),
    ("ctime_ns", "int"),
    ("inode", "int"),
    ("taken_local", "present"),
)


#: The metadata of each recorded failure this check reads.
_FAILURE_COLUMNS = (
    ("path", "string"),
    ("path_b64", "string"),
    ("size", "int"),
    ("mtime_ns", "int"),
    ("reason", "string"),
)

#: path → (size, mtime_ns, reason) of every file the index records as unreadable.
Failures = dict[str, tuple[int, int, str]]


def _stored(
    db: Path, collection_name: str, failures_name: str
) -> tuple[dict[str, tuple[int, int, int, int]], list[str], Failures] | None:
    """path → (size, mtime_ns, ctime_ns, inode) of every record, the roots the index
    recorded, and the recorded failures; None if anything is not as expected."""
    con = chroma.connect_readonly(db, timeout=1.0)
    try:
        if not chroma.has_columns(con, chroma.QUICK_COLUMNS):
            return None
        head = _head(con, collection_name, failures_name)
        if head is None:
            return None
        found, failed, meta = head
        rows = chroma.metadata_table(con, found[1], _COMPARED)
        if chroma.record_count(con, found[1]) != len(rows):
            return None
        out = dict(_record(*row) for row in rows)
        return out, _roots(meta), failed
    except (sqlite3.Error, ValueError, TypeError):
        return None
    finally:
        con.close()


def _head(
    con: sqlite3.Connection, collection_name: str, failures_name: str
) -> tuple[tuple[str, str], Failures, dict[str, object]] | None:
    """The collection (id, metadata segment), its recorded failures and its metadata;
    None when there is none, or when it is due for upkeep that the normal run does (an
    older key schema, an ef_search below today's)."""
    found = _collection(con, collection_name)
    if found is None:
        return None
    failed = _failures(con, _collection(con, failures_name, deletes_may_wait=True))
    meta = chroma.collection_metadata(con, found[0])
    if _upkeep_due(meta, chroma.collection_configuration(con, found[0])):
        return None
    return found, failed, meta


def _collection(
    con: sqlite3.Connection, name: str, deletes_may_wait: bool = False
) -> tuple[str, str] | None:
    """(collection id, metadata segment) of a collection; None when there is none."""
    found = chroma.collections(con, name=name)
    if not found:
        return None
    collection_id = found[0][0]
    segment = chroma.metadata_segment(con, collection_id)
    # Writes still in Chroma's log and not yet in the metadata tables: unknown. (Chroma
    # leaves deletes of records that were never there in its log: for the failures
    # collection those cannot add a failure, so only other writes count.)
    if chroma.writes_pending(con, collection_id, segment, count_deletes=not deletes_may_wait):
        raise ValueError("unapplied writes")
    return collection_id, segment


def _record(
    _rowid: int, path: str | None, path_b64: str | None, *stat_dated: object
) -> tuple[str, tuple[int, int, int, int]]:
    """A row of :data:`_COMPARED` as (path, (size, mtime_ns, ctime_ns, inode)); ValueError
    for a record from before ctime, inode and photo dates were kept (the normal run adds
    them, from the file's stat and header, without a model run)."""
    *stat, dated = stat_dated
    if not all(isinstance(v, int) for v in stat) or not dated:
        raise ValueError("a record without identity or dates")
    size, mtime_ns, ctime_ns, inode = stat
    name = path_from_meta({"path": path or "", "path_b64": path_b64})
    return name, (int(size), int(mtime_ns), int(ctime_ns), int(inode))  # type: ignore[call-overload]


def _failures(con: sqlite3.Connection, failures: tuple[str, str] | None) -> Failures:
    """Every recorded failure of the failures collection (id, segment), if there is one."""
    failed: Failures = {}
    if failures is None:
        return failed
    for _rowid, path, path_b64, size, mtime_ns, reason in chroma.metadata_table(
        con, failures[1], _FAILURE_COLUMNS
    ):
        if not (isinstance(size, int) and isinstance(mtime_ns, int) and path):
            raise ValueError("a failure record without its stat")
        name = path_from_meta({"path": path, "path_b64": path_b64})
        failed[name] = (size, mtime_ns, str(reason or "unreadable"))
    return failed


def _roots(meta: dict[str, object]) -> list[str]:
    import json

    recorded = json.loads(str(meta.get("roots", "[]")))
    if not isinstance(recorded, list):
        raise ValueError("roots")
    return [str(r) for r in recorded]


#: Where an index run keeps what this check last read from the SQLite file.
RECORDS_CACHE = "clipseek-records.cache"
_CACHE_FORMAT = 3


def _database_identity(db: Path) -> list[tuple[int, int, int, int] | None] | None:
    """Size, mtime, ctime and inode of the database and its write-ahead log: any write
    to the database changes one of them. None while a rollback journal is there (a write
    in flight, or one to be rolled back), when only SQLite itself can say what is in it."""
    out: list[tuple[int, int, int, int] | None] = []
    for suffix in ("", "-wal", "-journal"):
        try:
            found = identity(f"{db}{suffix}")
        except FileNotFoundError:
            if not suffix:
                return None
            out.append(None)
            continue
        except OSError:
            return None
        if suffix == "-journal":
            return None
        out.append(found)
    return out


def _stored_or_remembered(
    db: Path, collection_name: str, failures_name: str, identity: object
) -> tuple[dict[str, tuple[int, int, int, int]], list[str], Failures] | None:
    """:func:`_stored`, kept beside the database for the next run while the database's
    files are unchanged.

    Reading and pivoting 60,000 metadata rows is the largest part of a re-index with
    nothing to do (docs/PERFORMANCE.md); a file of the result loads in a few milliseconds.
    It is used only while the database's files have the identity they had when it was
    read (the key names them), so the records it gives are exactly the ones the database
    holds, and only when it proves it was written by clipseek for that database (see
    :func:`load_cache`). ``identity``: the database files' identity, taken just before
    (:func:`_database_identity`). The caller holds the writer lock, so writing here is a
    writer's write.
    """
    key = _records_key(identity, collection_name, failures_name)
    cache = db.with_name(RECORDS_CACHE)
    if identity is not None:
        remembered = load_cache(cache, key)
        if remembered is not None:
            return remembered
    found = _stored(db, collection_name, failures_name)
    if found is None or identity is None or _database_identity(db) != identity:
        return found
    save_cache(cache, key, *found)  # failing: read next time
    return found


def _records_key(identity: object, collection_name: str, failures_name: str) -> str:
    """What a records cache is for: the database files' identity among it."""
    return repr((_CACHE_FORMAT, identity, collection_name, failures_name, KEY_SCHEMA, HNSW_CONFIG))


def _cache_key(identity: object, spec: ModelSpec) -> str:
    slug = spec.collection_slug
    return _records_key(identity, COLLECTION_PREFIX + slug, FAILURES_PREFIX + slug)


_CACHE_MAGIC = b"clipseek-records 2\n"


def _cache_secret() -> bytes | None:
    """This user's key for the records cache (made on first use, readable by the user
    only): whoever can write the index folder but is not this user cannot make a cache
    that passes for clipseek's. None when it cannot be read or made: no cache then."""
    from clipseek.config import data_dir

    path = data_dir() / "records-cache.key"
    try:
        secret = path.read_bytes()
        if len(secret) == 32:
            return secret
    except OSError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_whole(path, os.urandom(32))
        os.chmod(path, 0o600)
        secret = path.read_bytes()
    except OSError:
        return None
    return secret if len(secret) == 32 else None


def _mac(secret: bytes, payload: bytes) -> bytes:
    import hashlib
    import hmac

    return hmac.new(secret, payload, hashlib.sha256).digest()


def save_cache(
    cache: Path,
    key: str,
    stored: dict[str, tuple[int, int, int, int]],
    roots: list[str],
    failed: Failures,
) -> None:
    """Write the records cache, signed with this user's key (best effort)."""
    import marshal

    secret = _cache_secret()
    if secret is None:
        return
    payload = marshal.dumps((key, stored, roots, failed))
    write_whole(cache, _CACHE_MAGIC + _mac(secret, payload) + payload)


def load_cache(
    cache: Path, key: str
) -> tuple[dict[str, tuple[int, int, int, int]], list[str], Failures] | None:
    """The records a cache holds for ``key`` (the database's identity among it), or None:
    unsigned, signed by another key, for another database, or not of the shape written
    (a damaged or forged file is never trusted, and never crashes the run)."""
    import hmac
    import marshal

    try:
        data = cache.read_bytes()
    except OSError:
        return None
    head = len(_CACHE_MAGIC) + 32
    secret = _cache_secret()
    if secret is None or not data.startswith(_CACHE_MAGIC) or len(data) < head:
        return None
    payload = data[head:]
    if not hmac.compare_digest(data[len(_CACHE_MAGIC) : head], _mac(secret, payload)):
        return None
    try:
        saved_key, stored, roots, failed = marshal.loads(payload)
    except (ValueError, EOFError, TypeError):
        return None
    if saved_key != key or not isinstance(stored, dict) or not isinstance(roots, list):
        return None
    if not isinstance(failed, dict) or not all(
        isinstance(path, str)
        and isinstance(f, tuple)
        and len(f) == 3
        and type(f[0]) is int
        and type(f[1]) is int
        and isinstance(f[2], str)
        for path, f in failed.items()
    ):
        return None
    if not all(isinstance(r, str) for r in roots):
        return None
    # The records themselves are not checked one by one (a second at a million): the
    # signature shows clipseek wrote them, in this shape, for this very database.
    return stored, roots, failed


def _upkeep_due(meta: dict[str, object], configuration: str) -> bool:
    """Whether a writer has work on an unchanged tree: an older key schema to migrate, or
    an ef_search below today's (both done by the normal run's first open)."""
    import json

    schema = meta.get("clipseek_schema")
    if not isinstance(schema, int) or schema < KEY_SCHEMA:
        return True
    found: list[int] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "ef_search" and isinstance(value, int):
                    found.append(value)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(configuration or "{}"))
    return any(value < int(HNSW_CONFIG["ef_search"]) for value in found)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


@dataclass
class TreeDelta:
    """A scan of the roots against the records read from the SQLite file: which files
    differ, so that the normal run plans only those (O(changes): reading every record
    through chromadb costs minutes at a million) and need not scan again."""

    roots: list[str]
    files: list[FileInfo]
    #: Files whose record matches them exactly.
    unchanged: int
    #: Files that failed before and have not changed since: named again, not retried.
    known: list[FileFailed]
    #: New files, changed ones, and recorded failures worth another try.
    differing: list[FileInfo]
    #: Paths of records under the roots whose file is gone.
    removed: list[str]
    #: Recorded failures whose file is gone, or which now have a record too.
    stale_failures: int
    #: Records under each root (an empty-looking root may be an unmounted drive); left
    #: empty when there is nothing to do.
    per_root: dict[str, int]
    #: Byte sizes of every record: only a new file of one of these sizes can be one the
    #: index holds already (renamed, moved or copied), and only those are hashed.
    sizes: set[int]
    links: list[tuple[str, str]] = field(default_factory=list)
    #: Every record the comparison read (path → size, mtime, ctime, inode): the records
    #: cache is brought up to date from it after the run (:func:`remember_after_run`).
    stored: dict[str, tuple[int, int, int, int]] | None = None
    #: What it was made for (database, model, roots, scan options), and the database
    #: files' identity when it was read: a write since makes it stale.
    made_for: tuple[object, ...] = ()
    identity: object = None
    _paths: set[str] | None = None

    @property
    def nothing_to_do(self) -> bool:
        return not (self.differing or self.removed or self.stale_failures)

    def files_at(self, paths: set[str]) -> dict[str, FileInfo]:
        """The scanned files at these paths, by record id (a few: recorded failures)."""
        if not paths:
            return {}
        return {path_id(f.path): f for f in self.files if f.path in paths}

    def on_disk(self, path: str) -> bool:
        """Whether the scan found ``path`` (a set of the scanned paths, made on first use)."""
        if self._paths is None:
            self._paths = {f.path for f in self.files}
        return path in self._paths


def tree_delta(
    location: str,
    spec: ModelSpec,
    roots: Sequence[str | os.PathLike[str]],
    options: IndexOptions,
) -> TreeDelta | None:
    """The roots scanned and compared with the index's records, read from the SQLite file
    without chromadb; None when the normal path must do it all itself (see the module's
    docstring). Nothing is emitted and nothing written but the records cache."""
    if options.rebuild or not release_known():
        return None
    db = Path(location) / DATABASE
    if not db.is_file():
        return None
    norm = list(dict.fromkeys(normalise_root(r) for r in roots))
    if not all(os.path.isdir(r) for r in norm):
        return None  # the normal path says which folder is missing
    identity = _database_identity(db)
    found = _stored_or_remembered(
        db,
        COLLECTION_PREFIX + spec.collection_slug,
        FAILURES_PREFIX + spec.collection_slug,
        identity,
    )
    if found is None or identity is None:
        return None
    stored, known_roots, failed = found
    # The index records its roots as stored text (meta_text: one-to-one, unlike the path
    # itself where a name holds a backslash or bytes that are not UTF-8).
    texts = {meta_text(r) for r in norm}
    if not texts <= set(known_roots):
        return None  # a new root is recorded by the normal path
    pseudo = PseudoFilesystems()
    if any(pseudo.describe(r) for r in norm):
        return None  # the normal path refuses it, with the reason
    errors: list[str] = []
    links: list[tuple[str, str]] = []
    scan_options = ScanOptions(
        include_hidden=options.include_hidden,
        excludes=options.excludes,
        skip_outside_links=options.skip_outside_links,
    )
    files = list(
        scan(
            norm,
            scan_options,
            lambda p, _r: errors.append(p),
            on_link=lambda link, target, _skipped: links.append((link, target)),
            pseudo=pseudo,
        )
    )
    if errors:
        return None  # the normal path keeps the records of a folder it could not read
    if texts == set(known_roots):
        # Every record lies under a scanned root: no need to sort a million paths by root.
        under, failed_under = stored, failed
    else:
        under = {p: st for p, st in stored.items() if any(_under(p, r) for r in norm)}
        failed_under = {p: f for p, f in failed.items() if any(_under(p, r) for r in norm)}
    known: list[FileFailed] = []
    differing: list[FileInfo] = []
    seen = seen_failed = 0
    for info in files:
        now = under.get(info.path)
        if now is not None:
            seen += 1
            if now == (info.size, info.mtime_ns, info.ctime_ns, info.inode):
                continue
            differing.append(info)
            continue
        failure = failed_under.get(info.path)
        if failure is None:
            differing.append(info)
            continue
        seen_failed += 1
        # Unreadable last time and untouched since: named again, not tried again (as the
        # normal path decides); anything else is the normal path's to handle.
        if failure[:2] != (info.size, info.mtime_ns) or worth_retrying(failure[2]):
            differing.append(info)
        else:
            known.append(FileFailed(info.path, failure[2]))
    delta = TreeDelta(
        roots=norm,
        files=files,
        unchanged=len(files) - len(known) - len(differing),
        known=known,
        differing=differing,
        removed=[],
        stale_failures=len(failed_under) - seen_failed,
        per_root={},
        sizes=set(),
        links=links,
        stored=stored,
        made_for=_made_for(location, spec, norm, options),
        identity=identity,
    )
    if seen < len(under):
        delta.removed = [p for p in under if not delta.on_disk(p)]
    if not delta.nothing_to_do:  # what only a run that plans needs
        delta.per_root = (
            {norm[0]: len(under)}
            if len(norm) == 1
            else {r: sum(1 for p in under if _under(p, r)) for r in norm}
        )
    if delta.differing:
        delta.sizes = {st[0] for st in stored.values()}
    return delta


def remember_after_run(location: str, spec: ModelSpec, delta: TreeDelta) -> bool:
    """After a run planned from ``delta`` has written, the records cache brought up to
    date for the database as it is now, reading back only the records that run can have
    written (the files that differed, the records removed) and the failures: the next run
    over the unchanged tree then reads the cache instead of every record from SQLite (half
    a minute at a million). Whether it was saved; anything unexpected (other writes, a
    count that does not add up) leaves the cache as it was, stale, read in full next time.
    The caller holds the writer lock."""
    if delta.stored is None:
        return False
    db = Path(location) / DATABASE
    identity = _database_identity(db)
    if identity is None:
        return False
    collection_name = COLLECTION_PREFIX + spec.collection_slug
    failures_name = FAILURES_PREFIX + spec.collection_slug
    touched = [f.path for f in delta.differing] + delta.removed
    try:
        con = chroma.connect_readonly(db, timeout=1.0)
    except sqlite3.Error:
        return False
    try:
        head = _head(con, collection_name, failures_name)
        if head is None:
            return False
        found, failed, meta = head
        rowids = chroma.rowids_of(con, found[1], (path_id(p) for p in touched))
        metas = chroma.read_metadata(con, found[1], rowids.values())
        stored = dict(delta.stored)
        for path in touched:
            stored.pop(path, None)
        for rowid, record_meta in metas.items():
            row = [rowid, record_meta.get("path"), record_meta.get("path_b64")]
            row += [record_meta.get(key) for key, _ in _COMPARED[2:6]]
            row.append(_COMPARED[6][0] in record_meta)
            name, stat = _record(*row)  # type: ignore[arg-type]
            stored[name] = stat
        if chroma.record_count(con, found[1]) != len(stored):
            return False  # written otherwise than this run says: read in full next time
        roots = _roots(meta)
    except (sqlite3.Error, ValueError, TypeError):
        return False
    finally:
        con.close()
    if _database_identity(db) != identity:
        return False
    save_cache(db.with_name(RECORDS_CACHE), _cache_key(identity, spec), stored, roots, failed)
    return True


def _made_for(
    location: str, spec: ModelSpec, roots: list[str], options: IndexOptions
) -> tuple[object, ...]:
    return (
        str(location),
        spec.collection_slug,
        tuple(roots),
        bool(options.include_hidden),
        tuple(options.excludes),
        bool(options.skip_outside_links),
    )


#: A delta found by a quick check that answered nothing (see :func:`hand_over`).
_handed: TreeDelta | None = None


def hand_over(delta: TreeDelta) -> None:
    """Keep ``delta`` for the run this process starts next, so that the command line's
    quick check (which found changes) and its full run do not scan the tree twice."""
    global _handed
    _handed = delta


def take_handed(
    location: str,
    spec: ModelSpec,
    roots: Sequence[str | os.PathLike[str]],
    options: IndexOptions,
) -> TreeDelta | None:
    """The delta kept by :func:`hand_over` when it was made for this very run and the
    database has not been written since (the caller holds the writer lock again), else
    None. Taken once."""
    global _handed
    delta, _handed = _handed, None
    if delta is None or options.rebuild:
        return None
    norm = list(dict.fromkeys(normalise_root(r) for r in roots))
    if delta.made_for != _made_for(location, spec, norm, options):
        return None
    if _database_identity(Path(location) / DATABASE) != delta.identity:
        return None
    return delta


def unchanged_summary(delta: TreeDelta, emit: EventHandler, started: float) -> IndexSummary:
    """The run over a tree with nothing to do, told as the normal run tells it."""
    files = delta.files
    summary = IndexSummary(roots=delta.roots, total=len(files), unchanged=delta.unchanged)
    summary.failed = list(delta.known)
    summary.outside_links = delta.links  # listed on every run, as the normal path does
    emit(ScanProgress(len(files)))
    for failure in delta.known:
        emit(failure)
    emit(
        PlanReady(
            total=len(files), new=0, changed=0, unchanged=delta.unchanged, removed=0, reused=0
        )
    )
    summary.elapsed = time.perf_counter() - started
    emit(IndexFinished(summary))
    return summary
