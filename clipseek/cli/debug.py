"""``--debug``: the engine's debug lines on stderr."""

from __future__ import annotations

import sys


def show_debug_lines() -> None:
    """With ``--debug``, the engine's debug lines (the ``clipseek`` logger: e.g. a chromadb
    release its file readers were not tested with) go to stderr."""
    import logging

    log = logging.getLogger("clipseek")
    if not any(getattr(h, "_clipseek", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("debug: %(message)s"))
        handler._clipseek = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    log.setLevel(logging.DEBUG)
