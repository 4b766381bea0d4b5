"""Filters on when and with what a picture was taken, the same in every front end.

They become part of Chroma's ``where`` clause, so the top-k is exact among the matching
pictures rather than a filtered top-k of everything. Dates are partial ("2024",
"2024-06", "2024-06-15") and compare with the wall-clock time the picture was taken
(see :mod:`clipseek.photos.metadata`): ``after`` includes its whole period's start onward,
``before`` stops at the start of its period, so ``--after 2024-06 --before 2024-09``
is June, July and August.
"""

from __future__ import annotations

import calendar
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clipseek.errors import QueryError

_DATE = re.compile(r"^\s*(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?\s*$")
_SIZE = re.compile(r"^\s*(\d{1,6})\s*[x×X]\s*(\d{1,6})\s*$")


@dataclass(frozen=True)
class Filters:
    after: int | None = None
    before: int | None = None
    camera: str | None = None
    min_width: int = 0
    min_height: int = 0
    #: The text the user gave, for messages ("taken after 2024-06").
    labels: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return (
            self.after is None
            and self.before is None
            and not self.camera
            and not self.min_width
            and not self.min_height
        )

    @property
    def needs_metadata(self) -> bool:
        """Whether the filter reads fields that older index entries may lack."""
        return self.after is not None or self.before is not None or bool(self.camera)

    def describe(self) -> str:
        return ", ".join(self.labels)

    def clauses(self, cameras: Sequence[str] = ()) -> list[dict[str, Any]] | None:
        """Chroma ``where`` clauses (to be combined with ``$and``); None: nothing can match.

        ``cameras`` are the camera names the index holds; the case-insensitive substring
        the user typed is matched against them here, since Chroma compares metadata
        strings only exactly.
        """
        out: list[dict[str, Any]] = []
        if self.after is not None:
            out.append({"taken_local": {"$gte": self.after}})
        if self.before is not None:
            out.append({"taken_local": {"$lt": self.before}})
        if self.min_width:
            out.append({"width": {"$gte": self.min_width}})
        if self.min_height:
            out.append({"height": {"$gte": self.min_height}})
        if self.camera:
            wanted = self.camera.lower()
            matches = sorted({c for c in cameras if c and wanted in c.lower()})
            if not matches:
                return None
            out.append({"camera": {"$in": matches}} if len(matches) > 1 else {"camera": matches[0]})
        return out


def _spelled(option: str, value: str) -> str:
    """``--after 2024-13`` on the command line, ``after:2024-13`` on the filter line: a
    message quotes what the user wrote, in the words of the place they wrote it."""
    return f"{option}{value}" if option.endswith(":") else f"{option} {value}"


def period_start(text: str, option: str, *, end: bool = False) -> int:
    """The first second of a partial date ("2024", "2024-06", "2024-06-15") as wall-clock
    seconds; with ``end``, the first second after it. ``option`` is how the user named
    the date (``--after``, or ``after:`` on the filter line), for messages."""
    match = _DATE.match(text or "")
    if not match:
        if option.endswith(":"):
            raise QueryError(
                f"{_spelled(option, text)} is not a date: write {option}YYYY, {option}YYYY-MM "
                f"or {option}YYYY-MM-DD (e.g. {option}2024-06)."
            )
        raise QueryError(
            f"{option} takes a date as YYYY, YYYY-MM or YYYY-MM-DD (e.g. 2024-06), not {text!r}."
        )
    year = int(match.group(1))
    month = int(match.group(2) or 1)
    day = int(match.group(3) or 1)
    if not 1 <= month <= 12 or not 1970 <= year <= 9998:
        raise QueryError(f"{_spelled(option, text)}: no such month or year.")
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        raise QueryError(f"{_spelled(option, text)}: {year}-{month:02d} has no day {day}.")
    if end:
        if match.group(3):
            return calendar.timegm((year, month, day, 0, 0, 0)) + 86_400
        if match.group(2):
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        else:
            year += 1
        return calendar.timegm((year, month, 1, 0, 0, 0))
    return calendar.timegm((year, month, day, 0, 0, 0))


def parse_min_size(text: str, option: str = "--min-size") -> tuple[int, int]:
    match = _SIZE.match(text or "")
    if not match:
        if option.endswith(":"):
            raise QueryError(
                f"{_spelled(option, text)} is not a size: write {option}WIDTHxHEIGHT in pixels "
                f"(e.g. {option}1000x800)."
            )
        raise QueryError(f"{option} takes WIDTHxHEIGHT in pixels (e.g. 1000x800), not {text!r}.")
    return int(match.group(1)), int(match.group(2))


def make_filters(
    after: str | None = None,
    before: str | None = None,
    camera: str | None = None,
    min_size: str | None = None,
    *,
    line: bool = False,
) -> Filters:
    """Filters from what a user typed (CLI options, JSON fields, the app's filter line);
    with ``line``, messages name them as the filter line does (``after:2024-13``)."""
    after_name, before_name, size_name = (
        ("after:", "before:", "size:") if line else ("--after", "--before", "--min-size")
    )
    labels: list[str] = []
    start = end = None
    if after:
        start = period_start(after, after_name)
        labels.append(f"taken in or after {after.strip()}")
    if before:
        end = period_start(before, before_name)
        labels.append(f"taken before {before.strip()}")
    if start is not None and end is not None and start >= end:
        raise QueryError(
            f"{_spelled(after_name, after or '')} is not before "
            f"{_spelled(before_name, before or '')}; no picture can match."
        )
    cam = (camera or "").strip() or None
    if cam:
        labels.append(f"camera matching {cam!r}")
    width = height = 0
    if min_size:
        width, height = parse_min_size(min_size, size_name)
        labels.append(f"at least {width}×{height}")
    return Filters(start, end, cam, width, height, tuple(labels))


_LINE_KEYS = ("after", "before", "camera", "size")
_LINE_HELP = (
    'use after:YYYY-MM, before:YYYY-MM, camera:NAME (camera:"canon eos" for a name with '
    "a space) or size:WxH."
)


def parse_filter_line(text: str) -> Filters:
    """The app's filter line: ``after:2024-06 before:2024-09 camera:pixel size:1000x800``.

    Quotes group words (``camera:"canon eos"``), and words with no ``key:`` belong to the
    filter before them (``camera:canon eos``), so ``after:last summer`` is explained as a
    date that is not one rather than as a stray ``summer``. Messages use these words,
    not the command line's flags.
    """
    try:
        parts = shlex.split(text or "")
    except ValueError:
        raise QueryError(f"A quote is not closed in the filter line; {_LINE_HELP}") from None
    values: dict[str, str] = {}
    key = ""
    for part in parts:
        name, sep, value = part.partition(":")
        name = name.lower()
        if sep and name in _LINE_KEYS:
            key = name
            if not value.strip():
                raise QueryError(f"Filter {part!r} has nothing after the colon; {_LINE_HELP}")
            value = value.strip()
            values[key] = f"{values[key]} {value}" if key == "camera" and key in values else value
        elif key and not sep:
            values[key] = f"{values[key]} {part}"
        else:
            raise QueryError(f"Filter {part!r} not understood; {_LINE_HELP}")
    return make_filters(
        values.get("after"),
        values.get("before"),
        values.get("camera"),
        values.get("size"),
        line=True,
    )
