"""How a file's path becomes a record id and metadata that Chroma can store.

Paths are bytes on POSIX; Chroma stores only valid UTF-8 text. Everything that turns a
path into a stored key (ids, the shown path, folder filters) lives here, so that the
rule is one rule.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping
from typing import Any


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
