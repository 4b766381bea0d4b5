"""Building the vector cache (:mod:`clipseek.store.vector_cache`) from Chroma's files, as
the direct reader reads them, and the approximate index over it
(:mod:`clipseek.store.partition`) where the library is large: at the end of an index run
and by ``clipseek repair``, by a writer holding the writer lock."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipseek.store import direct
from clipseek.store.chroma_format import applied_seq, connect_readonly
from clipseek.store.vector_cache import (
    CacheUnusable,
    Manifest,
    cache_folder,
    cached_collections,
    drop_cache,
    note_identities,
    open_view,
    read_manifest,
    write_cache,
)

if TYPE_CHECKING:
    from clipseek.store.lock import DataLock


def refresh_caches(
    location: str | os.PathLike[str],
    lock: DataLock | None = None,
    partition_min: int | None = None,
) -> list[str]:
    """Bring every index's cache up to date with Chroma's files, building the missing,
    stale or damaged ones anew, and remove the caches of collections that are gone; then
    build the approximate index of each cache of ``partition_min`` live rows or more
    (default :data:`~clipseek.store.partition.MIN_ROWS`) whose own is missing, stale or
    trailing (:func:`~clipseek.store.partition.wanted`). For a writer (the end of an
    index run, repair), holding the writer lock; returns the names of the collections
    whose cache was written."""
    from clipseek.store import partition

    if partition_min is None:
        partition_min = partition.MIN_ROWS
    location = os.fspath(location)
    database = Path(location) / "chroma.sqlite3"
    if not database.is_file():
        return []
    written: list[str] = []
    with lock.shared() if lock is not None else contextlib.nullcontext():
        con = connect_readonly(database)
        try:
            collections = direct.clipseek_collections(con)
        finally:
            con.close()
    present = {c.id for c in collections}
    for collection_id in cached_collections(location) - present:
        drop_cache(location, collection_id)
    for collection in collections:
        if _refresh_one(location, collection, lock):
            written.append(collection.name)
        _refresh_partition(location, collection, lock, partition_min)
    return written


def _refresh_partition(
    location: str, collection: Any, lock: DataLock | None, min_rows: int
) -> bool:
    """Build the collection's approximate index if the cache is current and large
    enough and its own is missing, stale or trailing; returns whether it was written."""
    from clipseek.store import partition

    folder = Path(location)
    with lock.shared() if lock is not None else contextlib.nullcontext():
        con = connect_readonly(folder / "chroma.sqlite3")
        try:
            dim = int(collection.metadata.get("dim", 0) or 0)
            view = open_view(location, collection.id, collection.metadata_segment, dim, con)
        except CacheUnusable:
            return False
        finally:
            con.close()
    epoch = view.manifest.epoch

    def still_current() -> bool:
        try:
            return read_manifest(cache_folder(location, collection.id)).epoch == epoch
        except CacheUnusable:
            return False

    try:
        return partition.refresh_partition(view, lock, min_rows, still_current)
    except (CacheUnusable, OSError):
        return False  # a cache damaged meanwhile, a full disk: exact scans until next time


def _refresh_one(location: str, collection: Any, lock: DataLock | None) -> bool:
    folder = Path(location)
    with lock.shared() if lock is not None else contextlib.nullcontext():
        con = connect_readonly(folder / "chroma.sqlite3")
        try:
            dim = int(collection.metadata.get("dim", 0) or 0)
            checked: Manifest | None = None
            try:
                view = open_view(location, collection.id, collection.metadata_segment, dim, con)
                if view.verified:
                    return False  # current, and the writer's own files
                view.verify()
                checked = view.manifest
            except CacheUnusable:
                pass
            if checked is None:
                seq = applied_seq(con, collection.metadata_segment)
                if seq is None:
                    return False  # nothing written yet: nothing to copy
                try:
                    _ids, rowids, matrix = direct.load_vectors(con, folder, collection, dim)
                except direct.DirectUnavailable:
                    drop_cache(location, collection.id)
                    return False  # files the direct reader does not know: Chroma answers
        finally:
            con.close()
    if checked is not None:
        # Checked whole (a copied folder, say): noted, so readers need not check it again.
        note_identities(location, collection.id, checked, lock)
        return False

    def still_current() -> bool:
        con = connect_readonly(folder / "chroma.sqlite3")
        try:
            return applied_seq(con, collection.metadata_segment) == seq
        finally:
            con.close()

    if matrix.shape[1] == 0 and dim:
        import numpy as np

        matrix = np.zeros((0, dim), dtype=np.float32)
    return write_cache(
        location,
        collection.id,
        collection.metadata_segment,
        seq,
        rowids,
        matrix,
        lock,
        still_current,
    )
