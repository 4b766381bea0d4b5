"""The vector store: keys for paths, Chroma itself, and integrity checks.

Layout:

- :mod:`~clipseek.store.keys`: paths → record ids and metadata (one rule for all);
- :mod:`~clipseek.store.chroma`: :class:`Store` and :class:`ImageIndex` over Chroma,
  the only module that imports chromadb;
- :mod:`~clipseek.store.integrity`: damage checks and store failure messages.
"""

from __future__ import annotations

from clipseek.store.chroma import (
    COLLECTION_PREFIX,
    FAILURES_PREFIX,
    HNSW_CONFIG,
    SCHEMA_VERSION,
    Hit,
    ImageIndex,
    IndexInfo,
    Record,
    Store,
    StoredEntry,
)
from clipseek.store.integrity import damaged_message, find_damage, store_error
from clipseek.store.keys import ancestors, path_from_meta, path_id, path_to_meta

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
