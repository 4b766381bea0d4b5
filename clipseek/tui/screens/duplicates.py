"""The duplicates screen (``d``): groups of near-identical pictures, largest group first.

The grouping (:meth:`clipseek.engine.Engine.duplicates`) compares the stored vectors, so
it needs the index but not the model; it runs on a worker thread and the screen stays
responsive meanwhile. The screen only lists: choosing what to delete is left to the
person, in their file manager, and nothing here removes a file.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import get_current_worker

from clipseek.errors import ClipseekError, IndexMissingError
from clipseek.photos.pathtext import display_text
from clipseek.tui import messages as msg
from clipseek.tui.format import human_path, human_size
from clipseek.tui.widgets.footer import FittingFooter
from clipseek.tui.widgets.preview import PreviewPane

if TYPE_CHECKING:
    from clipseek.search.duplicates import DuplicateGroup, DuplicateItem
    from clipseek.search.query import SearchResult
    from clipseek.tui.app import ClipseekApp

#: Cosine similarity above which two pictures count as the same (as `clipseek duplicates`).
THRESHOLD = 0.95


class DuplicatesFound(Message):
    def __init__(self, groups: list[DuplicateGroup] | None, error: ClipseekError | None) -> None:
        super().__init__()
        self.groups = groups
        self.error = error


def as_result(item: DuplicateItem, rank: int) -> SearchResult:
    """A duplicate as the preview pane's result: the score is its similarity to the
    group's first picture (the largest), the rank its place in the group."""
    # Lazy: the engine's modules load after the first paint.
    from clipseek.search.query import SearchResult

    return SearchResult(
        rank=rank,
        path=item.path,
        score=item.similarity,
        id=item.id,
        width=item.width,
        height=item.height,
        size=item.size,
        taken=item.taken,
    )


def item_row(item: DuplicateItem) -> Text:
    """``name`` over ``size · W×H · date``; the first of a group is the largest picture."""
    name = human_path(os.path.basename(item.path) or item.path)
    dims = f"{item.width}×{item.height}" if item.width and item.height else "—"
    date = item.taken.replace("T", " ")[:16] if item.taken else "—"
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"  {name}\n")
    text.append(f"  {human_size(item.size)} · {dims} · {date}", style="dim")
    return text


class DuplicatesScreen(Screen[None]):
    """Near-identical pictures in groups, with a preview of the one selected."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="duplicates.back"),
    ]

    app: ClipseekApp  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.groups: list[DuplicateGroup] | None = None
        #: Option index → (item, place in its group); group headings are not in it.
        self._items: dict[int, tuple[DuplicateItem, int]] = {}

    def compose(self) -> ComposeResult:
        yield Static("[dim]Looking for near-duplicates…[/dim]", id="dups-status")
        with Horizontal(id="dups-main"):
            with Vertical(id="dups-pane"):
                yield OptionList(id="dups-list")
            yield PreviewPane(self.app.image_class, id="dups-preview")
        yield FittingFooter(compact=True)

    def on_mount(self) -> None:
        self.query_one("#dups-pane").border_title = "Duplicates"
        self.query_one("#dups-list").display = False
        engine = self.app.engine
        if engine is None:
            self._say("Still starting up; press Esc and try again in a moment.")
            return

        def work() -> None:
            try:
                groups = engine.duplicates(THRESHOLD)
            except ClipseekError as exc:
                self.post_message(DuplicatesFound(None, exc))
                return
            if not get_current_worker().is_cancelled:
                self.post_message(DuplicatesFound(groups, None))

        self.run_worker(work, group="duplicates", exclusive=True, thread=True, exit_on_error=False)

    def _say(self, text: str) -> None:
        self.query_one("#dups-status", Static).update(text)

    def on_duplicates_found(self, message: DuplicatesFound) -> None:
        if not self.app.is_running:
            return
        if message.error is not None:
            if isinstance(message.error, IndexMissingError):
                self._say("[b]No index yet.[/b] Index a folder first (Esc, then i).")
            else:
                self._say(f"[$error]{_escape(str(message.error))}[/]")
            return
        groups = sorted(message.groups or [], key=lambda g: len(g.items), reverse=True)
        self.groups = groups
        if not groups:
            self._say(
                "No near-duplicates found: no two indexed pictures are that alike. "
                "[dim]Esc to go back.[/dim]"
            )
            return
        pictures = sum(len(g.items) for g in groups)
        self._say(
            f"{len(groups)} group{'s' if len(groups) != 1 else ''} of near-duplicates, "
            f"{pictures} pictures. [dim]Largest first; nothing is deleted.[/dim]"
        )
        options: list[Option] = []
        self._items = {}
        for number, group in enumerate(groups, 1):
            heading = Text(f"Group {number} · {len(group.items)} pictures", style="bold")
            options.append(Option(heading, disabled=True))
            for place, item in enumerate(group.items, 1):
                self._items[len(options)] = (item, place)
                options.append(Option(item_row(item)))
        listing = self.query_one("#dups-list", OptionList)
        listing.clear_options()
        listing.add_options(options)
        listing.display = True
        listing.highlighted = 1
        listing.focus()
        self._preview()

    @property
    def selected(self) -> DuplicateItem | None:
        index = self.query_one("#dups-list", OptionList).highlighted
        found = self._items.get(index) if index is not None else None
        return found[0] if found else None

    @on(OptionList.OptionHighlighted, "#dups-list")
    def _highlighted(self) -> None:
        self._preview()

    def _preview(self) -> None:
        pane = self.query_one(PreviewPane)
        index = self.query_one("#dups-list", OptionList).highlighted
        found = self._items.get(index) if index is not None else None
        if found is None:
            pane.show(None)
            return
        item, place = found
        result = as_result(item, place)
        cache = self.app.thumbnails
        pane.show(result, cache.peek(item.path))
        msg.load_thumbnail(self, cache, item.path, "dups-thumb")

    def on_thumbnail_ready(self, message: msg.ThumbnailReady) -> None:
        if not self.app.is_running:
            return
        pane = self.query_one(PreviewPane)
        result = pane.result
        if result is not None and result.path == message.thumbnail.path:
            pane.show(result, message.thumbnail)


def _escape(text: str) -> str:
    from textual.markup import escape

    return escape(display_text(text))
