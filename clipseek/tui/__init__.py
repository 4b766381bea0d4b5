"""The full-screen app (``clipseek`` with no arguments, or ``clipseek tui``).

Importing this package is cheap: Textual and textual-image are imported by
:func:`run_tui`, and torch, open_clip and chromadb only by the app's workers
after the first screen is on display.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from clipseek.errors import ClipseekError
from clipseek.tui.preview import check_preview_mode, prepare

if TYPE_CHECKING:
    from clipseek.config import Settings

__all__ = ["run_tui"]


def run_tui(settings: Settings, preview: str | None = None) -> None:
    """Run the app in this terminal until the user quits.

    textual-image is imported (and probes the terminal for graphics support)
    before the app takes over stdin; see :mod:`clipseek.tui.preview`.
    """
    mode = check_preview_mode(preview or settings.preview)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise ClipseekError(
            "The full-screen app needs a terminal; for scripts use `clipseek query` "
            "and `clipseek index`."
        )
    # textual-image's import (numpy, and the terminal's answers to its queries, up to a
    # tenth of a second each) runs on a thread while this one imports the app.
    probe = _Background(prepare, mode)
    # Lazy: Textual loads only when the app opens.
    from clipseek.tui.app import ClipseekApp

    image_class = probe.result()
    app = ClipseekApp(settings, preview=mode, image_class=image_class)
    app.run()
    job = app.index_job
    if job is not None and job.running:
        print(
            "Finishing the batch in flight so the index stays whole; "
            "run the indexing again to carry on.",
            file=sys.stderr,
        )
    if app.return_code:
        raise SystemExit(app.return_code)


class _Background(threading.Thread):
    """Call ``func(*args)`` on a thread; :meth:`result` waits and returns (or raises)."""

    def __init__(self, func: Callable[..., Any], *args: Any) -> None:
        super().__init__(name="clipseek-preview-probe", daemon=True)
        self._call = (func, args)
        self._value: Any = None
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        func, args = self._call
        try:
            self._value = func(*args)
        except BaseException as exc:
            self._error = exc

    def result(self) -> Any:
        self.join()
        if self._error is not None:
            raise self._error
        return self._value
