"""Chroma's private on-disk format: every SQL statement clipseek runs against
``chroma.sqlite3`` and every binary layout it reads, in one place, and the chromadb
releases they are known to hold for.

Chroma keeps an index in two places (docs/RELIABILITY.md, "Where the vectors live"):

- ``chroma.sqlite3``: collections (in tenant ``default_tenant``, database
  ``default_database``), their segments and metadata; every record's id and metadata
  (tables ``embeddings``, ``embedding_metadata`` and ``embedding_metadata_array``); and a
  log of recent writes with their vectors (``embeddings_queue``), purged once the vector
  files hold them (``max_seq_id`` says how far each segment has applied it);
- one folder of hnswlib files per vector segment: ``header.bin`` (the graph's shape),
  ``data_level0.bin`` (each element's level-0 links, vector and label), ``link_lists.bin``
  (the upper levels' links), ``length.bin`` (each vector's norm as given) and
  ``index_metadata.pickle`` (the label → id map).

None of this is chromadb's public API. Readers that use it to avoid importing chromadb
(the direct reader, the quick unchanged-tree check, the snapshot's linked folders, the
``info`` peek) ask :func:`release_known` first and use chromadb's own API on releases the
test suite has not run against (``TESTED_RANGE``, kept equal to pyproject.toml's
requirement by a test): a release that kept these shapes but changed their meaning (say,
when the write log is purged) must not make them answer from stale vectors. Repair and the
damage checks read the files whatever the release, since they are there for when chromadb
cannot be trusted with them, and verify what they rebuilt through chromadb.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import sqlite3
import struct
from collections.abc import Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

# --------------------------------------------------------------------------- releases

#: The chromadb releases the suite has run against: at least the first, below the second.
#: CI runs the format tests (marker ``chroma_format``) at the lowest release and the newest
#: one below the cap; pyproject.toml's requirement says the same (tests/test_direct.py).
TESTED_RANGE = ("1.5.0", "1.6")
#: The requirement as pyproject.toml writes it.
TESTED_REQUIREMENT = f"chromadb>={TESTED_RANGE[0]},<{TESTED_RANGE[1]}"

_release: list[bool] = []  # the verdict, once per process
_told: list[str] = []


def _numbers(version: str) -> tuple[int, ...]:
    """``1.5.9`` → (1, 5, 9); a pre-release counts as its release (``1.6.0rc1`` → 1.6.0)."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def installed_chromadb() -> str | None:
    """The installed chromadb's version, without importing it.

    Read from its ``.dist-info`` folder beside the package (a directory listing), since
    :mod:`importlib.metadata` costs a cold query about 20 ms to import; that module answers
    when the folder is not where pip puts it (an editable install, a zip)."""
    import importlib.util

    with suppress(ImportError, ValueError, OSError):
        spec = importlib.util.find_spec("chromadb")
        if spec is None:
            return None
        if spec.origin:
            site = Path(spec.origin).parent.parent
            found = [
                entry.name[len("chromadb-") : -len(".dist-info")]
                for entry in os.scandir(site)
                if entry.name.startswith("chromadb-") and entry.name.endswith(".dist-info")
            ]
            if len(found) == 1:
                return found[0]
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - always there on Python 3.11
        return None
    try:
        return version("chromadb")
    except PackageNotFoundError:
        return None


def release_known() -> bool:
    """Whether the installed chromadb is one this module's reading was tested with; when
    not, says so once (the ``clipseek`` logger, shown with ``--debug``)."""
    if not _release:
        found = installed_chromadb()
        low, high = (_numbers(v) for v in TESTED_RANGE)
        known = found is not None and low <= _numbers(found) < high
        _release.append(known)
        if not known:
            tell(
                f"chromadb {found or '(version unknown)'} is outside the range clipseek was "
                f"tested with ({TESTED_REQUIREMENT}): the index is read through chromadb's own "
                "API (slower), not from its files."
            )
    return _release[0]


def tell(text: str) -> None:
    """One debug line for the user, once per process (logging is imported only here)."""
    if text in _told:
        return
    _told.append(text)
    import logging

    logging.getLogger("clipseek").debug(text)


# --------------------------------------------------------------------------- the database

DATABASE = "chroma.sqlite3"
#: The database and the files SQLite keeps beside it while writing.
DATABASE_FILES = (DATABASE, f"{DATABASE}-journal", f"{DATABASE}-wal")
#: Chroma's vector segment kept in hnswlib files; the only kind clipseek reads.
HNSW_SEGMENT = "urn:chroma:segment/vector/hnsw-local-persisted"
#: A segment's folder is named by its id.
SEGMENT_NAME = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
#: Chroma's operation codes in ``embeddings_queue``.
OP_ADD, OP_UPDATE, OP_UPSERT, OP_DELETE = 0, 1, 2, 3
#: SQLite's limit on bound parameters is 999 on older builds.
_SQL_BATCH = 900
#: The collections clipseek writes: tenant and database as a ``PersistentClient`` names them.
_DEFAULT_COLLECTIONS = (
    "SELECT c.id, c.name FROM collections c JOIN databases d ON c.database_id = d.id "
    "WHERE d.name = 'default_database' AND d.tenant_id = 'default_tenant'"
)

#: Tables and columns the readers that check first (``info``'s peek, the quick check) use.
PEEK_COLUMNS = {
    "collections": {"id", "name", "database_id"},
    "collection_metadata": {"collection_id", "key", "str_value", "int_value", "float_value"},
    "segments": {"id", "scope", "collection"},
    "embeddings": {"segment_id"},
    "databases": {"id", "name", "tenant_id"},
}
QUICK_COLUMNS = {
    "collections": {"id", "name", "database_id", "schema_str"},
    "collection_metadata": {"collection_id", "key", "str_value", "int_value", "float_value"},
    "segments": {"id", "scope", "collection", "type"},
    "embeddings": {"id", "segment_id", "embedding_id"},
    "embedding_metadata": {"id", "key", "string_value", "int_value"},
    "embeddings_queue": {"seq_id", "topic", "operation"},
    "max_seq_id": {"segment_id", "seq_id"},
    "databases": {"id", "name", "tenant_id"},
}


def connect_readonly(database: Path, timeout: float = 5.0) -> sqlite3.Connection:
    """Open ``chroma.sqlite3`` so that nothing can be written through the connection."""
    return sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout)


def has_columns(con: sqlite3.Connection, needed: dict[str, set[str]]) -> bool:
    """Whether every table has (at least) the columns named."""
    for table, columns in needed.items():
        have = {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
        if not columns <= have:
            return False
    return True


def collections(
    con: sqlite3.Connection, *, name: str | None = None, prefixes: Sequence[str] = ()
) -> list[tuple[str, str]]:
    """(id, name) of the default database's collections called ``name``, or whose names
    start with one of ``prefixes``, by name."""
    sql, params = _DEFAULT_COLLECTIONS, []
    if name is not None:
        sql += " AND c.name = ?"
        params.append(name)
    if prefixes:
        sql += " AND (" + " OR ".join("substr(c.name, 1, ?) = ?" for _ in prefixes) + ")"
        for prefix in prefixes:
            params.extend([len(prefix), prefix])
    rows = con.execute(sql + " ORDER BY c.name", params).fetchall()
    return [(str(i), str(n)) for i, n in rows]


def collection_metadata(con: sqlite3.Connection, collection_id: str) -> dict[str, Any]:
    """A collection's metadata (typed as Chroma stores it)."""
    meta: dict[str, Any] = {}
    for key, text, integer, real in con.execute(
        "SELECT key, str_value, int_value, float_value FROM collection_metadata "
        "WHERE collection_id = ?",
        (collection_id,),
    ):
        meta[key] = text if text is not None else integer if integer is not None else real
    return meta


def collection_configuration(con: sqlite3.Connection, collection_id: str) -> str:
    """A collection's configuration as the JSON text Chroma keeps (``{}`` when none)."""
    row = con.execute("SELECT schema_str FROM collections WHERE id = ?", (collection_id,))
    (text,) = row.fetchone() or ("",)
    return str(text or "{}")


def segments(con: sqlite3.Connection, collection_id: str) -> list[tuple[str, str, str]]:
    """(scope, id, type) of a collection's segments (scopes ``METADATA`` and ``VECTOR``)."""
    rows = con.execute(
        "SELECT scope, id, type FROM segments WHERE collection = ?", (collection_id,)
    ).fetchall()
    return [(str(s), str(i), str(t)) for s, i, t in rows]


def metadata_segment(con: sqlite3.Connection, collection_id: str) -> str:
    """A collection's one metadata segment; ValueError when it has none or several."""
    found = [i for scope, i, _ in segments(con, collection_id) if scope == "METADATA"]
    if len(found) != 1:
        raise ValueError("unexpected segments")
    return found[0]


def record_count(con: sqlite3.Connection, segment: str) -> int:
    (count,) = con.execute(
        "SELECT COUNT(*) FROM embeddings WHERE segment_id = ?", (segment,)
    ).fetchone()
    return int(count)


def writes_pending(
    con: sqlite3.Connection, collection_id: str, segment: str, *, count_deletes: bool = True
) -> bool:
    """Whether the write log holds writes a segment has not applied yet. ``count_deletes``
    False leaves out deletes (Chroma keeps deletes of absent records in its log)."""
    skip = "" if count_deletes else f" AND operation != {OP_DELETE}"
    (logged,) = con.execute(
        f"SELECT MAX(seq_id) FROM embeddings_queue WHERE topic LIKE ?{skip}",
        (f"%/{collection_id}",),
    ).fetchone()
    done = applied_seq(con, segment)
    return logged is not None and (-1 if done is None else done) < int(logged)


def log_entries_between(
    con: sqlite3.Connection, collection_id: str, after: int, upto: int
) -> tuple[int, int]:
    """Entries of Chroma's write log with sequence numbers in (``after``, ``upto``]: those
    of the collection, and those of others. Sequence numbers are shared by every collection
    of the database (one log), so another collection's writes move them on too."""
    own = other = 0
    for mine, count in con.execute(
        "SELECT topic LIKE ?, COUNT(*) FROM embeddings_queue WHERE seq_id > ? AND seq_id <= ? "
        "GROUP BY 1",
        (f"%/{collection_id}", int(after), int(upto)),
    ):
        if mine:
            own += int(count)
        else:
            other += int(count)
    return own, other


def pending_writes(con: sqlite3.Connection, collection_id: str, segment: str) -> dict[str, bool]:
    """Record id → whether it is being added (True) or deleted (False), for the writes in
    the log a metadata segment has not applied yet: a writer's work in flight (or cut
    short), which Chroma applies when it next opens the collection."""
    done = applied_seq(con, segment)
    applied = -1 if done is None else done
    out: dict[str, bool] = {}
    for operation, record_id in con.execute(
        "SELECT operation, id FROM embeddings_queue WHERE topic LIKE ? AND seq_id > ? "
        "ORDER BY seq_id",
        (f"%/{collection_id}", applied),
    ):
        out[str(record_id)] = operation != OP_DELETE
    return out


def settled_vector_segments(con: sqlite3.Connection) -> set[str]:
    """Vector segments whose files hold every logged write (Chroma loads them as they are
    and never rewrites them)."""
    rows = con.execute(
        "SELECT id, collection FROM segments WHERE scope = 'VECTOR' AND type = ?",
        (HNSW_SEGMENT,),
    ).fetchall()
    applied = dict(con.execute("SELECT segment_id, seq_id FROM max_seq_id").fetchall())
    latest: dict[str, int] = {}
    for topic, seq in con.execute("SELECT topic, MAX(seq_id) FROM embeddings_queue GROUP BY topic"):
        latest[str(topic).rsplit("/", 1)[-1]] = int(seq)
    out = set()
    for segment, collection in rows:
        pending = latest.get(str(collection))
        done = applied.get(segment)
        if pending is None or (isinstance(done, int) and done >= pending):
            out.add(str(segment))
    return out


def metadata_value(text: Any, integer: Any, real: Any, boolean: Any) -> Any:
    """One metadata value from the typed columns Chroma spreads it over."""
    if text is not None:
        return text
    if integer is not None:
        return int(integer)
    if real is not None:
        return float(real)
    return bool(boolean) if boolean is not None else None


def _share_of_records(con: sqlite3.Connection, segment: str) -> float:
    """About what part of the database's records (all collections') a segment holds: whether
    reading it should walk the tables or go through their indexes."""
    (last,) = con.execute("SELECT MAX(id) FROM embeddings").fetchone()
    return record_count(con, segment) / int(last) if last else 1.0


def record_rowids(con: sqlite3.Connection, segment: str) -> dict[str, int]:
    """Record id → SQLite row id, for every record of a metadata segment."""
    return dict(
        con.execute(
            "SELECT embedding_id, id FROM embeddings WHERE segment_id = ?", (segment,)
        ).fetchall()
    )


def read_metadata(
    con: sqlite3.Connection, segment: str, rowids: Iterable[int] | None = None
) -> dict[int, dict[str, Any]]:
    """Row id → metadata (arrays as lists, in stored order) for a segment's records, or
    only for ``rowids``. Chroma's own keys (``chroma:…``) are left out, as Chroma does."""
    if rowids is None:
        parts = [("e.segment_id = ?", [segment])]
    else:
        wanted = sorted({int(r) for r in rowids})
        parts = [
            # "+": look the rows up by id; SQLite would otherwise walk the segment's whole
            # index.
            (f"+e.segment_id = ? AND e.id IN ({','.join('?' * len(chunk))})", [segment, *chunk])
            for chunk in (wanted[i : i + _SQL_BATCH] for i in range(0, len(wanted), _SQL_BATCH))
        ]
    out: dict[int, dict[str, Any]] = {}
    for condition, params in parts:
        for (rowid,) in con.execute(f"SELECT e.id FROM embeddings e WHERE {condition}", params):
            out[int(rowid)] = {}
        for rowid, key, text, integer, real, boolean in con.execute(
            "SELECT m.id, m.key, m.string_value, m.int_value, m.float_value, m.bool_value "
            f"FROM embedding_metadata m JOIN embeddings e ON e.id = m.id WHERE {condition}",
            params,
        ):
            meta = out.get(int(rowid))
            if meta is not None and not str(key).startswith("chroma:"):
                meta[key] = metadata_value(text, integer, real, boolean)
        with suppress(sqlite3.OperationalError):  # older Chroma: no array table
            for rowid, key, text, integer, real, boolean in con.execute(
                "SELECT a.id, a.key, a.string_value, a.int_value, a.float_value, a.bool_value "
                "FROM embedding_metadata_array a JOIN embeddings e ON e.id = a.id "
                f"WHERE {condition} ORDER BY a.rowid",
                params,
            ):
                meta = out.get(int(rowid))
                if meta is not None:
                    values = meta.setdefault(key, [])
                    if isinstance(values, list):
                        values.append(metadata_value(text, integer, real, boolean))
    return out


def metadata_table(
    con: sqlite3.Connection, segment: str, columns: Sequence[tuple[str, str]]
) -> list[tuple[Any, ...]]:
    """One row per record that has any of the keys: its row id, then per ``(key, kind)``
    the value (kind ``string`` or ``int``) or whether the key is there (``present``).

    Pivoted by SQLite: scanning the metadata table once beats one index lookup per key
    and record, and Python sees one row per record."""
    column = {"string": "m.string_value", "int": "m.int_value"}
    parts, params = [], []
    for key, kind in columns:
        if kind == "present":
            parts.append("MAX(m.key = ?)")
        else:
            parts.append(f"MAX(CASE WHEN m.key = ? THEN {column[kind]} END)")
        params.append(key)
    keys = [key for key, _ in columns]
    # A segment that holds a small part of the database's records (the failures beside a
    # million pictures) is read through the indexes, by its records: the scan would read
    # every other collection's metadata too (two seconds at a million).
    source = (
        "embeddings e JOIN embedding_metadata m ON m.id = e.id"
        if _share_of_records(con, segment) < 0.05
        else "embedding_metadata m NOT INDEXED JOIN embeddings e ON e.id = m.id"
    )
    return con.execute(
        f"SELECT m.id, {', '.join(parts)} FROM {source} "
        f"WHERE e.segment_id = ? AND m.key IN ({','.join('?' * len(keys))}) GROUP BY m.id",
        [*params, segment, *keys],
    ).fetchall()


@dataclass
class RecordChunk:
    """Consecutive records of a metadata segment (by row id), a column per thing read:
    what ``check`` compares, without a Python object per record for the whole index."""

    #: SQLite row ids, ascending (int64).
    rowids: np.ndarray
    #: Record ids, in the same order.
    ids: list[str]
    #: Key → each record's value (None where it has none), typed as stored except that a
    #: boolean reads as 0 or 1.
    values: dict[str, list[Any]]
    #: Array key → each record's values in stored order (None where it has none).
    arrays: dict[str, list[list[Any] | None]]


#: One metadata value from whichever typed column holds it (bool as int).
_ANY_VALUE = "COALESCE({0}.string_value, {0}.int_value, {0}.float_value, {0}.bool_value)"


def record_chunks(
    con: sqlite3.Connection,
    segment: str,
    keys: Sequence[str],
    arrays: Sequence[str] = (),
    rows: int = 50_000,
) -> Iterator[RecordChunk]:
    """Every record of a metadata segment with the metadata ``keys`` (scalars) and
    ``arrays``, ``rows`` records at a time in row id order. Each chunk is three range
    reads by row id (records, their scalars pivoted by SQLite, their arrays), so each
    costs what it holds, whatever the library's size."""
    import numpy as np

    value = _ANY_VALUE.format("m")
    pivot = "".join(f", MAX(CASE WHEN m.key = ? THEN {value} END)" for _ in keys)
    # "+": walk the table by row id from where the last chunk ended; SQLite would
    # otherwise walk the segment's whole index for each chunk.
    records = (
        "SELECT id, embedding_id FROM embeddings WHERE +segment_id = ? AND id > ? "
        "ORDER BY id LIMIT ?"
    )
    scalars = (
        f"SELECT m.id{pivot} FROM embedding_metadata m WHERE m.id BETWEEN ? AND ? "
        f"AND m.key IN ({','.join('?' * len(keys))}) GROUP BY m.id"
    )
    listed = (
        f"SELECT a.id, {_ANY_VALUE.format('a')} FROM embedding_metadata_array a "
        "WHERE a.key = ? AND a.id BETWEEN ? AND ? ORDER BY a.id, a.rowid"
    )
    last = -1
    while True:
        found = con.execute(records, (segment, last, rows)).fetchall()
        if not found:
            return
        rowids = np.fromiter((r for r, _ in found), dtype=np.int64, count=len(found))
        ids = [str(i) for _, i in found]
        del found
        first, last = int(rowids[0]), int(rowids[-1])
        place = {r: i for i, r in enumerate(rowids.tolist())}
        values: dict[str, list[Any]] = {}
        if keys:
            found = con.execute(scalars, (*keys, first, last, *keys)).fetchall()
            columns = list(zip(*found, strict=True)) if found else [()] * (1 + len(keys))
            del found
            if columns[0] == tuple(place):  # every record has some of the keys, no other
                values = {k: list(c) for k, c in zip(keys, columns[1:], strict=True)}
            else:
                values = {key: [None] * len(ids) for key in keys}
                for k, key in enumerate(keys, 1):
                    column = values[key]
                    for rowid, item in zip(columns[0], columns[k], strict=True):
                        at = place.get(rowid)
                        if at is not None:  # else a record of another segment
                            column[at] = item
            del columns
        chunk = RecordChunk(rowids, ids, values, {})
        for key in arrays:
            column_of: list[list[Any] | None] = [None] * len(ids)
            with suppress(sqlite3.OperationalError):  # older Chroma: no array table
                for rowid, item in con.execute(listed, (key, first, last)):
                    at = place.get(rowid)
                    if at is None:
                        continue
                    listed_values = column_of[at]
                    if listed_values is None:
                        column_of[at] = listed_values = []
                    listed_values.append(item)
            chunk.arrays[key] = column_of
        yield chunk


def record_id_chunks(
    con: sqlite3.Connection, segment: str, rows: int = 50_000
) -> Iterator[tuple[np.ndarray, list[str]]]:
    """Every record of a metadata segment as (row ids, record ids), in row id order (the
    order of :func:`record_chunks`), ``rows`` at a time."""
    import numpy as np

    # A segment with most of the table's rows is read by walking the table ("+": not its
    # index, which SQLite would then sort a million rows of); a small one by its index.
    walk = "+" if _share_of_records(con, segment) >= 0.25 else ""
    cursor = con.execute(
        f"SELECT id, embedding_id FROM embeddings WHERE {walk}segment_id = ? ORDER BY id",
        (segment,),
    )
    while batch := cursor.fetchmany(rows):
        rowids = np.fromiter((r for r, _ in batch), dtype=np.int64, count=len(batch))
        yield rowids, [str(i) for _, i in batch]


#: Comparison operators of a ``where`` clause, as SQL.
COMPARE = {"$eq": "=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def value_column(value: Any) -> str | None:
    """The typed metadata column Chroma compares a filter value with (None: no such)."""
    if isinstance(value, bool):
        return "bool_value"
    if isinstance(value, int):
        return "int_value"
    if isinstance(value, float):
        return "float_value"
    if isinstance(value, str):
        return "string_value"
    return None


def stored_as_scalar(con: sqlite3.Connection, key: str) -> bool:
    """Whether any record holds ``key`` as a single value (not an array)."""
    found = con.execute("SELECT 1 FROM embedding_metadata WHERE key = ? LIMIT 1", (key,))
    return found.fetchone() is not None


def rows_containing(con: sqlite3.Connection, segment: str, key: str, value: Any) -> set[int]:
    """Row ids whose array ``key`` holds ``value``."""
    sql = (
        "SELECT a.id FROM embedding_metadata_array a JOIN embeddings e ON e.id = a.id "
        f"WHERE e.segment_id = ? AND a.key = ? AND a.{value_column(value)} = ?"
    )
    return {int(r) for (r,) in con.execute(sql, (segment, key, value))}


def rows_in(con: sqlite3.Connection, segment: str, key: str, values: Sequence[Any]) -> set[int]:
    """Row ids whose ``key`` is one of ``values`` (all of one type)."""
    sql = (
        "SELECT m.id FROM embedding_metadata m JOIN embeddings e ON e.id = m.id "
        f"WHERE e.segment_id = ? AND m.key = ? AND m.{value_column(values[0])} "
        f"IN ({','.join('?' * len(values))})"
    )
    return {int(r) for (r,) in con.execute(sql, (segment, key, *values))}


def rows_compared(
    con: sqlite3.Connection, segment: str, key: str, operator: str, value: Any
) -> set[int]:
    """Row ids whose ``key`` compares with ``value`` as ``operator`` (one of COMPARE)."""
    sql = (
        "SELECT m.id FROM embedding_metadata m JOIN embeddings e ON e.id = m.id "
        f"WHERE e.segment_id = ? AND m.key = ? AND m.{value_column(value)} {COMPARE[operator]} ?"
    )
    return {int(r) for (r,) in con.execute(sql, (segment, key, value))}


def logged_vectors(
    con: sqlite3.Connection, collection_id: str, *, after: int | None = None
) -> dict[str, np.ndarray | None]:
    """What the write log of one collection says last about each record it names: its
    vector, or None when the record was deleted. Replayed over the vector files, it gives
    the current vectors (a metadata-only update leaves the vector as it was). With
    ``after``, only the writes past that sequence number: those Chroma replays over a
    vector segment that has applied up to it (the log keeps applied writes too)."""
    import numpy as np

    latest: dict[str, np.ndarray | None] = {}
    for operation, record_id, blob, encoding in con.execute(
        "SELECT operation, id, vector, encoding FROM embeddings_queue WHERE topic LIKE ? "
        "AND seq_id > ? ORDER BY seq_id",
        (f"%/{collection_id}", -1 if after is None else int(after)),
    ):
        if operation == OP_DELETE:
            latest[str(record_id)] = None
        elif blob is not None and operation in (OP_ADD, OP_UPDATE, OP_UPSERT):
            dtype = "<i4" if str(encoding).upper() == "INT32" else "<f4"
            latest[str(record_id)] = np.frombuffer(blob, dtype=dtype).astype(np.float32)
    return latest


# --------------------------------------------------------------------------- hnswlib files

HNSW_FILES = ("header.bin", "data_level0.bin", "length.bin", "link_lists.bin")
#: The header's leading fields: version, offsetLevel0, max_elements, cur_element_count,
#: size_data_per_element, label_offset, offsetData.
HNSW_HEADER = struct.Struct("<I6Q")
#: The whole header as Chroma's fork writes it (version 1, 100 bytes): the fields above,
#: then maxlevel, enterpoint_node, maxM, maxM0, M, mult, ef_construction.
HNSW_HEADER_FULL = struct.Struct("<I6QiIQQQdQ")
HNSW_HEADER_SIZE = 100
#: The one header version this module knows.
HNSW_VERSION = 1
#: Stored vectors of a cosine index are unit vectors: a norm further from 1 is damage.
NORM_TOLERANCE = 1e-3


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


def header_fields(header: bytes) -> tuple[int, int, int, int] | None:
    """(version, max_elements, count, size per element) from the header's first bytes;
    None when it is too short to hold them."""
    if len(header) < HNSW_HEADER.size:
        return None
    version, _offset, max_elements, count, per_element, *_ = HNSW_HEADER.unpack_from(header)
    return version, max_elements, count, per_element


def parse_header(header: bytes) -> HnswHeader | str:
    """The header's fields, or why they cannot describe a real index."""
    if len(header) < HNSW_HEADER_FULL.size:
        return "header.bin is truncated"
    (version, offset0, _max, count, per, label_off, data_off, max_level, entry, max_m, max_m0) = (
        HNSW_HEADER_FULL.unpack_from(header)[:11]
    )
    if version != HNSW_VERSION:
        return f"header.bin has an unknown version ({version})"
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


class _PlainUnpickler(pickle.Unpickler):
    """Reads dicts, lists, strings and numbers; refuses anything that names a class."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"unexpected {module}.{name}")


def label_map(segment: Path) -> dict[int, str] | None:
    """hnswlib label → record id from ``index_metadata.pickle``; None when unreadable."""
    with suppress(OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError):
        with (segment / "index_metadata.pickle").open("rb") as fh:
            loaded = _PlainUnpickler(io.BufferedReader(fh)).load()
        mapping = loaded.get("label_to_id") if isinstance(loaded, dict) else None
        if isinstance(mapping, dict):
            return {int(k): str(v) for k, v in mapping.items()}
    return None


def label_table(segment: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`label_map` as two arrays, labels (int64) and record ids (UTF-8, numpy bytes),
    with nothing in Python per label; None when unreadable.

    The pickle Chroma's Rust core writes (protocol 3, dicts in batches of 1000, no memo)
    is read with numpy when every entry has the same shape (ASCII ids of one length, as
    clipseek's are); any other pickle is read by :func:`label_map` and converted."""
    import numpy as np

    with suppress(OSError):
        data = (segment / "index_metadata.pickle").read_bytes()
        fast = _rust_label_table(data)
        if fast is not None:
            return fast
        del data
    mapping = label_map(segment)
    if mapping is None:
        return None
    labels = np.fromiter(mapping.keys(), dtype=np.int64, count=len(mapping))
    ids = np.array([v.encode("utf-8", "surrogatepass") for v in mapping.values()], dtype=bytes)
    return labels, ids


_OP = {name: ord(code) for name, code in (("J", "J"), ("X", "X"), ("u", "u"), ("(", "("))}


def _rust_label_table(data: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """``label_to_id`` of a pickle laid out as Chroma's Rust core writes it, or None when
    the bytes are laid out otherwise (then the pickle module reads them). Accepts only a
    whole, valid pickle of a dict of None, small ints and dicts of int ↔ ASCII str."""
    import numpy as np

    if data[:4] != b"\x80\x03}(":
        return None
    buf = np.frombuffer(data, dtype=np.uint8)
    pos, table = 4, None
    while pos < len(data):
        op = data[pos]
        if op == _OP["u"]:
            if data[pos + 1 :] != b".":
                return None
            if table is None:
                return None
            labels, ids = table
            ordered = np.sort(labels)
            if bool((ordered[1:] == ordered[:-1]).any()):
                return None  # repeated labels: the pickle module says which one wins
            return labels, ids
        if op != _OP["X"] or pos + 5 > len(data):
            return None
        (size,) = struct.unpack_from("<I", data, pos + 1)
        try:
            key = data[pos + 5 : pos + 5 + size].decode("ascii")
        except UnicodeDecodeError:
            return None
        pos += 5 + size
        op = data[pos] if pos < len(data) else -1
        if op == ord("N"):
            pos += 1
        elif op == _OP["J"]:
            pos += 5
        elif op == ord("}"):
            found = _rust_dict(buf, pos + 1)
            if found is None:
                return None
            pos, entries = found
            if key == "label_to_id":
                if entries is not None and entries[2] != "label":
                    return None
                table = (
                    (entries[0], entries[1])
                    if entries is not None
                    else (np.zeros(0, np.int64), np.zeros(0, "S1"))
                )
        else:
            return None
    return None


def _rust_dict(
    buf: np.ndarray, pos: int
) -> tuple[int, tuple[np.ndarray, np.ndarray, str] | None] | None:
    """The entries of a dict after its EMPTY_DICT: batches of ``( entries u``, every entry
    an int32 and an ASCII string of one length, in one order. Returns where the dict ends
    and (ints, strings, "label" when the ints are the keys), None when laid out otherwise."""
    import numpy as np

    ints: list[np.ndarray] = []
    texts: list[np.ndarray] = []
    shape: tuple[int, int] | None = None  # (first opcode, string length)
    end = len(buf)
    while pos < end and buf[pos] == _OP["("]:
        pos += 1
        while pos < end and buf[pos] != _OP["u"]:
            if shape is None:
                first = int(buf[pos])
                at = pos + 6 if first == _OP["J"] else pos + 1
                if first not in (_OP["J"], _OP["X"]) or at + 4 > end:
                    return None
                shape = (first, int(buf[at : at + 4].view("<u4")[0]))
            first, size = shape
            stride = 10 + size
            rows = min(1024, (end - pos) // stride)
            if rows == 0:
                return None
            block = buf[pos : pos + rows * stride].reshape(rows, stride)
            if first == _OP["J"]:
                second, length_at, int_at, text_at = 5, 6, 1, 10
            else:
                second, length_at, int_at, text_at = 5 + size, 1, 6 + size, 5
            lengths = np.ascontiguousarray(block[:, length_at : length_at + 4]).view("<u4")[:, 0]
            text = np.ascontiguousarray(block[:, text_at : text_at + size])
            good = (
                (block[:, 0] == first)
                & (block[:, second] == (_OP["X"] if first == _OP["J"] else _OP["J"]))
                & (lengths == size)
                & (text < 0x80).all(axis=1)
            )
            n = rows if bool(good.all()) else int(np.argmin(good))
            if n == 0:
                return None
            number = np.ascontiguousarray(block[:n, int_at : int_at + 4])
            ints.append(number.view("<i4")[:, 0].astype(np.int64))
            texts.append(text[:n].view(f"S{size}")[:, 0] if size else np.zeros(n, "S1"))
            pos += n * stride
        if pos >= end:
            return None
        pos += 1  # SETITEMS
    if shape is None:
        return pos, None
    kind = "label" if shape[0] == _OP["J"] else "id"
    return pos, (np.concatenate(ints), np.concatenate(texts), kind)


def stored_norms(segment: Path, count: int) -> np.ndarray:
    """``length.bin``: each element's norm as it was given (before Chroma normalised it);
    fewer than ``count`` when the file is short."""
    import numpy as np

    return np.fromfile(segment / "length.bin", dtype="<f4", count=count)


@dataclass
class HnswRows:
    """The elements of ``data_level0.bin``: label, deleted flag and vector of each."""

    header: HnswHeader
    labels: np.ndarray
    deleted: np.ndarray
    vectors: np.ndarray


#: Rows of ``data_level0.bin`` the damage check maps at a time (about 38 MB at 512-d).
_GRAPH_WINDOW = 16384
#: Rows of ``data_level0.bin`` read at a time. Read, not mapped: the neighbour links are
#: most of each row, and a mapped file's pages would count in the process's memory.
_CHUNK_ROWS = 4096


def read_hnsw_rows(segment: Path) -> HnswRows:
    """Every element of a vector folder (the neighbour links are skipped). Raises
    ValueError (or OSError) when the files cannot describe an index."""
    import numpy as np

    head = hnsw_header(segment)
    count = head.count
    labels = np.empty(count, dtype=np.uint64)
    deleted = np.empty(count, dtype=bool)
    vectors = np.empty((count, head.dim), dtype=np.float32)
    for start, chunk_labels, chunk_deleted, chunk_vectors in hnsw_chunks(segment, head):
        chunk = slice(start, start + len(chunk_labels))
        labels[chunk] = chunk_labels
        deleted[chunk] = chunk_deleted
        vectors[chunk] = chunk_vectors
    return HnswRows(head, labels, deleted, vectors)


def hnsw_header(segment: Path) -> HnswHeader:
    """A vector folder's header; ValueError (or OSError) when it cannot describe an index."""
    head = parse_header((segment / "header.bin").read_bytes())
    if isinstance(head, str):
        raise ValueError(head)
    return head


def hnsw_chunks(
    segment: Path, head: HnswHeader, rows: int = _CHUNK_ROWS
) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """(first element, labels, deleted flags, vectors) of ``data_level0.bin``, ``rows``
    elements at a time: a reader's memory does not grow with the index. Raises ValueError
    when the file is shorter than the header says, before yielding anything."""
    import numpy as np

    count, per = head.count, head.per_element
    if (segment / "data_level0.bin").stat().st_size < count * per:
        raise ValueError("data_level0.bin is truncated")
    label = slice(head.label_offset, head.label_offset + 8)
    vector = slice(head.data_offset, head.label_offset)
    with (segment / "data_level0.bin").open("rb") as fh:
        for start in range(0, count, rows):
            n = min(rows, count - start)
            raw = np.fromfile(fh, dtype=np.uint8, count=n * per)
            if raw.size < n * per:
                raise ValueError("data_level0.bin is truncated")
            raw = raw.reshape(n, per)
            # Views of each row's bytes (its last axis is contiguous), copied once.
            deleted = ((raw[:, :4].view("<u4")[:, 0] >> 16) & 1).astype(bool)
            labels = raw[:, label].view("<u8")[:, 0].copy()
            vectors = raw[:, vector].view("<f4").astype(np.float32)
            del raw
            yield start, labels, deleted, vectors


def hnsw_vectors_at(segment: Path, head: HnswHeader, positions: np.ndarray) -> np.ndarray:
    """The vectors of the elements at ``positions`` (a copy). Read, not mapped: the kernel
    maps pages around each one touched, so scattered rows of a mapping would count many
    times their size in the process's memory; runs of consecutive rows are read at once."""
    import numpy as np

    positions = np.asarray(positions, dtype=np.int64)
    out = np.empty((positions.size, head.dim), dtype=np.float32)
    if not positions.size:
        return out
    if int(positions.min()) < 0 or int(positions.max()) >= head.count:
        raise ValueError("an element that data_level0.bin does not hold")
    order = np.argsort(positions, kind="stable")
    ordered = positions[order]
    # Where a run of consecutive elements (at most _CHUNK_ROWS long) starts.
    breaks = np.flatnonzero(np.diff(ordered) != 1) + 1
    starts = np.concatenate([[0], breaks, [ordered.size]])
    vector = slice(head.data_offset, head.label_offset)
    with (segment / "data_level0.bin").open("rb") as fh:
        for begin, end in zip(starts[:-1].tolist(), starts[1:].tolist(), strict=True):
            for first in range(begin, end, _CHUNK_ROWS):
                n = min(_CHUNK_ROWS, end - first)
                fh.seek(int(ordered[first]) * head.per_element)
                raw = np.fromfile(fh, dtype=np.uint8, count=n * head.per_element)
                if raw.size < n * head.per_element:
                    raise ValueError("data_level0.bin is truncated")
                rows = raw.reshape(n, head.per_element)[:, vector]
                out[order[first : first + n]] = rows.view("<f4")
    return out


def unit_rows(np: Any, vectors: Any) -> Any:
    """Which rows are finite vectors of unit length (within :data:`NORM_TOLERANCE`)."""
    with np.errstate(all="ignore"):
        norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64))
    return np.isfinite(norms) & (np.abs(norms - 1.0) <= NORM_TOLERANCE)


def not_unit(n: int) -> str:
    """``n`` stored vectors that are not finite unit vectors, in words."""
    if n == 1:
        return "1 stored vector that is not a finite unit vector"
    return f"{n} stored vectors that are not finite unit vectors"


def graph_damage(seg: Path, header_bytes: bytes) -> str | None:
    """Check every neighbour link of the HNSW graph against the element count, and that
    every stored vector of a cosine index is a finite unit vector.

    hnswlib follows links without bounds checks, so one garbled link in
    ``data_level0.bin`` or ``link_lists.bin`` makes the first search that reaches it
    read outside the index and crash the process (exit 139, no message); a garbled vector
    ranks first for any query, with a score no cosine has. This reads the
    files with numpy, without Chroma: about as much reading as Chroma's own load of them,
    which the operating system then has cached.
    """
    import numpy as np

    head = parse_header(header_bytes)
    if isinstance(head, str):
        return head
    count = head.count
    try:
        size = (seg / "data_level0.bin").stat().st_size
    except OSError as exc:
        return f"data_level0.bin cannot be read: {_short(exc)}"
    if size < count * head.per_element:
        return "data_level0.bin is truncated"
    bad = 0
    # A window of rows mapped at a time and let go: the pages read leave the process, so
    # its memory does not grow with the index (a whole mapping counts all of the file).
    for first in range(0, count, _GRAPH_WINDOW):
        n = min(_GRAPH_WINDOW, count - first)
        try:
            level0 = np.memmap(
                seg / "data_level0.bin",
                dtype=np.uint8,
                mode="r",
                offset=first * head.per_element,
                shape=(n * head.per_element,),
            )
        except (OSError, ValueError) as exc:
            return f"data_level0.bin cannot be read: {_short(exc)}"
        links = np.ndarray(
            shape=(n, 1 + head.max_m0),
            dtype="<u4",
            buffer=level0,
            offset=0,
            strides=(head.per_element, 4),
        )
        damaged = _links_damaged(np, links, head.max_m0, count)
        # Vectors of dimension 1 are the failures collection's placeholders (l2, zeros).
        if not damaged and head.dim > 1:
            vectors = np.ndarray(
                shape=(n, head.dim),
                dtype="<f4",
                buffer=level0,
                offset=head.data_offset,
                strides=(head.per_element, 4),
            )
            flags = np.ndarray(
                shape=(n,), dtype="<u4", buffer=level0, offset=0, strides=(head.per_element,)
            )
            live = ((flags >> 16) & 1) == 0
            bad += int((~unit_rows(np, vectors) & live).sum())
            del vectors, flags
        del links, level0
        if damaged:
            return "data_level0.bin has links out of range"
    if bad:
        return f"data_level0.bin holds {not_unit(bad)}"
    problem = link_lists_damage(seg, head)
    if problem is None and count and label_table(seg) is None:
        return "index_metadata.pickle cannot be read"
    return problem


def link_lists_damage(seg: Path, head: HnswHeader) -> str | None:
    """Check ``link_lists.bin``: each element's word (its upper lists' size in bytes), then
    those lists, every link naming an element that exists. Lengths are checked before
    anything is read past them."""
    import numpy as np

    count = head.count
    try:
        upper = np.fromfile(seg / "link_lists.bin", dtype="<u4")
        whole_words = (seg / "link_lists.bin").stat().st_size % 4 == 0
    except (OSError, ValueError) as exc:
        return f"link_lists.bin cannot be read: {_short(exc)}"
    if not whole_words:
        return "link_lists.bin is truncated"
    per_level = 1 + head.max_m  # uint32 words per upper-level list
    # Most elements have no upper lists (a zero word), so the walk jumps from one nonzero
    # word to the next instead of visiting every element in Python.
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
        if pos >= total:  # elements left, words not: checked before reading past the end
            return "link_lists.bin is truncated"
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


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


# ------------------------------------------------------------- what the vector cache reads
# (clipseek/store/vector_cache.py keeps a copy of the vectors beside Chroma; these are the
# few facts of Chroma's tables it needs to know whether that copy is current.)


def applied_seq(con: sqlite3.Connection, segment: str) -> int | None:
    """The last write (Chroma's sequence number) a metadata segment has applied: every
    record added, updated or deleted moves it on by one, whoever wrote it."""
    row = con.execute("SELECT seq_id FROM max_seq_id WHERE segment_id = ?", (segment,)).fetchone()
    if row is None or row[0] is None:
        return None
    value = row[0]
    if isinstance(value, bytes):  # older Chroma kept it as a big-endian blob
        return int.from_bytes(value, "big")
    return int(value)


def rowids_of(con: sqlite3.Connection, segment: str, ids: Iterable[str]) -> dict[str, int]:
    """Record id → SQLite row id, for those of ``ids`` the segment holds."""
    wanted = list(dict.fromkeys(ids))
    return dict(
        _rows_where_in(
            con,
            "SELECT embedding_id, id FROM embeddings WHERE segment_id = ?",
            "embedding_id",
            segment,
            wanted,
        )
    )


def ids_of(con: sqlite3.Connection, segment: str, rowids: Iterable[int]) -> dict[int, str]:
    """SQLite row id → record id, for those of ``rowids`` the segment holds."""
    wanted = sorted({int(r) for r in rowids})
    # "+": look the rows up by id, not by walking the segment's whole index.
    select = "SELECT id, embedding_id FROM embeddings WHERE +segment_id = ?"
    return dict(_rows_where_in(con, select, "id", segment, wanted))


def _rows_where_in(
    con: sqlite3.Connection, select: str, column: str, segment: str, values: Sequence[Any]
) -> list[tuple[Any, ...]]:
    """``select`` (which binds the segment) narrowed to ``column IN values``, in chunks
    SQLite's parameter limit allows."""
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(values), _SQL_BATCH):
        chunk = values[start : start + _SQL_BATCH]
        marks = ",".join("?" * len(chunk))
        rows += con.execute(f"{select} AND {column} IN ({marks})", [segment, *chunk]).fetchall()
    return rows


def all_rowids(con: sqlite3.Connection, segment: str) -> np.ndarray:
    """Every record's SQLite row id in a segment, ascending, as one array."""
    import numpy as np

    cursor = con.execute("SELECT id FROM embeddings WHERE segment_id = ? ORDER BY id", (segment,))
    return np.fromiter((r for (r,) in cursor), dtype=np.int64)
