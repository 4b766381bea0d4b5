"""The ``clipseek`` console script.

``clipseek`` on its own, in a terminal, opens the full-screen app; that path
skips importing Typer and the command-line module entirely, because every
import before the first paint is time the user watches a blank terminal; so does
``clipseek`` with only the app's options (``clipseek --db X --preview unicode``).
``clipseek index`` over an unchanged tree is answered before Typer is imported too
(:mod:`clipseek.cli.quick`). Anything else (or no terminal) goes to the command line in
:mod:`clipseek.cli.app`.
"""

from __future__ import annotations

import gc
import os
import sys

from clipseek.cli import APP_OPTIONS
from clipseek.cli.debug import show_debug_lines
from clipseek.errors import ClipseekError


def _debug() -> bool:
    return os.environ.get("CLIPSEEK_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


def app_options(args: list[str]) -> dict[str, str] | None:
    """``args`` read as the app's options (``--db X``, ``--preview=unicode``), or None
    when they hold anything else (a command, ``--help``), which is the CLI's to read."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        key = APP_OPTIONS.get(name)
        if key is None or (eq and name == "-m"):
            return None
        if not eq:
            if i + 1 >= len(args):
                return None  # a missing value: the CLI says so properly
            value = args[i + 1]
            i += 1
        out[key] = value
        i += 1
    return out


def open_app(options: dict[str, str] | None = None) -> int:
    """Open the app with the settings from ``options``, the environment and the config
    file; a :class:`~clipseek.errors.ClipseekError` becomes one line on stderr and exit 1."""
    # Lazy: only the app's path needs these; --help and the quick index path do not.
    from clipseek.gc_pause import start_without_collections

    start_without_collections()  # turned back on when the app's boot ends (clipseek.gc_pause)
    try:
        from clipseek.config import load_settings
        from clipseek.tui import run_tui

        flags: dict[str, object] = dict(options or {})
        preview = flags.pop("preview", None)
        try:
            run_tui(load_settings(flags), preview=preview)  # type: ignore[arg-type]
        except ClipseekError as exc:
            if _debug():
                raise
            from clipseek.photos.pathtext import display_text

            print(f"error: {display_text(str(exc))}", file=sys.stderr)
            return 1
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 1
        return 0
    finally:
        gc.enable()  # an app that never booted (a bad setting, no terminal): back on here


def main() -> None:
    if _debug():
        show_debug_lines()
    try:
        if sys.stdin.isatty() and sys.stdout.isatty() and "_CLIPSEEK_COMPLETE" not in os.environ:
            options = app_options(sys.argv[1:])
            if options is not None:
                sys.exit(open_app(options))
        checked = False
        if sys.argv[1:2] == ["index"] and "_CLIPSEEK_COMPLETE" not in os.environ:
            answered = quick_index(sys.argv[2:])
            if answered:
                return
            checked = answered is False
        # Lazy: Typer; the app and the quick index path never import it.
        from clipseek.cli.app import main as cli_main

        cli_main(quick_checked=checked)
    finally:
        leave_quickly()


def quick_index(args: list[str]) -> bool | None:
    """An index run over an unchanged tree, answered without the command line's start
    (see :mod:`clipseek.cli.quick`); anything unexpected there is left to the command line,
    which reports it properly."""
    # Lazy: the engine; the app and --help do not import it.
    from clipseek.cli.quick import index_if_unchanged

    try:
        return index_if_unchanged(args)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        sys.exit(130)
    except Exception:
        if _debug():
            raise
        return None


def leave_quickly() -> None:
    """Spare the interpreter's last garbage collections before the process ends.

    At exit Python collects every generation while it tears modules down, walking each
    object that chromadb, ONNX Runtime, numpy and Textual made, only to free memory the OS
    takes back anyway (most of an index run's exit; docs/PERFORMANCE.md, "Start-up").
    Freezing moves what is alive out of those collections; objects are still freed (and
    files closed) as their modules go. The young generations are collected first, so what
    the command has just let go of is finalised as usual.
    """
    gc.collect(1)
    gc.freeze()


if __name__ == "__main__":
    main()
