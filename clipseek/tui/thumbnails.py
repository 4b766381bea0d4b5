"""Thumbnails for the preview pane, made on worker threads and kept in a small cache.

Decoding a 12-megapixel photo takes longer than a key repeat, so the app never
decodes on the UI thread: a worker calls :meth:`ThumbnailCache.load`, and the UI
only ever takes finished thumbnails with :meth:`ThumbnailCache.peek`. The key
includes size and modification time, so an edited file is not shown stale.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from clipseek.errors import ImageReadError

if TYPE_CHECKING:
    from PIL import Image

#: Longest side of a cached thumbnail, in pixels: sharp enough for a Sixel or kitty
#: preview in a wide pane, small enough that a hundred of them stay in memory.
THUMB_PIXELS = 640


@dataclass(frozen=True)
class Thumbnail:
    path: str
    image: Image.Image | None
    width: int | None
    height: int | None
    size: int | None
    mtime_ns: int | None
    #: Why there is no image: "missing" when the file is gone, else a reason to show.
    problem: str | None = None

    @property
    def missing(self) -> bool:
        return self.problem == "missing"


class ThumbnailCache:
    """A thread-safe LRU of thumbnails keyed by path (and checked against the file's stat)."""

    def __init__(self, capacity: int = 256, max_megapixels: float | None = None) -> None:
        self.capacity = capacity
        self.max_megapixels = max_megapixels
        self._items: OrderedDict[str, Thumbnail] = OrderedDict()
        self._lock = threading.Lock()

    def peek(self, path: str) -> Thumbnail | None:
        """The cached thumbnail, without touching the disk (safe on the UI thread)."""
        with self._lock:
            thumb = self._items.get(path)
            if thumb is not None:
                self._items.move_to_end(path)
            return thumb

    def load(self, path: str) -> Thumbnail:
        """Return a fresh thumbnail for ``path``, decoding it if needed (worker threads only)."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return self._store(Thumbnail(path, None, None, None, None, None, "missing"))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            return self._store(Thumbnail(path, None, None, None, None, None, reason))
        cached = self.peek(path)
        if cached is not None and (cached.size, cached.mtime_ns) == (st.st_size, st.st_mtime_ns):
            return cached
        return self._store(self._make(path, st.st_size, st.st_mtime_ns))

    def _make(self, path: str, size: int, mtime_ns: int) -> Thumbnail:
        # Lazy: the first paint does not import the image decoding.
        from clipseek.photos.imaging import open_image

        try:
            image = open_image(
                path,
                max_megapixels=self.max_megapixels,
                min_size=(THUMB_PIXELS, THUMB_PIXELS),
            )
        except ImageReadError as exc:
            return Thumbnail(path, None, None, None, size, mtime_ns, exc.reason)
        width, height = image.info.get("clipseek_size", image.size)
        image.thumbnail((THUMB_PIXELS, THUMB_PIXELS))
        return Thumbnail(path, image, int(width), int(height), size, mtime_ns)

    def _store(self, thumb: Thumbnail) -> Thumbnail:
        with self._lock:
            self._items[thumb.path] = thumb
            self._items.move_to_end(thumb.path)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return thumb
