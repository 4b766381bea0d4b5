"""A process's start without the garbage collector, and its return.

A front end's start (Textual, its styles and widgets; chromadb; numpy; the model's
runtime) makes a few hundred thousand objects and lets go of few, and the collector walks
them again and again as they pile up: a noticeable part of the app's time to a first answer
(docs/PERFORMANCE.md, "The fast path"). So a front end turns the collector off for its
start and turns it back on when the start is over, with what the start made
frozen: those objects live as long as the process, and later collections need not walk
them again (the few thousand the start dropped in cycles, about a megabyte, stay).
"""

from __future__ import annotations

import gc


def start_without_collections() -> None:
    """Turn the collector off until :func:`start_up_over`."""
    gc.disable()


def start_up_over() -> None:
    """Give the collector back if :func:`start_without_collections` took it, freezing
    what the start made. A process that never took it (tests, a library caller) is left
    as it is."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()
