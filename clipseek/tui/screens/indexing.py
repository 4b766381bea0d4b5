"""The indexing screen: pick a folder, start, and watch CLIP work through it.

The run itself belongs to the app (see :meth:`ClipseekApp.start_indexing`), so
this screen can be left while it goes on; coming back shows where it stands,
because everything drawn here is read from the app's :class:`IndexJob`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import (
    Button,
    ContentSwitcher,
    DirectoryTree,
    Input,
    ProgressBar,
    RichLog,
    Static,
)

from clipseek.photos import pathtext
from clipseek.tui.format import human_duration, human_path
from clipseek.tui.widgets.folders import FolderInput, FolderSuggester, FolderTree
from clipseek.tui.widgets.footer import FittingFooter

if TYPE_CHECKING:
    from clipseek.tui.app import ClipseekApp
    from clipseek.tui.jobs import IndexJob


#: How the counts read while a run is going on: what is planned, not yet what is done.
RUNNING_LABELS = {
    "new": "new to add",
    "updated": "changed to update",
    "unchanged": "unchanged",
    "removed": "to remove",
    "failed": "failed so far",
}


class IndexingScreen(Screen[None]):
    """Choose a folder and index it, with live progress and a list of unreadable files."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stop", "Stop", id="index.stop"),
        Binding("escape", "back", "Back", id="index.back"),
        Binding("b", "leave", "Back to search", id="index.leave"),
        Binding("n", "new_run", "New run", id="index.new"),
    ]

    #: Focus is placed by hand: the first focusable widget may be in the hidden view.
    AUTO_FOCUS = ""

    #: Below 24 rows the blank lines go and the buttons shrink to one line, so Stop and Back
    #: stay on screen (60×15 used to push them below the footer).
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-short"), (24, "-tall")]

    app: ClipseekApp  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__(id="indexing")
        self._shown_job: IndexJob | None = None
        self._failures_shown = 0
        self._notices_shown = 0
        self._setup = True
        #: (what the folder box showed, the exact path) for the folder picked in the tree.
        self._picked: tuple[str, str] | None = None

    # -- layout

    def compose(self) -> ComposeResult:
        yield Static("[b]Index a folder[/b]", id="index-title")
        with ContentSwitcher(initial="index-setup", id="index-switcher"):
            with Vertical(id="index-setup"):
                with Horizontal(id="folder-row"):
                    yield FolderInput(
                        placeholder="Folder of pictures, e.g. ~/Pictures",
                        suggester=FolderSuggester(skip=[str(self.app.settings.db)]),
                        id="folder",
                    )
                    yield Button("Start", id="start", variant="primary")
                yield Static("", id="index-facts")
                yield FolderTree(self._tree_root(), id="folder-tree")
            with Vertical(id="index-run"):
                yield Static("", id="run-head")
                yield Static("", id="run-where")
                yield ProgressBar(id="run-progress", show_eta=False)
                yield Static("", id="run-stats")
                yield Static("", id="run-counts")
                yield RichLog(id="run-problems", wrap=True, markup=False, auto_scroll=True)
                with Horizontal(id="run-buttons"):
                    yield Button("Stop (Esc)", id="run-stop", variant="error")
                    yield Button("Back to search", id="run-back")
                    yield Button("Index another folder", id="run-new")
        yield FittingFooter(compact=True)

    @staticmethod
    def _tree_root() -> str:
        home = os.path.expanduser("~")
        return home if os.path.isdir(home) else os.getcwd()

    def on_mount(self) -> None:
        self.query_one("#folder-tree").border_title = "Browse"
        self.query_one("#run-problems").border_title = "Problems"
        self.refresh_facts()
        self.refresh_job()
        self.set_interval(1.0, self._tick)

    def on_screen_resume(self) -> None:
        job = self.app.index_job
        if job is not None and job.running:
            self._setup = False
        self.refresh_facts()
        self.refresh_job()
        if self._setup:
            self.query_one("#folder", Input).focus()

    def _tick(self) -> None:
        job = self.app.index_job
        if job is not None and job.running and not self._setup:
            self._draw_stats(job)

    # -- drawing

    def refresh_facts(self) -> None:
        """Model and database that a run will use."""
        if not self.is_mounted:
            return
        app = self.app
        settings = app.settings
        source = settings.sources.get("model", "default")
        if source.startswith("config file"):
            source = "config file"
        facts = Text()
        facts.append("Model     ", "dim")
        facts.append(app.model_name, "bold")
        facts.append(f"  ({source})\n", "dim")
        facts.append("Database  ", "dim")
        facts.append(human_path(settings.store_location))
        if app.index_count is not None and app.index_count >= 0:
            facts.append(f"  ({app.index_count:,} images)", "dim")
        facts.append("\nBatch     ", "dim")
        facts.append(f"{settings.batch_size} images")
        self.query_one("#index-facts", Static).update(facts)

    def refresh_job(self) -> None:
        """Redraw the run view from the app's current job."""
        if not self.is_mounted:
            return
        job = self.app.index_job
        if job is not None and job is not self._shown_job:
            self._shown_job = job
            self._failures_shown = self._notices_shown = 0
            self.query_one("#run-problems", RichLog).clear()
            self._setup = False
        show_setup = self._setup or job is None
        switcher = self.query_one(ContentSwitcher)
        view = "index-setup" if show_setup else "index-run"
        changed = switcher.current != view
        switcher.current = view
        # Keys must never go to a widget of the hidden view (the folder box, say).
        hidden = self.query_one("#index-run" if show_setup else "#index-setup")
        if self.focused is not None and hidden in self.focused.ancestors_with_self:
            self.set_focus(None)
        if changed and show_setup:
            self.query_one("#folder", Input).focus()
        self.refresh_bindings()
        if job is None or show_setup:
            return
        self._draw(job)

    def _draw(self, job: IndexJob) -> None:
        head = Text()
        if job.error:
            head.append("Failed", "bold red")
        elif job.cancelling:
            head.append("Stopping after the current batch…", "bold yellow")
        elif job.summary is not None and job.summary.cancelled:
            head.append("Stopped", "bold yellow")
        elif job.summary is not None:
            head.append("Done", "bold green")
        else:
            head.append(job.phase, "bold")
        head.append("  ")
        head.append(", ".join(human_path(r) for r in job.roots), "dim")
        self.query_one("#run-head", Static).update(head)
        where = Text()
        where.append(job.model)
        if job.location:
            where.append(" → ")
            where.append(job.location)
        self.query_one("#run-where", Static).update(where)

        bar = self.query_one("#run-progress", ProgressBar)
        if job.plan is None:
            bar.update(total=None, progress=0)
        elif job.to_embed == 0:
            bar.update(total=1, progress=1)
        else:
            bar.update(total=job.to_embed, progress=job.done)
        self._draw_stats(job)

        counts = job.counts()
        # While the run goes on the counts are the plan ("to add"), not what is done:
        # the bar above says how far it got. Once it ends they are the outcome.
        labels = RUNNING_LABELS if job.running else {}
        line = Text()
        for i, (label, value) in enumerate(counts.items()):
            if i:
                line.append(" · ", "dim")
            style = "bold red" if label == "failed" and value else "bold"
            line.append(f"{value:,}", style)
            line.append(f" {labels.get(label, label)}", "dim")
        self.query_one("#run-counts", Static).update(line)

        log = self.query_one("#run-problems", RichLog)
        for failure in job.failures[self._failures_shown :]:
            log.write(
                Text.assemble(
                    ("✗ ", "red"),
                    (human_path(failure.path), "bold"),
                    "  ",
                    (pathtext.display_text(failure.reason), "dim"),
                )
            )
        self._failures_shown = len(job.failures)
        for notice in job.notices[self._notices_shown :]:
            log.write(Text.assemble(("note ", "cyan"), pathtext.display_text(notice)))
        self._notices_shown = len(job.notices)
        if job.error:
            log.write(Text.assemble(("error ", "bold red"), pathtext.display_text(job.error)))

        running = job.running
        self.query_one("#run-stop", Button).display = running
        self.query_one("#run-stop", Button).disabled = job.cancelling
        self.query_one("#run-new", Button).display = not running

    def _draw_stats(self, job: IndexJob) -> None:
        gap = " · "  # a visible separator: runs of spaces vanish in some SVG viewers
        stats = Text()
        batch = job.batch
        if batch is not None:
            stats.append("Batch ", "dim")
            stats.append(f"{batch.number}", "bold")
            stats.append(f" ({batch.size} image{'' if batch.size == 1 else 's'})", "dim")
            stats.append(gap)
        stats.append(f"{job.done:,}", "bold")
        stats.append(f" of {job.to_embed:,}", "dim")
        stats.append(gap)
        stats.append(f"{job.rate:.1f}", "bold")
        stats.append(" images/s", "dim")
        if job.running:
            stats.append(gap + "ETA ", "dim")
            stats.append(human_duration(job.eta), "bold")
        stats.append(gap + "Elapsed ", "dim")
        stats.append(human_duration(job.elapsed), "bold")
        self.query_one("#run-stats", Static).update(stats)

    # -- starting

    @on(Input.Changed, "#folder")
    def _typed_folder(self, event: Input.Changed) -> None:
        """A typed folder outside the tree (``/mnt/photos``) becomes the tree's root."""
        if event.value.endswith(os.sep) or os.path.isabs(os.path.expanduser(event.value)):
            self.query_one("#folder-tree", FolderTree).show_folder(event.value)

    @on(DirectoryTree.DirectorySelected, "#folder-tree")
    def _picked(self, event: DirectoryTree.DirectorySelected) -> None:
        folder = self.query_one("#folder", Input)
        folder.value = human_path(str(event.path))
        folder.cursor_position = len(folder.value)
        # A name with escaped bytes or controls is shown in its display form, which is
        # not the path: the exact one picked is kept for Start.
        self._picked = (folder.value, str(event.path))

    @on(Input.Submitted, "#folder")
    @on(Button.Pressed, "#start")
    def _start(self) -> None:
        text = self.query_one("#folder", Input).value.strip()
        if not text:
            self.notify("Type or pick a folder first.", severity="warning")
            return
        path = Path(os.path.expanduser(text))
        if self._picked is not None and self._picked[0] == text:
            path = Path(self._picked[1])
        if not path.is_dir():
            what = "does not exist" if not path.exists() else "is not a folder"
            self.notify(f"{text} {what}.", severity="error")
            return
        if self.app.start_indexing([str(path)]) is not None:
            self._setup = False
            self.refresh_job()

    # -- actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        job = self.app.index_job
        watching = job is not None and job.running and not self._setup
        if action in ("stop", "leave"):
            return watching
        if action == "back":
            return not watching
        if action == "new_run":
            return job is not None and not job.running and not self._setup
        return True

    def action_stop(self) -> None:
        if self.app.cancel_indexing():
            self.notify("Stopping after the current batch…", timeout=4)

    def action_back(self) -> None:
        if self.app.screen is self:
            self.app.pop_screen()

    def action_leave(self) -> None:
        self.action_back()

    def action_new_run(self) -> None:
        self._setup = True
        self.refresh_job()
        self.query_one("#folder", Input).focus()

    @on(Button.Pressed, "#run-stop")
    def _stop_pressed(self) -> None:
        self.action_stop()

    @on(Button.Pressed, "#run-back")
    def _back_pressed(self) -> None:
        self.action_back()

    @on(Button.Pressed, "#run-new")
    def _new_pressed(self) -> None:
        self.action_new_run()
