"""``clipseek index`` over an unchanged library, answered before Typer is imported.

Most index runs are scheduled ones over a library where nothing changed, and for those
the command line's own start (Typer building every command's options, rich, the
search module) was a third of the run. The console script therefore hands an
``index`` command line to :func:`index_if_unchanged` first: when every argument is one
it knows, it asks the engine whether the tree is unchanged and, if so, prints what the
full command would have printed. Anything else (an option it does not know, a value the
command line would refuse, a change in the tree, another run holding the index) goes to
:mod:`clipseek.cli.app`, which does the run and says everything there is to say, so this
path can only answer runs that had nothing to do.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipseek.cli import APP_OPTIONS
from clipseek.cli.report import failure_line, links_line, summary_line
from clipseek.config import MAX_THREADS, load_settings
from clipseek.engine import Engine
from clipseek.errors import ClipseekError
from clipseek.indexing.options import IndexOptions
from clipseek.models.runtime import BACKENDS
from clipseek.photos.pathtext import display_path, display_text

if TYPE_CHECKING:
    from clipseek.indexing.events import IndexSummary

#: Options of ``clipseek index`` that take a value, by every name they have: its own, and
#: the settings every command shares with the app (all of the app's but ``--preview``).
_VALUED = {
    "--exclude": "exclude",
    "-x": "exclude",
    "--batch-size": "batch_size",
    "-b": "batch_size",
    "--max-megapixels": "max_megapixels",
    "--workers": "workers",
    "--threads": "threads",
    "--backend": "backend",
    **{name: key for name, key in APP_OPTIONS.items() if key != "preview"},
}
_FLAGS = {
    "--rebuild": "rebuild",
    "--include-hidden": "include_hidden",
    "--skip-outside-links": "skip_outside_links",
    "--no-wait": "no_wait",
}


def parse(args: list[str]) -> tuple[list[str], dict[str, Any]] | None:
    """The folders and options of an ``index`` command line, or None for anything this
    path leaves to the full command line (which also reports what is wrong with it)."""
    folders: list[str] = []
    given: dict[str, Any] = {"exclude": []}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-") or arg == "-":
            folders.append(str(Path(arg)))
            continue
        name, eq, value = arg.partition("=")
        if name in _FLAGS and not eq:
            given[_FLAGS[name]] = True
            continue
        key = _VALUED.get(name)
        if key is None or (eq and not name.startswith("--")):
            return None
        if not eq:
            if i >= len(args):
                return None
            value = args[i]
            i += 1
        if key == "exclude":
            given["exclude"].append(value)
        else:
            given[key] = value
    try:
        for key in ("batch_size", "workers", "threads"):
            if key in given:
                given[key] = int(given[key])
        if "max_megapixels" in given:
            given["max_megapixels"] = float(given["max_megapixels"])
    except ValueError:
        return None
    if any(not 1 <= given.get(key, 1) <= MAX_THREADS for key in ("workers", "threads")):
        return None  # the command line says which numbers it takes

    if given.get("backend", "auto") not in BACKENDS or not folders:
        return None
    return folders, given


def index_if_unchanged(args: list[str]) -> bool | None:
    """True when the run was answered here (exit 0); False when the tree was compared
    with the index and found changed; None when it was not compared."""
    parsed = parse(args)
    if parsed is None:
        return None
    folders, given = parsed
    if given.get("rebuild"):
        return None  # embeds everything again: nothing to compare
    if given.get("chroma_url") or os.environ.get("CLIPSEEK_CHROMA_URL"):
        return None  # a server's records are not in a file here

    flags = {
        key: given.get(key)
        for key in ("model", "device", "precision", "batch_size", "max_megapixels")
    }
    if "db" in given:
        flags["db"] = Path(given["db"])
    try:
        settings = load_settings(flags)
        if settings.problems:
            return None
        settings.require("batch_size")
        engine = Engine(settings)
        options = IndexOptions.from_settings(
            settings,
            include_hidden=bool(given.get("include_hidden")),
            excludes=tuple(given["exclude"]),
            decode_workers=given.get("workers"),
            torch_threads=given.get("threads"),
            skip_outside_links=bool(given.get("skip_outside_links")),
        )
        summary = engine.index_if_unchanged(folders, options)
        name, location = engine.spec.name, engine.store.location
    except ClipseekError:
        return None  # the full command line says what is wrong, or waits for the holder
    if summary is None:
        return False
    try:
        _report(summary, name, location, bool(given.get("skip_outside_links")))
    except BrokenPipeError:
        # Whoever read the output went away (``| head -0``): the run itself is done, and
        # must not be run again by the command line. Later writes go nowhere.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return True


def _report(summary: IndexSummary, name: str, location: str, skipped: bool) -> None:
    """The command line's lines for this run: drawn by rich where a terminal shows them."""
    if sys.stdout.isatty() or sys.stderr.isatty():
        from rich.console import Console
        from rich.markup import escape

        def show(text: str) -> str:
            return escape(display_path(text))

        err = Console(stderr=True, highlight=False, soft_wrap=True)
        err.print(f"Indexing with [bold]{show(name)}[/] into {show(location)}")
        for failure in summary.failed:  # unreadable and untouched since: named every run
            err.print(
                f"[yellow]skipped[/] {show(failure.path)}: {escape(display_text(failure.reason))}"
            )
        Console(highlight=False, soft_wrap=True).print(summary_line(summary))
        if summary.failed:
            err.print(f"[yellow]{failure_line(summary)}[/]")
        if summary.outside_links:
            err.print(f"[cyan]note:[/] {links_line(summary, skipped, show)}")
        return
    print(f"Indexing with {display_path(name)} into {display_path(location)}", file=sys.stderr)
    for failure in summary.failed:
        print(
            f"skipped {display_path(failure.path)}: {display_text(failure.reason)}",
            file=sys.stderr,
        )
    print(summary_line(summary), flush=True)
    if summary.failed:
        print(failure_line(summary), file=sys.stderr)
    if summary.outside_links:
        print(f"note: {links_line(summary, skipped, display_path)}", file=sys.stderr)
