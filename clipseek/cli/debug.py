"""``--debug``: the engine's debug lines on stderr."""

from __future__ import annotations

import sys


def show_debug_lines() -> None:
    """With ``--debug``, the engine's debug lines (the ``clipseek`` logger: e.g. a chromadb
    release its file readers were not tested with) go to stderr."""
    import logging

    class StderrNow(logging.StreamHandler):  # type: ignore[type-arg]
        """Writes to ``sys.stderr`` as it is when a line is written: a handler bound to the
        stream of the first command wrote to a closed file once that command was over
        (a test's runner replaces stderr for each command)."""

        @property  # type: ignore[override]
        def stream(self) -> object:
            return sys.stderr

        @stream.setter
        def stream(self, _value: object) -> None:
            pass

    log = logging.getLogger("clipseek")
    if not any(getattr(h, "_clipseek", False) for h in log.handlers):
        handler = StderrNow()
        handler.setFormatter(logging.Formatter("debug: %(message)s"))
        handler._clipseek = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    log.setLevel(logging.DEBUG)


def hide_debug_lines() -> None:
    """Without ``--debug`` a command shows none of them, whatever an earlier command in the
    same process asked for."""
    import logging

    logging.getLogger("clipseek").setLevel(logging.WARNING)
