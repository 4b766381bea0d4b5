"""Small formatting helpers shared by the app's widgets.

Paths are shown the way a person types them (``~/Pictures/cat.jpg``), sizes and
durations in the units a person reads, so that a screen full of results stays
short enough to scan.
"""

from __future__ import annotations

import os
import re
import shlex
from datetime import datetime

from rich.cells import cell_len

from clipseek.photos import pathtext


def human_path(path: str) -> str:
    """``path`` with the home folder written as ``~``, under the display rule of
    :func:`clipseek.photos.pathtext.display_path` (undecodable bytes and control
    characters escaped visibly): every name the app shows comes through here.

    ``$HOME`` is read on every call (not cached), so tests and the screenshot
    script can point it at a fixed folder and get reproducible text.
    """
    shown = pathtext.display_path(path)
    home = os.path.expanduser("~").rstrip(os.sep)
    if home and (shown == home or shown.startswith(home + os.sep)):
        return "~" + shown[len(home) :]
    return shown


def display_model(name: str) -> str:
    """A model name as shown on screen: ``local-dir:`` folders get the ``~`` treatment."""
    if name.startswith("local-dir:"):
        return "local-dir:" + human_path(os.path.expanduser(name.removeprefix("local-dir:")))
    return name


def human_size(size: int | None) -> str:
    if size is None or size < 0:
        return "—"
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1000
        if value < 1000 or unit == "TB":
            break
    return f"{value:.1f} {unit}"


def human_date(mtime_ns: int | None) -> str:
    if mtime_ns is None:
        return "—"
    return datetime.fromtimestamp(mtime_ns / 1e9).strftime("%Y-%m-%d %H:%M")


def human_duration(seconds: float | None) -> str:
    """``0:42``, ``12:05``, ``1:02:03``; an em dash while there is nothing to estimate."""
    if seconds is None or seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "—"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def query_for_path(path: str) -> str:
    """How an image path is written into the query box so that ``parse_query`` reads it
    back as the same image: ``~`` kept for brevity, quoted only when it must be. A name
    that is not UTF-8 is written with visible ``\\xHH`` escapes, single-quoted, which
    the query parser reads back as those bytes."""
    shown = human_path(path)
    if re.fullmatch(r"[\w@%+=:,./~-]+", shown):
        return shown
    return shlex.quote(shown)


def ellipsize_start(text: str, width: int) -> str:
    """Cut from the left (``…/photos/sub``): the end of a folder path says the most."""
    return _ellipsize(text, width, from_start=True)


def ellipsize_middle(text: str, width: int) -> str:
    """Cut from the middle (``green-cro…-12.bmp``): camera and export names differ at the
    end (a number, the extension), so the end is kept."""
    if width <= 0:
        return ""
    if cell_len(text) <= width:
        return text
    keep_end = max(1, (width - 1) // 2)
    tail = text
    while tail and cell_len(tail) > keep_end:
        tail = tail[1:]
    return _ellipsize(text, width - cell_len(tail), from_start=False) + tail


def ellipsize_end(text: str, width: int) -> str:
    return _ellipsize(text, width, from_start=False)


def _ellipsize(text: str, width: int, *, from_start: bool) -> str:
    """Fit ``text`` into ``width`` terminal cells, marking the cut with one ellipsis."""
    if width <= 0:
        return ""
    if cell_len(text) <= width:
        return text
    out = text
    while out and cell_len(out) > width - 1:
        out = out[1:] if from_start else out[:-1]
    return "…" + out if from_start else out + "…"
