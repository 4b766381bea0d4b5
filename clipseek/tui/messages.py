"""Messages that worker threads post to the app (``post_message`` is thread-safe).

Workers never touch widgets: they report what happened and the app, on its own
thread, decides what to draw.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from textual.dom import DOMNode

    from clipseek.engine import Engine
    from clipseek.errors import ClipseekError
    from clipseek.indexing.events import IndexEvent
    from clipseek.models.calibration import Calibration
    from clipseek.search.query import SearchResponse
    from clipseek.tui.jobs import IndexJob
    from clipseek.tui.thumbnails import Thumbnail, ThumbnailCache


class EngineReady(Message):
    """The engine exists and knows which model it will use."""

    def __init__(self, engine: Engine, model: str | None, error: ClipseekError | None) -> None:
        super().__init__()
        self.engine = engine
        self.model = model
        self.error = error


class IndexStatus(Message):
    """How many images the index holds (None: no index), or why it cannot be used."""

    def __init__(self, count: int | None, error: ClipseekError | None = None) -> None:
        super().__init__()
        self.count = count
        self.error = error


class IndexChanged(Message):
    """Another process committed a write to the index (see Store.changed), or the results
    shown began before the newest snapshot of it."""


class ModelStatus(Message):
    """The model is ``loading``, ``ready`` (detail: device and precision) or ``failed``."""

    def __init__(self, state: str, detail: str = "") -> None:
        super().__init__()
        self.state = state
        self.detail = detail


class SearchDone(Message):
    """A search's answer; ``calibration`` is the model family's scale when the query has
    one (text only), None when scores can only be read against each other."""

    def __init__(
        self, token: int, response: SearchResponse, calibration: Calibration | None = None
    ) -> None:
        super().__init__()
        self.token = token
        self.response = response
        self.calibration = calibration


class SearchFailed(Message):
    def __init__(self, token: int, error: ClipseekError) -> None:
        super().__init__()
        self.token = token
        self.error = error


class ThumbnailReady(Message):
    def __init__(self, thumbnail: Thumbnail) -> None:
        super().__init__()
        self.thumbnail = thumbnail


def load_thumbnail(node: DOMNode, cache: ThumbnailCache, path: str, group: str) -> None:
    """Load ``path``'s thumbnail on a thread and post it to ``node`` as
    :class:`ThumbnailReady`; a newer request of the same ``group`` replaces an older one.
    Even a cached thumbnail is checked against the file: it may have been edited or deleted
    since (``load`` returns the cached one if not)."""
    node.run_worker(
        lambda: node.post_message(ThumbnailReady(cache.load(path))),
        group=group,
        exclusive=True,
        thread=True,
        exit_on_error=False,
    )


class IndexProgress(Message):
    """One engine event of an indexing run; ``ack`` is set once the app has shown it."""

    def __init__(self, job: IndexJob, event: IndexEvent, ack: threading.Event | None = None):
        super().__init__()
        self.job = job
        self.event = event
        self.ack = ack


class IndexStopped(Message):
    """The indexing worker ended; ``error`` is set when it ended in an error."""

    def __init__(self, job: IndexJob, error: str | None = None) -> None:
        super().__init__()
        self.job = job
        self.error = error
