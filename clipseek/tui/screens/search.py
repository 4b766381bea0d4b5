"""The search screen: query box, result count, ranked results and the preview.

A query is parsed on the UI thread (cheap, and a typo is reported at once), then
embedded and ranked by a worker. A query submitted while the model is still
loading is kept and run as soon as the model is ready. Each search carries a
token, so that a slow answer to an old query never replaces a newer one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Center, Container, Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.worker import get_current_worker

from clipseek.config import remember_setting
from clipseek.errors import ClipseekError, IndexMissingError, ModelMismatchError, QueryError
from clipseek.photos.pathtext import display_text, shell_path
from clipseek.tui import messages as msg
from clipseek.tui.format import human_path, query_for_path
from clipseek.tui.gallery_thumbs import GalleryThumbnails, default_cache_folder
from clipseek.tui.screens.viewer import ViewerScreen
from clipseek.tui.widgets import gallery
from clipseek.tui.widgets.footer import FittingFooter
from clipseek.tui.widgets.gallery import GalleryGrid
from clipseek.tui.widgets.preview import PreviewPane
from clipseek.tui.widgets.results import ResultsList
from clipseek.tui.widgets.topk import TopKInput

if TYPE_CHECKING:
    from clipseek.models.calibration import Calibration
    from clipseek.search.filters import Filters
    from clipseek.search.query import Query, SearchResponse, SearchResult
    from clipseek.tui.app import ClipseekApp

#: Width of the details pane beside the grid; below DETAILS_ROOMY_AT columns it takes
#: less, so that 80 columns give the grid three columns of cells rather than two.
DETAILS_WIDTH = 36
DETAILS_NARROW_WIDTH = 28
DETAILS_ROOMY_AT = 100


class SearchScreen(Screen[None]):
    """Type a description, get the closest images, look at them, act on them."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_query", "Search", id="search.focus", key_display="/"),
        Binding("o", "open", "Open", id="search.open"),
        Binding("v", "view", "View", id="search.preview"),
        Binding("c", "copy", "Copy", id="search.copy"),
        Binding("s", "similar", "Similar", id="search.similar"),
        Binding("r", "reveal", "Reveal", id="search.reveal"),
        Binding(
            "plus,equals_sign", "top_k(1)", "More", id="search.more", key_display="+", show=False
        ),
        Binding("minus", "top_k(-1)", "Fewer", id="search.fewer", key_display="-", show=False),
        Binding("i", "app.index_screen", "Index", id="index"),
        Binding("g", "toggle_view", "Grid", id="search.view"),
        Binding("f", "toggle_filters", "Filter", id="search.filter", show=False),
        Binding("d", "app.duplicates", "Duplicates", id="duplicates", show=False),
        Binding("down", "focus_results", show=False),
        Binding("escape", "leave_query", show=False),
    ]

    #: No widget takes the focus by itself when this screen comes back (from indexing,
    #: duplicates, help): Textual would give it to the query box, and the next key
    #: (d, g, f...) would be typed there. See on_screen_resume.
    AUTO_FOCUS = ""

    #: Actions that need a selected result; hidden from the footer while there is none.
    RESULT_ACTIONS: ClassVar[frozenset[str]] = frozenset(
        {"open", "view", "copy", "similar", "reveal"}
    )

    app: ClipseekApp  # type: ignore[assignment]

    #: Below 70 columns the preview pane would be a few cells wide: the results take the
    #: whole width instead (the preview is one Enter or `o` away).
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (70, "-wide")]
    #: Below 20 rows the status line gives its row to the results.
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-short"), (20, "-tall")]

    def __init__(self) -> None:
        super().__init__()
        self.response: SearchResponse | None = None
        #: The model family's scale for the response shown (a text query), else None.
        self.calibration: Calibration | None = None
        self.query_text = ""
        self._pending: tuple[Query, list[str]] | None = None
        self._last: tuple[Query, list[str]] | None = None
        self._token = 0
        #: The store's snapshot count when the search shown (or in flight) began; -1 before
        #: any. A newer snapshot means the results on screen may be older than the index.
        self.generation = -1
        self._focus_results_on_answer = False
        self._offering_index = False
        self._notice: tuple[str, bool] | None = None
        #: "list" or "grid", as chosen (the grid falls back to the list when too small).
        self.view = "list"
        self._gallery_thumbs: GalleryThumbnails | None = None
        #: The filter line as last applied (None: no filter).
        self.filters: Filters | None = None

    # -- layout

    def compose(self) -> ComposeResult:
        with Horizontal(id="query-bar"):
            yield Input(
                placeholder="Describe a picture, e.g. a dog playing on the beach",
                id="query",
            )
            yield Label("Top", id="top-k-label")
            yield TopKInput(id="top-k")
        # Hidden until `f` (or a filter is set): at 80×24 its three rows are the results'.
        with Horizontal(id="filter-bar"):
            yield Input(
                placeholder="Filter, e.g. after:2024-06 before:2024-09 camera:pixel size:1000x800",
                id="filters",
            )
        main = Horizontal(id="main")
        # With no pictures to draw, the details need a column, not 60% of the width.
        main.set_class(self.app.preview_mode == "none", "-no-preview")
        with main:
            with Vertical(id="results-pane"):
                yield ResultsList(id="results")
                yield GalleryGrid(self.gallery_thumbnails, self.app.image_class, id="gallery")
                with Container(id="results-empty"):
                    yield Static("", id="results-message")
                    with Center(id="empty-index-row"):
                        yield Button("Index a folder", id="empty-index", variant="primary")
            yield PreviewPane(self.app.image_class, id="preview")
        yield Static("", id="status")
        yield FittingFooter(compact=True)

    def on_mount(self) -> None:
        self.query_one("#results-pane").border_title = "Results"
        self.view = self.app.settings.view
        self.query_one(GalleryGrid).display = False
        self.query_one("#filter-bar").display = False
        self._apply_view()
        self.query_one("#query", Input).focus()
        self.refresh_status()
        self._show_state()
        # Only once this screen is on display does the heavy work (engine, chromadb,
        # torch, the model) begin, on a worker thread.
        self.call_after_refresh(self.app._start_boot)

    # -- status line and empty states

    def refresh_status(self) -> None:
        """Redraw the status line from the app's state (model, index, indexing run)."""
        if not self.is_mounted:
            return
        app = self.app
        parts: list[str] = []
        model = _escape(app.model_name)
        index_key = _escape(app.key_for("index"))
        if app.model_state == "ready":
            parts.append(f"[b]{model}[/b] [dim]{app.model_detail}[/dim]")
        elif app.model_state == "failed":
            parts.append(f"[b]{model}[/b] [$error]not loaded[/]")
        else:
            parts.append(f"[b]{model}[/b] [dim]loading…[/dim]")
        if app.index_count is None:
            parts.append("[dim]index …[/dim]" if app.index_problem is None else "[$error]index?[/]")
        elif app.index_count < 0:
            parts.append("[dim]no index yet[/dim]")
        else:
            parts.append(f"{app.index_count:,} images")
        job = app.index_job
        if job is not None and job.running:
            if job.cancelling:
                parts.append("[$warning]stopping indexing…[/]")
            elif job.to_embed:
                percent = 100 * job.done / job.to_embed
                parts.append(f"[$accent]indexing {percent:.0f}%[/] [dim]({index_key})[/]")
            else:
                parts.append(f"[$accent]indexing…[/] [dim]({index_key})[/]")
        self.query_one("#status", Static).update(" [dim]│[/dim] ".join(parts))
        if self.response is None:
            self._show_state()

    def _show_state(self, text: str | None = None, *, offer_index: bool = False) -> None:
        """Show a message instead of results.

        A message given here (an error, "no results") stays until the next search;
        without one, the message the app's state calls for (no index, model loading...)
        is shown, and redrawn whenever that state changes.
        """
        if text is not None:
            self._notice = (text, offer_index)
        elif self._notice is not None:
            text, offer_index = self._notice
        else:
            text, offer_index = self._idle_message()
        results = self.query_one("#results", ResultsList)
        results.display = False
        self.query_one(GalleryGrid).display = False
        empty = self.query_one("#results-empty")
        empty.display = True
        self.query_one("#results-message", Static).update(text)
        button = self.query_one("#empty-index", Button)
        self.query_one("#empty-index-row").display = offer_index
        query = self.query_one("#query", Input)
        if offer_index != self._offering_index:
            self._offering_index = offer_index
            if offer_index and self.focused is None:
                # Nothing to search yet: Enter (or i) on the button is the next step. Never
                # taken from the query box: what is being typed there stays there.
                button.focus()
            elif not offer_index and self.focused is button:
                query.focus()
        self.query_one(PreviewPane).show(None)
        self.query_one("#results-pane").border_subtitle = ""
        self.refresh_bindings()

    def _idle_message(self) -> tuple[str, bool]:
        app = self.app
        if self._pending is not None:
            return (
                "Loading the model…\n[dim]Your search runs as soon as it is ready.[/dim]",
                False,
            )
        if app.index_count is not None and app.index_count < 0:
            job = app.index_job
            if job is not None and job.running:
                return "Indexing has started.\n[dim]Search as soon as a batch is in.[/dim]", False
            return (
                # The query box keeps typed letters, so the key works once it is left.
                f"[b]No index yet.[/b]\nTo index a folder press [b]Esc[/b], then "
                f"[b]{_escape(app.key_for('index'))}[/b], or use the button.",
                True,
            )
        if app.index_problem is not None:
            return f"[$error]{_escape(str(app.index_problem))}[/]", False
        if app.model_state == "failed":
            return f"[$error]{_escape(app.model_detail)}[/]", False
        return (
            "Describe the picture you are looking for and press [b]Enter[/b].\n"
            "[dim]Press ? for keys and query syntax.[/dim]",
            False,
        )

    # -- running searches

    @on(Input.Submitted, "#query")
    def _submitted(self, event: Input.Submitted) -> None:
        self.search(event.value, focus_results=True)

    @on(Input.Submitted, "#top-k")
    def _top_k_submitted(self) -> None:
        self.query_one(TopKInput).commit()

    @on(TopKInput.CountChanged)
    def _top_k_changed(self) -> None:
        self._search_again()

    def _search_again(self, *, focus_results: bool = False) -> bool:
        """Run the search again (a new count, a new filter) for what the query box says
        now: text typed there since the last search is what the user sees and means.
        False when there is nothing to search for."""
        text = self.query_one("#query", Input).value
        if text.strip() and (text != self.query_text or self._last is None):
            self.search(text, focus_results=focus_results)
        elif self._last is not None:
            self._focus_results_on_answer = focus_results
            self._run(*self._last)
        else:
            return False
        return True

    @on(Input.Submitted, "#filters")
    def _filters_submitted(self) -> None:
        """Apply the filter line; the search on screen (or the one typed) runs again with it,
        and the keys go back to the results. A mistyped filter keeps the focus here, so it
        can be put right at once."""
        if not self._read_filters():
            return
        searching = self._search_again(focus_results=True)
        if self.response is not None:
            self._results_widget().focus()
        elif not searching:
            self.set_focus(None)

    def _read_filters(self) -> bool:
        """Parse the filter line into :attr:`filters`; on a mistake say so and return False."""
        # Lazy: not needed before the first paint.
        from clipseek.search.filters import parse_filter_line

        text = self.query_one("#filters", Input).value
        try:
            found = parse_filter_line(text)
        except QueryError as exc:
            self._token += 1  # an answer in flight was asked without this filter
            self.response = None
            self._show_state(f"[$warning]{_escape(str(exc))}[/]")
            return False
        self.filters = None if found.empty else found
        return True

    def action_toggle_filters(self) -> None:
        """Show the filter line and go to it; from it, hide it again unless it holds a filter."""
        line = self.query_one("#filters", Input)
        bar = self.query_one("#filter-bar")
        if bar.display and self.focused is line:
            if not line.value.strip():
                bar.display = False
            self.query_one("#query", Input).focus()
            return
        bar.display = True
        line.focus()

    def search(self, text: str, *, focus_results: bool = False) -> None:
        """Parse ``text`` and run it (now, or once the model is ready)."""
        self.query_text = text
        self._token += 1  # whatever was in flight is now stale
        self._notice = None
        # Lazy: not needed before the first paint.
        from clipseek.search.query import parse_query

        if not self._read_filters():
            return
        try:
            query = parse_query([text])
        except QueryError as exc:
            self.response = None
            self._show_state(f"[$warning]{_escape(str(exc))}[/]")
            return
        self._focus_results_on_answer = focus_results
        self._run(query, [])

    def search_similar(self, path: str) -> None:
        """Image-to-image search from ``path``, leaving the image itself out."""
        # Lazy: not needed before the first paint.
        from clipseek.search.query import Query

        text = query_for_path(path)
        self.query_one("#query", Input).value = text
        self.query_text = text
        self._focus_results_on_answer = True
        self._run(Query.image(path), [path])

    def _run(self, query: Query, exclude: list[str]) -> None:
        self._last = (query, exclude)
        self._token += 1
        self._notice = None
        app = self.app
        if app.model_state == "failed":
            self.response = None
            self._show_state(f"[$error]{_escape(app.model_detail)}[/]")
            return
        if not app.model_ready or app.engine is None:
            self._pending = (query, exclude)
            self.response = None
            self._show_state()
            return
        self._pending = None
        token = self._token
        top_k = self.query_one(TopKInput).count
        engine = app.engine
        filters = self.filters
        self.generation = engine.store.reloads
        if self.response is None:
            self._show_state("[dim]Searching…[/dim]")
        self.query_one("#results-pane").border_subtitle = "searching…"

        def work() -> None:
            # Lazy: the calibration's module loads with the engine, after the first paint.
            from clipseek.models.calibration import calibrated_query

            try:
                response = engine.search(query, top_k, exclude=exclude, filters=filters)
                # A text query's scores are read on the model family's scale.
                scale = engine.calibration() if calibrated_query(query.terms) else None
            except ClipseekError as exc:
                self.post_message(msg.SearchFailed(token, exc))
                return
            if not get_current_worker().is_cancelled:
                self.post_message(msg.SearchDone(token, response, scale))

        self.run_worker(work, group="search", exclusive=True, thread=True, exit_on_error=False)

    def model_settled(self) -> None:
        """The model finished loading (or failed): run the query that was waiting."""
        pending = self._pending
        if pending is not None and self.app.model_state in ("ready", "failed"):
            self._pending = None
            self._run(*pending)
        elif self.response is None:
            self._show_state()

    def index_changed(self, elsewhere: bool = False) -> None:
        """An indexing run ended: a search that found no index may now find one. When
        another process changed the index, the results shown are searched again."""
        if self._last is not None and (self.response is None or elsewhere):
            self._run(*self._last)

    def on_search_done(self, message: msg.SearchDone) -> None:
        if not self.app.is_running:
            return
        if message.token != self._token:
            return
        response = message.response
        self.response = response
        self.calibration = message.calibration
        self.query_one(PreviewPane).calibration = message.calibration
        results = self.query_one("#results", ResultsList)
        for note in response.notes:
            self.notify(note, severity="information", timeout=8)
        if not response.results:
            self.response = None
            within = ""
            if self.filters is not None:
                within = f"\n[dim]Filter: {_escape(self.filters.describe())}[/dim]"
            self._show_state(f"No results for [b]{_escape(self.query_text)}[/b].{within}")
            return
        self._notice = None
        self.query_one("#results-empty").display = False
        results.show_results(response.results, message.calibration)
        grid = self.query_one(GalleryGrid)
        if self.grid_active:
            grid.show_results(response.results)
        else:  # hidden: it asks for no thumbnails until it is shown
            grid.clear()
        self._show_results()
        if self._focus_results_on_answer:
            self._results_widget().focus()
            self._focus_results_on_answer = False
        if not self.grid_active:
            self._prefetch([r.path for r in response.results])
        self._preview(self.selected)
        self.refresh_bindings()

    def on_search_failed(self, message: msg.SearchFailed) -> None:
        if not self.app.is_running:
            return
        if message.token != self._token:
            return
        self.response = None
        error = message.error
        if isinstance(error, IndexMissingError):
            self.app.index_count = -1
            self._notice = None  # the "no index" state says what to do
            self.refresh_status()
            self._show_state()
        elif isinstance(error, ModelMismatchError):
            self._show_state(f"[$error]{_escape(str(error))}[/]")
        elif isinstance(error, QueryError):
            self._show_state(f"[$warning]{_escape(str(error))}[/]")
        else:
            self._show_state(f"[$error]{_escape(str(error))}[/]")
            self.notify(str(error), title="Search failed", severity="error")

    # -- preview

    @on(OptionList.OptionHighlighted, "#results")
    def _highlighted(self) -> None:
        self._preview(self.query_one("#results", ResultsList).selected)

    @on(OptionList.OptionSelected, "#results")
    def _selected(self) -> None:
        self.action_open()

    def _preview(self, result: SearchResult | None) -> None:
        pane = self.query_one(PreviewPane)
        if result is None:
            pane.show(None)
            return
        if self.grid_active:
            # The grid's own thumbnail carries the details; no second, larger decode.
            grid = self.query_one(GalleryGrid)
            pane.show(result, self.gallery_thumbnails.peek(result.path, grid.pixels))
            return
        cache = self.app.thumbnails
        pane.show(result, cache.peek(result.path))
        msg.load_thumbnail(self, cache, result.path, "thumb")

    def _prefetch(self, paths: list[str]) -> None:
        """Make the thumbnails of all results in the background, in rank order."""
        cache = self.app.thumbnails

        def work() -> None:
            worker = get_current_worker()
            for path in paths:
                if worker.is_cancelled:
                    return
                if cache.peek(path) is None:
                    self.post_message(msg.ThumbnailReady(cache.load(path)))

        self.run_worker(work, group="prefetch", exclusive=True, thread=True, exit_on_error=False)

    def on_thumbnail_ready(self, message: msg.ThumbnailReady) -> None:
        if not self.app.is_running:
            return
        selected = self.selected
        pane = self.query_one(PreviewPane)
        if (
            selected is not None
            and selected.path == message.thumbnail.path
            and (pane.result is not selected or pane.thumbnail is not message.thumbnail)
        ):
            pane.show(selected, message.thumbnail)

    # -- actions

    @property
    def selected(self) -> SearchResult | None:
        if self.response is None:
            return None
        if self.grid_active:
            return self.query_one(GalleryGrid).selected
        return self.query_one("#results", ResultsList).selected

    def _need_selection(self) -> SearchResult | None:
        result = self.selected
        if result is None:
            self.notify("Search first, then pick a result.", severity="warning", timeout=4)
        return result

    def action_focus_query(self) -> None:
        query = self.query_one("#query", Input)
        query.focus()
        query.select_all()

    def action_focus_results(self) -> None:
        if self.response is not None:
            self._results_widget().focus()

    def action_leave_query(self) -> None:
        """Esc in the query box: go to the results (or nowhere), so that single-key
        commands (i, o, c, ...) are keys again rather than letters of the query."""
        if self.response is not None:
            self._results_widget().focus()
        else:
            self.set_focus(None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.RESULT_ACTIONS:
            return self.selected is not None
        return True

    def action_top_k(self, delta: int) -> None:
        self.step_top_k(delta)

    def step_top_k(self, delta: int) -> None:
        self.query_one(TopKInput).action_step(delta)

    def action_open(self) -> None:
        result = self._need_selection()
        if result is not None:
            self._launch(result.path, reveal=False)

    def action_view(self) -> None:
        """The selected result full screen, inside the app: the preview where the pane is
        hidden (below 70 columns) or there is no desktop viewer to open it with."""
        result = self._need_selection()
        if result is None or self.response is None:
            return
        paths = [r.path for r in self.response.results]
        index = paths.index(result.path) if result.path in paths else 0
        self.app.push_screen(
            ViewerScreen(self.response.results, index, self.calibration), self._viewed
        )

    def _viewed(self, index: int | None) -> None:
        """Back from the full-screen view: select the result it showed last."""
        if index is None or self.response is None:
            return
        if self.grid_active:
            self.query_one(GalleryGrid).select(index)
        else:
            self.query_one("#results", ResultsList).highlighted = index

    @property
    def preview_shown(self) -> bool:
        """Whether the preview pane is on screen (it is hidden below 70 columns)."""
        return self.size.width >= self.HORIZONTAL_BREAKPOINTS[1][0]

    def action_reveal(self) -> None:
        result = self._need_selection()
        if result is not None:
            self._launch(result.path, reveal=True)

    def action_copy(self) -> None:
        result = self._need_selection()
        if result is not None:
            self.copy_path(result.path)

    def copy_path(self, path: str) -> None:
        """Copy ``path`` (as a shell word when it is not UTF-8) and say where it went.

        The terminal's clipboard escape (OSC 52) is always sent, but tmux, screen and
        SSH may drop it silently, so the message says so unless a desktop clipboard
        tool also took the text; the path stays on screen, selectable, either way.
        """
        # Lazy: not needed before the first paint.
        from clipseek.tui.system import clipboard_command, copy_with_tool

        text = shell_path(path)
        self.app.copy_to_clipboard(text)
        shown = _escape(human_path(path))
        argv = clipboard_command()
        app = self.app
        # Below 70 columns the preview pane is hidden: point at what is there to select.
        if isinstance(app.screen, ViewerScreen) or self.preview_shown:
            where = "the preview"
        else:
            where = f"the full-screen preview ({_escape(app.key_for('search.preview'))})"

        def work() -> None:
            if argv is not None and copy_with_tool(text, argv):
                note = f"Copied {shown} [dim](clipboard via {argv[0]})[/dim]"
                app.call_from_thread(app.notify, note, timeout=4, markup=True)
                return
            note = (
                f"Sent {shown} to the terminal's clipboard. [dim]If it does not paste "
                f"(tmux, screen or SSH can block it), select the path in {where}.[/dim]"
            )
            app.call_from_thread(app.notify, note, timeout=10, markup=True)

        self.run_worker(work, group="copy", thread=True, exit_on_error=False)

    def action_similar(self) -> None:
        result = self._need_selection()
        if result is not None:
            self.search_similar(result.path)

    def _launch(self, path: str, *, reveal: bool) -> None:
        opener = self.app.opener
        app = self.app
        if opener is None and not reveal:
            from clipseek.tui.system import can_open

            if not can_open(path):
                # No desktop viewer (SSH, a container): the picture is shown here instead.
                self.action_view()
                self.notify(
                    "No image viewer to open it with here; showing it in clipseek (Esc goes back).",
                    timeout=5,
                )
                return

        def work() -> None:
            try:
                if opener is not None:
                    opener(path, reveal)
                else:
                    # Lazy: not needed before the first paint.
                    from clipseek.tui.system import launch

                    launch(path, reveal=reveal)
            except ClipseekError as exc:
                app.call_from_thread(app.notify, str(exc), severity="error", timeout=8)

        self.run_worker(work, group="launch", thread=True, exit_on_error=False)
        self.notify(("Revealing " if reveal else "Opening ") + human_path(path), timeout=3)

    @on(Button.Pressed, "#empty-index")
    def _empty_index(self) -> None:
        self.app.action_index_screen()

    def on_screen_resume(self) -> None:
        self.refresh_status()
        if self.focused is None and self.response is not None:
            self._results_widget().focus()

    # -- gallery (grid) view

    @property
    def gallery_thumbnails(self) -> GalleryThumbnails:
        if self._gallery_thumbs is None:
            self._gallery_thumbs = GalleryThumbnails(
                default_cache_folder(), max_megapixels=self.app.settings.max_megapixels
            )
        return self._gallery_thumbs

    @property
    def grid_active(self) -> bool:
        """The grid is chosen and the screen is big enough for it."""
        return self.view == "grid" and self.has_class("-grid")

    def _results_widget(self) -> ResultsList | GalleryGrid:
        if self.grid_active:
            return self.query_one(GalleryGrid)
        return self.query_one("#results", ResultsList)

    def action_toggle_view(self) -> None:
        self.view = "list" if self.view == "grid" else "grid"
        self._apply_view()

        try:
            remember_setting("view", self.view)
        except ClipseekError as exc:
            self.notify(str(exc), title="View not saved", severity="warning", timeout=8)
        if self.view == "grid" and not self.grid_active:
            self.notify(
                "The window is too small for the grid; showing the list until it grows.",
                timeout=5,
            )
        elif self.grid_active and self.app.image_class is None:
            self.notify(
                "Previews are off (--preview none), so the grid shows names only. "
                "Start clipseek with --preview auto to see the pictures.",
                timeout=8,
            )

    def on_resize(self) -> None:
        self._apply_view()

    def _apply_view(self) -> None:
        """Lay out for the view chosen, falling back to the list when the grid does not fit;
        the selection and the focus carry over between the two."""
        width, height = self.size
        details = DETAILS_WIDTH if width >= DETAILS_ROOMY_AT else DETAILS_NARROW_WIDTH
        # The grid gets the width left by the padding, the details pane and the borders,
        # and the height left by the query bar, status line and footer. Below 70 columns
        # the details pane is hidden, and the list (with its full-screen view) serves.
        space = (width - 2 - 2 - details, height - 3 - 1 - 1 - 2)
        pictures = self.app.image_class is not None
        grid_on = (
            self.view == "grid"
            and width >= self.HORIZONTAL_BREAKPOINTS[1][0]
            and gallery.fits(*space, pictures=pictures)
        )
        was = self.has_class("-grid")
        pane = self.query_one(PreviewPane)
        pane.pictures = not grid_on
        pane.border_title = "Details" if grid_on else "Preview"
        pane.styles.width = details if grid_on else None
        if grid_on == was:
            return
        focused = self.focused
        had_focus = focused is not None and focused.id in ("results", "gallery")
        old = self.selected
        index = 0 if old is None else max(0, old.rank - 1)
        if old is not None and self.response is not None:
            ranks = [r.path for r in self.response.results]
            index = ranks.index(old.path) if old.path in ranks else 0
        self.set_class(grid_on, "-grid")
        if self.response is None:
            self._show_state()
            return
        results = self.query_one("#results", ResultsList)
        grid = self.query_one(GalleryGrid)
        if grid_on:
            grid.show_results(self.response.results, index)
        else:
            grid.clear()
            results.highlighted = index
            self._prefetch([r.path for r in self.response.results])
        self._show_results()
        if had_focus:
            self._results_widget().focus()
        self._preview(self.selected)

    def _show_results(self) -> None:
        grid_on = self.grid_active
        self.query_one("#results", ResultsList).display = not grid_on
        self.query_one(GalleryGrid).display = grid_on
        self._subtitle()
        self.refresh_bindings()

    def _subtitle(self) -> None:
        if self.response is None:
            return
        n = len(self.response.results)
        text = f"{n} result{'s' if n != 1 else ''}"
        if self.filters is not None:
            text += " · filtered"
        if self.grid_active:
            where = self.query_one(GalleryGrid).position()
            text += f" · {where}" if where else ""
        elif self.view == "grid":
            text += " · list (too small for the grid)"
        if self.grid_active and self.app.image_class is None:
            text += " · names only (previews off)"
        self.query_one("#results-pane").border_subtitle = text

    @on(GalleryGrid.Highlighted, "#gallery")
    def _grid_highlighted(self) -> None:
        self._preview(self.selected)
        self._subtitle()

    @on(GalleryGrid.Opened, "#gallery")
    def _grid_opened(self) -> None:
        self.action_open()

    def on_gallery_grid_thumbnail_made(self, message: GalleryGrid.ThumbnailMade) -> None:
        selected = self.selected
        pane = self.query_one(PreviewPane)
        if (
            self.grid_active
            and selected is not None
            and selected.path == message.thumbnail.path
            and pane.thumbnail is not message.thumbnail
        ):
            pane.show(selected, message.thumbnail)


def _escape(text: str) -> str:
    """Markup-escaped, and safe to draw: a path that is not UTF-8 shows its odd bytes as
    ``\\xHH`` instead of breaking the terminal's output."""
    from textual.markup import escape

    return escape(display_text(text))
