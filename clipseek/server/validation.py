"""Checks on what API clients send that pydantic's field types do not express."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from clipseek.errors import QueryError
from clipseek.search.duplicates import check_threshold
from clipseek.search.filters import make_filters
from clipseek.search.query import check_sort
from clipseek.server.files import is_inside

if TYPE_CHECKING:
    from clipseek.search.filters import Filters


def no_bool(value: Any) -> Any:
    """JSON ``true`` is not the number 1: refuse it where a count is expected."""
    if isinstance(value, bool):
        raise ValueError("Input should be a whole number, not true or false")
    return value


def search_folder(
    in_dir: str | None,
    roots: Sequence[str],
    holds: Callable[[str], bool] | None = None,
) -> str | None:
    """The ``in`` filter, checked so the answer reveals nothing about the server's disk.

    A folder outside the indexed folders gets one answer whether or not it exists (before
    this, ``/etc`` passed and ``/nonexistent`` did not); ``~`` is not expanded, so
    ``~root`` names nothing either. Inside an indexed folder, a missing folder is named,
    since the index shares those folders' contents anyway. A folder reached through a
    link that leads out of the indexed folders (``photos/etclink/ssh``) is inside only as
    far as the index holds pictures there (``holds``), never by what exists on the disk.
    """
    if in_dir is None:
        return None
    if "\x00" in in_dir or not os.path.isabs(in_dir):
        raise QueryError(
            f"in: {in_dir!r} is not an absolute folder path; give a folder inside one of "
            "the indexed folders."
        )
    folder = os.path.normpath(in_dir)
    if folder.startswith("//"):
        folder = "/" + folder.lstrip("/")
    from clipseek.search.query import really_inside

    outside = QueryError(f"in: {in_dir} is not inside a folder this server has indexed.")
    folders = [os.path.normpath(r) for r in roots if r]
    if not is_inside(folder, folders):
        raise outside
    if not really_inside(folder, folders):
        if holds is None or not holds(folder):
            raise outside
        return folder
    if not os.path.isdir(folder):
        raise QueryError(f"in: there is no folder {in_dir} on the server.")
    return folder


def search_filters(
    after: str | None,
    before: str | None,
    camera: str | None,
    min_size: str | None,
    sort: str | None,
) -> tuple[Filters | None, str]:
    """The photo filters and sort order of a search request, checked by the same rules as
    the CLI; the error names the JSON/form field (``after``), not the CLI option."""
    try:
        filters = make_filters(after, before, camera, min_size)
        order = check_sort(sort or "score")
    except QueryError as exc:
        raise QueryError(_field_names(str(exc))) from None
    return (None if filters.empty else filters), order


def _field_names(message: str) -> str:
    for option, name in (
        ("--after", "after"),
        ("--before", "before"),
        ("--min-size", "min_size"),
        ("--sort", "sort"),
        ("--threshold", "threshold"),
    ):
        message = message.replace(option, name)
    return message


def duplicate_threshold(threshold: float) -> float:

    try:
        return check_threshold(threshold)
    except QueryError as exc:
        raise QueryError(_field_names(str(exc))) from None
