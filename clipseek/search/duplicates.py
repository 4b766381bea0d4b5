"""Near-duplicates: pictures whose embeddings are almost the same (bursts, resized copies,
edits), grouped so a person can choose which to keep. clipseek only lists; it never
deletes a file.

Close pairs are found first. Up to :data:`EXACT_LIMIT` pictures an exact blocked scan
over the stored vectors finds every one (each block against the rows after it: half the
products of a full scan). Above it, where the index has an approximate index beside its
vector cache (:mod:`clipseek.store.partition`, built by index runs of large libraries),
its centres split the search (:func:`partition_pairs`): each picture is compared with
the pictures of its own list and of the few lists whose centre is nearly as close to it as
its own, a bound that misses no pair (exact, at a small fraction of all-pairs' cost).
Without one, each picture asks the vector index for its few nearest neighbours (a batched
HNSW search, growing linearly with the library, approximate).

Groups never chain. Joining every close pair transitively put pictures at similarity
-0.27 into one group (A close to B, B close to C, ... ). Instead every member of a group
is within the threshold of **every other member**, so of the group's first picture (its
representative) too. Pictures are taken in the order a person would keep them (largest
first, then by path); each one not yet grouped starts a group, and its close neighbours
join, closest first, while they are close to every member already in it. A picture is in
at most one group. Only the pictures that have a close pair are ever looked at again, so
the grouping costs little beside the scan.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clipseek.errors import QueryError
from clipseek.photos.pathtext import json_path_fields
from clipseek.store import path_from_meta
from clipseek.store.records import VectorSource, sorted_unique

if TYPE_CHECKING:
    import numpy as np

    from clipseek.store import ImageIndex

#: Up to this many pictures the pairs are found exactly, by blocked matrix products; above
#: it, by the vector index's neighbour search (measurements: docs/PERFORMANCE.md).
EXACT_LIMIT = 100_000
_EXACT_BLOCK = 1024
_COLUMN_BLOCK = 16384

#: Rows scored against the partition's centres at a time (their scores: rows x lists).
_ASSIGN_BLOCK = 2048
#: Other lists a row is compared with at most (the nearest of those the bound names),
#: looked for among the lists whose centres are nearest its own.
VISITS = 3
NEAR_LISTS = 16
#: Added to the bound of :func:`partition_pairs`: float32's rounding never loses a pair.
_SLACK = 1e-4

#: Neighbours asked for per picture in the neighbour search.
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


def vector_source(index: ImageIndex, under: str | None = None) -> VectorSource:
    """The index's own source when it has one (the direct reader, over its cache), else
    every vector and metadata through Chroma."""
    own = getattr(type(index), "vector_source", None)
    if callable(own):
        return own(index, under)  # type: ignore[no-any-return]
    return VectorSource.from_arrays(*index.all_vectors(under=under))


def find_duplicates(
    index: ImageIndex,
    threshold: float = 0.95,
    under: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[DuplicateGroup]:
    """Groups of two or more pictures, each at cosine similarity ``threshold`` or closer
    to every other picture of its group; largest groups first."""
    threshold = check_threshold(threshold)
    source = vector_source(index, under)
    vectors = source.vectors
    total = len(vectors)
    lists = None if total <= EXACT_LIMIT else _partition(index, vectors, under)
    if total <= EXACT_LIMIT:
        left, right = _close_pairs(vectors, threshold, on_progress)
    elif lists is not None:
        centroids, primary = lists
        left, right = partition_pairs(vectors, centroids, threshold, on_progress, primary=primary)
    else:
        left, right = _neighbour_pairs(index, source, threshold, under, on_progress)
    return _groups(source, left, right, threshold)


def _partition(
    index: ImageIndex, vectors: Any, under: str | None
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The centres of the index's partition (the direct reader over a cache that has
    one) and each row's list where the partition says it (-1 elsewhere), if they fit the
    vectors; else None."""
    own = getattr(type(index), "partition_lists", None)
    if not callable(own):
        return None
    found = own(index, under)
    if found is None:
        return None
    centroids, primary = found
    if len(centroids) == 0 or centroids.shape[1] != vectors.shape[1]:
        return None
    if primary is not None and len(primary) != len(vectors):
        primary = None  # a writer came between: every row is scored
    return centroids, primary


def partition_pairs(
    vectors: Any,
    centroids: np.ndarray,
    threshold: float,
    on_progress: Callable[[int, int], None] | None = None,
    visits: int | None = None,
    primary: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) at ``threshold`` or closer, list by list around ``centroids`` (unit
    rows): every one, unless a row needs more than ``visits`` other lists (then the
    nearest of them).

    Each row belongs to the list of its nearest centre (``primary``: each row's list, -1
    where not known, as the partition stored them; the rest are scored). A close pair x
    (list L), y (list M != L) lies within d = sqrt(2 - 2 threshold) of each other, so
    across the hyperplane halfway between the centres: (x - y).(c_L - c_M) <= d |c_L - c_M|,
    and as x.c_L >= x.c_M and y.c_M >= y.c_L, one of them is within d |c_L - c_M| / 2 of
    the other's centre (x.c_L - x.c_M, or y.c_M - y.c_L). So a row is also compared with
    the lists whose centre scores within that margin of its own: every pair is met, in
    one list or the other. Those lists are looked for among the :data:`NEAR_LISTS` centres
    nearest its own (all of them when ``visits`` allows every list: exact), and at most
    ``visits`` are visited. Memory: one list at a time (tiled, as :func:`_close_pairs`).
    ``on_progress`` hears of two passes over the rows: choosing the lists each row visits,
    then comparing list by list."""
    import numpy as np

    total = len(vectors)
    centroids = np.ascontiguousarray(centroids, dtype=np.float32)
    lists = len(centroids)
    visits = VISITS if visits is None else visits
    half = 0.5 * float(np.sqrt(max(0.0, 2.0 - 2.0 * threshold)))
    # each list's nearest other lists (by centre), and |c_L - c_M| to each
    width = lists - 1 if visits >= lists - 1 else min(lists - 1, max(NEAR_LISTS, visits))
    gram = centroids @ centroids.T
    np.fill_diagonal(gram, -np.inf)
    if width < lists - 1:
        neighbours = np.argpartition(-gram, width - 1, axis=1)[:, :width]
    else:
        neighbours = np.argsort(-gram, axis=1)[:, :width]
    apart = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * np.take_along_axis(gram, neighbours, 1)))
    del gram
    primary = _primaries(vectors, centroids, primary)
    order = np.argsort(primary, kind="stable")
    bounds = np.searchsorted(primary[order], np.arange(lists + 1))
    capped = 0
    extra_rows: list[np.ndarray] = []
    extra_lists: list[np.ndarray] = []
    done = 0
    for list_no in range(lists):
        members = order[bounds[list_no] : bounds[list_no + 1]]
        if members.size == 0 or width == 0:
            continue
        near_lists = neighbours[list_no]
        for at in range(0, members.size, _EXACT_BLOCK):
            chunk = members[at : at + _EXACT_BLOCK]
            rows = np.asarray(vectors[chunk], dtype=np.float32)
            best = rows @ centroids[list_no]
            scores = rows @ centroids[near_lists].T
            near = (best[:, None] - scores) <= half * apart[list_no] + _SLACK
            counts = near.sum(axis=1)
            capped += int((counts > visits).sum())
            if visits < width and int(counts.max(initial=0)) > visits:
                # only the nearest of them: approximate for these rows
                ranked = np.where(near, scores, -np.inf)
                near = np.zeros_like(near)
                if visits:
                    top = np.argpartition(-ranked, visits - 1, axis=1)[:, :visits]
                    np.put_along_axis(near, top, True, axis=1)
                    near &= np.isfinite(ranked)
            which, k = np.nonzero(near)
            extra_rows.append(chunk[which])
            extra_lists.append(near_lists[k])
        done += members.size
        if on_progress is not None:
            on_progress(done, total)
    visitors = np.concatenate(extra_rows) if extra_rows else np.zeros(0, np.int64)
    visited = np.concatenate(extra_lists) if extra_lists else np.zeros(0, np.int64)
    by_list = np.argsort(visited, kind="stable")
    visitors, visited = visitors[by_list], visited[by_list]
    visit_bounds = np.searchsorted(visited, np.arange(lists + 1))
    found: list[np.ndarray] = []
    done = 0
    for list_no in range(lists):
        members = order[bounds[list_no] : bounds[list_no + 1]]
        if members.size == 0:
            continue
        own_rows = np.asarray(vectors[members], dtype=np.float32)
        left, right = _close_pairs(own_rows, threshold)
        found.append(members[left] * total + members[right])
        guests = visitors[visit_bounds[list_no] : visit_bounds[list_no + 1]]
        for first in range(0, guests.size, _COLUMN_BLOCK):
            part = guests[first : first + _COLUMN_BLOCK]
            guest_rows = np.asarray(vectors[part], dtype=np.float32)
            for at in range(0, members.size, _EXACT_BLOCK):
                sims = own_rows[at : at + _EXACT_BLOCK] @ guest_rows.T
                i, j = np.nonzero(sims >= threshold)
                a, b = members[at + i], part[j]
                found.append(np.minimum(a, b) * total + np.maximum(a, b))
        done += members.size
        if on_progress is not None:
            on_progress(done, total)
    partition_pairs.capped = capped  # type: ignore[attr-defined]
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # a pair met from both of its lists is kept once
    pairs = sorted_unique(np.concatenate(found))
    return pairs // total, pairs % total


def _primaries(vectors: Any, centroids: np.ndarray, known: np.ndarray | None) -> np.ndarray:
    """Each row's nearest centre: ``known`` where it is given (not -1), else scored."""
    import numpy as np

    total = len(vectors)
    if known is not None and len(known) == total:
        primary = np.asarray(known, dtype=np.int64).copy()
    else:
        primary = np.full(total, -1, dtype=np.int64)
    unknown = np.flatnonzero(primary < 0)
    for start in range(0, unknown.size, _ASSIGN_BLOCK):
        rows = unknown[start : start + _ASSIGN_BLOCK]
        block = np.asarray(vectors[rows], dtype=np.float32)
        primary[rows] = (block @ centroids.T).argmax(axis=1)
    return primary


def _close_pairs(
    vectors: Any, threshold: float, on_progress: Callable[[int, int], None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i < j) at ``threshold`` or closer, by blocked matrix products (exact).
    Tiles of :data:`_EXACT_BLOCK` x :data:`_COLUMN_BLOCK` bound the memory at any size."""
    import numpy as np

    total = len(vectors)
    lefts: list[np.ndarray] = []
    rights: list[np.ndarray] = []
    for start in range(0, total, _EXACT_BLOCK):
        stop = min(start + _EXACT_BLOCK, total)
        block = np.asarray(vectors[start:stop], dtype=np.float32)
        # Only the columns from this block on: the pairs before it were found already.
        for first in range(start, total, _COLUMN_BLOCK):
            columns = np.asarray(vectors[first : first + _COLUMN_BLOCK], dtype=np.float32)
            rows, cols = np.nonzero(block @ columns.T >= threshold)
            rows += start
            cols += first
            keep = cols > rows  # the diagonal, and the lower half of the first tile
            lefts.append(rows[keep])
            rights.append(cols[keep])
        if on_progress is not None:
            on_progress(stop, total)
    if not lefts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(lefts).astype(np.int64), np.concatenate(rights).astype(np.int64)


def _neighbour_pairs(
    index: ImageIndex,
    source: VectorSource,
    threshold: float,
    under: str | None,
    on_progress: Callable[[int, int], None] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs from each picture's nearest neighbours in the vector index (approximate)."""
    import numpy as np

    vectors = source.vectors
    total = len(vectors)
    lefts: list[int] = []
    rights: list[int] = []
    for start in range(0, total, _BATCH):
        chunk = np.asarray(vectors[start : start + _BATCH], dtype=np.float32)
        neighbours = index.query_many(chunk, min(NEIGHBOURS + 1, total), under=under)
        for offset, hits in enumerate(neighbours):
            close = [other for other, similarity in hits if similarity >= threshold]
            for j in source.positions(close):
                i = start + offset
                if j is not None and j != i:
                    lefts.append(min(i, j))
                    rights.append(max(i, j))
        if on_progress is not None:
            on_progress(min(start + _BATCH, total), total)
    if not lefts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # Each pair is found from both ends: once is enough.
    pairs = np.unique(np.stack([lefts, rights], axis=1).astype(np.int64), axis=0)
    return pairs[:, 0], pairs[:, 1]


def _groups(
    source: VectorSource, left: np.ndarray, right: np.ndarray, threshold: float
) -> list[DuplicateGroup]:
    """Non-chaining groups from the close pairs (see the module's docstring)."""
    import numpy as np

    if left.size == 0:
        return []
    vectors = source.vectors
    nodes = np.unique(np.concatenate([left, right]))
    described = source.describe(nodes.tolist())
    metas = {int(r): meta for r, (_, meta) in zip(nodes.tolist(), described, strict=True)}
    ids = {int(r): id_ for r, (id_, _) in zip(nodes.tolist(), described, strict=True)}
    keep_order = sorted(nodes.tolist(), key=lambda r: _sort_key(metas[r]))
    rank = {r: n for n, r in enumerate(keep_order)}
    # Each pair both ways, sorted by row: a row's close neighbours are one slice.
    a = np.concatenate([left, right])
    b = np.concatenate([right, left])
    order = np.argsort(a, kind="stable")
    a, b = a[order], b[order]
    starts = np.searchsorted(a, nodes)
    stops = np.searchsorted(a, nodes, side="right")
    span = {int(n): (int(s), int(e)) for n, s, e in zip(nodes, starts, stops, strict=True)}
    grouped: set[int] = set()
    groups: list[DuplicateGroup] = []
    for first in keep_order:
        if first in grouped:
            continue
        s, e = span[first]
        near = [j for j in dict.fromkeys(b[s:e].tolist()) if j not in grouped]
        if not near:
            continue
        base = np.asarray(vectors[first], dtype=np.float32)
        candidates = np.asarray(vectors[near], dtype=np.float32)
        to_first = candidates @ base
        # Closest first; equal similarities in keeping order.
        pick = sorted(range(len(near)), key=lambda k: (-float(to_first[k]), rank[near[k]]))
        fits = np.ones(len(near), dtype=bool)
        members = [first]
        for k in pick:
            if not fits[k]:
                continue
            members.append(near[k])
            # Only those close to this member too may still join.
            fits &= candidates @ candidates[k] >= threshold
        if len(members) < 2:
            continue
        grouped.update(members)
        members[1:] = sorted(members[1:], key=rank.__getitem__)
        sims = np.asarray(vectors[members], dtype=np.float32) @ base
        items = [_item(ids[r], metas[r], float(sim)) for r, sim in zip(members, sims, strict=True)]
        groups.append(DuplicateGroup(items))
    groups.sort(key=lambda g: (-len(g.items), g.items[0].path))
    return groups


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
