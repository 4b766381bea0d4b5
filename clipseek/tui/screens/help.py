"""The help screen (``?``): keys as currently mapped, query syntax, and settings.

Keys are read from the live bindings and the key map, so a user who remapped
``search.open`` in their config file sees their key here, next to the id to
remap it with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from clipseek.config import config_file_path
from clipseek.tui.format import human_path

if TYPE_CHECKING:
    from clipseek.tui.app import ClipseekApp

#: (title, [(binding id, what it does)]) in the order a new user needs them.
SECTIONS: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "Search",
        [
            ("search.focus", "Go to the query box"),
            ("search.more", "More results (top-k + 1)"),
            ("search.fewer", "Fewer results (top-k − 1)"),
            ("search.view", "Results as a grid of thumbnails, or a list (remembered)"),
            (
                "search.filter",
                "Filter line: after:2024-06 before:2024-09 camera:pixel size:1000x800",
            ),
        ],
    ),
    (
        "Selected result",
        [
            ("search.open", "Open in the system image viewer (or Enter, double click)"),
            ("search.preview", "See it full screen in clipseek (←/→ step through the results)"),
            ("search.copy", "Copy its path to the clipboard"),
            ("search.similar", "Find similar images"),
            ("search.reveal", "Open the folder that holds it"),
        ],
    ),
    (
        "Indexing",
        [
            ("index", "Index a folder / watch the run"),
            ("index.stop", "Stop after the current batch"),
            ("index.leave", "Back to search while it runs"),
            ("index.new", "Start another run when one is done"),
        ],
    ),
    (
        "Duplicates",
        [
            ("duplicates", "Groups of near-identical pictures (lists only, deletes nothing)"),
            ("duplicates.back", "Back to search"),
        ],
    ),
    ("App", [("help", "This help"), ("quit", "Quit")]),
]


def _query_help() -> str:
    # Lazy: the engine's modules load after the first paint.
    from clipseek.search.query import QUERY_HELP

    return QUERY_HELP


class HelpScreen(ModalScreen[None]):
    """Keys, query syntax and where settings live."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close", id="help.close"),
    ]

    app: ClipseekApp  # type: ignore[assignment]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog"):
            with VerticalScroll(id="help-body"):
                yield Static(self._keys(), id="help-keys")
                yield Static(Text("Queries", style="bold"), classes="help-heading")
                yield Static(Text(_query_help()), id="help-query")
                yield Static(Text("Settings", style="bold"), classes="help-heading")
                yield Static(self._settings(), id="help-settings")
            yield Static("[dim]Esc to close · ctrl+p for all commands[/dim]", id="help-foot")

    def on_mount(self) -> None:
        self.query_one("#help-dialog").border_title = "clipseek help"
        self.query_one("#help-body").focus()

    def _keys(self) -> Table:
        app = self.app
        accent = self.app.theme_variables.get("accent", "#FEA62B")
        table = Table.grid(padding=(0, 2), expand=True)
        table.add_column(style=f"bold {accent}", no_wrap=True, justify="right", min_width=5)
        table.add_column(ratio=1)
        table.add_column(style="dim", no_wrap=True)
        for title, rows in SECTIONS:
            table.add_row("", Text(title, style="bold"), "")
            for binding_id, text in rows:
                table.add_row(app.key_for(binding_id), text, binding_id)
            if title == "Search":
                table.add_row("esc", "Leave the query box, so that single keys are commands", "")
                table.add_row("↑ ↓", "Move through the results; the preview follows", "")
            table.add_row("", "", "")
        return table

    def _settings(self) -> Text:

        app = self.app
        text = Text()
        text.append("Config file  ", "dim")
        text.append(human_path(str(config_file_path())) + "\n")
        text.append("Previews     ", "dim")
        text.append(f"{app.preview_description}  (--preview / CLIPSEEK_PREVIEW)\n")
        text.append("Remap a key in the config file's [keys] table with the id above:\n", "dim")
        text.append('  [keys]\n  "search.open" = "enter"\n')
        return text
