"""Thumbnails for the web front end: small JPEGs of indexed files, kept in memory.

A result grid asks for the same few dozen pictures again and again (every search,
every change of the result count), so decoded-and-shrunk images are cached by
path, size and modification time; a file edited since is simply rendered anew.
Files are read only through :func:`clipseek.server.files.open_indexed`, from the
descriptor that was checked.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, BinaryIO

from clipseek.photos.imaging import open_image_file

if TYPE_CHECKING:
    from clipseek.server.files import OpenedImage


def render_jpeg(
    file: BinaryIO, label: str, size: int, max_megapixels: float | None, quality: int = 82
) -> bytes:
    """The open image ``file`` shrunk to fit ``size``×``size`` (never enlarged), upright, as
    JPEG bytes. Raises :class:`clipseek.errors.ImageReadError` for a file that cannot be read."""
    from PIL import Image

    file.seek(0)
    image = open_image_file(file, label, max_megapixels=max_megapixels, min_size=(size, size))
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


class ThumbnailCache:
    """A thread-safe LRU of rendered thumbnails, bounded by total bytes."""

    def __init__(self, max_megapixels: float | None, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_megapixels = max_megapixels
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, int, int, int], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, opened: OpenedImage, size: int) -> bytes:
        """The thumbnail of an opened, checked file; the key is what was checked on it."""
        key = (opened.path, size, opened.mtime_ns, opened.size)
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
                return data
        data = render_jpeg(opened.file, opened.path, size, self.max_megapixels)
        with self._lock:
            if key not in self._items:
                self._items[key] = data
                self._bytes += len(data)
            while self._bytes > self.max_bytes and self._items:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)
        return data

    def __len__(self) -> int:
        return len(self._items)
