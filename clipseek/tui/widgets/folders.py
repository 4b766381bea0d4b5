"""Picking a folder: an input that completes paths, and a tree of folders.

The suggester offers the rest of a folder name as the user types (accepted with
the right arrow, as in a shell), keeping their ``~``; the tree is for those who
would rather browse. Both show folders only: indexing takes folders.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from rich.text import Text
from textual.binding import Binding
from textual.suggester import Suggester
from textual.widgets import DirectoryTree, Input

from clipseek.photos import pathtext


class FolderSuggester(Suggester):
    """Completes the last component of a path to an existing sub-folder (never to one of
    ``skip``, such as the index's own folder, which holds no pictures)."""

    def __init__(self, skip: Iterable[str] = ()) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.skip = {os.path.realpath(os.path.expanduser(p)) for p in skip}

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
                    and os.path.realpath(e.path) not in self.skip
                    # The box holds a path to type; a name that can only be shown
                    # escaped is picked in the tree instead.
                    and pathtext.display_path(e.name) == e.name
                )
        except OSError:
            return None
        if not names:
            return None
        return value + names[0][len(prefix) :] + os.sep


class FolderInput(Input):
    """The folder box: Tab takes the folder suggested, as in a shell; with nothing to
    complete it moves on as Tab does everywhere else."""

    BINDINGS = [  # noqa: RUF012 - Textual's declared ClassVar
        Binding("tab", "complete", "Complete", show=False),
    ]

    def action_complete(self) -> None:
        suggestion = self._suggestion
        if suggestion and len(suggestion) > len(self.value) and self.cursor_at_end:
            self.action_cursor_right()  # takes the suggestion, as the right arrow does
        else:
            self.screen.focus_next()


class FolderTree(DirectoryTree):
    """A directory tree without files and hidden folders.

    It starts at the home folder but is not kept there: Backspace goes up a level (to
    ``/mnt`` or ``/media``, say), and typing a folder in the box above re-roots it there.
    """

    BINDINGS = [  # noqa: RUF012 - Textual's declared ClassVar
        Binding("backspace", "go_up", "Up a folder", show=False),
    ]

    def process_label(self, label: str | Text) -> Text:
        """A folder's name as plain text under the display rule: Tree would read it as
        markup (``[b]`` is a valid folder name) and draw its control characters."""
        if isinstance(label, str):
            return Text(pathtext.display_path(label), no_wrap=True)
        return label

    def action_go_up(self) -> None:
        current = Path(self.path).resolve()
        if current.parent != current:
            self.path = current.parent

    def show_folder(self, folder: str) -> None:
        """Re-root the tree at ``folder`` when it is a folder outside what it shows."""
        target = Path(os.path.expanduser(folder))
        try:
            if not target.is_dir():
                return
            target = target.resolve()
        except OSError:
            return
        root = Path(self.path).resolve()
        if target != root and root not in target.parents:
            self.path = target

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
