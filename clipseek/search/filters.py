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


def period_start(text: str, option: str, *, end: bool = False) -> int:
    """The first second of a partial date ("2024", "2024-06", "2024-06-15") as wall-clock
    seconds; with ``end``, the first second after it."""
    match = _DATE.match(text or "")
    if not match:
        raise QueryError(
            f"{option} takes a date as YYYY, YYYY-MM or YYYY-MM-DD (e.g. 2024-06), not {text!r}."
        )
    year = int(match.group(1))
    month = int(match.group(2) or 1)
    day = int(match.group(3) or 1)
    if not 1 <= month <= 12 or not 1970 <= year <= 9998:
        raise QueryError(f"{option} {text}: no such month or year.")
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        raise QueryError(f"{option} {text}: {year}-{month:02d} has no day {day}.")
    if end:
        if match.group(3):
            return calendar.timegm((year, month, day, 0, 0, 0)) + 86_400
        if match.group(2):
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        else:
            year += 1
        return calendar.timegm((year, month, 1, 0, 0, 0))
    return calendar.timegm((year, month, day, 0, 0, 0))


def parse_min_size(text: str) -> tuple[int, int]:
    match = _SIZE.match(text or "")
    if not match:
        raise QueryError(f"--min-size takes WIDTHxHEIGHT in pixels (e.g. 1000x800), not {text!r}.")
    return int(match.group(1)), int(match.group(2))


def make_filters(
    after: str | None = None,
    before: str | None = None,
    camera: str | None = None,
    min_size: str | None = None,
) -> Filters:
    """Filters from what a user typed (CLI options, JSON fields, the app's filter line)."""
    labels: list[str] = []
    start = end = None
    if after:
        start = period_start(after, "--after")
        labels.append(f"taken in or after {after.strip()}")
    if before:
        end = period_start(before, "--before")
        labels.append(f"taken before {before.strip()}")
    if start is not None and end is not None and start >= end:
        raise QueryError(f"--after {after} is not before --before {before}; no picture can match.")
    cam = (camera or "").strip() or None
    if cam:
        labels.append(f"camera matching {cam!r}")
    width = height = 0
    if min_size:
        width, height = parse_min_size(min_size)
        labels.append(f"at least {width}×{height}")
    return Filters(start, end, cam, width, height, tuple(labels))


def parse_filter_line(text: str) -> Filters:
    """The app's filter line: ``after:2024-06 before:2024-09 camera:pixel size:1000x800``."""
    values: dict[str, str] = {}
    for part in (text or "").split():
        key, sep, value = part.partition(":")
        key = key.lower()
        if not sep or key not in ("after", "before", "camera", "size") or not value:
            raise QueryError(
                f"Filter {part!r} not understood; use after:YYYY-MM, before:YYYY-MM, "
                "camera:NAME or size:WxH."
            )
        values[key] = value if key != "camera" else " ".join([values.get(key, ""), value]).strip()
    return make_filters(
        values.get("after"), values.get("before"), values.get("camera"), values.get("size")
    )
