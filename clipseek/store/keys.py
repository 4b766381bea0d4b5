"""How a file's path becomes a record id and metadata that Chroma can store.

Paths are bytes on POSIX; Chroma stores only valid UTF-8 text. Everything that turns a
path into a stored key (ids, the shown path, folder filters) lives here, so that the
rule is one rule.

The text form must be one-to-one, or two folders share a filter: ``--in`` mixes them
and indexing one removes the other's entries. Key schema 1 escaped non-UTF-8 bytes as
``\\xNN`` but left backslashes alone, so a folder literally named ``caf\\xe9`` and one
named with the byte ``caf<E9>`` both became ``caf\\xe9``. Key schema 2 keeps a path
unchanged when it is valid UTF-8 without a backslash and otherwise escapes backslashes
too (``\\\\``): unchanged texts hold no backslash, escaped ones always do, and an escape
decodes one way only. Indexes written with schema 1 are migrated by the next index run
(:meth:`clipseek.store.chroma.ImageIndex.migrate`); until then readers filter them with
the schema-1 rule, which is what their metadata holds.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping
from typing import Any

#: The rule :func:`meta_text` applies by default: what every write uses.
KEY_SCHEMA = 2


def path_id(path: str) -> str:
    """A stable id for a path: the same file always maps to the same record."""
    return hashlib.sha1(os.fsencode(path)).hexdigest()


def meta_text(path: str, schema: int = KEY_SCHEMA) -> str:
    """The text stored for ``path`` (shown, and compared by folder filters)."""
    if schema < 2:
        try:
            path.encode("utf-8")
            return path
        except UnicodeEncodeError:
            return os.fsencode(path).decode("utf-8", "backslashreplace")
    if "\\" not in path:
        try:
            path.encode("utf-8")
            return path
        except UnicodeEncodeError:
            pass
    return os.fsencode(path).replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


def _meta_text(path: str) -> str:
    """:func:`meta_text` under the current schema (kept for callers of the old name)."""
    return meta_text(path)


def path_to_meta(path: str, schema: int = KEY_SCHEMA) -> dict[str, Any]:
    meta: dict[str, Any] = {"path": meta_text(path, schema)}
    if meta["path"] != path:
        meta["path_b64"] = base64.b64encode(os.fsencode(path)).decode("ascii")
    return meta


def path_from_meta(meta: Mapping[str, Any]) -> str:
    raw = meta.get("path_b64")
    if raw:
        return os.fsdecode(base64.b64decode(raw))
    return str(meta.get("path", ""))


def ancestors(path: str, schema: int = KEY_SCHEMA) -> list[str]:
    """Every folder above ``path``, nearest first; stored so search can filter by folder."""
    out: list[str] = []
    parent = os.path.dirname(path)
    while True:
        out.append(meta_text(parent, schema))
        nxt = os.path.dirname(parent)
        if nxt == parent:
            return out
        parent = nxt


def needs_migration(meta: Mapping[str, Any]) -> bool:
    """Whether a record written under key schema 1 reads differently under schema 2:
    only paths with a backslash or with bytes that are not UTF-8 do."""
    return bool(meta.get("path_b64")) or "\\" in str(meta.get("path", ""))
