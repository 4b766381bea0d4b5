"""Nothing to do, nothing imported: a re-index of an unchanged tree without chromadb.

Most index runs after the first find nothing changed. Deciding that through chromadb
costs its import (over a second on a small machine) before a single file is compared.
Here the index's records are read straight from Chroma's SQLite file, read-only, the
way ``clipseek info`` reads its numbers, and compared with a scan of the folders: when
every file is there with the size, mtime, ctime and inode the index recorded, and nothing else is,
the run is over. Anything different or not understood (another Chroma layout, writes
not yet applied, a recorded failure, a scan error, a new root, ``--rebuild``) returns
None and the normal path runs, so this can only skip work that had none to do.

The caller holds the index's writer lock, so no other run writes while this reads.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from clipseek.fileio import identity, write_whole
from clipseek.indexing.events import IndexFinished, IndexSummary, PlanReady, ScanProgress
from clipseek.indexing.scanner import PseudoFilesystems, ScanOptions, normalise_root, scan
from clipseek.store.keys import KEY_SCHEMA, path_from_meta
from clipseek.store.records import COLLECTION_PREFIX, FAILURES_PREFIX, HNSW_CONFIG

if TYPE_CHECKING:
    from clipseek.indexing.events import EventHandler
    from clipseek.indexing.options import IndexOptions
    from clipseek.models.catalogue import ModelSpec

_NEEDED = {
    "collections": {"id", "name", "database_id"},
    "collection_metadata": {"collection_id", "key", "str_value"},
    "segments": {"id", "scope", "collection"},
    "embeddings": {"id", "segment_id", "embedding_id"},
    "embedding_metadata": {"id", "key", "string_value", "int_value"},
    "embeddings_queue": {"seq_id", "topic", "operation"},
    "max_seq_id": {"segment_id", "seq_id"},
    "databases": {"id", "name", "tenant_id"},
}


def _stored(
    db: Path, collection_name: str, failures_name: str
) -> tuple[dict[str, tuple[int, int, int, int]], list[str]] | None:
    """path → (size, mtime_ns, ctime_ns, inode) of every record, and the roots the index
    recorded; None if anything is not as expected."""
    import json

    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=1.0)
    try:
        for table, columns in _NEEDED.items():
            have = {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
            if not columns <= have:
                return None

        def collection(name: str, deletes_may_wait: bool = False) -> tuple[str, str] | None:
            row = con.execute(
                "SELECT c.id FROM collections c JOIN databases d ON c.database_id = d.id "
                "WHERE d.name = 'default_database' AND d.tenant_id = 'default_tenant' "
                "AND c.name = ?",
                (name,),
            ).fetchone()
            if row is None:
                return None
            segments = con.execute(
                "SELECT id FROM segments WHERE collection = ? AND scope = 'METADATA'", (row[0],)
            ).fetchall()
            if len(segments) != 1:
                raise ValueError("unexpected segments")
            segment = segments[0][0]
            # Writes still in Chroma's log and not yet in the metadata tables: unknown.
            applied = con.execute(
                "SELECT seq_id FROM max_seq_id WHERE segment_id = ?", (segment,)
            ).fetchone()
            # (Chroma leaves deletes of records that were never there in its log: for the
            # failures collection those cannot add a failure, so only other writes count.)
            skip = " AND operation != 3" if deletes_may_wait else ""
            (logged,) = con.execute(
                f"SELECT MAX(seq_id) FROM embeddings_queue WHERE topic LIKE ?{skip}",
                (f"%/{row[0]}",),
            ).fetchone()
            done = int(applied[0]) if applied is not None and applied[0] is not None else -1
            if logged is not None and done < int(logged):
                raise ValueError("unapplied writes")
            return row[0], segment

        found = collection(collection_name)
        if found is None:
            return None
        failures = collection(failures_name, deletes_may_wait=True)
        if failures is not None:
            (count,) = con.execute(
                "SELECT COUNT(*) FROM embeddings WHERE segment_id = ?", (failures[1],)
            ).fetchone()
            if count:
                return None  # the normal path reports known failures again
        if _upkeep_due(con, found[0]):
            return None  # the normal run brings an older index up to date
        (roots_text,) = con.execute(
            "SELECT str_value FROM collection_metadata WHERE collection_id = ? AND key = 'roots'",
            (found[0],),
        ).fetchone() or ("[]",)
        # One row per record, pivoted by SQLite: scanning the metadata table once beats
        # seven index lookups per record, and Python then sees one row per record, not six.
        rows = con.execute(
            "SELECT m.id, "
            "MAX(CASE WHEN m.key = 'path' THEN m.string_value END), "
            "MAX(CASE WHEN m.key = 'path_b64' THEN m.string_value END), "
            "MAX(CASE WHEN m.key = 'size' THEN m.int_value END), "
            "MAX(CASE WHEN m.key = 'mtime_ns' THEN m.int_value END), "
            "MAX(CASE WHEN m.key = 'ctime_ns' THEN m.int_value END), "
            "MAX(CASE WHEN m.key = 'inode' THEN m.int_value END), "
            "MAX(m.key = 'taken_local') "
            "FROM embedding_metadata m NOT INDEXED JOIN embeddings e ON e.id = m.id "
            "WHERE e.segment_id = ? AND m.key IN ('path', 'path_b64', 'size', 'mtime_ns', "
            "'ctime_ns', 'inode', 'taken_local') GROUP BY m.id",
            (found[1],),
        ).fetchall()
        (count,) = con.execute(
            "SELECT COUNT(*) FROM embeddings WHERE segment_id = ?", (found[1],)
        ).fetchone()
        if count != len(rows):
            return None
        out: dict[str, tuple[int, int, int, int]] = {}
        for _rowid, path, path_b64, *stat, dated in rows:
            if not all(isinstance(v, int) for v in stat) or not dated:
                # a record from before ctime, inode and photo dates were kept: the normal
                # run adds them, from the file's stat and header, without a model run
                return None
            size, mtime_ns, ctime_ns, inode = stat
            name = path_from_meta({"path": path or "", "path_b64": path_b64})
            out[name] = (size, mtime_ns, ctime_ns, inode)
        recorded = json.loads(str(roots_text))
        if not isinstance(recorded, list):
            return None
        return out, [str(r) for r in recorded]
    except (sqlite3.Error, ValueError, TypeError):
        return None
    finally:
        con.close()


#: Where an index run keeps what this check last read from the SQLite file.
RECORDS_CACHE = "clipseek-records.cache"
_CACHE_FORMAT = 1


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
    db: Path, collection_name: str, failures_name: str
) -> tuple[dict[str, tuple[int, int, int, int]], list[str]] | None:
    """:func:`_stored`, kept beside the database for the next run while the database's
    files are unchanged.

    Reading and pivoting the metadata rows is the largest part of a re-index with nothing to
    do; a file of the result loads many times faster (docs/PERFORMANCE.md). It is used only
    while the database's files have the identity they had when it was read, so the records
    it gives are exactly the ones the database holds. The caller holds the writer lock, so
    writing here is a writer's write.
    """
    import marshal

    db_identity = _database_identity(db)
    key = repr(
        (_CACHE_FORMAT, db_identity, collection_name, failures_name, KEY_SCHEMA, HNSW_CONFIG)
    )
    cache = db.with_name(RECORDS_CACHE)
    if db_identity is not None:
        try:
            saved_key, stored, roots = marshal.loads(cache.read_bytes())
            if saved_key == key and isinstance(stored, dict) and isinstance(roots, list):
                return stored, roots
        except (OSError, ValueError, EOFError, TypeError):
            pass
    found = _stored(db, collection_name, failures_name)
    if found is None or db_identity is None or _database_identity(db) != db_identity:
        return found
    write_whole(cache, marshal.dumps((key, found[0], found[1])))  # failing: read next time
    return found


def _upkeep_due(con: sqlite3.Connection, collection_id: str) -> bool:
    """Whether a writer has work on an unchanged tree: an older key schema to migrate, or
    an ef_search below today's (both done by the normal run's first open)."""
    import json

    row = con.execute(
        "SELECT int_value FROM collection_metadata WHERE collection_id = ? "
        "AND key = 'clipseek_schema'",
        (collection_id,),
    ).fetchone()
    if row is None or not isinstance(row[0], int) or row[0] < KEY_SCHEMA:
        return True
    (schema_text,) = con.execute(
        "SELECT schema_str FROM collections WHERE id = ?", (collection_id,)
    ).fetchone() or ("",)
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

    walk(json.loads(schema_text or "{}"))
    return any(value < int(HNSW_CONFIG["ef_search"]) for value in found)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def quick_unchanged(
    location: str,
    spec: ModelSpec,
    roots: Sequence[str | os.PathLike[str]],
    options: IndexOptions,
    emit: EventHandler,
) -> IndexSummary | None:
    """The summary of a run with nothing to do, or None when the normal path must run."""
    if options.rebuild:
        return None
    started = time.perf_counter()
    db = Path(location) / "chroma.sqlite3"
    if not db.is_file():
        return None
    norm = list(dict.fromkeys(normalise_root(r) for r in roots))
    if not all(os.path.isdir(r) for r in norm):
        return None  # the normal path says which folder is missing
    found = _stored_or_remembered(
        db, COLLECTION_PREFIX + spec.collection_slug, FAILURES_PREFIX + spec.collection_slug
    )
    if found is None:
        return None
    stored, known_roots = found
    if not set(norm) <= set(known_roots):
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
        return None
    under = {p: st for p, st in stored.items() if any(_under(p, r) for r in norm)}
    if len(under) != len(files):
        return None
    for info in files:
        if under.get(info.path) != (info.size, info.mtime_ns, info.ctime_ns, info.inode):
            return None
    summary = IndexSummary(roots=norm, total=len(files), unchanged=len(files))
    summary.outside_links = links  # listed on every run, as the normal path does
    emit(ScanProgress(len(files)))
    emit(PlanReady(total=len(files), new=0, changed=0, unchanged=len(files), removed=0, reused=0))
    summary.elapsed = time.perf_counter() - started
    emit(IndexFinished(summary))
    return summary
