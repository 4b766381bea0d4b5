"""The gallery: search results as a grid of thumbnails, as many columns as fit.

Only the cells on screen exist as widgets. The grid keeps a pool of
``columns × rows`` cells sized to the space it has and binds them to the results
from ``top_row`` on; scrolling re-binds the pool instead of laying out hundreds of
picture widgets, so 200 results cost what one screenful does. A cell shows a
placeholder until its thumbnail arrives from
:class:`~clipseek.tui.gallery_thumbs.GalleryThumbnails`, which decodes off the UI
thread at the pixel size a cell needs. The pictures are drawn by the same
textual-image widget class as the preview pane, so kitty graphics, Sixel,
half-cells and Unicode all work as chosen for the app.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static

from clipseek.tui.format import ellipsize_end, human_path

if TYPE_CHECKING:
    from clipseek.search.query import SearchResult
    from clipseek.tui.gallery_thumbs import GalleryThumbnails
    from clipseek.tui.thumbnails import Thumbnail

#: Smallest cell (border, picture rows, caption) as (columns, rows); cells stretch to
#: fill the grid. The regular size is used where it gives at least REGULAR_AT cells
#: across and down; smaller spaces (80×24 leaves about 50×17) take compact cells,
#: so that a small terminal shows six pictures rather than two tall ones.
REGULAR_CELL = (20, 10)
COMPACT_CELL = (16, 8)
REGULAR_AT = (3, 2)
#: With previews off a cell is its caption and border: a grid of names.
TEXT_CELL = (20, 3)
#: Below this many columns and rows of cells the list serves better than a grid.
MIN_COLUMNS = 2
MIN_ROWS = 1


def cell_size(width: int, height: int, *, pictures: bool = True) -> tuple[int, int]:
    """The smallest cell (columns, rows) to lay ``width`` × ``height`` out with."""
    if not pictures:
        return TEXT_CELL
    columns, rows = width // REGULAR_CELL[0], height // REGULAR_CELL[1]
    if columns >= REGULAR_AT[0] and rows >= REGULAR_AT[1]:
        return REGULAR_CELL
    return COMPACT_CELL


def grid_shape(width: int, height: int, *, pictures: bool = True) -> tuple[int, int]:
    """(columns, rows) of cells that fit in ``width`` × ``height`` terminal cells."""
    cell_w, cell_h = cell_size(width, height, pictures=pictures)
    return max(0, width // cell_w), max(0, height // cell_h)


def fits(width: int, height: int, *, pictures: bool = True) -> bool:
    """Whether a grid is worth showing in this much space."""
    columns, rows = grid_shape(width, height, pictures=pictures)
    return columns >= MIN_COLUMNS and rows >= MIN_ROWS


def picture_pixels(cell: tuple[int, int] = REGULAR_CELL) -> tuple[int, int]:
    """The pixel box a cell's picture is decoded to: the largest picture a cell of at
    least ``cell`` gets before another column or row fits, times the terminal's cell
    size, so a Sixel or kitty picture is sharp and a half-cell one is cheap. One box
    per cell size: a re-flow within it does not make the thumbnails again."""
    from textual_image._terminal import get_cell_size

    size = get_cell_size()
    columns, rows = 2 * cell[0] - 3, 2 * cell[1] - 4
    return columns * size.width, rows * size.height


class GalleryCell(Container):
    """One result: picture (or a placeholder / reason) over ``rank score name``."""

    def __init__(self, slot: int, image_class: type[Any] | None) -> None:
        super().__init__(classes="gallery-cell")
        self.slot = slot
        self._image_class = image_class
        self.result: SearchResult | None = None
        self.thumbnail: Thumbnail | None = None
        self.best = 0.0
        #: Composed and still in the grid's pool. A cell is bound only while this holds:
        #: a cell dropped by a shrinking reflow loses its children before it is gone.
        self.ready = False

    def compose(self) -> ComposeResult:
        with Container(classes="gallery-picture"):
            if self._image_class is not None:
                yield self._image_class(classes="gallery-image")
            yield Static("", classes="gallery-placeholder")
        yield Static("", classes="gallery-caption")

    def on_mount(self) -> None:
        # A cell added by a reflow is bound once it is composed (see GalleryGrid._bind).
        self.ready = True
        grid = self.parent
        if isinstance(grid, GalleryGrid):
            grid.call_after_refresh(grid._bind)

    def bind(self, result: SearchResult | None, thumb: Thumbnail | None, selected: bool) -> None:
        """Show ``result`` (None: an empty slot past the last result)."""
        if not self.ready:
            return
        self.set_class(selected, "-selected")
        changed = result is not self.result
        self.result = result
        self.display = True
        self.set_class(result is None, "-empty")
        if result is None:
            self.thumbnail = None
            self._picture(None, "")
            self.query_one(".gallery-caption", Static).update("", layout=False)
            return
        if changed or thumb is not self.thumbnail:
            self.show_thumbnail(thumb)
        if changed:
            self._caption()

    def on_resize(self) -> None:
        if self.ready and self.result is not None:
            self._caption()

    def _caption(self) -> None:
        result = self.result
        if result is None:
            return
        width = max(0, self.content_size.width or (COMPACT_CELL[0] - 2))
        head = f"{result.rank} "
        score = f"{result.score:.3f}"
        name = human_path(os.path.basename(result.path) or result.path)
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(head, "dim")
        text.append(score, "bold")
        room = width - len(head) - len(score) - 1
        if room >= 4:
            text.append(" " + ellipsize_end(name, room))
        # One row, as wide as the cell: no layout is needed for a new caption.
        self.query_one(".gallery-caption", Static).update(text, layout=False)

    def show_thumbnail(self, thumb: Thumbnail | None) -> None:
        if not self.ready:
            return
        self.thumbnail = thumb
        if self._image_class is None:  # previews off: rank, score and name only
            self._picture(None, "")
        elif thumb is None:
            self._picture(None, "…")
        elif thumb.missing:
            self._picture(None, "missing", warning=True)
        elif thumb.image is None:
            self._picture(None, "cannot show", warning=True)
        else:
            self._picture(thumb.image, None)

    def _picture(self, image: Any, message: str | None, *, warning: bool = False) -> None:
        placeholder = self.query_one(".gallery-placeholder", Static)
        placeholder.display = message is not None
        placeholder.set_class(warning, "-warning")
        if str(placeholder.content) != (message or ""):
            placeholder.update(message or "", layout=False)  # one row, the cell's width
        if self._image_class is None:
            return
        widget = self.query_one(".gallery-image")
        if getattr(widget, "image", None) is not image:
            widget.image = image
        widget.display = image is not None

    @property
    def showing_image(self) -> bool:
        if not self.ready or self._image_class is None or self.result is None:
            return False
        widget = self.query_one(".gallery-image")
        return bool(widget.display and getattr(widget, "image", None) is not None)

    def on_click(self, event: events.Click) -> None:
        event.stop()
        if self.result is not None:
            grid = self.parent
            if isinstance(grid, GalleryGrid):
                grid.clicked(self.slot, double=event.chain >= 2)


class GalleryGrid(Widget, can_focus=True):
    """Results as thumbnails; the selected one is highlighted, Enter opens it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "move(0, -1)", show=False),
        Binding("right", "move(0, 1)", show=False),
        Binding("up", "move(-1, 0)", show=False),
        Binding("down", "move(1, 0)", show=False),
        Binding("pageup", "page(-1)", show=False),
        Binding("pagedown", "page(1)", show=False),
        Binding("home", "jump(0)", show=False),
        Binding("end", "jump(-1)", show=False),
        Binding("enter", "open", "Open", show=False),
    ]

    class _Selection(Message):
        """A message about one result of this grid, by its index."""

        def __init__(self, grid: GalleryGrid, index: int) -> None:
            super().__init__()
            self.grid = grid
            self.index = index

        @property
        def control(self) -> GalleryGrid:
            return self.grid

    class Highlighted(_Selection):
        """The selection moved (keys or mouse)."""

    class Opened(_Selection):
        """Enter or a double click on the selected result."""

    class ThumbnailMade(Message):
        """A thumbnail arrived from the decoder pool (posted from its thread)."""

        def __init__(self, thumbnail: Thumbnail, size: tuple[int, int]) -> None:
            super().__init__()
            self.thumbnail = thumbnail
            self.size = size

    def __init__(
        self,
        thumbnails: GalleryThumbnails,
        image_class: type[Any] | None,
        *,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.thumbnails = thumbnails
        self._image_class = image_class
        self.results: list[SearchResult] = []
        self.index = 0
        self.top_row = 0
        self.columns = 0
        self.rows = 0
        self.pixels: tuple[int, int] = (0, 0)
        self._best = 0.0
        #: The pool of cells, in slot order; a cell leaves it as soon as a reflow drops
        #: it, before Textual has finished removing it.
        self._pool: list[GalleryCell] = []

    # -- data

    def show_results(self, results: Sequence[SearchResult], index: int = 0) -> None:
        self.results = list(results)
        self._best = max((r.score for r in self.results), default=0.0)
        self.index = max(0, min(index, len(self.results) - 1))
        self.top_row = 0
        self._scroll_to_selection()
        self._bind()

    def clear(self) -> None:
        self.results = []
        self.thumbnails.cancel()
        self._bind()

    @property
    def selected(self) -> SearchResult | None:
        if not 0 <= self.index < len(self.results):
            return None
        return self.results[self.index]

    @property
    def cells(self) -> list[GalleryCell]:
        return list(self._pool)

    @property
    def visible_range(self) -> range:
        """Indices of the results on screen now."""
        first = self.top_row * max(1, self.columns)
        return range(first, min(len(self.results), first + self.columns * self.rows))

    # -- layout

    def on_mount(self) -> None:
        self.pixels = picture_pixels() if self._image_class is not None else (0, 0)
        self.set_class(self._image_class is None, "-names")

    def on_unmount(self) -> None:
        self.thumbnails.cancel()

    def on_resize(self, event: events.Resize) -> None:
        self.reflow()

    def reflow(self) -> None:
        """Fit the pool of cells to the space the grid has now."""
        width, height = self.content_size
        pictures = self._image_class is not None
        columns, rows = grid_shape(width, height, pictures=pictures)
        columns, rows = max(1, columns), max(1, rows)
        pixels = picture_pixels(cell_size(width, height)) if pictures else (0, 0)
        if (columns, rows, pixels) == (self.columns, self.rows, self.pixels):
            return
        self.columns, self.rows, self.pixels = columns, rows, pixels
        self.styles.grid_size_columns = columns
        self.styles.grid_size_rows = rows
        pool = self._pool
        want = columns * rows
        if len(pool) > want:
            dropped = pool[want:]
            del pool[want:]
            for cell in dropped:
                cell.ready = False
            self.remove_children(dropped)
        elif len(pool) < want:
            added = [GalleryCell(i, self._image_class) for i in range(len(pool), want)]
            pool.extend(added)
            self.mount_all(added)
        self._scroll_to_selection()
        self.call_after_refresh(self._bind)
        if self.results:  # the position shown beside the grid changed
            self.post_message(self.Highlighted(self, self.index))

    def _bind(self) -> None:
        """Bind the cells to the results from ``top_row`` on, and ask for their pictures."""
        if not self.is_mounted:
            return
        first = self.top_row * max(1, self.columns)
        for cell in self._pool:
            if not cell.ready:  # not composed yet (a reflow just added it): it asks
                continue  # for this again from its on_mount
            i = first + cell.slot
            result = self.results[i] if i < len(self.results) else None
            thumb = self._thumb(result)
            cell.bind(result, thumb, selected=i == self.index)
        self._request()

    def _thumb(self, result: SearchResult | None) -> Thumbnail | None:
        if result is None:
            return None
        return self.thumbnails.peek(result.path, self.pixels)

    def _request(self) -> None:
        """Ask for what is on screen, then a screenful on either side (for scrolling)."""
        if not self.results or self._image_class is None:
            self.thumbnails.cancel()
            return
        visible = self.visible_range
        page = self.columns * self.rows
        after = range(visible.stop, min(len(self.results), visible.stop + page))
        before = range(max(0, visible.start - page), visible.start)
        order = [*visible, *after, *reversed(before)]
        paths = [self.results[i].path for i in order]
        self.thumbnails.want(paths, self.pixels, self._made)

    def _made(self, thumbnail: Thumbnail, size: tuple[int, int]) -> None:
        """Called on a decoder thread; the grid takes it in on its own."""
        self.post_message(self.ThumbnailMade(thumbnail, size))

    def on_gallery_grid_thumbnail_made(self, message: GalleryGrid.ThumbnailMade) -> None:
        if message.size != self.pixels:
            return
        for cell in self.cells:
            if (
                cell.result is not None
                and cell.result.path == message.thumbnail.path
                and cell.thumbnail is not message.thumbnail
            ):
                cell.show_thumbnail(message.thumbnail)

    @property
    def complete(self) -> bool:
        """Every result on screen is in its cell with its thumbnail (or a reason it has
        none): what "a full screen" means to the tests and the benchmark."""
        if not self.results:
            return True
        cells = self.cells
        if not cells or self.columns < 1:
            return False
        first = self.top_row * self.columns
        for cell in cells:
            i = first + cell.slot
            if i >= len(self.results):
                continue
            if cell.result is not self.results[i]:
                return False
            if self._image_class is not None and cell.thumbnail is None:
                return False
        return True

    # -- moving

    def select(self, index: int) -> None:
        if not self.results:
            return
        index = max(0, min(index, len(self.results) - 1))
        if index == self.index:
            return
        self.index = index
        if self._scroll_to_selection():
            self._bind()
        else:
            first = self.top_row * self.columns
            for cell in self.cells:
                cell.set_class(first + cell.slot == index, "-selected")
        self.post_message(self.Highlighted(self, index))

    def _scroll_to_selection(self) -> bool:
        """Bring the selected row on screen; True if the view moved."""
        if self.columns < 1 or self.rows < 1:
            return False
        row = self.index // self.columns
        top = self.top_row
        if row < top:
            top = row
        elif row >= top + self.rows:
            top = row - self.rows + 1
        top = max(0, min(top, self._last_top()))
        moved = top != self.top_row
        self.top_row = top
        return moved

    def _last_top(self) -> int:
        if self.columns < 1:
            return 0
        total_rows = -(-len(self.results) // self.columns)
        return max(0, total_rows - self.rows)

    def scroll_rows(self, delta: int) -> None:
        """Move the view (not the selection) by ``delta`` rows: the mouse wheel."""
        top = max(0, min(self.top_row + delta, self._last_top()))
        if top != self.top_row:
            self.top_row = top
            self._bind()
            self.post_message(self.Highlighted(self, self.index))

    def action_move(self, rows: int, columns: int) -> None:
        if not self.results:
            return
        index = self.index + rows * self.columns + columns
        if rows and not 0 <= index < len(self.results):
            # Down from the last full row lands on the last result, as a file manager does.
            index = len(self.results) - 1 if rows > 0 else self.index % self.columns
        self.select(index)

    def action_page(self, pages: int) -> None:
        self.action_move(pages * self.rows, 0)

    def action_jump(self, index: int) -> None:
        self.select(index if index >= 0 else len(self.results) - 1)

    def action_open(self) -> None:
        if self.selected is not None:
            self.post_message(self.Opened(self, self.index))

    def clicked(self, slot: int, *, double: bool) -> None:
        self.focus()
        self.select(self.top_row * self.columns + slot)
        if double:
            self.action_open()

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        event.stop()
        self.scroll_rows(1)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        event.stop()
        self.scroll_rows(-1)

    def position(self) -> str:
        """``rows 4–6 of 17`` when the results do not all fit, else ""."""
        if not self.results or self.columns < 1:
            return ""
        total_rows = -(-len(self.results) // self.columns)
        if total_rows <= self.rows:
            return ""
        last = min(total_rows, self.top_row + self.rows)
        return f"rows {self.top_row + 1}–{last} of {total_rows}"
