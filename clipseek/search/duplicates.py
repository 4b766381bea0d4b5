"""Near-duplicates: pictures whose embeddings are almost the same (bursts, resized copies,
edits), grouped so a person can choose which to keep. clipseek only lists; it never
deletes a file.

In a large library each picture asks the vector index for its few nearest neighbours
(a batched HNSW search, growing linearly with the library); up to :data:`EXACT_LIMIT`
pictures an exact blocked scan is faster and misses nothing. Pairs closer than
the threshold are joined, and the connected groups are reported largest first.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clipseek.errors import QueryError
from clipseek.photos.pathtext import json_path_fields
from clipseek.store import path_from_meta

if TYPE_CHECKING:
    from clipseek.store import ImageIndex

#: Up to this many pictures the pairs are found exactly, by blocked matrix products; above
#: it, by the vector index's neighbour search. The exact scan grows with the square of the
#: count and the search linearly; where they cross (benchmarks/bench_duplicates.py,
#: docs/PERFORMANCE.md "Near-duplicates") is well above this limit.
EXACT_LIMIT = 100_000
_EXACT_BLOCK = 512

#: Neighbours asked for per picture: a burst of more than this many near-identical shots
#: is still joined into one group through the neighbours' own neighbours.
NEIGHBOURS = 8
_BATCH = 256


@dataclass(frozen=True)
class DuplicateItem:
    id: str
    path: str
    size: int | None
    width: int | None
    height: int | None
    taken: str
    #: Cosine similarity to the group's first picture.
    similarity: float


@dataclass
class DuplicateGroup:
    items: list[DuplicateItem] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:

        return {
            "count": len(self.items),
            "items": [
                {
                    **json_path_fields(i.path),
                    "id": i.id,
                    "size": i.size,
                    "width": i.width,
                    "height": i.height,
                    "taken": i.taken,
                    "similarity": round(i.similarity, 6),
                }
                for i in self.items
            ],
        }


def check_threshold(threshold: float) -> float:
    import math

    if not isinstance(threshold, int | float) or isinstance(threshold, bool):
        raise QueryError(f"--threshold must be a number between 0 and 1, not {threshold!r}.")
    if not math.isfinite(threshold) or not 0.0 < threshold <= 1.0:
        raise QueryError(f"--threshold must be above 0 and at most 1, not {threshold}.")
    return float(threshold)


def find_duplicates(
    index: ImageIndex,
    threshold: float = 0.95,
    under: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[DuplicateGroup]:
    """Groups of two or more pictures at cosine similarity ``threshold`` or closer."""
    import numpy as np

    threshold = check_threshold(threshold)
    ids, vectors, metas = index.all_vectors(under=under)
    total = len(ids)
    position = {id_: i for i, id_ in enumerate(ids)}
    parent = list(range(total))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    if total <= EXACT_LIMIT:
        for i, j in _close_pairs(vectors, threshold, on_progress):
            join(i, j)
    else:
        for start in range(0, total, _BATCH):
            chunk = vectors[start : start + _BATCH]
            neighbours = index.query_many(chunk, min(NEIGHBOURS + 1, total), under=under)
            for offset, hits in enumerate(neighbours):
                i = start + offset
                for other_id, similarity in hits:
                    j = position.get(other_id)
                    if j is not None and j != i and similarity >= threshold:
                        join(i, j)
            if on_progress is not None:
                on_progress(min(start + _BATCH, total), total)

    members: dict[int, list[int]] = {}
    for i in range(total):
        members.setdefault(find(i), []).append(i)
    groups = []
    for group in members.values():
        if len(group) < 2:
            continue
        group.sort(key=lambda i: _sort_key(metas[i]))
        first = vectors[group[0]]
        items = [_item(ids[i], metas[i], float(np.dot(first, vectors[i]))) for i in group]
        groups.append(DuplicateGroup(items))
    groups.sort(key=lambda g: (-len(g.items), g.items[0].path))
    return groups


def _close_pairs(
    vectors: Any, threshold: float, on_progress: Callable[[int, int], None] | None = None
) -> Iterator[tuple[int, int]]:
    """Every pair at ``threshold`` or closer, by blocked matrix products (exact)."""
    import numpy as np

    total = len(vectors)
    for start in range(0, total, _EXACT_BLOCK):
        sims = vectors[start : start + _EXACT_BLOCK] @ vectors.T
        rows, cols = np.nonzero(sims >= threshold)
        for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
            if col > start + row:
                yield start + row, col
        if on_progress is not None:
            on_progress(min(start + _EXACT_BLOCK, total), total)


def _sort_key(meta: Any) -> tuple[int, str]:
    """Largest picture first: the one a person most likely keeps."""
    width = int(meta.get("width", 0) or 0)
    height = int(meta.get("height", 0) or 0)

    return (-(width * height), path_from_meta(meta))


def _item(id_: str, meta: Any, similarity: float) -> DuplicateItem:

    def number(key: str) -> int | None:
        value = meta.get(key)
        return (
            int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )

    return DuplicateItem(
        id=id_,
        path=path_from_meta(meta),
        size=number("size"),
        width=number("width"),
        height=number("height"),
        taken=str(meta.get("taken", "")),
        similarity=min(1.0, similarity),
    )


def existing_only(groups: list[DuplicateGroup]) -> list[DuplicateGroup]:
    """Drop files deleted since indexing (and groups left with one picture)."""
    out = []
    for group in groups:
        items = [i for i in group.items if os.path.exists(i.path)]
        if len(items) >= 2:
            out.append(DuplicateGroup(items))
    return out
