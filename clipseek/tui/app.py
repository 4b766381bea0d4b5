"""The clipseek app: a Textual front end over the same :class:`~clipseek.engine.Engine` as the CLI.

First paint comes before anything heavy: the engine, chromadb and torch are
imported by a worker thread that starts once the search screen is on display, so
the query box is typable at once and a query typed early runs when the model is
ready. Everything that blocks (model load, indexing, search, thumbnails) runs in
thread workers which report back with messages; errors meant for the user
(:class:`~clipseek.errors.ClipseekError`) become notifications or empty states.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from clipseek.config import Settings, load_settings
from clipseek.errors import ClipseekError, IndexMissingError
from clipseek.gc_pause import start_up_over
from clipseek.photos.pathtext import display_text
from clipseek.tui import messages as msg
from clipseek.tui.format import display_model, human_path
from clipseek.tui.jobs import IndexJob
from clipseek.tui.preview import check_preview_mode, describe, prepare
from clipseek.tui.screens.duplicates import DuplicatesScreen
from clipseek.tui.screens.help import HelpScreen
from clipseek.tui.screens.indexing import IndexingScreen
from clipseek.tui.screens.search import SearchScreen
from clipseek.tui.screens.viewer import ViewerScreen
from clipseek.tui.thumbnails import ThumbnailCache

if TYPE_CHECKING:
    from clipseek.engine import Engine
    from clipseek.indexing.events import IndexEvent

_UNSET: Any = object()


class ClipseekApp(App[None]):
    """Search an image index by description, browse the hits, and keep the index fresh."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses live elsewhere
    TITLE = "clipseek"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", id="quit", priority=True, key_display="^q"),
        Binding("question_mark,f1", "help", "Help", id="help", key_display="?"),
        Binding("ctrl+c", "help_quit", show=False, system=True),
    ]

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        engine: Engine | None = None,
        preview: str | None = None,
        image_class: type[Any] | None = _UNSET,
        clock: Callable[[], float] = time.monotonic,
        opener: Callable[[str, bool], None] | None = None,
    ) -> None:
        """``engine`` lets tests inject one (with a tiny model); ``clock`` drives every
        elapsed time on screen; ``opener(path, reveal)`` replaces the desktop launcher."""
        super().__init__()
        self.settings = settings or (engine.settings if engine else load_settings())
        self.preview_mode = check_preview_mode(preview or self.settings.preview)
        self.image_class = prepare(self.preview_mode) if image_class is _UNSET else image_class
        self.clock = clock
        self.opener = opener
        self.engine: Engine | None = engine
        self.model_name: str = display_model(self.settings.model)
        #: "starting" → "loading" → "ready" | "failed"
        self.model_state = "starting"
        self.model_detail = ""
        #: None until known; -1 when there is no index yet.
        self.index_count: int | None = None
        self.index_problem: ClipseekError | None = None
        self.index_job: IndexJob | None = None
        self.thumbnails = ThumbnailCache(max_megapixels=self.settings.max_megapixels)
        self.search_screen = SearchScreen()
        self.indexing_screen = IndexingScreen()
        self._booted = False
        self.keymap_problems = self._apply_keymap(dict(self.settings.keys))

    # -- lifecycle

    def on_mount(self) -> None:
        self.install_screen(self.indexing_screen, "indexing")
        self.push_screen(self.search_screen)  # it calls _start_boot once it is painted
        if self.keymap_problems:
            self.notify(self.keymap_problems, title="Config file [keys]", severity="warning")

    def _start_boot(self) -> None:
        """Start the heavy work; called by the search screen after its first paint."""
        if self._booted:
            return
        self._booted = True
        self.run_worker(self._boot, name="boot", group="boot", thread=True, exit_on_error=False)

    def _boot(self) -> None:
        """Create the engine, look at the index, load the model (worker thread)."""
        try:
            self._boot_engine()
        finally:
            start_up_over()

    def _boot_engine(self) -> None:
        engine = self.engine
        if engine is None:
            # Lazy: the engine's modules load after the first paint.
            from clipseek.engine import Engine

            engine = Engine(self.settings, direct=True, quick_start=True, approximate=True)
        try:
            model = engine.spec.name
        except ClipseekError as exc:
            self.post_message(msg.EngineReady(engine, None, exc))
            return
        # The text tower builds on its own thread while the index is read and the user
        # types: the first answer needs both.
        engine.warm_model("text")
        self.post_message(msg.EngineReady(engine, model, None))
        self.post_message(self._index_status(engine))
        self.call_from_thread(self._watch_index)
        self.post_message(msg.ModelStatus("loading"))
        try:
            loaded = engine.model()
        except ClipseekError as exc:
            self.post_message(msg.ModelStatus("failed", str(exc)))
            return
        self.post_message(msg.ModelStatus("ready", f"{loaded.device} · {loaded.precision}"))
        engine.export_fast_path()  # torch had to load: the next start takes the ONNX path

    @staticmethod
    def _index_status(engine: Engine) -> msg.IndexStatus:
        try:
            return msg.IndexStatus(engine.open_index().count())
        except IndexMissingError:
            return msg.IndexStatus(-1)
        except ClipseekError as exc:
            return msg.IndexStatus(None, exc)

    #: Seconds between looks at the index folder for another process's writes.
    WATCH_INTERVAL = 1.0

    def _watch_index(self) -> None:
        """Look for other processes' writes (``clipseek index`` in another terminal, cron):
        when the index changed, the count and the results on screen are refreshed."""
        self.set_interval(self.WATCH_INTERVAL, self._check_index_changed)

    def _check_index_changed(self) -> None:
        engine = self.engine
        if engine is None:
            return

        screen = self.search_screen

        def work() -> None:
            store = engine.store
            try:
                changed = store.changed()
                if changed:  # the count and the search that follow read the same snapshot
                    store.catch_up()
            except (ClipseekError, OSError):
                return
            # A search that began before the latest snapshot may show older data, and the count
            # may too, when another request (not this watcher) was the one that took it.
            behind = 0 <= screen.generation < store.reloads
            if changed or behind:
                self.post_message(msg.IndexChanged())

        self.run_worker(work, group="index-watch", exclusive=True, thread=True, exit_on_error=False)

    def on_index_changed(self, message: msg.IndexChanged) -> None:
        if not self.is_running:
            return
        self.refresh_index_status()
        self.search_screen.index_changed(elsewhere=True)

    def refresh_index_status(self) -> None:
        """Count the index again (after an indexing run), off the UI thread."""
        engine = self.engine
        if engine is None:
            return
        self.run_worker(
            lambda: self.post_message(self._index_status(engine)),
            group="index-status",
            thread=True,
            exclusive=True,
            exit_on_error=False,
        )

    # -- state reported by workers

    def on_engine_ready(self, message: msg.EngineReady) -> None:
        if not self.is_running:  # closing: workers may still report
            return
        self.engine = message.engine
        if message.model:
            self.model_name = display_model(message.model)
        if message.error is not None:
            self.model_state = "failed"
            self.model_detail = str(message.error)
            self.notify(str(message.error), title="Cannot start", severity="error", timeout=15)
        self._state_changed()

    def on_index_status(self, message: msg.IndexStatus) -> None:
        if not self.is_running:  # closing: workers may still report
            return
        self.index_count = message.count
        self.index_problem = message.error
        if message.error is not None:
            self.notify(str(message.error), title="Index", severity="error", timeout=15)
        self._state_changed()

    def on_model_status(self, message: msg.ModelStatus) -> None:
        if not self.is_running:  # closing: workers may still report
            return
        self.model_state = message.state
        self.model_detail = message.detail
        if message.state == "failed":
            self.notify(
                message.detail, title="The model did not load", severity="error", timeout=20
            )
        self._state_changed()
        if message.state in ("ready", "failed"):
            self.search_screen.model_settled()

    def _state_changed(self) -> None:
        self.search_screen.refresh_status()
        self.indexing_screen.refresh_facts()

    @property
    def model_ready(self) -> bool:
        return self.model_state == "ready"

    @property
    def preview_description(self) -> str:
        return describe(self.preview_mode, self.image_class)

    # -- indexing

    def start_indexing(self, roots: list[str]) -> IndexJob | None:
        """Start an indexing run on a worker thread; None (with a notification) if one runs."""
        if self.index_job is not None and self.index_job.running:
            self.notify("An indexing run is already going on.", severity="warning")
            return None
        engine = self.engine
        if engine is None:
            self.notify("Still starting up; try again in a moment.", severity="warning")
            return None
        job = IndexJob(
            roots=roots,
            model=self.model_name,
            location=human_path(self.settings.store_location),
            clock=self.clock,
        )
        self.index_job = job
        self.run_worker(
            lambda: self._index(engine, job),
            name="index",
            group="index",
            thread=True,
            exit_on_error=False,
        )
        self._state_changed()
        return job

    def _index(self, engine: Engine, job: IndexJob) -> None:
        """Run the engine's indexer (worker thread); every event goes back as a message."""
        # Lazy: the engine's modules load after the first paint.
        from clipseek.indexing.events import BatchDone
        from clipseek.indexing.options import IndexOptions

        options = IndexOptions.from_settings(self.settings)

        def on_event(event: IndexEvent) -> None:
            # After each batch, wait (briefly) until the screen has taken it in: the
            # display never lags behind the work, and Esc stops after the batch that
            # is in flight when it is pressed, not after a queue of them.
            ack = threading.Event() if isinstance(event, BatchDone) else None
            if self.post_message(msg.IndexProgress(job, event, ack)) and ack is not None:
                ack.wait(timeout=2.0)

        try:
            engine.index(job.roots, options, on_event=on_event, cancel=job.cancel)
        except ClipseekError as exc:
            self.post_message(msg.IndexStopped(job, str(exc)))
        else:
            self.post_message(msg.IndexStopped(job))

    def on_index_progress(self, message: msg.IndexProgress) -> None:
        try:
            if self.is_running:
                self.apply_index_event(message.job, message.event)
        finally:
            if message.ack is not None:
                message.ack.set()

    def apply_index_event(self, job: IndexJob, event: IndexEvent) -> None:
        """Fold one engine event into ``job`` and redraw what shows it."""
        # Lazy: the engine's modules load after the first paint.
        from clipseek.indexing.events import IndexFinished, ModelReady

        job.apply(event)
        if isinstance(event, ModelReady) and self.model_state != "ready":
            self.model_state = "ready"
            self.model_detail = f"{event.device} · {event.precision}"
            self.search_screen.model_settled()
        if job is self.index_job:
            self.indexing_screen.refresh_job()
            self.search_screen.refresh_status()
        if isinstance(event, IndexFinished):
            self._index_finished(job)

    def on_index_stopped(self, message: msg.IndexStopped) -> None:
        if not self.is_running:  # closing: workers may still report
            return
        job = message.job
        if message.error is not None:
            job.fail(message.error)
            self._index_finished(job)

    def _index_finished(self, job: IndexJob) -> None:
        severity = "error" if job.error else "warning" if job.failed_count else "information"
        title = "Indexing failed" if job.error else "Indexing"
        self.notify(job.outcome(), title=title, severity=severity, timeout=10)
        if job is self.index_job:
            self.indexing_screen.refresh_job()
        self.refresh_index_status()
        self.search_screen.index_changed()

    def cancel_indexing(self) -> bool:
        job = self.index_job
        if job is None or not job.request_cancel():
            return False
        self.indexing_screen.refresh_job()
        self.search_screen.refresh_status()
        return True

    def notify(  # type: ignore[override]
        self, message: str, *, title: str = "", markup: bool = False, **kwargs: Any
    ) -> None:
        """Every message (many quote a path) is made drawable first, under the display
        rule (undecodable bytes and control characters escaped), and is plain text
        unless ``markup`` is asked for: a file name such as ``[b]x.jpg`` or ``a[/]b.jpg``
        is not markup. Callers that pass ``markup=True`` escape what they quote."""
        super().notify(
            display_text(str(message)), title=display_text(title), markup=markup, **kwargs
        )

    # -- actions

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_index_screen(self) -> None:
        if self.screen is not self.indexing_screen:
            self.push_screen("indexing")

    def action_duplicates(self) -> None:
        """List near-duplicate pictures (a fresh look at the index each time)."""
        if not isinstance(self.screen, DuplicatesScreen):
            self.push_screen(DuplicatesScreen())

    async def action_quit(self) -> None:
        job = self.index_job
        if job is not None and job.running:
            # Each batch is written as it is made; stopping after the one in flight keeps
            # the index whole, and the next run carries on from there.
            job.request_cancel()
        self.exit()

    # -- key map and command palette

    def _apply_keymap(self, keymap: dict[str, str]) -> str:
        """Apply ``[keys]`` from the config file; returns a warning for unknown ids."""
        known = {b.id for b in all_bindings() if b.id}
        unknown = sorted(set(keymap) - known)
        good = {k: v for k, v in keymap.items() if k in known and str(v).strip()}
        if good:
            self.set_keymap(good)
        if unknown:
            return (
                f"Unknown key binding id(s): {', '.join(unknown)}. "
                f"Known ids: {', '.join(sorted(known))}."
            )
        return ""

    def key_for(self, binding_id: str) -> str:
        """The key (as shown to the user) that currently triggers ``binding_id``."""
        for binding in all_bindings():
            if binding.id == binding_id:
                keys = self._keymap.get(binding_id, binding.key)
                first = keys.split(",")[0].strip()
                if binding_id not in self._keymap and binding.key_display:
                    return binding.key_display
                return self.get_key_display(Binding(first, binding.action))
        return binding_id

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        search = self.search_screen
        yield SystemCommand(
            "Open in viewer", "Open the selected image in the system viewer", search.action_open
        )
        yield SystemCommand(
            "View full screen", "See the selected image full screen in clipseek", search.action_view
        )
        yield SystemCommand(
            "Copy path", "Copy the selected image's path to the clipboard", search.action_copy
        )
        yield SystemCommand(
            "Find similar", "Search for images like the selected one", search.action_similar
        )
        yield SystemCommand(
            "Reveal folder", "Open the folder that holds the selected image", search.action_reveal
        )
        yield SystemCommand(
            "More results", "Raise the number of results (top-k)", lambda: search.step_top_k(1)
        )
        yield SystemCommand(
            "Fewer results", "Lower the number of results (top-k)", lambda: search.step_top_k(-1)
        )
        yield SystemCommand(
            "Grid or list", "Show results as thumbnails or as a list", search.action_toggle_view
        )
        yield SystemCommand(
            "Filter results",
            "Only pictures taken after/before a date, by a camera, or of a size",
            search.action_toggle_filters,
        )
        yield SystemCommand("Index a folder", "Open the indexing screen", self.action_index_screen)
        yield SystemCommand(
            "Find duplicates",
            "List groups of near-identical pictures (nothing is deleted)",
            self.action_duplicates,
        )
        if self.index_job is not None and self.index_job.running:
            yield SystemCommand(
                "Stop indexing", "Stop after the current batch", self.cancel_indexing
            )
        yield SystemCommand("Help", "Keys, query syntax and settings", self.action_help)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker died of something that is not a ClipseekError: say so, keep running."""
        if not self.is_running:  # closing: workers may still report
            return
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        text = f"{type(error).__name__}: {error}"
        if event.worker.group == "index" and self.index_job is not None and self.index_job.running:
            self.index_job.fail(f"Indexing stopped by an unexpected problem ({text}).")
            self._index_finished(self.index_job)
            return
        if event.worker.group == "boot":
            self.model_state = "failed"
            self.model_detail = text
            self._state_changed()
            self.search_screen.model_settled()
        self.notify(
            f"clipseek hit an unexpected problem: {text}",
            title="Error",
            severity="error",
            timeout=20,
        )


def all_bindings() -> list[Binding]:
    """Every binding of the app and its screens (for the key map, help and checks)."""
    out: list[Binding] = []
    owners = (ClipseekApp, SearchScreen, IndexingScreen, DuplicatesScreen, ViewerScreen, HelpScreen)
    for owner in owners:
        for item in owner.BINDINGS:
            if isinstance(item, Binding):
                out.append(item)
    return out
