"""The lines an index run ends with, shared by the command line and its quick path
(:mod:`clipseek.cli.quick`), so both say the same thing in the same words."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clipseek.indexing.events import IndexSummary


def summary_line(summary: IndexSummary) -> str:
    parts = [
        f"{summary.new} new",
        f"{summary.updated} updated",
        f"{summary.unchanged} unchanged",
        f"{summary.removed} removed",
        f"{len(summary.failed) - len(summary.unreadable_folders)} failed",
    ]
    if summary.unreadable_folders:
        parts.append(f"{len(summary.unreadable_folders)} folder(s) unreadable")
    if summary.reused:  # renamed, moved, copied or touched: stored vectors, no model run
        parts.insert(2, f"{summary.reused} of them reused")
    rate = f" ({summary.images_per_second:.1f} images/s)" if summary.embedded else ""
    head = "Stopped early" if summary.cancelled else "Done"
    return f"{head} in {summary.elapsed:.1f} s{rate}: " + ", ".join(parts) + "."


def failure_line(summary: IndexSummary) -> str:
    folders = len(summary.unreadable_folders)
    files = len(summary.failed) - folders
    parts = []
    if files:
        parts.append(f"{files} file(s)")
    if folders:
        parts.append(f"{folders} folder(s)")
    return f"{' and '.join(parts)} could not be read; they are listed above."


def links_line(summary: IndexSummary, skipped: bool, show: Callable[[str], str]) -> str:
    """The note on links leading outside the indexed folders; ``show`` makes a path
    printable (and escapes it where the output reads markup)."""
    links = summary.outside_links
    link, target = links[0]
    example = f"{show(link)} → {show(target)}"
    more = f" (and {len(links) - 1} more)" if len(links) > 1 else ""
    if skipped:
        return (
            f"{len(links)} link(s) lead outside the indexed folders and were skipped: "
            f"{example}{more}."
        )
    return (
        f"{len(links)} link(s) lead outside the indexed folders: {example}{more}. What they lead "
        "to is indexed, but `clipseek serve` does not share it; --skip-outside-links leaves "
        "such links out."
    )
