"""The vector store in Chroma: the only module that imports chromadb.

One collection per embedding space (model key), so vectors of different models
can never be mixed or compared. Each record's metadata carries what the indexer
needs to decide whether a file changed (size, mtime) and what search needs to
filter by folder (the list of the file's ancestor folders).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from clipseek.errors import DamagedIndexError, IndexMissingError, StoreError
from clipseek.lock import LOCK_NAMES, DataLock, data_lock
from clipseek.store.integrity import (
    _chroma_errors,
    _short,
    damaged_message,
    find_damage,
    store_error,
)
from clipseek.store.keys import _meta_text, ancestors, path_from_meta, path_id, path_to_meta

if TYPE_CHECKING:
    import numpy as np

SCHEMA_VERSION = 1
COLLECTION_PREFIX = "clipseek-"
#: Files that could not be read are remembered (with size and mtime) in a side
#: collection, so an unchanged broken file is not decoded again on every run.
FAILURES_PREFIX = "clipseekfail-"
_PAGE = 10_000

#: HNSW parameters, cosine space. Measured by benchmarks/bench_hnsw.py on 100k CLIP-like
#: vectors (docs/PERFORMANCE.md): with max_neighbors 32 and ef_construction 200,
#: recall@10 against an exact scan is 0.9995 at ef_search 100 and 1.0 at 200, for about
#: 1.5 ms a query; Chroma's defaults (16, 100, 100) give 0.990. ef_search is the one
#: value an existing index can take on later (see _raise_ef_search).
HNSW_CONFIG: dict[str, Any] = {
    "space": "cosine",
    "ef_construction": 200,
    "ef_search": 200,
    "max_neighbors": 32,
}


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class StoredEntry:
    id: str
    path: str
    size: int
    mtime_ns: int
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Record:
    path: str
    embedding: np.ndarray
    size: int
    mtime_ns: int
    width: int
    height: int
    extra: Mapping[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        meta = path_to_meta(self.path)
        meta.update(
            size=int(self.size),
            mtime_ns=int(self.mtime_ns),
            width=int(self.width),
            height=int(self.height),
            dirs=ancestors(self.path),
        )
        meta.update(self.extra)
        return meta


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    path: str
    score: float
    metadata: Mapping[str, Any]


@dataclass(frozen=True)
class IndexInfo:
    model_key: str
    model_name: str
    dim: int
    count: int
    roots: tuple[str, ...]
    collection: str
    created: str = ""


# --------------------------------------------------------------------------- store


class Store:
    """A ChromaDB database: a folder on disk, or a Chroma server when ``location`` is a URL."""

    def __init__(self, location: str | os.PathLike[str], *, create: bool = True) -> None:
        self.location = os.fspath(location)
        self.is_remote = self.location.startswith(("http://", "https://"))
        self._create = create
        self._client: Any = None
        self._lock: DataLock | None = None if self.is_remote else data_lock(self.location)
        self._health_checked = False

    # -- locking (see clipseek.lock): readers share, writers exclude

    def reading(self) -> contextlib.AbstractContextManager[None]:
        return self._lock.shared() if self._lock else contextlib.nullcontext()

    def writing(self) -> contextlib.AbstractContextManager[None]:
        return self._lock.exclusive() if self._lock else contextlib.nullcontext()

    # -- damage

    def damage(self) -> str | None:
        """What is structurally wrong with the database files, if anything (local only)."""
        if self.is_remote:
            return None
        with self.reading():
            return find_damage(Path(self.location))

    def _check_health(self) -> None:
        """Refuse to work on a damaged database before Chroma reads garbage (or crashes)."""
        if self._health_checked or self.is_remote:
            return
        problem = self.damage()
        if problem:
            raise DamagedIndexError(damaged_message(self.location, problem))
        self._health_checked = True

    def recover(self) -> str | None:
        """Move a damaged database aside so a rebuild can start afresh; returns where it went.

        Nothing is deleted: the damaged files move to a sibling folder the user may
        inspect or remove. The lock files stay, since the caller holds them.
        """
        if self.is_remote:
            return None
        folder = Path(self.location)
        problem = self.damage()
        if problem is None:
            try:
                for col in self._collections_unchecked():
                    index = ImageIndex(col, location=self.location, lock=self._lock)
                    index.count()
                    index.probe()
            except StoreError as exc:
                problem = str(exc)
        if problem is None:
            return None
        self._forget_client()
        from datetime import datetime

        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        target = folder.with_name(f"{folder.name}.damaged-{stamp}")
        with self.writing():
            try:
                target.mkdir(parents=True, exist_ok=False)
                for item in folder.iterdir():
                    if item.name not in LOCK_NAMES:
                        shutil.move(str(item), str(target / item.name))
            except OSError as exc:
                raise StoreError(
                    f"The index at {folder} is damaged and could not be moved aside to "
                    f"{target} ({exc.strerror or exc}); move or delete it by hand, then "
                    "run `clipseek index` again."
                ) from None
        self._health_checked = False
        return str(target)

    def _forget_client(self) -> None:
        """Drop Chroma's per-process cached system for this folder, so a reopen starts clean."""
        self._client = None
        try:
            from chromadb.api.shared_system_client import SharedSystemClient
        except ImportError:  # pragma: no cover - layout of another chromadb release
            return
        system = SharedSystemClient._identifier_to_system.pop(str(Path(self.location)), None)
        SharedSystemClient._identifier_to_refcount.pop(str(Path(self.location)), None)
        if system is not None:
            with contextlib.suppress(Exception):
                system.stop()

    # -- connection

    @property
    def exists(self) -> bool:
        """Whether there is anything to open (always assumed for a server)."""
        return self.is_remote or (Path(self.location) / "chroma.sqlite3").exists()

    def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        chroma_settings = ChromaSettings(anonymized_telemetry=False)
        if self.is_remote:
            url = urlparse(self.location)
            if not url.hostname:
                raise StoreError(f"{self.location} is not a valid Chroma server URL.")
            port = url.port or (443 if url.scheme == "https" else 8000)
            try:
                self._client = chromadb.HttpClient(
                    host=url.hostname,
                    port=port,
                    ssl=url.scheme == "https",
                    settings=chroma_settings,
                )
                self._client.heartbeat()
            except Exception as exc:
                self._client = None
                raise StoreError(
                    f"Cannot reach the Chroma server at {self.location} ({_short(exc)}). "
                    "Is `chroma run` running there?"
                ) from exc
            return self._client
        folder = Path(self.location)
        self._check_health()
        if not self._create and not self.exists:
            raise IndexMissingError(
                f"There is no clipseek index at {folder} yet. "
                "Run `clipseek index FOLDER` to build one."
            )
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"Cannot create the index folder {folder}: {exc.strerror or exc}. "
                "Choose another place with --db PATH or CLIPSEEK_DB."
            ) from exc
        creating = not self.exists
        try:
            with self.writing() if creating else self.reading():
                self._client = chromadb.PersistentClient(path=str(folder), settings=chroma_settings)
        except _chroma_errors() as exc:
            self._forget_client()
            raise store_error(self.location, "Opening", exc) from exc
        return self._client

    def close(self) -> None:
        self._client = None

    # -- collections

    def _collections(self) -> list[Any]:
        self._check_health()
        return self._collections_unchecked()

    def _collections_unchecked(self) -> list[Any]:
        client = self._connect()
        try:
            with self.reading():
                cols = client.list_collections()
                out = []
                for col in cols:
                    if not col.name.startswith(COLLECTION_PREFIX):
                        continue
                    out.append(col if hasattr(col, "metadata") else client.get_collection(col))
        except _chroma_errors() as exc:
            raise store_error(self.location, "Reading", exc) from exc
        return out

    def indexes(self) -> list[IndexInfo]:
        """Every clipseek index in this database, one per model."""
        self._check_health()
        if not self.is_remote and not self.exists:
            return []
        return [self._wrap(col).info() for col in self._collections()]

    def _wrap(self, col: Any, collection_slug: str | None = None) -> ImageIndex:
        failures = None
        if collection_slug is not None:
            slug = collection_slug
            failures = lambda: self._failures_collection(slug)  # noqa: E731
        return ImageIndex(col, failures, location=self.location, lock=self._lock)

    def peek_indexes(self) -> list[IndexInfo] | None:
        """:meth:`indexes` read straight from Chroma's SQLite file, without importing chromadb.

        Importing chromadb costs a second or more, which ``clipseek info`` and the TUI's
        first paint should not pay to show a few numbers. The file is opened read-only
        and only tables and columns that are checked first are read; anything
        unexpected (another Chroma layout, a server, a locked or damaged file) returns
        None and the caller asks chromadb instead.
        """
        if self.is_remote:
            return None
        self._check_health()  # a damaged database is reported as :meth:`indexes` would
        path = Path(self.location) / "chroma.sqlite3"
        if not path.is_file():
            return []
        try:
            with self.reading():
                return _peek_sqlite(path)
        except (sqlite3.Error, ValueError, TypeError, OSError):
            return None

    def open_index(self, model_key: str, collection_slug: str) -> ImageIndex | None:
        """The index for ``model_key``, or None if nothing was indexed with that model."""
        self._check_health()
        if not self.is_remote and not self.exists:
            return None
        name = COLLECTION_PREFIX + collection_slug
        for col in self._collections():
            if col.name == name:
                index = self._wrap(col, collection_slug)
                if index.model_key != model_key:
                    raise StoreError(
                        f"Collection {name} belongs to model {index.model_key}, not {model_key}."
                    )
                _raise_ef_search(col)
                return index
        return None

    def create_index(
        self, model_key: str, model_name: str, collection_slug: str, dim: int
    ) -> ImageIndex:
        client = self._connect()
        metadata = {
            "clipseek_schema": SCHEMA_VERSION,
            "model_key": model_key,
            "model_name": model_name,
            "dim": int(dim),
            "roots": "[]",
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        try:
            with self.writing():
                col = client.get_or_create_collection(
                    COLLECTION_PREFIX + collection_slug,
                    configuration={"hnsw": dict(HNSW_CONFIG)},
                    metadata=metadata,
                    embedding_function=None,  # never Chroma's default model: it would download one
                )
        except _chroma_errors() as exc:
            raise store_error(self.location, "Creating an index", exc) from exc
        return self._wrap(col, collection_slug)

    def _failures_collection(self, collection_slug: str) -> Any:
        client = self._connect()
        try:
            with self.writing():
                return client.get_or_create_collection(
                    FAILURES_PREFIX + collection_slug,
                    configuration={"hnsw": {"space": "l2"}},
                    embedding_function=None,
                )
        except _chroma_errors() as exc:
            raise store_error(self.location, "Opening", exc) from exc

    def drop_index(self, model_key: str, collection_slug: str) -> None:
        if self.open_index(model_key, collection_slug) is not None:
            client = self._connect()
            try:
                with self.writing():
                    client.delete_collection(COLLECTION_PREFIX + collection_slug)
                    with contextlib.suppress(Exception):
                        client.delete_collection(FAILURES_PREFIX + collection_slug)
            except _chroma_errors() as exc:
                raise store_error(self.location, "Deleting an index", exc) from exc


class ImageIndex:
    """The vectors of one model: what was indexed, and nearest-neighbour search over it."""

    def __init__(
        self,
        collection: Any,
        failures: Callable[[], Any] | None = None,
        *,
        location: str = "",
        lock: DataLock | None = None,
    ) -> None:
        self._col = collection
        self._failures_factory = failures
        self._failures_col: Any = None
        self.location = location
        self._lock = lock
        meta = dict(collection.metadata or {})
        self.name: str = collection.name
        self.model_key: str = str(meta.get("model_key", ""))
        self.model_name: str = str(meta.get("model_name", self.model_key))
        self.dim: int = int(meta.get("dim", 0))
        self._meta = meta

    def info(self) -> IndexInfo:
        return IndexInfo(
            model_key=self.model_key,
            model_name=self.model_name,
            dim=self.dim,
            count=self.count(),
            roots=tuple(self.roots),
            collection=self.name,
            created=str(self._meta.get("created", "")),
        )

    # -- guarded calls into Chroma

    def _reading(self) -> contextlib.AbstractContextManager[None]:
        return self._lock.shared() if self._lock else contextlib.nullcontext()

    def _writing(self) -> contextlib.AbstractContextManager[None]:
        return self._lock.exclusive() if self._lock else contextlib.nullcontext()

    def _error(self, doing: str, exc: BaseException) -> StoreError:
        return store_error(self.location or "this location", doing, exc)

    def count(self) -> int:
        try:
            with self._reading():
                return int(self._col.count())
        except _chroma_errors() as exc:
            raise self._error("Counting the images", exc) from exc

    def probe(self) -> None:
        """Run one nearest-neighbour search, which loads the vector files; raises if damaged."""
        import numpy as np

        total = self.count()
        if total == 0 or not self.dim:
            return
        vector = np.full(self.dim, 1.0 / np.sqrt(self.dim), dtype=np.float32)
        hits = self.query(vector, min(total, 3))
        if not hits:
            raise DamagedIndexError(damaged_message(self.location, "a search found nothing"))

    # -- roots

    @property
    def roots(self) -> list[str]:
        try:
            return list(json.loads(self._meta.get("roots", "[]")))
        except (TypeError, ValueError):
            return []

    def add_roots(self, roots: Sequence[str]) -> None:
        merged = sorted({*self.roots, *(_meta_text(r) for r in roots)})
        if merged != self.roots:
            self._set_meta("roots", json.dumps(merged))

    def add_cameras(self, cameras: Sequence[str]) -> None:
        """Remember camera names, so a camera filter needs no scan of every record."""
        merged = sorted({*self.cameras, *(c for c in cameras if c)})
        if merged != self.cameras:
            self._set_meta("cameras", json.dumps(merged))

    def _set_meta(self, key: str, value: str) -> None:
        meta = {k: v for k, v in self._meta.items() if not k.startswith("hnsw:")}
        meta[key] = value
        try:
            with self._writing():
                self._col.modify(metadata=meta)
        except _chroma_errors() as exc:
            raise self._error("Writing", exc) from exc
        self._meta = meta

    # -- reading

    def _get_pages(
        self, where: dict[str, Any] | None, include: list[str], collection: Any = None
    ) -> Iterator[Any]:
        col = self._col if collection is None else collection
        offset = 0
        while True:
            try:
                with self._reading():
                    page = col.get(where=where, include=include, limit=_PAGE, offset=offset)
            except _chroma_errors() as exc:
                raise self._error("Reading", exc) from exc
            if not page["ids"]:
                return
            yield page
            if len(page["ids"]) < _PAGE:
                return
            offset += _PAGE

    def entries(self, under: str | None = None) -> dict[str, StoredEntry]:
        """Stored files (by id), optionally only those inside the folder ``under``."""
        return self._entries(self._col, under)

    def failures(self, under: str | None = None) -> dict[str, StoredEntry]:
        """Files that could not be read, as they were then; ``extra["reason"]`` says why."""
        failures = self._failures()
        return {} if failures is None else self._entries(failures, under)

    def _failures(self) -> Any:
        if self._failures_col is None and self._failures_factory is not None:
            self._failures_col = self._failures_factory()
        return self._failures_col

    def _entries(
        self, collection: Any, under: str | None, where: dict[str, Any] | None = None
    ) -> dict[str, StoredEntry]:
        if under is not None:
            where = {
                "$or": [{"dirs": {"$contains": _meta_text(under)}}, {"path": _meta_text(under)}]
            }
        out: dict[str, StoredEntry] = {}
        for page in self._get_pages(where, ["metadatas"], collection):
            for id_, meta in zip(page["ids"], page["metadatas"], strict=True):
                out[id_] = _stored_entry(id_, meta or {})
        return out

    def entries_with_sizes(self, sizes: Sequence[int]) -> dict[str, StoredEntry]:
        """Stored files of any of these byte sizes, anywhere in the index: the candidates
        for a moved or copied file (whose content hash is then compared)."""
        out: dict[str, StoredEntry] = {}
        values = [int(s) for s in sizes]
        for start in range(0, len(values), 500):
            chunk = values[start : start + 500]
            where = {"size": {"$in": chunk}} if len(chunk) > 1 else {"size": chunk[0]}
            out.update(self._entries(self._col, None, where))
        return out

    def lookup(self, ids: Sequence[str]) -> dict[str, StoredEntry]:
        """What the index knows about ``ids`` (path, size, mtime, width...), without the
        vectors: how a face finds the file behind an id it was given. Unknown ids are absent."""
        if not ids:
            return {}
        try:
            with self._reading():
                page = self._col.get(ids=list(ids), include=["metadatas"])
        except _chroma_errors() as exc:
            raise self._error("Reading", exc) from exc
        return {
            id_: _stored_entry(id_, meta or {})
            for id_, meta in zip(page["ids"], page["metadatas"], strict=True)
        }

    def get(self, ids: Sequence[str]) -> dict[str, tuple[np.ndarray, Mapping[str, Any]]]:
        """Embeddings and metadata for ``ids`` (missing ids are absent from the result)."""
        import numpy as np

        if not ids:
            return {}
        try:
            with self._reading():
                page = self._col.get(ids=list(ids), include=["embeddings", "metadatas"])
        except _chroma_errors() as exc:
            raise self._error("Reading", exc) from exc
        out = {}
        for id_, emb, meta in zip(page["ids"], page["embeddings"], page["metadatas"], strict=True):
            out[id_] = (np.asarray(emb, dtype=np.float32), meta or {})
        return out

    def all_vectors(
        self, under: str | None = None
    ) -> tuple[list[str], np.ndarray, list[Mapping[str, Any]]]:
        """Every stored vector (optionally only inside ``under``) with its id and metadata."""
        import numpy as np

        where = _folder_where(under)
        ids: list[str] = []
        metas: list[Mapping[str, Any]] = []
        vectors: list[np.ndarray] = []
        for page in self._get_pages(where, ["embeddings", "metadatas"]):
            ids.extend(page["ids"])
            metas.extend(m or {} for m in page["metadatas"])
            vectors.append(np.asarray(page["embeddings"], dtype=np.float32))
        dim = self.dim or 1
        stacked = np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)
        return ids, stacked, metas

    def query_many(
        self, vectors: np.ndarray, n: int, under: str | None = None
    ) -> list[list[tuple[str, float]]]:
        """For each vector, its ``n`` nearest stored ids with cosine similarities (one call)."""
        import numpy as np

        if len(vectors) == 0 or n <= 0:
            return []
        try:
            with self._reading():
                res = self._col.query(
                    query_embeddings=np.asarray(vectors, dtype=np.float32),
                    n_results=n,
                    where=_folder_where(under),
                    include=["distances"],
                )
        except _chroma_errors() as exc:
            raise self._error("Searching", exc) from exc
        return [
            [(id_, 1.0 - float(dist)) for id_, dist in zip(ids, dists, strict=True)]
            for ids, dists in zip(res["ids"], res["distances"], strict=True)
        ]

    @property
    def cameras(self) -> list[str]:
        """Camera names in this index (kept in the collection's metadata by the writer)."""
        try:
            return [str(c) for c in json.loads(self._meta.get("cameras", "[]"))]
        except (TypeError, ValueError):
            return []

    def query(
        self,
        vector: np.ndarray,
        n: int,
        under: str | None = None,
        clauses: Sequence[Mapping[str, Any]] = (),
    ) -> list[Hit]:
        """The ``n`` nearest images by cosine similarity, best first; ``clauses`` are more
        ``where`` conditions (:meth:`clipseek.filters.Filters.clauses`), all to hold."""
        import numpy as np

        if n <= 0:
            return []
        where = _combine([*([_folder_where(under)] if under else []), *clauses])
        try:
            with self._reading():
                # Chroma answers n_results above its count with what it has, so the count
                # (a full COUNT over SQLite, ~9 ms at 100k) is only read for a short answer.
                res = self._col.query(
                    query_embeddings=np.asarray(vector, dtype=np.float32).reshape(1, -1),
                    n_results=n,
                    where=where,
                    include=["metadatas", "distances"],
                )
        except _chroma_errors() as exc:
            raise self._error("Searching", exc) from exc
        if where is None and len(res["ids"][0]) < n:
            total = self.count()
            if len(res["ids"][0]) < min(n, total):
                # Chroma counts records from its SQLite file but searches its vector files;
                # fewer hits than records means those files lost entries.
                raise DamagedIndexError(
                    damaged_message(
                        self.location,
                        f"the vector files hold fewer images than the {total} recorded",
                    )
                )
        hits = []
        for id_, meta, dist in zip(
            res["ids"][0], res["metadatas"][0], res["distances"][0], strict=True
        ):
            meta = meta or {}
            hits.append(
                Hit(id=id_, path=path_from_meta(meta), score=1.0 - float(dist), metadata=meta)
            )
        return hits

    # -- writing

    def _max_batch(self) -> int:
        client = getattr(self._col, "_client", None)
        try:
            return max(1, int(client.get_max_batch_size()))
        except Exception:
            return 1000

    def upsert(self, records: Sequence[Record]) -> None:
        """Write records in chunks no larger than the store accepts in one call."""
        import numpy as np

        if not records:
            return
        step = self._max_batch()
        for start in range(0, len(records), step):
            chunk = records[start : start + step]
            try:
                with self._writing():
                    self._col.upsert(
                        ids=[path_id(r.path) for r in chunk],
                        embeddings=np.stack(
                            [np.asarray(r.embedding, dtype=np.float32) for r in chunk]
                        ),
                        metadatas=[r.metadata() for r in chunk],
                    )
            except _chroma_errors() as exc:
                raise self._error("Writing", exc) from exc
        self.add_cameras([str(r.extra.get("camera", "")) for r in records])

    def update_metadata(self, updates: Mapping[str, Mapping[str, Any]]) -> None:
        """Add fields to stored records' metadata, keeping their vectors and other fields."""
        ids = list(updates)
        step = self._max_batch()
        for start in range(0, len(ids), step):
            chunk = ids[start : start + step]
            try:
                with self._reading():
                    page = self._col.get(ids=chunk, include=["metadatas"])
                found = [
                    (id_, {**(meta or {}), **updates[id_]})
                    for id_, meta in zip(page["ids"], page["metadatas"], strict=True)
                ]
                if found:
                    with self._writing():
                        self._col.update(
                            ids=[id_ for id_, _ in found], metadatas=[m for _, m in found]
                        )
            except _chroma_errors() as exc:
                raise self._error("Writing", exc) from exc
        self.add_cameras([str(u.get("camera", "")) for u in updates.values()])

    def delete(self, ids: Sequence[str]) -> None:
        self._delete(self._col, ids)

    def _delete(self, collection: Any, ids: Sequence[str]) -> None:
        ids = list(ids)
        step = self._max_batch()
        for start in range(0, len(ids), step):
            try:
                with self._writing():
                    collection.delete(ids=ids[start : start + step])
            except _chroma_errors() as exc:
                raise self._error("Deleting", exc) from exc

    def record_failures(self, failures: Sequence[tuple[str, int, int, str]]) -> None:
        """Remember unreadable files as (path, size, mtime_ns, reason)."""
        collection = self._failures()
        if collection is None or not failures:
            return
        step = self._max_batch()
        for start in range(0, len(failures), step):
            chunk = failures[start : start + step]
            metas = []
            for path, size, mtime_ns, reason in chunk:
                meta = path_to_meta(path)
                meta.update(
                    size=int(size), mtime_ns=int(mtime_ns), reason=reason, dirs=ancestors(path)
                )
                metas.append(meta)
            try:
                with self._writing():
                    collection.upsert(
                        ids=[path_id(p) for p, *_ in chunk],
                        embeddings=[[0.0]] * len(chunk),
                        metadatas=metas,
                    )
            except _chroma_errors() as exc:
                raise self._error("Writing", exc) from exc

    def forget_failures(self, ids: Sequence[str]) -> None:
        collection = self._failures()
        if collection is not None and ids:
            self._delete(collection, ids)


#: What :func:`_peek_sqlite` reads from Chroma's SQLite schema (checked before reading).
_PEEK_COLUMNS = {
    "collections": {"id", "name", "database_id"},
    "collection_metadata": {"collection_id", "key", "str_value", "int_value", "float_value"},
    "segments": {"id", "scope", "collection"},
    "embeddings": {"segment_id"},
    "databases": {"id", "name", "tenant_id"},
}


def _peek_sqlite(path: Path) -> list[IndexInfo] | None:
    uri = f"{path.resolve().as_uri()}?mode=ro"
    con = sqlite3.connect(uri, uri=True, timeout=1.0)
    try:
        for table, needed in _PEEK_COLUMNS.items():
            have = {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
            if not needed <= have:
                return None
        rows = con.execute(
            "SELECT c.id, c.name FROM collections c JOIN databases d ON c.database_id = d.id "
            "WHERE d.name = 'default_database' AND d.tenant_id = 'default_tenant' "
            "AND substr(c.name, 1, ?) = ? ORDER BY c.name",
            (len(COLLECTION_PREFIX), COLLECTION_PREFIX),
        ).fetchall()
        out = []
        for collection_id, name in rows:
            meta: dict[str, Any] = {}
            for key, text, integer, real in con.execute(
                "SELECT key, str_value, int_value, float_value FROM collection_metadata "
                "WHERE collection_id = ?",
                (collection_id,),
            ):
                meta[key] = text if text is not None else integer if integer is not None else real
            segments = con.execute(
                "SELECT id FROM segments WHERE collection = ? AND scope = 'METADATA'",
                (collection_id,),
            ).fetchall()
            if len(segments) != 1:
                return None
            (count,) = con.execute(
                "SELECT COUNT(*) FROM embeddings WHERE segment_id = ?", (segments[0][0],)
            ).fetchone()
            model_key = str(meta.get("model_key", ""))
            try:
                roots = tuple(json.loads(str(meta.get("roots", "[]"))))
            except ValueError:
                roots = ()
            out.append(
                IndexInfo(
                    model_key=model_key,
                    model_name=str(meta.get("model_name", model_key)),
                    dim=int(meta.get("dim", 0) or 0),
                    count=int(count),
                    roots=roots,
                    collection=str(name),
                    created=str(meta.get("created", "")),
                )
            )
        return out
    finally:
        con.close()


def _raise_ef_search(collection: Any) -> None:
    """Bring an older index's ef_search up to :data:`HNSW_CONFIG`.

    A collection keeps the HNSW parameters it was created with. max_neighbors and
    ef_construction shape the graph and cannot change without a rebuild, but ef_search
    (how widely a query explores, hence recall) can: Chroma stores the new value and
    uses it from the next time a process loads the index. Best effort: a server that
    cannot change it still answers queries as before.
    """
    want = int(HNSW_CONFIG["ef_search"])
    try:
        hnsw = (getattr(collection, "configuration", None) or {}).get("hnsw") or {}
        current = hnsw.get("ef_search")
        if current is None or int(current) >= want:
            return
        collection.modify(configuration={"hnsw": {"ef_search": want}})
    except Exception:
        return


def _stored_entry(id_: str, meta: Mapping[str, Any]) -> StoredEntry:
    extra = {
        k: v for k, v in meta.items() if k not in ("path", "path_b64", "size", "mtime_ns", "dirs")
    }
    return StoredEntry(
        id=id_,
        path=path_from_meta(meta),
        size=int(meta.get("size", -1)),
        mtime_ns=int(meta.get("mtime_ns", -1)),
        extra=extra,
    )


def _folder_where(under: str | None) -> dict[str, Any] | None:
    return {"dirs": {"$contains": _meta_text(under)}} if under else None


def _combine(clauses: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    if not clauses:
        return None
    return dict(clauses[0]) if len(clauses) == 1 else {"$and": [dict(c) for c in clauses]}
