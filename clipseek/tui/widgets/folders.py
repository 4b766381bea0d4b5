"""Picking a folder: an input that completes paths, and a tree of folders.

The suggester offers the rest of a folder name as the user types (accepted with
the right arrow, as in a shell), keeping their ``~``; the tree is for those who
would rather browse. Both show folders only: indexing takes folders.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from textual.suggester import Suggester
from textual.widgets import DirectoryTree


class FolderSuggester(Suggester):
    """Completes the last component of a path to an existing sub-folder."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        parent, prefix = os.path.split(os.path.expanduser(value))
        if not prefix:  # "~/Pictures/": nothing typed yet of the next folder
            return None
        try:
            with os.scandir(parent or ".") as entries:
                names = sorted(
                    e.name
                    for e in entries
                    if e.name.startswith(prefix)
                    and (prefix.startswith(".") or not e.name.startswith("."))
                    and e.is_dir()
                )
        except OSError:
            return None
        if not names:
            return None
        return value + names[0][len(prefix) :] + os.sep


class FolderTree(DirectoryTree):
    """A directory tree without files and hidden folders."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        out = []
        for path in paths:
            if path.name.startswith("."):
                continue
            try:
                if path.is_dir():
                    out.append(path)
            except OSError:
                continue
        return out
