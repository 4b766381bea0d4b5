"""Chroma's files read without chromadb: the SQLite tables and the hnswlib vector files.

Chroma 1.5 keeps an index in two places (docs/RELIABILITY.md, "Where the vectors live"):

- ``chroma.sqlite3``: every record's id and metadata (tables ``embeddings``,
  ``embedding_metadata`` and ``embedding_metadata_array``), and a log of recent writes
  with their vectors (``embeddings_queue``), purged once the vector files hold them;
- one folder of hnswlib files per collection: ``data_level0.bin`` holds each vector with
  its label and its neighbour links, ``index_metadata.pickle`` the label → id map.

Two readers need these without Chroma: repair (Chroma would crash on the damage it is
there to fix) and searching (importing chromadb costs a second, most of a cold query).
Both read here, so the layout is known in one place.
"""

from __future__ import annotations

import io
import pickle
import sqlite3
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipseek.store.integrity import HnswHeader, parse_header

if TYPE_CHECKING:
    import numpy as np

#: Chroma's operation codes in ``embeddings_queue``.
OP_ADD, OP_UPDATE, OP_UPSERT, OP_DELETE = 0, 1, 2, 3
#: SQLite's limit on bound parameters is 999 on older builds.
_SQL_BATCH = 900


def connect_readonly(database: Path, timeout: float = 5.0) -> sqlite3.Connection:
    """Open ``chroma.sqlite3`` so that nothing can be written through the connection."""
    return sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout)


def metadata_value(text: Any, integer: Any, real: Any, boolean: Any) -> Any:
    """One metadata value from the typed columns Chroma spreads it over."""
    if text is not None:
        return text
    if integer is not None:
        return int(integer)
    if real is not None:
        return float(real)
    return bool(boolean) if boolean is not None else None


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
            # index (0.1 s at 100,000 records, for ten of them).
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


def logged_vectors(con: sqlite3.Connection, collection_id: str) -> dict[str, np.ndarray | None]:
    """What the write log of one collection says last about each record it names: its
    vector, or None when the record was deleted. Replayed over the vector files, it gives
    the current vectors (a metadata-only update leaves the vector as it was)."""
    import numpy as np

    latest: dict[str, np.ndarray | None] = {}
    for operation, record_id, blob, encoding in con.execute(
        "SELECT operation, id, vector, encoding FROM embeddings_queue WHERE topic LIKE ? "
        "ORDER BY seq_id",
        (f"%/{collection_id}",),
    ):
        if operation == OP_DELETE:
            latest[str(record_id)] = None
        elif blob is not None and operation in (OP_ADD, OP_UPDATE, OP_UPSERT):
            dtype = "<i4" if str(encoding).upper() == "INT32" else "<f4"
            latest[str(record_id)] = np.frombuffer(blob, dtype=dtype).astype(np.float32)
    return latest


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


@dataclass
class HnswRows:
    """The elements of ``data_level0.bin``: label, deleted flag and vector of each."""

    header: HnswHeader
    labels: np.ndarray
    deleted: np.ndarray
    vectors: np.ndarray


#: Rows of ``data_level0.bin`` read at a time. Read, not mapped: the neighbour links are
#: most of each row, and a mapped file's pages would count in the process's memory.
_CHUNK_ROWS = 4096


def read_hnsw_rows(segment: Path) -> HnswRows:
    """Every element of a vector folder (the neighbour links are skipped). Raises
    ValueError (or OSError) when the files cannot describe an index."""
    import numpy as np

    head = parse_header((segment / "header.bin").read_bytes())
    if isinstance(head, str):
        raise ValueError(head)
    count, per = head.count, head.per_element
    labels = np.empty(count, dtype=np.uint64)
    deleted = np.empty(count, dtype=bool)
    vectors = np.empty((count, head.dim), dtype=np.float32)
    label = slice(head.label_offset, head.label_offset + 8)
    vector = slice(head.data_offset, head.label_offset)
    with (segment / "data_level0.bin").open("rb") as fh:
        for start in range(0, count, _CHUNK_ROWS):
            n = min(_CHUNK_ROWS, count - start)
            rows = np.fromfile(fh, dtype=np.uint8, count=n * per)
            if rows.size < n * per:
                raise ValueError("data_level0.bin is truncated")
            rows = rows.reshape(n, per)
            # Views of each row's bytes (its last axis is contiguous), copied once, into
            # the arrays kept.
            chunk = slice(start, start + n)
            deleted[chunk] = (rows[:, :4].view("<u4")[:, 0] >> 16) & 1
            labels[chunk] = rows[:, label].view("<u8")[:, 0]
            vectors[chunk] = rows[:, vector].view("<f4")
    return HnswRows(head, labels, deleted, vectors)


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


def record_count(con: sqlite3.Connection, segment: str) -> int:
    """How many records a metadata segment holds (SQLite counts its own index)."""
    (count,) = con.execute(
        "SELECT COUNT(*) FROM embeddings WHERE segment_id = ?", (segment,)
    ).fetchone()
    return int(count)


def rowids_of(con: sqlite3.Connection, segment: str, ids: Iterable[str]) -> dict[str, int]:
    """Record id → SQLite row id, for those of ``ids`` the segment holds."""
    wanted = list(dict.fromkeys(ids))
    out: dict[str, int] = {}
    for start in range(0, len(wanted), _SQL_BATCH):
        chunk = wanted[start : start + _SQL_BATCH]
        out.update(
            con.execute(
                "SELECT embedding_id, id FROM embeddings WHERE segment_id = ? "
                f"AND embedding_id IN ({','.join('?' * len(chunk))})",
                [segment, *chunk],
            ).fetchall()
        )
    return out


def ids_of(con: sqlite3.Connection, segment: str, rowids: Iterable[int]) -> dict[int, str]:
    """SQLite row id → record id, for those of ``rowids`` the segment holds."""
    wanted = sorted({int(r) for r in rowids})
    out: dict[int, str] = {}
    for start in range(0, len(wanted), _SQL_BATCH):
        chunk = wanted[start : start + _SQL_BATCH]
        out.update(
            con.execute(
                "SELECT id, embedding_id FROM embeddings WHERE +segment_id = ? "
                f"AND id IN ({','.join('?' * len(chunk))})",
                [segment, *chunk],
            ).fetchall()
        )
    return out


def all_rowids(con: sqlite3.Connection, segment: str) -> np.ndarray:
    """Every record's SQLite row id in a segment, ascending, as one array."""
    import numpy as np

    cursor = con.execute("SELECT id FROM embeddings WHERE segment_id = ? ORDER BY id", (segment,))
    return np.fromiter((r for (r,) in cursor), dtype=np.int64)
