"""One rule for showing, copying and serialising file names that are not valid UTF-8.

On POSIX a file name is bytes; Python hands such a name over as text in which each
byte that is not UTF-8 becomes a lone surrogate (``b"\\xe9"`` → ``"\\udce9"``,
PEP 383). That text is exact but cannot be written to a terminal, a clipboard or a
UTF-8 file. Every front end applies the same rule:

* **JSON** (``query --json``, ``--save``, the HTTP API): ``path`` keeps the surrogate
  text, written as the JSON escape ``\\udce9``; ``os.fsencode(json.loads(s)["path"])``
  gives back the exact bytes. Such results also carry ``path_b64``, the base64 of the
  exact bytes, for languages whose strings cannot hold a lone surrogate.
* **Display** (tables, the app, the web page, messages): each undecodable byte is
  shown as ``\\xe9``, visibly, never as a replacement box.
* **Clipboard**: a valid UTF-8 name is copied as it is; any other as a shell word in
  ANSI-C quoting (``$'/photos/latin1_\\xe9.bmp'``), which bash, zsh and ksh turn
  back into the exact bytes.
* **Query text**: a quoted term written in the display form (``'~/latin1_\\xe9.bmp'``)
  names the file with those bytes, so a path the app writes into the query box
  reads back as the same file.
"""

from __future__ import annotations

import base64
import json
import os
import re
from typing import Any

_SURROGATE = re.compile(r"[\ud800-\udfff]")
_ESCAPED_BYTE = re.compile(r"\\x([0-9a-fA-F]{2})")


def is_exact_text(path: str) -> bool:
    """True when ``path`` is plain Unicode (no byte that UTF-8 could not decode)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def display_path(path: str) -> str:
    """``path`` as text any terminal or page can show: undecodable bytes as ``\\xHH``."""
    if is_exact_text(path):
        return path
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def display_text(text: str) -> str:
    """Any text (a message that quotes a path, say) made safe to print; never raises."""
    if is_exact_text(text):
        return text
    data = text.encode("utf-8", "surrogateescape" if _only_escapes(text) else "backslashreplace")
    return data.decode("utf-8", "backslashreplace")


def _only_escapes(text: str) -> bool:
    return all(0xDC80 <= ord(c) <= 0xDCFF for c in _SURROGATE.findall(text))


def shell_path(path: str) -> str:
    """``path`` for the clipboard: as it is when valid UTF-8, else a ``$'...'`` shell word
    (bash, zsh, ksh) that stands for the exact bytes."""
    if is_exact_text(path):
        return path
    out = []
    for byte in os.fsencode(path):
        char = chr(byte)
        if byte >= 0x80 or byte < 0x20 or char in "\\'":
            out.append(f"\\x{byte:02x}")
        else:
            out.append(char)
    text = "".join(out)
    # Runs of escaped bytes that are valid UTF-8 (an é next to a stray \xff) read better
    # as the characters; decoding per run keeps the stray bytes escaped.
    return "$'" + _readable_runs(text) + "'"


def _readable_runs(escaped: str) -> str:
    def run(match: re.Match[str]) -> str:
        data = bytes.fromhex(match.group(0).replace("\\x", ""))
        decoded = data.decode("utf-8", "surrogateescape")
        out = []
        for char in decoded:
            code = ord(char)
            if 0xDC80 <= code <= 0xDCFF:
                out.append(f"\\x{code - 0xDC00:02x}")
            else:
                out.append(char)
        return "".join(out)

    return re.sub(r"(?:\\x[89a-f][0-9a-f])+", run, escaped)


def unescape_display(text: str) -> str | None:
    """The path that display text with ``\\xHH`` escapes stands for, or None if it has
    none; the inverse of :func:`display_path` for names whose bytes were escaped."""
    if not _ESCAPED_BYTE.search(text):
        return None
    parts = _ESCAPED_BYTE.split(text)
    data = bytearray()
    for i, part in enumerate(parts):
        if i % 2:
            data.append(int(part, 16))
        else:
            data.extend(part.encode("utf-8", "surrogateescape"))
    return os.fsdecode(bytes(data))


def json_path_fields(path: str) -> dict[str, Any]:
    """The ``path`` (and, for non-UTF-8 names, ``path_b64``) fields of a JSON result."""
    fields: dict[str, Any] = {"path": path}
    if not is_exact_text(path):
        fields["path_b64"] = base64.b64encode(os.fsencode(path)).decode("ascii")
    return fields


def dumps(payload: Any, *, indent: int | None = None) -> str:
    """JSON with non-ASCII text kept readable and lone surrogates written as ``\\udcXX``
    escapes, so the result is valid UTF-8 and loads back to the exact text."""
    text = json.dumps(payload, ensure_ascii=False, indent=indent)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)
