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
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from clipseek.errors import DamagedIndexError, IndexMissingError, StoreError
from clipseek.store import chroma_format
from clipseek.store.aside import aside_folder, prune_aside
from clipseek.store.image_index import ImageIndex
from clipseek.store.integrity import (
    _chroma_errors,
    _short,
    damaged_message,
    find_damage,
    store_error,
)
from clipseek.store.lock import LOCK_NAMES, DataLock, data_lock
from clipseek.store.records import (
    COLLECTION_PREFIX,
    FAILURES_PREFIX,
    HNSW_CONFIG,
    SCHEMA_VERSION,
    IndexInfo,
)
from clipseek.store.snapshot import bump_generation, fingerprint, remove_snapshot, take_snapshot

if TYPE_CHECKING:
    pass

_PAGE = 10_000


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

    With ``reader=True`` (what the engine uses for every read) a local database is never
    opened in place: reads go to a private snapshot that is replaced as soon as another
    process commits a write (see :mod:`clipseek.store.snapshot` and docs/RELIABILITY.md).
    Without it (the indexer), Chroma opens the folder itself.

    With ``direct=True`` as well (a query, the app, ``clipseek serve``), a reader answers
    searches from Chroma's files and the vector cache without importing chromadb
    (:mod:`clipseek.store.direct`), reading what a writer appended when it committed; what
    that reader does not do still goes through a snapshot. With
    ``approximate=True`` too, it may answer from an approximate index (see above).
    """

    def __init__(
        self,
        location: str | os.PathLike[str],
        *,
        create: bool = True,
        reader: bool = False,
        direct: bool = False,
        approximate: bool = False,
    ) -> None:
        self.location = os.fspath(location)
        self.is_remote = self.location.startswith(("http://", "https://"))
        self._create = create
        self._client: Any = None
        self._lock: DataLock | None = None if self.is_remote else data_lock(self.location)
        self._health_checked = False
        self._structure_checked = False
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
        #: A long-lived direct reader (the app, the server) that answers many queries may
        #: answer unfiltered ones from an approximate index beside the vector cache, where
        #: one exists; a one-shot query stays exact (see store/direct.py).
        self.approximate = approximate and self.direct
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

    def damage(self, *, notes: str = "read", graphs: bool = True) -> str | None:
        """What is structurally wrong with the database files, if anything (local only).

        By default graphs a writer found sound, and whose files have not changed since,
        are not read again; "keep" (a caller holding the writer lock) also notes the
        graphs it finds sound; "ignore" reads every graph, as a check the user asked for
        should (see :func:`find_damage`)."""
        if self.is_remote:
            return None
        with self.reading():
            return find_damage(Path(self.location), notes=notes, graphs=graphs)

    def _check_structure(self) -> None:
        """:meth:`_check_health` for a reader that never hands the graph to hnswlib (the
        direct reader, ``info``'s peek): headers and sizes only, no pass over the links."""
        if self._health_checked or self._structure_checked or self.is_remote:
            return
        problem = self.damage(graphs=False)
        if problem:
            raise DamagedIndexError(damaged_message(self.location, problem))
        self._structure_checked = True

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

        Nothing of this index is deleted: the damaged files move to a sibling folder the user
        may inspect or remove (the newest few such copies are kept,
        :mod:`clipseek.store.aside`). The lock files stay, since the caller holds them.
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
        target = aside_folder(folder)
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
        self._health_checked = self._structure_checked = False
        prune_aside(folder)
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
        return self.is_remote or (Path(self.location) / chroma_format.DATABASE).exists()

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
        if not self.reader and not self.is_remote:
            from clipseek.store.vector_cache import JournaledCollection

            col = JournaledCollection(col, self.location)  # keeps the vector cache current
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
        None and the caller asks chromadb instead (as it does on a chromadb release the
        reading was not tested with, :func:`~clipseek.store.chroma_format.release_known`).
        """
        if self.is_remote or not chroma_format.release_known():
            return None
        self._check_structure()  # a damaged database is reported as :meth:`indexes` would
        path = Path(self.location) / chroma_format.DATABASE
        if not path.is_file():
            return []
        try:
            with self.reading():
                return _peek_sqlite(path)
        except (sqlite3.Error, ValueError, TypeError, OSError):
            return None

    def open_index(self, model_key: str, collection_slug: str) -> ImageIndex | None:
        """The index for ``model_key``, or None if nothing was indexed with that model."""
        if self.direct and chroma_format.release_known():
            from clipseek.store.direct import DirectUnavailable, open_direct

            self._check_structure()
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
                    approximate=self.approximate,
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


def _peek_sqlite(path: Path) -> list[IndexInfo] | None:
    con = chroma_format.connect_readonly(path, timeout=1.0)
    try:
        if not chroma_format.has_columns(con, chroma_format.PEEK_COLUMNS):
            return None
        out = []
        for collection_id, name in chroma_format.collections(con, prefixes=[COLLECTION_PREFIX]):
            meta = chroma_format.collection_metadata(con, collection_id)
            try:
                segment = chroma_format.metadata_segment(con, collection_id)
            except ValueError:
                return None
            count = chroma_format.record_count(con, segment)
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
                    count=count,
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
def remove_own_snapshots() -> None:
    """Remove this process's snapshots when it exits normally (a killed one's are swept);
    also called by a face that leaves with ``os._exit`` (``clipseek serve``)."""
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
    # Private tables of chromadb's: the refcounts arrived after 1.5.0.
    systems = getattr(SharedSystemClient, "_identifier_to_system", None)
    refcounts = getattr(SharedSystemClient, "_identifier_to_refcount", None)
    system = systems.pop(str(path), None) if isinstance(systems, dict) else None
    if isinstance(refcounts, dict):
        refcounts.pop(str(path), None)
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
