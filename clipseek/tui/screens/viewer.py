"""The full-screen preview: one result at a time, as large as the terminal allows.

It is how a picture is seen where the preview pane is not: below 70 columns the
results take the whole width, and a machine without ``xdg-open`` (a server over
SSH, a container) has no viewer to hand the file to. Left and right step through
the results; leaving selects, on the search screen, the one shown last.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen

from clipseek.tui import messages as msg
from clipseek.tui.widgets.footer import FittingFooter
from clipseek.tui.widgets.preview import PreviewPane

if TYPE_CHECKING:
    from clipseek.models.calibration import Calibration
    from clipseek.search.query import SearchResult
    from clipseek.tui.app import ClipseekApp


class ViewerScreen(Screen[int]):
    """One search result full screen; dismissed with the index of the one shown last."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,v,q", "back", "Back", id="viewer.back"),
        Binding("right,down,n,space", "step(1)", "Next", id="viewer.next"),
        Binding("left,up,p", "step(-1)", "Previous", id="viewer.previous"),
        Binding("c", "copy", "Copy path", id="viewer.copy"),
    ]

    app: ClipseekApp  # type: ignore[assignment]

    def __init__(
        self,
        results: Sequence[SearchResult],
        index: int,
        calibration: Calibration | None = None,
    ) -> None:
        super().__init__(id="viewer")
        self.results = list(results)
        self.index = max(0, min(index, len(self.results) - 1))
        #: The search's scale (a text query), so the score reads as on the search screen.
        self.calibration = calibration

    def compose(self) -> ComposeResult:
        pane = PreviewPane(self.app.image_class, id="viewer-pane")
        pane.calibration = self.calibration
        yield pane
        yield FittingFooter(compact=True)

    def on_mount(self) -> None:
        self._show()

    @property
    def result(self) -> SearchResult | None:
        return self.results[self.index] if self.results else None

    @property
    def pane(self) -> PreviewPane:
        return self.query_one(PreviewPane)

    def _show(self) -> None:
        result = self.result
        pane = self.pane
        if result is None:
            pane.show(None)
            return
        pane.border_title = f"{result.rank} of {len(self.results)}"
        cache = self.app.thumbnails
        pane.show(result, cache.peek(result.path))
        msg.load_thumbnail(self, cache, result.path, "viewer-thumb")

    def on_thumbnail_ready(self, message: msg.ThumbnailReady) -> None:
        result = self.result
        pane = self.pane
        if (
            result is not None
            and result.path == message.thumbnail.path
            and pane.thumbnail is not message.thumbnail
        ):
            pane.show(result, message.thumbnail)

    def action_step(self, delta: int) -> None:
        index = max(0, min(self.index + delta, len(self.results) - 1))
        if index != self.index:
            self.index = index
            self._show()

    def action_copy(self) -> None:
        result = self.result
        if result is not None:
            self.app.search_screen.copy_path(result.path)

    def action_back(self) -> None:
        self.dismiss(self.index)
