"""The ranked results list: one two-line row per hit, best first.

Each row is drawn for the width it gets, so a long file name ends in an
ellipsis and a deep folder is cut from the left (``…/holiday/day-2``), where a
path says least; nothing wraps and nothing spills into the preview pane.

The bar beside the raw score says how good the match is: for a text query, on the
model family's own scale (:mod:`clipseek.models.calibration`: half full where the
text fits the picture, whether the model is CLIP or SigLIP, whose cosines differ);
for a search by example picture, which has no such scale, relative to the best hit.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from clipseek.tui.format import ellipsize_end, ellipsize_middle, ellipsize_start, human_path

if TYPE_CHECKING:
    from clipseek.models.calibration import Calibration
    from clipseek.search.query import SearchResult

BAR_CELLS = 8
#: Cells a name needs before the score bar is drawn beside it.
NAME_ROOM = 22
_EIGHTHS = " ▏▎▍▌▋▊▉█"
#: The bar's empty cells, drawn muted.
TRACK = "·"


def match_fraction(score: float, best: float, calibration: Calibration | None) -> float:
    """How full a result's bar is: its match on the family's scale when the query has
    one (``calibration``), else its score relative to the ``best`` one's."""
    if calibration is not None:
        return calibration.match(score)
    return 0.0 if best <= 0 else max(0.0, min(1.0, score / best))


def score_bar(fraction: float, cells: int = BAR_CELLS) -> tuple[str, str]:
    """A bar of ``cells`` cells filled to ``fraction`` (0 to 1), in eighths: the filled
    part and the empty track after it, which shows how far the scale goes."""
    eighths = round(max(0.0, min(1.0, fraction)) * cells * 8)
    full, part = divmod(eighths, 8)
    bar = "█" * full + (_EIGHTHS[part] if part else "")
    return bar, TRACK * (cells - len(bar))


class ResultRow:
    """A Rich renderable: ``rank score bar name`` over the folder, fitted to the width."""

    def __init__(
        self,
        result: SearchResult,
        fraction: float,
        accent: str,
        muted: str,
        score_width: int = 5,
    ) -> None:
        self.result = result
        #: How full the bar is (see :func:`match_fraction`).
        self.fraction = fraction
        self.accent = accent
        self.muted = muted
        #: Every row's score takes this many cells (a minus sign included), so that a
        #: negative score does not push its name out of the column.
        self.score_width = score_width

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        result = self.result
        name = os.path.basename(result.path) or result.path
        folder = human_path(os.path.dirname(result.path))
        rank = f"{result.rank:>3} "
        score = f"{result.score:>{self.score_width}.3f} "
        filled, track = score_bar(self.fraction)
        bar = filled + track + " "
        head = len(rank) + len(score) + len(bar)
        muted = Style.parse(self.muted)
        if width < len(rank) + len(score) + 4:
            # Too narrow for a bar: rank and name only.
            yield Segment(rank, muted)
            yield Segment(ellipsize_end(human_path(name), max(0, width - len(rank))))
            yield Segment.line()
            yield Segment(ellipsize_start(folder, width), muted)
            yield Segment.line()
            return
        if width < head + NAME_ROOM:
            # The name is what tells rows apart: it gets the room before the bar does.
            bar, head = "", len(rank) + len(score)
        yield Segment(rank, muted)
        yield Segment(score, Style(bold=True))
        if bar:
            yield Segment(filled, Style.parse(self.accent))
            yield Segment(track + " ", muted)
        yield Segment(ellipsize_middle(human_path(name), width - head), Style(bold=True))
        yield Segment.line()
        yield Segment(" " * min(len(rank), width))
        yield Segment(ellipsize_start(folder, max(0, width - len(rank))), muted)
        yield Segment.line()


def score_width(results: Sequence[SearchResult]) -> int:
    """Cells the widest score of ``results`` takes, as the rows print it."""
    return max((len(f"{r.score:.3f}") for r in results), default=5)


def theme_colours(variables: dict[str, str]) -> tuple[str, str]:
    """The theme's accent and muted text colours as opaque hex, which Rich can draw."""
    from textual.color import Color

    def opaque(name: str, fallback: str) -> str:
        try:
            colour = Color.parse(variables.get(name, fallback))
            background = Color.parse(variables.get("background", "#000000"))
        except Exception:
            return fallback
        return (background + colour).hex6

    return opaque("text-primary", "#57A5E2"), opaque("foreground-muted", "#8A8A8A")


class ResultsList(OptionList):
    """Search results; highlighting a row is what the preview follows."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.results: list[SearchResult] = []
        #: The model family's scale for the results shown; None: bars relative to the best.
        self.calibration: Calibration | None = None

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.restyle())

    def show_results(
        self, results: Sequence[SearchResult], calibration: Calibration | None = None
    ) -> None:
        """Show ``results``; with ``calibration`` (a text query) the bars are on the model
        family's match scale, without it relative to the best result."""
        self.results = list(results)
        self.calibration = calibration
        self._rebuild(highlight=0 if self.results else None)

    def _rebuild(self, highlight: int | None) -> None:
        accent, muted = theme_colours(self.app.theme_variables)
        best = max((r.score for r in self.results), default=0.0)
        width = score_width(self.results)
        self.clear_options()
        self.add_options(
            Option(
                ResultRow(r, match_fraction(r.score, best, self.calibration), accent, muted, width),
                id=str(i),
            )
            for i, r in enumerate(self.results)
        )
        self.highlighted = highlight

    def restyle(self) -> None:
        """Draw the rows again in the current theme's colours."""
        if self.results:
            self._rebuild(self.highlighted)

    async def _on_click(self, event: events.Click) -> None:
        """A click selects (and previews) a row; a double click opens it, as in a file
        manager. OptionList's own handler would open on every click."""
        event.prevent_default()
        clicked = event.style.meta.get("option")
        if clicked is None:
            return
        self.highlighted = clicked
        if event.chain >= 2:
            self.action_select()

    @property
    def selected(self) -> SearchResult | None:
        index = self.highlighted
        if index is None or not 0 <= index < len(self.results):
            return None
        return self.results[index]
