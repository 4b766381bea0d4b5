"""The ``clipseek`` console script.

``clipseek`` on its own, in a terminal, opens the full-screen app; that path
skips importing Typer and the command-line module entirely, because every
import before the first paint is time the user watches a blank terminal. Any
arguments (or no terminal) go to the command line in :mod:`clipseek.cli`.
"""

from __future__ import annotations

import os
import sys


def _debug() -> bool:
    return os.environ.get("CLIPSEEK_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


def open_app() -> int:
    """Open the app with the settings from the environment and config file; a
    :class:`~clipseek.errors.ClipseekError` becomes one line on stderr and exit 1."""
    from clipseek.config import load_settings
    from clipseek.errors import ClipseekError
    from clipseek.tui import run_tui

    try:
        run_tui(load_settings())
    except ClipseekError as exc:
        if _debug():
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def main() -> None:
    if len(sys.argv) == 1 and sys.stdin.isatty() and sys.stdout.isatty():
        sys.exit(open_app())
    from clipseek.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
