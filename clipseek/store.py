"""The vector store: the only module that imports chromadb.

One collection per embedding space (model key), so vectors of different models
can never be mixed or compared. Each record's metadata carries what the indexer
needs to decide whether a file changed (size, mtime) and what search needs to
filter by folder (the list of the file's ancestor folders).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from clipseek.errors import IndexMissingError, StoreError

if TYPE_CHECKING:
    import numpy as np

SCHEMA_VERSION = 1
COLLECTION_PREFIX = "clipseek-"
#: Files that could not be read are remembered (with size and mtime) in a side
#: collection, so an unchanged broken file is not decoded again on every run.
FAILURES_PREFIX = "clipseekfail-"
_PAGE = 10_000

#: HNSW parameters: cosine space; ef values chosen so top-k matches an exact scan
#: (see benchmarks/ and docs/PERFORMANCE.md for the recall measurement).
HNSW_CONFIG: dict[str, Any] = {
    "space": "cosine",
    "ef_construction": 200,
    "ef_search": 128,
    "max_neighbors": 32,
}


# --------------------------------------------------------------------------- paths in metadata


def path_id(path: str) -> str:
    """A stable id for a path: the same file always maps to the same record."""
    return hashlib.sha1(os.fsencode(path)).hexdigest()


def _meta_text(path: str) -> str:
    """Chroma only stores valid UTF-8; file names with other bytes are shown escaped."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")


def path_to_meta(path: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"path": _meta_text(path)}
    if meta["path"] != path:
        meta["path_b64"] = base64.b64encode(os.fsencode(path)).decode("ascii")
    return meta


def path_from_meta(meta: Mapping[str, Any]) -> str:
    raw = meta.get("path_b64")
    if raw:
        return os.fsdecode(base64.b64decode(raw))
    return str(meta.get("path", ""))


def ancestors(path: str) -> list[str]:
    """Every folder above ``path``, nearest first; stored so search can filter by folder."""
    out: list[str] = []
    parent = os.path.dirname(path)
    while True:
        out.append(_meta_text(parent))
        nxt = os.path.dirname(parent)
        if nxt == parent:
            return out
        parent = nxt


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
        try:
            self._client = chromadb.PersistentClient(path=str(folder), settings=chroma_settings)
        except Exception as exc:
            raise StoreError(
                f"The index at {folder} cannot be opened ({_short(exc)}). If it is damaged, "
                "rebuild it with `clipseek index --rebuild FOLDER`."
            ) from exc
        return self._client

    def close(self) -> None:
        self._client = None

    # -- collections

    def _collections(self) -> list[Any]:
        client = self._connect()
        try:
            cols = client.list_collections()
        except Exception as exc:
            raise StoreError(f"Cannot read the index at {self.location} ({_short(exc)}).") from exc
        out = []
        for col in cols:
            if not col.name.startswith(COLLECTION_PREFIX):
                continue
            out.append(col if hasattr(col, "metadata") else client.get_collection(col))
        return out

    def indexes(self) -> list[IndexInfo]:
        """Every clipseek index in this database, one per model."""
        if not self.is_remote and not self.exists:
            return []
        return [ImageIndex(col).info() for col in self._collections()]

    def open_index(self, model_key: str, collection_slug: str) -> ImageIndex | None:
        """The index for ``model_key``, or None if nothing was indexed with that model."""
        if not self.is_remote and not self.exists:
            return None
        name = COLLECTION_PREFIX + collection_slug
        for col in self._collections():
            if col.name == name:
                index = ImageIndex(col, lambda: self._failures_collection(collection_slug))
                if index.model_key != model_key:
                    raise StoreError(
                        f"Collection {name} belongs to model {index.model_key}, not {model_key}."
                    )
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
            col = client.get_or_create_collection(
                COLLECTION_PREFIX + collection_slug,
                configuration={"hnsw": dict(HNSW_CONFIG)},
                metadata=metadata,
                embedding_function=None,  # never Chroma's default model: it would download one
            )
        except Exception as exc:
            raise StoreError(f"Cannot create an index in {self.location} ({_short(exc)}).") from exc
        return ImageIndex(col, lambda: self._failures_collection(collection_slug))

    def _failures_collection(self, collection_slug: str) -> Any:
        try:
            return self._connect().get_or_create_collection(
                FAILURES_PREFIX + collection_slug,
                configuration={"hnsw": {"space": "l2"}},
                embedding_function=None,
            )
        except Exception as exc:
            raise StoreError(f"Cannot open the index in {self.location} ({_short(exc)}).") from exc

    def drop_index(self, model_key: str, collection_slug: str) -> None:
        if self.open_index(model_key, collection_slug) is not None:
            client = self._connect()
            client.delete_collection(COLLECTION_PREFIX + collection_slug)
            client.delete_collection(FAILURES_PREFIX + collection_slug)


class ImageIndex:
    """The vectors of one model: what was indexed, and nearest-neighbour search over it."""

    def __init__(self, collection: Any, failures: Callable[[], Any] | None = None) -> None:
        self._col = collection
        self._failures_factory = failures
        self._failures_col: Any = None
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

    def count(self) -> int:
        try:
            return int(self._col.count())
        except Exception as exc:
            raise StoreError(f"Cannot count the images in the index ({_short(exc)}).") from exc

    # -- roots

    @property
    def roots(self) -> list[str]:
        try:
            return list(json.loads(self._meta.get("roots", "[]")))
        except (TypeError, ValueError):
            return []

    def add_roots(self, roots: Sequence[str]) -> None:
        merged = sorted({*self.roots, *(_meta_text(r) for r in roots)})
        if merged == self.roots:
            return
        meta = {k: v for k, v in self._meta.items() if not k.startswith("hnsw:")}
        meta["roots"] = json.dumps(merged)
        self._col.modify(metadata=meta)
        self._meta = meta

    # -- reading

    def _get_pages(
        self, where: dict[str, Any] | None, include: list[str], collection: Any = None
    ) -> Iterator[Any]:
        col = self._col if collection is None else collection
        offset = 0
        while True:
            try:
                page = col.get(where=where, include=include, limit=_PAGE, offset=offset)
            except Exception as exc:
                raise StoreError(f"Cannot read the index ({_short(exc)}).") from exc
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

    def _entries(self, collection: Any, under: str | None) -> dict[str, StoredEntry]:
        where = None
        if under is not None:
            where = {
                "$or": [{"dirs": {"$contains": _meta_text(under)}}, {"path": _meta_text(under)}]
            }
        out: dict[str, StoredEntry] = {}
        for page in self._get_pages(where, ["metadatas"], collection):
            for id_, meta in zip(page["ids"], page["metadatas"], strict=True):
                out[id_] = _stored_entry(id_, meta or {})
        return out

    def lookup(self, ids: Sequence[str]) -> dict[str, StoredEntry]:
        """What the index knows about ``ids`` (path, size, mtime, width...), without the
        vectors: how a face finds the file behind an id it was given. Unknown ids are absent."""
        if not ids:
            return {}
        try:
            page = self._col.get(ids=list(ids), include=["metadatas"])
        except Exception as exc:
            raise StoreError(f"Cannot read the index ({_short(exc)}).") from exc
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
            page = self._col.get(ids=list(ids), include=["embeddings", "metadatas"])
        except Exception as exc:
            raise StoreError(f"Cannot read the index ({_short(exc)}).") from exc
        out = {}
        for id_, emb, meta in zip(page["ids"], page["embeddings"], page["metadatas"], strict=True):
            out[id_] = (np.asarray(emb, dtype=np.float32), meta or {})
        return out

    def query(self, vector: np.ndarray, n: int, under: str | None = None) -> list[Hit]:
        """The ``n`` nearest images by cosine similarity, best first."""
        import numpy as np

        if n <= 0:
            return []
        where = {"dirs": {"$contains": _meta_text(under)}} if under else None
        total = self.count()
        if total == 0:
            return []
        try:
            res = self._col.query(
                query_embeddings=np.asarray(vector, dtype=np.float32).reshape(1, -1),
                n_results=min(n, total),
                where=where,
                include=["metadatas", "distances"],
            )
        except Exception as exc:
            raise StoreError(f"The search failed in the index ({_short(exc)}).") from exc
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
                self._col.upsert(
                    ids=[path_id(r.path) for r in chunk],
                    embeddings=np.stack([np.asarray(r.embedding, dtype=np.float32) for r in chunk]),
                    metadatas=[r.metadata() for r in chunk],
                )
            except Exception as exc:
                raise StoreError(f"Cannot write to the index ({_short(exc)}).") from exc

    def delete(self, ids: Sequence[str]) -> None:
        self._delete(self._col, ids)

    def _delete(self, collection: Any, ids: Sequence[str]) -> None:
        ids = list(ids)
        step = self._max_batch()
        for start in range(0, len(ids), step):
            try:
                collection.delete(ids=ids[start : start + step])
            except Exception as exc:
                raise StoreError(f"Cannot delete from the index ({_short(exc)}).") from exc

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
                collection.upsert(
                    ids=[path_id(p) for p, *_ in chunk],
                    embeddings=[[0.0]] * len(chunk),
                    metadatas=metas,
                )
            except Exception as exc:
                raise StoreError(f"Cannot write to the index ({_short(exc)}).") from exc

    def forget_failures(self, ids: Sequence[str]) -> None:
        collection = self._failures()
        if collection is not None and ids:
            self._delete(collection, ids)


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


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
