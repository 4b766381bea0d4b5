"""One rule for showing, copying and serialising file names.

On POSIX a file name is bytes; Python hands such a name over as text in which each
byte that is not UTF-8 becomes a lone surrogate (``b"\\xe9"`` → ``"\\udce9"``,
PEP 383). That text is exact but cannot be written to a terminal, a clipboard or a
UTF-8 file. A name may also hold control characters (an escape sequence that
recolours the terminal or sets its title, a bell, a newline) or bidi overrides that
reorder what a reader sees. Every front end applies the same rule:

* **JSON** (``query --json``, ``--save``, the HTTP API): ``path`` keeps the surrogate
  text, written as the JSON escape ``\\udce9``; ``os.fsencode(json.loads(s)["path"])``
  gives back the exact bytes. Such results also carry ``path_b64``, the base64 of the
  exact bytes, for languages whose strings cannot hold a lone surrogate.
* **Display** (tables, the app, the web page, messages): each undecodable byte is
  shown as ``\\xe9``, visibly, never as a replacement box; so is each C0 control and
  DEL (``\\x1b``, ``\\x0a``: one byte either way); C1 controls, bidi controls and line
  separators, which are characters of two or three bytes, as ``\\u009b``, ``\\u202e``;
  and a backslash as ``\\\\``, so a name holding a literal ``\\xff`` never looks like
  one holding the byte 0xFF. Display text never reaches a terminal as markup either:
  rich faces escape it as well.
* **Clipboard**: a valid UTF-8 name without controls is copied as it is; any other as
  a shell word in ANSI-C quoting (``$'/photos/latin1_\\xe9.bmp'``), which bash, zsh
  and ksh turn back into the exact bytes.
* **Query text**: a quoted term written in the display form (``'~/latin1_\\xe9.bmp'``)
  names the file with those bytes (tried after the text as it is), so a path the app
  writes into the query box reads back as the same file.
"""

from __future__ import annotations

import base64
import json
import os
import re
from typing import Any

_SURROGATE = re.compile(r"[\ud800-\udfff]")
#: What display text may not show as it is: C0 controls, DEL, C1 controls, the bidi
#: controls (embeddings, overrides, isolates, marks), the line and paragraph separators,
#: and lone surrogates (undecodable bytes, PEP 383).
_UNSHOWABLE = "\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff"
_HIDDEN = re.compile(f"[{_UNSHOWABLE}]")
_HIDDEN_OR_BACKSLASH = re.compile(f"[{_UNSHOWABLE}\\\\]")
#: One escape of the display form: a backslash, a byte, or a character.
_ESCAPE = re.compile(r"\\(?:(\\)|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4}))")


def is_exact_text(path: str) -> bool:
    """True when ``path`` is plain Unicode (no byte that UTF-8 could not decode)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    code = ord(char)
    if char == "\\":
        return "\\\\"
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x80:  # C0 and DEL: the character is that one byte
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def display_path(path: str) -> str:
    """``path`` as text any terminal or page can show, under the module's one rule:
    undecodable bytes and controls escaped visibly, a backslash doubled."""
    if _HIDDEN_OR_BACKSLASH.search(path) is None:
        return path
    return _HIDDEN_OR_BACKSLASH.sub(_escape, path)


def display_text(text: str) -> str:
    """Any text (a message that quotes a path, say) made safe to print; never raises.

    The escapes of :func:`display_path`, but a backslash is left as it is: messages
    quote paths already shown (``--in /p/\\xe9: no such folder``), which must not be
    escaped twice."""
    if _HIDDEN.search(text) is None:
        return text
    return _HIDDEN.sub(_escape, text)


def shell_path(path: str) -> str:
    """``path`` for the clipboard: as it is when valid UTF-8 with nothing hidden in it,
    else a ``$'...'`` shell word (bash, zsh, ksh) that stands for the exact bytes (a
    pasted newline would run the line)."""
    if is_exact_text(path) and _HIDDEN.search(path) is None:
        return path
    out = []
    for byte in os.fsencode(path):
        char = chr(byte)
        if byte >= 0x7F or byte < 0x20 or char in "\\'":
            out.append(f"\\x{byte:02x}")
        else:
            out.append(char)
    text = "".join(out)
    # Runs of escaped bytes that are valid UTF-8 (an é next to a stray \xff) read better
    # as the characters; decoding per run keeps the stray bytes (and controls) escaped.
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
            elif _HIDDEN.match(char):
                out.append("".join(f"\\x{b:02x}" for b in char.encode("utf-8")))
            else:
                out.append(char)
        return "".join(out)

    return re.sub(r"(?:\\x[89a-f][0-9a-f])+", run, escaped)


def unescape_display(text: str) -> str | None:
    """The path that display text stands for, or None if it holds no escape; the
    inverse of :func:`display_path`."""
    if _ESCAPE.search(text) is None:
        return None
    data = bytearray()
    at = 0
    for match in _ESCAPE.finditer(text):
        data.extend(text[at : match.start()].encode("utf-8", "surrogateescape"))
        backslash, byte, char = match.groups()
        if backslash:
            data.extend(b"\\")
        elif byte:
            data.append(int(byte, 16))
        else:
            data.extend(chr(int(char, 16)).encode("utf-8", "surrogatepass"))
        at = match.end()
    data.extend(text[at:].encode("utf-8", "surrogateescape"))
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
