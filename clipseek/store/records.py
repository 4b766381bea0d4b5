"""What the store holds and returns: records, stored entries, hits, index facts, and the
names and settings of clipseek's collections."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clipseek.store.keys import ancestors, path_from_meta, path_to_meta

if TYPE_CHECKING:
    import numpy as np

#: 2: paths and folder filters use the one-to-one text of key schema 2 (see keys.py).
SCHEMA_VERSION = 2
COLLECTION_PREFIX = "clipseek-"
#: Files that could not be read are remembered (with size and mtime) in a side
#: collection, so an unchanged broken file is not decoded again on every run.
FAILURES_PREFIX = "clipseekfail-"

#: HNSW parameters, cosine space: chosen with benchmarks/bench_hnsw.py for a recall@10
#: against an exact scan of about 1.0 at a query cost still in milliseconds, above
#: Chroma's defaults (docs/PERFORMANCE.md, "Vector search"). ef_search is the one value an
#: existing index can take on later (see _raise_ef_search).
HNSW_CONFIG: dict[str, Any] = {
    "space": "cosine",
    "ef_construction": 200,
    "ef_search": 200,
    "max_neighbors": 32,
}


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


@dataclass
class VectorSource:
    """The stored vectors (one row per picture, unit length) and how to name rows: what
    the grouping needs, without a Python object per picture for the whole library."""

    vectors: np.ndarray
    #: Row positions -> (record id, metadata) of each.
    describe: Callable[[Sequence[int]], list[tuple[str, Mapping[str, Any]]]]
    #: Record ids -> row positions (None for an id not among the rows).
    positions: Callable[[Sequence[str]], list[int | None]]

    @classmethod
    def from_arrays(
        cls, ids: Sequence[str], vectors: np.ndarray, metas: Sequence[Mapping[str, Any]]
    ) -> VectorSource:
        """A source over vectors already read whole (through Chroma)."""
        where = {id_: i for i, id_ in enumerate(ids)}
        return cls(
            vectors,
            lambda rows: [(ids[r], metas[r]) for r in rows],
            lambda wanted: [where.get(i) for i in wanted],
        )


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` without its import of numpy.ma (0.1 s of a cold query)."""
    import numpy as np

    values = np.sort(values)
    if values.size < 2:
        return values
    keep = np.empty(values.size, dtype=bool)
    keep[0] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]
