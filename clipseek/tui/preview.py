"""Choosing how images are drawn in the terminal.

textual-image asks the terminal what it can do (Sixel? kitty graphics?) when it
is first imported, by writing a query and reading the answer from stdin. Once
Textual runs, its input thread owns stdin and would swallow that answer, so the
import has to happen before the app starts: :func:`prepare` is called by
:func:`clipseek.tui.run_tui` first thing. Forcing a renderer skips nothing of that
probe (the package runs it on import) but fixes the outcome, which is what the
tests and screenshots need.
"""

from __future__ import annotations

import logging
from typing import Any

from clipseek.errors import ConfigError

#: What ``--preview`` / ``CLIPSEEK_PREVIEW`` / ``preview =`` accept.
PREVIEW_MODES: tuple[str, ...] = ("auto", "tgp", "sixel", "halfcell", "unicode", "none")

_DESCRIPTIONS = {
    "tgp": "kitty graphics",
    "sixel": "Sixel",
    "halfcell": "half-cell blocks",
    "unicode": "Unicode shades",
    "none": "off",
}


def check_preview_mode(mode: str | None) -> str:
    """Normalise a preview mode, or say which ones exist."""
    value = (mode or "auto").strip().lower()
    if value not in PREVIEW_MODES:
        raise ConfigError(f"Unknown preview mode {mode!r}; use one of: {', '.join(PREVIEW_MODES)}.")
    return value


def prepare(mode: str) -> type[Any] | None:
    """Import textual-image (running its terminal probe) and return the widget class for
    ``mode``; None for ``none``, which never imports it."""
    mode = check_preview_mode(mode)
    if mode == "none":
        return None
    # Its warnings (a terminal that does not answer a query) would land on the screen.
    logging.getLogger("textual_image").addHandler(logging.NullHandler())
    logging.getLogger("textual_image").propagate = False
    import textual_image.widget as tiw

    return {
        "auto": tiw.Image,
        "tgp": tiw.TGPImage,
        "sixel": tiw.SixelImage,
        "halfcell": tiw.HalfcellImage,
        "unicode": tiw.UnicodeImage,
    }[mode]


def describe(mode: str, widget_class: type[Any] | None) -> str:
    """A short name of the renderer actually in use, for the status line and help."""
    if widget_class is None:
        return _DESCRIPTIONS["none"]
    if mode != "auto":
        return _DESCRIPTIONS[mode]
    name = getattr(widget_class, "_Renderable", widget_class).__module__.rsplit(".", 1)[-1]
    if widget_class.__name__ == "SixelImage" or name == "sixel":
        return _DESCRIPTIONS["sixel"]
    return _DESCRIPTIONS.get(name, name)
