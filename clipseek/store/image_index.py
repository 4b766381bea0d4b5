"""One model's vectors in Chroma: what was indexed, and nearest-neighbour search over it."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from clipseek.errors import DamagedIndexError, StoreError
from clipseek.store.chroma_format import NORM_TOLERANCE, not_unit, unit_rows
from clipseek.store.integrity import (
    _chroma_errors,
    damaged_message,
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
from clipseek.store.lock import DataLock
from clipseek.store.records import (
    SCHEMA_VERSION,
    Hit,
    IndexInfo,
    Record,
    StoredEntry,
    stored_entry,
)
from clipseek.store.where import folder_where, where_of

if TYPE_CHECKING:
    import numpy as np

_PAGE = 10_000


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

    def holds_under(self, folder: str) -> bool:
        """Whether any stored file lies inside ``folder`` (by the path it was indexed under)."""
        return bool(self.entries(under=folder))

    def entries_with_sizes(self, sizes: Sequence[int]) -> dict[str, StoredEntry]:
        """Stored files of any of these byte sizes, anywhere in the index: the candidates
        for a moved or copied file (whose content hash is then compared)."""
        return self._entries_where_in("size", [int(s) for s in sizes])

    def entries_with_hashes(self, hashes: Sequence[str]) -> dict[str, StoredEntry]:
        """Stored files whose content hash is one of ``hashes``, anywhere in the index: a
        moved or copied file's candidates found by what it holds, whatever its size."""
        return self._entries_where_in("content_hash", [str(h) for h in hashes])

    def _entries_where_in(self, key: str, values: list[Any]) -> dict[str, StoredEntry]:
        """Stored files whose metadata ``key`` is one of ``values``, 500 values a query."""
        out: dict[str, StoredEntry] = {}
        for start in range(0, len(values), 500):
            chunk = values[start : start + 500]
            where = {key: {"$in": chunk}} if len(chunk) > 1 else {key: chunk[0]}
            out.update(self._entries(self._col, None, where))
        return out

    def lookup(self, ids: Sequence[str]) -> dict[str, StoredEntry]:
        """What the index knows about ``ids`` (path, size, mtime, width...), without the
        vectors: how a front end finds the file behind an id it was given. Unknown ids are
        absent."""
        wanted = list(dict.fromkeys(ids))
        out: dict[str, StoredEntry] = {}
        for start in range(0, len(wanted), _PAGE):
            try:
                with self._reading():
                    page = self._col.get(ids=wanted[start : start + _PAGE], include=["metadatas"])
            except _chroma_errors() as exc:
                raise self._error("Reading", exc) from exc
            for id_, meta in zip(page["ids"], page["metadatas"], strict=True):
                out[id_] = stored_entry(id_, meta or {})
        return out

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
            # (a full COUNT over SQLite, slow on a large index) is only read for a short answer;
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
        # No cosine of unit vectors is above 1 or NaN: a garbled stored vector (bit rot the
        # structural check could not see, a write log's garbage) ranks first with such a
        # score, so it is named instead of being answered.
        wrong = [h.path for h in hits if not abs(h.score) <= 1.0 + NORM_TOLERANCE]
        if wrong:
            self._garbled(wrong, len(wrong))
        return hits

    def _garbled(self, paths: Sequence[str], count: int) -> None:
        names = ", ".join(paths[:3]) + (", ..." if len(paths) > 3 else "")
        raise DamagedIndexError(damaged_message(self.location, f"{not_unit(count)}: {names}"))

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
        bad = np.flatnonzero(~unit_rows(np, matrix))
        if bad.size:  # damage, never divided into shape (it would rank as anything)
            self._garbled([path_from_meta(metas[i]) for i in bad], int(bad.size))
        q = np.asarray(vector, dtype=np.float32)
        q = q / (np.linalg.norm(q) or 1.0)
        scores = matrix @ q
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
