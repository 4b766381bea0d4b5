"""Chroma ``where`` clauses for a folder and the filters, written by an index's key schema."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from clipseek.store.keys import meta_text


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
