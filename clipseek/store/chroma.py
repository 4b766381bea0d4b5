"""The vector store in Chroma: the only module that imports chromadb.

One collection per embedding space (model key), so vectors of different models
can never be mixed or compared. Each record's metadata carries what the indexer
needs to decide whether a file changed (size, mtime) and what search needs to
filter by folder (the list of the file's ancestor folders).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from clipseek.errors import DamagedIndexError, IndexMissingError, StoreError
from clipseek.store.integrity import (
    _chroma_errors,
    _short,
    damaged_message,
    find_damage,
    store_error,
)
from clipseek.store.keys import (
    ancestors,
    meta_text,
    needs_migration,
    path_from_meta,
    path_id,
    path_to_meta,
)
from clipseek.store.lock import LOCK_NAMES, DataLock, data_lock
from clipseek.store.snapshot import bump_generation, fingerprint, remove_snapshot, take_snapshot

if TYPE_CHECKING:
    import numpy as np

#: 2: paths and folder filters use the one-to-one text of key schema 2 (see keys.py).
SCHEMA_VERSION = 2
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


#: How often (seconds) a reader looks at the index folder for another process's writes.
RELOAD_CHECK_INTERVAL = 0.25
#: The least time (seconds) between two snapshots, so a reader does not copy the database
#: after every batch of a long index run; a change is seen within about this long.
MIN_RELOAD_INTERVAL = 1.0
#: How long a replaced snapshot stays open, so requests already using it finish on it;
#: at most :data:`RETIRED_KEPT` are kept (each holds a copy of the database and its vectors).
RETIRE_AFTER = 5.0
RETIRED_KEPT = 2
#: Writes committed by this process (any store): a reader in the same process looks again
#: at once after one, without waiting for the intervals above.
_process_writes = [0]


class Store:
    """A ChromaDB database: a folder on disk, or a Chroma server when ``location`` is a URL.

    With ``reader=True`` (what the engine uses for queries, the app and the server) a
    local database is never opened in place: reads go to a private snapshot that is
    replaced as soon as another process commits a write (see :mod:`clipseek.store.snapshot`
    and docs/RELIABILITY.md). Without it (the indexer), Chroma opens the folder itself.

    With ``direct=True`` as well, a reader answers searches from Chroma's files without
    importing chromadb (:mod:`clipseek.store.direct`), re-reading them when a writer
    committed; what that reader does not do still goes through a snapshot.
    """

    def __init__(
        self,
        location: str | os.PathLike[str],
        *,
        create: bool = True,
        reader: bool = False,
        direct: bool = False,
    ) -> None:
        self.location = os.fspath(location)
        self.is_remote = self.location.startswith(("http://", "https://"))
        self._create = create
        self._client: Any = None
        self._lock: DataLock | None = None if self.is_remote else data_lock(self.location)
        self._health_checked = False
        self.reader = reader and not self.is_remote
        self._snapshot: Path | None = None
        self._snapshot_print: tuple | None = None
        self._checked_at = 0.0
        self._taken_at = 0.0
        self._seen_writes = -1
        self._retired: list[tuple[float, Path, Any]] = []
        self._refresh_lock = threading.RLock()
        #: How many times this reader took a new snapshot, or re-read the files in direct
        #: mode (the app compares it with what its results were read from).
        self.reloads = 0
        self.direct = direct and self.reader
        #: Direct indexes by collection name, kept: each holds its vectors between searches.
        self._direct_indexes: dict[str, Any] = {}
        #: The fingerprint of the files the direct indexes last read.
        self._direct_print: tuple | None = None

    # -- locking (see clipseek.store.lock): readers share, writers exclude

    def reading(self) -> contextlib.AbstractContextManager[None]:
        return self._lock.shared() if self._lock else contextlib.nullcontext()

    def writing(self) -> contextlib.AbstractContextManager[None]:
        return self._lock.exclusive() if self._lock else contextlib.nullcontext()

    # -- damage

    def damage(self, *, notes: str = "read") -> str | None:
        """What is structurally wrong with the database files, if anything (local only).

        By default graphs a writer found sound, and whose files have not changed since,
        are not read again; "keep" (a caller holding the writer lock) also notes the
        graphs it finds sound; "ignore" reads every graph, as a check the user asked for
        should (see :func:`find_damage`)."""
        if self.is_remote:
            return None
        with self.reading():
            return find_damage(Path(self.location), notes=notes)

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
        problem = self.damage(notes="ignore")
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
        _process_writes[0] += 1
        bump_generation(folder)
        self._health_checked = False
        return str(target)

    def _forget_client(self) -> None:
        """Drop Chroma's per-process cached system for this folder, so a reopen starts clean.

        Chroma keeps one system per path and process, holding the vectors it loaded; it
        never notices that another process changed the files, so whoever opens the folder
        again after someone else wrote must drop it first.
        """
        with self._refresh_lock:
            self._client = None
            if self._snapshot is not None:
                self._retire(self._snapshot, now=0.0)
                self._snapshot = None
                self._snapshot_print = None
            self._stop_retired(everything=True)
            _drop_system(Path(self.location))

    def writer(self) -> Store:
        """A store on the same location that opens the folder itself, for the indexer."""
        return Store(self.location, create=self._create)

    # -- reader snapshots

    def _retire(self, snapshot: Path, now: float | None = None) -> None:
        self._retired.append((time.monotonic() if now is None else now, snapshot, None))

    def _stop_retired(self, everything: bool = False) -> None:
        keep = []
        excess = len(self._retired) - RETIRED_KEPT
        for n, (since, snapshot, _) in enumerate(self._retired):
            if everything or n < excess or time.monotonic() - since > RETIRE_AFTER:
                _drop_system(snapshot)
                remove_snapshot(snapshot)
                _live_snapshots.discard(snapshot)
            else:
                keep.append((since, snapshot, None))
        self._retired = keep

    def changed(self) -> bool:
        """Whether another process committed a write since this reader last read."""
        # An index that gave up reading the files directly reads through the snapshot.
        reading = any(i.unavailable is None for i in self._direct_indexes.values())
        direct_print = self._direct_print if reading else None
        if not self.reader or (self._snapshot is None and direct_print is None):
            return False
        with self.reading():
            current = fingerprint(self.location)
        if direct_print is not None and current != direct_print:
            return True
        return self._snapshot is not None and current != self._snapshot_print

    def catch_up(self) -> None:
        """Read the index as it is now, whatever the intervals below: a watcher that saw
        another process's write refreshes once, so the count and the search it runs next
        both read the same, newest data."""
        if not self.reader or self.is_remote:
            return
        for index in list(self._direct_indexes.values()):
            index.refresh()
        if self.direct and self._snapshot is None:
            return  # nothing was read through Chroma: no snapshot to renew
        with self._refresh_lock:
            self._checked_at = self._taken_at = float("-inf")
        self._connect()

    def _direct_read(self, stamp: tuple, first: bool) -> None:
        """A direct index read the files (again, unless ``first``)."""
        self._direct_print = stamp
        if not first:
            self.reloads += 1

    def _stale(self) -> bool:
        """Whether it is time to look for a newer snapshot (cheap: a clock read)."""
        if self._seen_writes != _process_writes[0]:
            return True
        now = time.monotonic()
        return (
            now - self._checked_at >= RELOAD_CHECK_INTERVAL
            and now - self._taken_at >= MIN_RELOAD_INTERVAL
        )

    def _reader_folder(self) -> Path:
        """The snapshot to read, taken anew if the index changed (checked at most every
        :data:`RELOAD_CHECK_INTERVAL` seconds; a check is a few ``stat`` calls). Its client
        is opened, and linked vector files loaded, while the shared lock is still held."""
        with self._refresh_lock:
            if self._snapshot is not None and not self._stale():
                return self._snapshot
            self._checked_at = time.monotonic()
            self._seen_writes = _process_writes[0]
            self._stop_retired()
            with self.reading():
                current = fingerprint(self.location)
                if self._snapshot is not None and current == self._snapshot_print:
                    return self._snapshot
                try:
                    snapshot = take_snapshot(self.location)
                except OSError as exc:
                    raise _snapshot_error(self.location, exc) from None
                try:
                    client = _open_snapshot(snapshot)
                except _chroma_errors() as exc:
                    _drop_system(snapshot)
                    remove_snapshot(snapshot)
                    raise store_error(self.location, "Opening", exc) from exc
            _live_snapshots.add(snapshot)
            if self._snapshot is not None:
                self._retire(self._snapshot)
                self._stop_retired()
                self.reloads += 1
            self._snapshot, self._snapshot_print, self._client = snapshot, current, client
            self._taken_at = time.monotonic()
            return snapshot

    # -- connection

    @property
    def exists(self) -> bool:
        """Whether there is anything to open (always assumed for a server)."""
        return self.is_remote or (Path(self.location) / "chroma.sqlite3").exists()

    def _connect(self) -> Any:
        if self._client is not None and not (self.reader and self._stale()):
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
        if self.reader:  # never creates anything: a missing index is only reported
            with self._refresh_lock:
                if not self.exists:
                    raise IndexMissingError(
                        f"There is no clipseek index at {folder} yet. "
                        "Run `clipseek index FOLDER` to build one."
                    )
                self._reader_folder()
                return self._client
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
        if self.reader:
            self._forget_client()
        self._client = None
        self._direct_indexes.clear()
        self._direct_print = None

    def _committed(self) -> None:
        """After each committed write: tell readers in other processes (see snapshot.py)."""
        if not self.is_remote and not self.reader:
            _process_writes[0] += 1
            bump_generation(self.location)

    # -- collections

    def _collections(self) -> list[Any]:
        self._check_health()
        return self._collections_unchecked()

    def _collections_unchecked(self) -> list[Any]:
        client = self._connect()
        try:
            with self._chroma_reading():
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

    def _chroma_reading(self) -> contextlib.AbstractContextManager[None]:
        """A reader's snapshot is private: reading it needs no lock, so it never waits."""
        return contextlib.nullcontext() if self.reader else self.reading()

    def _wrap(self, col: Any, collection_slug: str | None = None) -> ImageIndex:
        failures = None
        if collection_slug is not None:
            slug = collection_slug
            failures = lambda: self._failures_collection(slug)  # noqa: E731
        redirect = None
        if self.reader and collection_slug is not None:
            slug = collection_slug
            redirect = lambda: self._write_through(slug)  # noqa: E731
        return ImageIndex(
            col,
            failures,
            location=self.location,
            lock=None if self.reader else self._lock,
            committed=None if self.reader or self.is_remote else self._committed,
            redirect=redirect,
        )

    @contextlib.contextmanager
    def _write_through(self, collection_slug: str) -> Iterator[ImageIndex]:
        """A write asked of a reader's index goes to the folder itself, through a writer
        store that is closed again at once (its cached vectors would go stale)."""
        writer = self.writer()
        try:
            name = COLLECTION_PREFIX + collection_slug
            for col in writer._collections():
                if col.name == name:
                    yield writer._wrap(col, collection_slug)
                    return
            raise StoreError(f"The index {name} at {self.location} is gone; nothing was written.")
        finally:
            writer._forget_client()

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
        if self.direct:
            from clipseek.store.direct import DirectUnavailable, open_direct

            self._check_health()
            if not self.exists:
                return None
            name = COLLECTION_PREFIX + collection_slug
            kept = self._direct_indexes.get(name)
            if kept is not None and kept.model_key == model_key and not kept.replaced:
                return kept  # type: ignore[no-any-return]
            try:
                index = open_direct(
                    self.location,
                    self._lock,
                    model_key,
                    collection_slug,
                    fallback=lambda: self._open_chroma_index(model_key, collection_slug),
                    on_read=self._direct_read,
                )
            except DirectUnavailable:
                pass  # Chroma's path opens it (and says what is wrong, if anything)
            else:
                if index is not None:
                    self._direct_indexes[name] = index
                return index  # type: ignore[return-value]
        return self._open_chroma_index(model_key, collection_slug)

    def _open_chroma_index(self, model_key: str, collection_slug: str) -> ImageIndex | None:
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
                # A reader never writes; the next index run raises it.
                if not self.reader and _raise_ef_search(col):
                    self._committed()
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
        self._committed()
        return self._wrap(col, collection_slug)

    def _failures_collection(self, collection_slug: str) -> Any:
        client = self._connect()
        if self.reader:  # a reader only looks; the indexer creates the collection
            try:
                return client.get_collection(FAILURES_PREFIX + collection_slug)
            except _chroma_errors():
                return None
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
            self._committed()


class IndexFacts:
    """What an index's collection metadata says, for any reader of it (Chroma's, or the
    files read directly); the class sets ``_meta`` and the names used here."""

    _meta: Mapping[str, Any]
    model_key: str
    model_name: str
    dim: int
    name: str

    def count(self) -> int:
        raise NotImplementedError

    @property
    def roots(self) -> list[str]:
        return [str(r) for r in _json_list(self._meta.get("roots"))]

    @property
    def cameras(self) -> list[str]:
        """Camera names in this index (kept in the collection's metadata by the writer)."""
        return [str(c) for c in _json_list(self._meta.get("cameras"))]

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


def _json_list(text: Any) -> list[Any]:
    try:
        value = json.loads(str(text)) if text is not None else []
    except ValueError:
        return []
    return value if isinstance(value, list) else []


class ImageIndex(IndexFacts):
    """The vectors of one model: what was indexed, and nearest-neighbour search over it."""

    def __init__(
        self,
        collection: Any,
        failures: Callable[[], Any] | None = None,
        *,
        location: str = "",
        lock: DataLock | None = None,
        committed: Callable[[], None] | None = None,
        redirect: Callable[[], contextlib.AbstractContextManager[ImageIndex]] | None = None,
    ) -> None:
        self._col = collection
        self._committed = committed or (lambda: None)
        #: For an index read from a snapshot: where its writes go instead (the folder).
        self._redirect = redirect
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
        #: Which key rule this index's metadata was written with (see keys.py).
        self.schema: int = int(meta.get("clipseek_schema", 1) or 1)

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

    def add_roots(self, roots: Sequence[str]) -> None:
        if self._redirect is not None:
            with self._redirect() as target:
                target.add_roots(roots)
            return
        merged = sorted({*self.roots, *(meta_text(r) for r in roots)})
        if merged != self.roots:
            self._set_meta("roots", json.dumps(merged))

    def add_cameras(self, cameras: Sequence[str]) -> None:
        """Remember camera names, so a camera filter needs no scan of every record."""
        if self._redirect is not None:
            with self._redirect() as target:
                target.add_cameras(cameras)
            return
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
        self._committed()
        self._meta = meta

    # -- key schema

    def migrate(self) -> int:
        """Rewrite metadata written under an older key schema; returns records rewritten.

        Only a writer calls this (an index run, before it compares anything), so readers
        never write; they read a not-yet-migrated index with its own rule. Only records
        whose path has a backslash or non-UTF-8 bytes change; vectors are not touched.
        """
        if self.schema >= SCHEMA_VERSION:
            return 0
        changed = 0
        collections = [self._col]
        failures = self._failures()
        if failures is not None:
            collections.append(failures)
        for collection in collections:
            ids: list[str] = []
            metas: list[dict[str, Any]] = []
            for page in self._get_pages(None, ["metadatas"], collection):
                for id_, meta in zip(page["ids"], page["metadatas"], strict=True):
                    if meta and needs_migration(meta):
                        path = path_from_meta(meta)
                        ids.append(id_)
                        metas.append({**path_to_meta(path), "dirs": ancestors(path)})
            step = self._max_batch()
            for start in range(0, len(ids), step):
                try:
                    with self._writing():
                        collection.update(
                            ids=ids[start : start + step], metadatas=metas[start : start + step]
                        )
                except _chroma_errors() as exc:
                    raise self._error("Migrating", exc) from exc
            changed += len(ids)
        meta = {k: v for k, v in self._meta.items() if not k.startswith("hnsw:")}
        meta["clipseek_schema"] = SCHEMA_VERSION
        try:
            with self._writing():
                self._col.modify(metadata=meta)
        except _chroma_errors() as exc:
            raise self._error("Migrating", exc) from exc
        self._committed()
        self._meta = meta
        self.schema = SCHEMA_VERSION
        return changed

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
                "$or": [
                    {"dirs": {"$contains": meta_text(under, self.schema)}},
                    {"path": meta_text(under, self.schema)},
                ]
            }
        out: dict[str, StoredEntry] = {}
        for page in self._get_pages(where, ["metadatas"], collection):
            for id_, meta in zip(page["ids"], page["metadatas"], strict=True):
                out[id_] = stored_entry(id_, meta or {})
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
            id_: stored_entry(id_, meta or {})
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

        where = self._folder_where(under)
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
                    where=self._folder_where(under),
                    include=["distances"],
                )
        except _chroma_errors() as exc:
            raise self._error("Searching", exc) from exc
        return [
            [(id_, 1.0 - float(dist)) for id_, dist in zip(ids, dists, strict=True)]
            for ids, dists in zip(res["ids"], res["distances"], strict=True)
        ]

    def _folder_where(self, under: str | None) -> dict[str, Any] | None:
        return folder_where(under, self.schema)

    def query(
        self,
        vector: np.ndarray,
        n: int,
        under: str | None = None,
        clauses: Sequence[Mapping[str, Any]] = (),
    ) -> list[Hit]:
        """The ``n`` nearest images by cosine similarity, best first; ``clauses`` are more
        ``where`` conditions (:meth:`clipseek.search.filters.Filters.clauses`), all to hold.

        HNSW is approximate: for a large ``n`` (or a folder filter that keeps few records)
        it can return fewer than it should. A short answer is therefore checked against an
        exact scan of the stored vectors, which is what is returned; only when the records
        themselves disagree (a record without a vector) is the index called damaged.
        """
        import numpy as np

        if n <= 0:
            return []
        where = where_of(under, clauses, self.schema)
        query = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        try:
            with self._reading():
                res = self._col.query(
                    query_embeddings=query,
                    n_results=n,
                    where=where,
                    include=["metadatas", "distances"],
                )
        except _chroma_errors() as exc:
            raise self._error("Searching", exc) from exc
        if len(res["ids"][0]) < n:
            # Chroma answers n_results above its count with what it has, so the count
            # (a full COUNT over SQLite, ~9 ms at 100k) is only read for a short answer;
            # only an answer shorter than what exists pays for the exact scan.
            total = self.count() if where is None else self._matching(where)
            if len(res["ids"][0]) < min(n, total):
                return self._exact(query[0], n, where)
        hits = []
        for id_, meta, dist in zip(
            res["ids"][0], res["metadatas"][0], res["distances"][0], strict=True
        ):
            meta = meta or {}
            hits.append(
                Hit(id=id_, path=path_from_meta(meta), score=1.0 - float(dist), metadata=meta)
            )
        return hits

    def _matching(self, where: dict[str, Any]) -> int:
        """How many records match ``where`` (ids only, from SQLite)."""
        return sum(len(page["ids"]) for page in self._get_pages(where, []))

    def _exact(self, vector: np.ndarray, n: int, where: dict[str, Any] | None) -> list[Hit]:
        """Rank every stored vector (matching ``where``) exactly: the complete answer."""
        import numpy as np

        ids: list[str] = []
        metas: list[Mapping[str, Any]] = []
        blocks: list[np.ndarray] = []
        missing = 0
        for page in self._get_pages(where, ["embeddings", "metadatas"]):
            embeddings = page["embeddings"]
            for i, (id_, meta) in enumerate(zip(page["ids"], page["metadatas"], strict=True)):
                emb = None if embeddings is None else embeddings[i]
                if emb is None or len(emb) == 0:
                    missing += 1
                    continue
                ids.append(id_)
                metas.append(meta or {})
                blocks.append(np.asarray(emb, dtype=np.float32))
        if missing:
            raise DamagedIndexError(
                damaged_message(self.location, f"{missing} recorded image(s) have no vector")
            )
        if not ids:
            return []
        matrix = np.stack(blocks)
        norms = np.linalg.norm(matrix, axis=1)
        norms[norms == 0] = 1.0
        q = np.asarray(vector, dtype=np.float32)
        q = q / (np.linalg.norm(q) or 1.0)
        scores = (matrix @ q) / norms
        order = np.argsort(-scores, kind="stable")[:n]
        return [
            Hit(id=ids[i], path=path_from_meta(metas[i]), score=float(scores[i]), metadata=metas[i])
            for i in order
        ]

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
        if self._redirect is not None:
            with self._redirect() as target:
                target.upsert(records)
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
            self._committed()
        self.add_cameras([str(r.extra.get("camera", "")) for r in records])

    def record_file_ids(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        """Add identity fields (ctime, inode) to existing records; metadata only."""
        self.update_metadata({id_: extra for id_, extra in items if extra})

    def update_metadata(self, updates: Mapping[str, Mapping[str, Any]]) -> None:
        """Add fields to stored records' metadata, keeping their vectors and other fields."""
        if self._redirect is not None:
            if updates:
                with self._redirect() as target:
                    target.update_metadata(updates)
            return
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
            self._committed()
        self.add_cameras([str(u.get("camera", "")) for u in updates.values()])

    def delete(self, ids: Sequence[str]) -> None:
        if self._redirect is not None:
            if ids:
                with self._redirect() as target:
                    target.delete(ids)
            return
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
            self._committed()

    def record_failures(self, failures: Sequence[tuple[str, int, int, str]]) -> None:
        """Remember unreadable files as (path, size, mtime_ns, reason)."""
        if self._redirect is not None:
            if failures:
                with self._redirect() as target:
                    target.record_failures(failures)
            return
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
            self._committed()

    def forget_failures(self, ids: Sequence[str]) -> None:
        if self._redirect is not None:
            if ids:
                with self._redirect() as target:
                    target.forget_failures(ids)
            return
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
            meta = collection_metadata(con, collection_id)
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


#: Snapshots this process made and has not removed yet.
_live_snapshots: set[Path] = set()


@atexit.register
def _remove_snapshots() -> None:
    """Remove this process's snapshots when it exits normally (a killed one's are swept)."""
    for snapshot in list(_live_snapshots):
        _drop_system(snapshot)
        remove_snapshot(snapshot)
    _live_snapshots.clear()


def _open_snapshot(snapshot: Path) -> Any:
    """A Chroma client on a snapshot. Linked vector folders are loaded into memory now,
    under the caller's shared lock: Chroma loads them lazily, and a writer saves them in
    place, so loading later could read a newer (or half-written) save."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(
        path=str(snapshot), settings=ChromaSettings(anonymized_telemetry=False)
    )
    if any(p.is_symlink() for p in snapshot.iterdir()):
        for col in client.list_collections():
            col = col if hasattr(col, "metadata") else client.get_collection(col)
            got = col.get(limit=1, include=["embeddings"])
            embeddings = got.get("embeddings")
            if got["ids"] and embeddings is not None and len(embeddings):
                col.query(query_embeddings=[embeddings[0]], n_results=1, include=["distances"])
    return client


def _drop_system(path: Path) -> None:
    """Stop and forget Chroma's cached system for ``path`` (it caches one per path)."""
    try:
        from chromadb.api.shared_system_client import SharedSystemClient
    except ImportError:  # pragma: no cover - layout of another chromadb release
        return
    system = SharedSystemClient._identifier_to_system.pop(str(path), None)
    SharedSystemClient._identifier_to_refcount.pop(str(path), None)
    if system is not None:
        with contextlib.suppress(Exception):
            system.stop()


def _snapshot_error(location: str, exc: OSError) -> StoreError:
    import errno

    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(
            f"Cannot read the index at {location}: there is no room for a reading copy "
            f"({exc.strerror}) in memory or in the temporary folder. Free some space, or "
            "point CLIPSEEK_SNAPSHOT_DIR at a folder with room."
        )
    return StoreError(
        f"Cannot read the index at {location}: making a reading copy failed "
        f"({exc.strerror or exc}). Point CLIPSEEK_SNAPSHOT_DIR at a writable folder."
    )


def collection_metadata(con: sqlite3.Connection, collection_id: str) -> dict[str, Any]:
    """A collection's metadata read from Chroma's SQLite file (typed as Chroma stores it)."""
    meta: dict[str, Any] = {}
    for key, text, integer, real in con.execute(
        "SELECT key, str_value, int_value, float_value FROM collection_metadata "
        "WHERE collection_id = ?",
        (collection_id,),
    ):
        meta[key] = text if text is not None else integer if integer is not None else real
    return meta


def _raise_ef_search(collection: Any) -> bool:
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
            return False
        collection.modify(configuration={"hnsw": {"ef_search": want}})
    except Exception:
        return False
    return True


def stored_entry(id_: str, meta: Mapping[str, Any]) -> StoredEntry:
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


def folder_where(under: str | None, schema: int) -> dict[str, Any] | None:
    """The folder filter, written by the index's own key schema."""
    return {"dirs": {"$contains": meta_text(under, schema)}} if under else None


def where_of(
    under: str | None, clauses: Sequence[Mapping[str, Any]], schema: int
) -> dict[str, Any] | None:
    """One ``where`` for a folder and more clauses
    (:meth:`clipseek.search.filters.Filters.clauses`), all to hold; None when nothing is
    filtered."""
    parts = [*([folder_where(under, schema)] if under else []), *clauses]
    if not parts:
        return None
    return dict(parts[0]) if len(parts) == 1 else {"$and": [dict(c) for c in parts]}
