"""The vector store: keys for paths, Chroma itself, and integrity checks.

Layout:

- :mod:`~clipseek.store.keys`: paths → record ids and metadata (one rule for all);
- :mod:`~clipseek.store.records`: the value types (records, entries, hits, index facts);
- :mod:`~clipseek.store.chroma`: :class:`Store`, the client (embedded or a server) and the
  reading snapshots; :mod:`~clipseek.store.image_index`: :class:`ImageIndex`, one model's
  collection; these two are where chromadb's API is used;
- :mod:`~clipseek.store.where`: Chroma ``where`` clauses for folders and filters;
- :mod:`~clipseek.store.chroma_format` and :mod:`~clipseek.store.direct`: Chroma's files
  read without chromadb, and searching from them; :mod:`~clipseek.store.vector_cache`, a
  flat copy of the vectors beside them that the writer keeps and readers scan first
  (:mod:`~clipseek.store.cache_build` builds it from Chroma's files);
- :mod:`~clipseek.store.integrity`, :mod:`~clipseek.store.repair`: damage checks, failure
  messages and rebuilding the vector files; :mod:`~clipseek.store.lock`, the locks.
"""

from __future__ import annotations

from clipseek.store.chroma import Store
from clipseek.store.image_index import ImageIndex
from clipseek.store.integrity import damaged_message, find_damage, store_error
from clipseek.store.keys import ancestors, path_from_meta, path_id, path_to_meta
from clipseek.store.records import (
    COLLECTION_PREFIX,
    FAILURES_PREFIX,
    HNSW_CONFIG,
    SCHEMA_VERSION,
    Hit,
    IndexInfo,
    Record,
    StoredEntry,
)

__all__ = [
    "COLLECTION_PREFIX",
    "FAILURES_PREFIX",
    "HNSW_CONFIG",
    "SCHEMA_VERSION",
    "Hit",
    "ImageIndex",
    "IndexInfo",
    "Record",
    "Store",
    "StoredEntry",
    "ancestors",
    "damaged_message",
    "find_damage",
    "path_from_meta",
    "path_id",
    "path_to_meta",
    "store_error",
]
