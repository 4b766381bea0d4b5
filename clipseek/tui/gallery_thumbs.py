"""Thumbnails for the gallery grid: made off the UI thread at the size a cell needs.

A screen of gallery cells wants dozens of pictures at once, each only a few
hundred pixels wide, from files that may be 12-megapixel photos. So:

* the decode asks Pillow for a reduced JPEG decode (DCT scaling) just big enough
  for the cell, then shrinks it to the cell's pixel box;
* a small pool of daemon threads does the work, most-wanted first: the grid asks
  again whenever what is on screen changes, and work nobody wants any more is
  skipped rather than done late;
* finished thumbnails stay in memory (a bounded LRU) and on disk under
  ``cache_dir()/thumbnails`` as small JPEGs, keyed by path, size, modification
  time and pixel box, so that a second search of the same pictures, even in a
  new session, needs no decode. The disk cache is a cache: it is bounded, pruned
  oldest-first, and any failure to read or write it only costs a decode.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from clipseek.config import cache_dir
from clipseek.errors import ImageReadError
from clipseek.tui.thumbnails import Thumbnail

if TYPE_CHECKING:
    from PIL import Image

#: Memory budget for decoded gallery thumbnails (RGB bytes).
MEMORY_BYTES = 96 * 1024 * 1024
#: Disk budget; pruned to three quarters of it, oldest first, when exceeded.
DISK_BYTES = 128 * 1024 * 1024
#: Bumped when the stored format changes, so old files are simply not found.
_FORMAT = b"clipseek-gallery-1"

Size = tuple[int, int]


def default_cache_folder() -> Path:

    return cache_dir() / "thumbnails"


def worker_count() -> int:
    """Decoders to run: enough to keep a screenful coming, few enough to leave a core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, (cores or 1) - 1 if (cores or 1) > 2 else (cores or 1)))


class GalleryThumbnails:
    """Cell-sized thumbnails: memory LRU + disk cache + a prioritised decoder pool.

    ``peek`` is for the UI thread (never touches the disk); ``load`` for worker
    threads; ``want`` hands a list of paths to the pool, most wanted first, and
    calls ``on_ready(thumbnail, size)`` from a pool thread for each one made.
    """

    def __init__(
        self,
        folder: Path | None = None,
        *,
        max_megapixels: float | None = None,
        memory_bytes: int = MEMORY_BYTES,
        disk_bytes: int = DISK_BYTES,
        workers: int | None = None,
    ) -> None:
        self.folder = folder
        self.max_megapixels = max_megapixels
        self.memory_bytes = memory_bytes
        self.disk_bytes = disk_bytes
        self.workers = workers or worker_count()
        self._items: OrderedDict[tuple[str, Size], Thumbnail] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[int, str, Size, Callable] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._generation = 0
        self._wanted: set[tuple[str, Size]] = set()
        self._inflight: set[tuple[str, Size]] = set()
        self._disk_checked = False
        self._disk_writes = 0
        #: Counters, for tests and the benchmark: decodes, disk hits, disk writes.
        self.decoded = 0
        self.disk_hits = 0

    # -- UI thread

    def peek(self, path: str, size: Size) -> Thumbnail | None:
        with self._lock:
            thumb = self._items.get((path, size))
            if thumb is not None:
                self._items.move_to_end((path, size))
            return thumb

    def want(
        self,
        paths: Iterable[str],
        size: Size,
        on_ready: Callable[[Thumbnail, Size], object],
    ) -> None:
        """Make thumbnails of ``paths`` (most wanted first); anything asked for by an
        earlier call and not asked for again is dropped from the queue."""
        order = list(dict.fromkeys(paths))
        with self._lock:
            self._generation += 1
            generation = self._generation
            self._wanted = {(p, size) for p in order}
            todo = [p for p in order if (p, size) not in self._inflight]
        self._start()
        for path in todo:
            self._queue.put((generation, path, size, on_ready))

    def cancel(self) -> None:
        """Drop everything queued (the grid is gone or emptied)."""
        with self._lock:
            self._generation += 1
            self._wanted = set()

    @property
    def busy(self) -> bool:
        """Work is queued or being done (the benchmark waits for quiet between samples)."""
        return bool(self._inflight) or not self._queue.empty()

    def close(self) -> None:
        self.cancel()
        for _ in self._threads:
            self._queue.put(None)
        self._threads = []

    # -- worker threads

    def load(self, path: str, size: Size) -> Thumbnail:
        """A thumbnail of ``path`` fitting in ``size`` pixels, checked against the file."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return self._remember(Thumbnail(path, None, None, None, None, None, "missing"), size)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            return self._remember(Thumbnail(path, None, None, None, None, None, reason), size)
        cached = self.peek(path, size)
        if cached is not None and (cached.size, cached.mtime_ns) == (st.st_size, st.st_mtime_ns):
            return cached
        key = self._disk_key(path, st.st_size, st.st_mtime_ns, size)
        thumb = self._read_disk(key, path, st.st_size, st.st_mtime_ns)
        if thumb is None:
            thumb = self._decode(path, st.st_size, st.st_mtime_ns, size)
            if thumb.image is not None:
                self._write_disk(key, thumb)
        return self._remember(thumb, size)

    def _start(self) -> None:
        if self._threads:
            return
        for i in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"clipseek-gallery-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            generation, path, size, on_ready = item
            key = (path, size)
            with self._lock:
                stale = generation != self._generation and key not in self._wanted
                if stale or key in self._inflight:
                    continue
                self._inflight.add(key)
            with self._lock:
                before = self._items.get(key)
            try:
                thumb = self.load(path, size)
            except Exception as exc:  # a thumbnail is never worth a crash
                thumb = Thumbnail(path, None, None, None, None, None, f"cannot show it ({exc})")
            finally:
                with self._lock:
                    self._inflight.discard(key)
            if thumb is before:
                # The file is as it was: whoever wants it has it from peek(). Paging asks
                # again for three screenfuls, and a message each would redraw them all.
                continue
            with contextlib.suppress(Exception):
                on_ready(thumb, size)

    def _decode(self, path: str, file_size: int, mtime_ns: int, size: Size) -> Thumbnail:
        from PIL import Image

        # Lazy: the first paint does not import the image decoding.
        from clipseek.photos.imaging import open_image

        try:
            image = open_image(path, max_megapixels=self.max_megapixels, min_size=size)
        except ImageReadError as exc:
            return Thumbnail(path, None, None, None, file_size, mtime_ns, exc.reason)
        width, height = image.info.get("clipseek_size", image.size)
        image.thumbnail(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        self.decoded += 1
        return Thumbnail(path, image, int(width), int(height), file_size, mtime_ns)

    def _remember(self, thumb: Thumbnail, size: Size) -> Thumbnail:
        cost = _cost(thumb.image)
        with self._lock:
            old = self._items.pop((thumb.path, size), None)
            if old is not None:
                self._held -= _cost(old.image)
            self._items[(thumb.path, size)] = thumb
            self._held += cost
            while self._held > self.memory_bytes and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self._held -= _cost(dropped.image)
        return thumb

    # -- disk cache

    @staticmethod
    def _disk_key(path: str, file_size: int, mtime_ns: int, size: Size) -> str:
        digest = hashlib.sha1(_FORMAT)
        digest.update(os.fsencode(path))
        digest.update(f"\0{file_size}\0{mtime_ns}\0{size[0]}x{size[1]}".encode())
        return digest.hexdigest()

    def _file(self, key: str) -> Path | None:
        return None if self.folder is None else self.folder / key[:2] / f"{key}.jpg"

    def _read_disk(self, key: str, path: str, file_size: int, mtime_ns: int) -> Thumbnail | None:
        file = self._file(key)
        if file is None:
            return None
        try:
            from PIL import Image

            with Image.open(file) as im:
                im.load()
                comment = im.info.get("comment", b"")
                image = im.convert("RGB") if im.mode != "RGB" else im.copy()
            text = comment.decode("ascii") if isinstance(comment, bytes) else str(comment)
            width, height = (int(v) for v in text.split("x"))
        except Exception:  # absent, half-written or foreign: decode the original instead
            return None
        with contextlib.suppress(OSError):
            os.utime(file)  # pruning goes oldest-used first
        self.disk_hits += 1
        return Thumbnail(path, image, width, height, file_size, mtime_ns)

    def _write_disk(self, key: str, thumb: Thumbnail) -> None:
        file = self._file(key)
        if file is None or thumb.image is None:
            return
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_name(f".{file.name}.{os.getpid()}.{threading.get_ident()}")
            thumb.image.save(
                tmp, "JPEG", quality=88, comment=f"{thumb.width}x{thumb.height}".encode()
            )
            os.replace(tmp, file)
        except Exception:  # read-only or full disk: the cache is optional
            with contextlib.suppress(Exception):
                tmp.unlink(missing_ok=True)
            return
        with self._lock:
            self._disk_writes += 1
            check = not self._disk_checked or self._disk_writes % 256 == 0
            self._disk_checked = True
        if check:
            self.prune()

    def prune(self) -> None:
        """Keep the disk cache under its budget, dropping the least recently used files."""
        if self.folder is None:
            return
        entries = []
        total = 0
        try:
            for sub in self.folder.iterdir():
                if not sub.is_dir():
                    continue
                for file in sub.iterdir():
                    with contextlib.suppress(OSError):
                        st = file.stat()
                        entries.append((st.st_mtime_ns, st.st_size, file))
                        total += st.st_size
        except OSError:
            return
        if total <= self.disk_bytes:
            return
        entries.sort()
        target = self.disk_bytes * 3 // 4
        for _, size, file in entries:
            if total <= target:
                break
            with contextlib.suppress(OSError):
                file.unlink()
                total -= size


def _cost(image: Image.Image | None) -> int:
    if image is None:
        return 64
    return image.width * image.height * len(image.getbands())
