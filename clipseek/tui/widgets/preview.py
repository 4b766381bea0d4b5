"""The preview pane: the selected image, drawn inline, over its details.

The image is drawn by a textual-image widget sized to the pane with its aspect
ratio kept; the pixels come from a thumbnail made on a worker thread (see
:mod:`clipseek.tui.thumbnails`). When there is nothing to draw (no selection,
a file gone from disk, previews turned off) the pane says so in words.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Container, Vertical
from textual.widgets import Static

from clipseek.photos import pathtext
from clipseek.tui.format import human_date, human_path, human_size

if TYPE_CHECKING:
    from clipseek.models.calibration import Calibration
    from clipseek.search.query import SearchResult
    from clipseek.tui.thumbnails import Thumbnail


def _taken(result: SearchResult, mtime: int | None) -> Text:
    """When the picture was taken, saying whether the camera (EXIF) or the file's own
    time told us: a copied file's time is when it was copied, not when it was shot."""
    text = Text(overflow="ellipsis", no_wrap=True)
    if result.taken and result.taken_source in ("exif", ""):
        # No source given (a duplicates listing): the date as recorded, unqualified.
        text.append(result.taken.replace("T", " ")[:16])
        if result.taken_source:
            text.append(" taken", style="dim")
    else:
        text.append(human_date(mtime))
        text.append(" file time", style="dim")
    return text


class PreviewPane(Vertical):
    """Shows one search result: picture, name, path, size, dimensions, date and score."""

    def __init__(self, image_class: type[Any] | None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._image_class = image_class
        self.result: SearchResult | None = None
        self.thumbnail: Thumbnail | None = None
        #: False in the gallery view, where the grid shows the pictures: details only.
        self.pictures = True
        #: The model family's scale for a text query's results: the score row then says
        #: how good the match is in a word. None (a search by picture, duplicates): no word.
        self.calibration: Calibration | None = None

    def compose(self) -> ComposeResult:
        with Container(id="preview-image-box"):
            if self._image_class is not None:
                yield self._image_class(id="preview-image")
            with Container(id="preview-message-box"):
                yield Static("", id="preview-message")
        yield Static("", id="preview-details")

    def on_mount(self) -> None:
        self.border_title = "Preview"
        self.show(None)

    # -- state

    def show(self, result: SearchResult | None, thumbnail: Thumbnail | None = None) -> None:
        """Show ``result``; ``thumbnail`` is None while it is still being made."""
        self.result = result
        self.thumbnail = thumbnail
        image_box = self.query_one("#preview-image-box")
        details = self.query_one("#preview-details", Static)
        if result is None:
            self._set_image(None)
            self._message("Nothing selected.")
            details.display = False
            image_box.display = True
            return
        details.display = True
        details.update(self._details(result, thumbnail))
        if self._image_class is None or not self.pictures:
            image_box.display = False
            return
        image_box.display = True
        if thumbnail is None:
            self._set_image(None)
            self._message("Loading preview…")
        elif thumbnail.missing:
            self._set_image(None)
            self._message(
                "This file is no longer on disk.\nIndex its folder again to tidy the index.",
                "warning",
            )
        elif thumbnail.image is None:
            self._set_image(None)
            self._message(f"Cannot show this image: {thumbnail.problem}.", "warning")
        else:
            self._message(None)
            self._set_image(thumbnail.image)

    @property
    def showing_image(self) -> bool:
        """True when an image (not a message) fills the picture area."""
        if self._image_class is None:
            return False
        widget = self.query_one("#preview-image")
        return bool(widget.display and getattr(widget, "image", None) is not None)

    def _set_image(self, image: Any) -> None:
        if self._image_class is None:
            return
        widget = self.query_one("#preview-image")
        if getattr(widget, "image", None) is not image:
            widget.image = image
        widget.display = image is not None

    def _message(self, text: str | None, kind: str = "") -> None:
        box = self.query_one("#preview-message-box")
        message = self.query_one("#preview-message", Static)
        box.display = text is not None
        message.set_class(kind == "warning", "-warning")
        message.update(text or "")

    def _details(self, result: SearchResult, thumbnail: Thumbnail | None) -> Group:
        size = result.size
        mtime = result.mtime_ns
        width, height = result.width, result.height
        if thumbnail is not None and not thumbnail.missing:
            size = thumbnail.size if thumbnail.size is not None else size
            mtime = thumbnail.mtime_ns if thumbnail.mtime_ns is not None else mtime
            if thumbnail.width:
                width, height = thumbnail.width, thumbnail.height
        missing = thumbnail is not None and thumbnail.missing
        grid = Table.grid(padding=(0, 1), expand=True)
        grid.add_column(style="dim", no_wrap=True, min_width=5)
        grid.add_column(ratio=1, overflow="fold")
        name = os.path.basename(result.path) or result.path
        title = Text(human_path(name), style="bold", overflow="ellipsis", no_wrap=True)
        grid.add_row("Path", Text(human_path(result.path), overflow="fold"))
        dims = f"{width}×{height}" if width and height else "—"
        shown_size = "missing" if missing else human_size(size)
        grid.add_row("Size", Text(f"{shown_size} · {dims}", overflow="ellipsis", no_wrap=True))
        grid.add_row("Date", _taken(result, mtime))
        if result.camera:
            camera = pathtext.display_text(result.camera)  # EXIF text is the file's, not ours
            grid.add_row("Camera", Text(camera, overflow="ellipsis", no_wrap=True))
        score = Text.assemble((f"{result.score:.3f}", "bold"), overflow="ellipsis", no_wrap=True)
        if self.calibration is not None:
            verdict = self.calibration.verdict(result.score)
            score.append(f" {verdict} match", "bold" if verdict in ("strong", "good") else "")
        score.append(" · ", "dim")
        score.append(f"rank {result.rank}", "dim")
        grid.add_row("Score", score)
        return Group(title, grid)
