"""Opening an indexed file for the web front end, so that only what was indexed is ever served.

Whoever can write into an indexed folder could otherwise replace a photo with a link to
``/etc/shadow`` and fetch it by the photo's id. So a file is opened once, without
following a final link, and everything is checked on that open descriptor: that it is a
regular file, that its size and modification time are still those the index recorded,
that it really lies inside a folder that was indexed (``/proc/self/fd`` says where the
descriptor points, after any swap of a parent folder), and that it decodes as an image.
The bytes sent are then read from the same descriptor, so nothing can be swapped between
the check and the read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from clipseek.photos.imaging import prepare_pillow
from clipseek.photos.pathtext import display_path

#: Pillow formats every current browser shows, and the type they are sent as.
BROWSER_FORMATS: dict[str, str] = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",  # cameras' multi-picture JPEGs; browsers show the first picture
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
}

_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)  # a link put in the file's place is refused (ELOOP)
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO put there must not hang the worker
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
_CHUNK = 256 * 1024


class FileRefused(Exception):
    """The file behind an id cannot be served; ``status`` and ``detail`` are the answer."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class OpenedImage:
    """An indexed file, open and checked; read it only through ``file``."""

    path: str
    file: BinaryIO
    size: int
    mtime_ns: int
    format: str

    @property
    def media_type(self) -> str | None:
        """The type to send the bytes as, or None when browsers cannot show the format."""
        return BROWSER_FORMATS.get(self.format)

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes from the open descriptor; closes it when done (or abandoned)."""
        try:
            self.file.seek(0)
            while chunk := self.file.read(_CHUNK):
                yield chunk
        finally:
            self.file.close()

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> OpenedImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def real_roots(roots: Iterable[str]) -> list[str]:
    """The indexed folders with every link resolved, as the kernel names open files."""
    return [os.path.realpath(r) for r in roots if r]


def is_inside(path: str, folders: Sequence[str]) -> bool:
    for folder in folders:
        if path == folder or path.startswith(folder.rstrip(os.sep) + os.sep):
            return True
    return False


def changed(path: str, why: str = "") -> FileRefused:
    """The answer for a file that is no longer what was indexed there."""
    return FileRefused(
        410,
        f"The indexed file {display_path(path)} has changed since it was indexed{why}; "
        "run `clipseek index` again to update the index.",
    )


def _gone(path: str) -> FileRefused:
    return FileRefused(
        410,
        f"The indexed file {display_path(path)} no longer exists; "
        "run `clipseek index` again to tidy the index.",
    )


def open_indexed(
    path: str,
    size: int | None,
    mtime_ns: int | None,
    roots: Sequence[str],
    *,
    identify: bool = True,
) -> OpenedImage:
    """Open ``path`` for serving if it is still the picture that was indexed there.

    ``size`` and ``mtime_ns`` are what the index recorded; ``roots`` the indexed folders.
    Raises :class:`FileRefused` (404 or 410) otherwise, saying nothing about what the path
    now points at. ``identify=False`` skips reading the image header, for callers that
    decode the file anyway (thumbnails) and so check it more thoroughly themselves;
    ``format`` is then empty.
    """
    allowed = real_roots(roots)
    try:
        real = os.path.realpath(path, strict=True)
    except FileNotFoundError:
        raise _gone(path) from None
    except OSError:  # a link loop, a folder we may not enter
        raise changed(path) from None
    if not is_inside(real, allowed):
        raise FileRefused(
            404,
            f"The indexed file {display_path(path)} lies outside the indexed folders (it is "
            "reached through a link), so this server does not share it.",
        )
    try:
        fd = os.open(real, _OPEN_FLAGS)
    except FileNotFoundError:
        raise _gone(path) from None
    except OSError:  # ELOOP (a link appeared in its place), EACCES, ENXIO (a socket)...
        raise changed(path) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise changed(path)
        if (size is not None and st.st_size != size) or (
            mtime_ns is not None and st.st_mtime_ns != mtime_ns
        ):
            raise changed(path)
        where = _descriptor_path(fd)
        if where is not None and not is_inside(where, allowed):
            raise changed(path)  # a parent folder was swapped between resolving and opening
        file = os.fdopen(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise
    if not identify:
        return OpenedImage(path, file, st.st_size, st.st_mtime_ns, "")
    try:
        image_format = _identify(file)
    except BaseException:
        file.close()
        raise
    if image_format is None:
        file.close()
        raise changed(path)
    return OpenedImage(path, file, st.st_size, st.st_mtime_ns, image_format)


def _descriptor_path(fd: int) -> str | None:
    """Where an open descriptor points, from the kernel (Linux); None where unknown."""
    try:
        where = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    return where if where.startswith(os.sep) else None


def _identify(file: BinaryIO) -> str | None:
    """The image format of an open file from its header, or None if it is not an image."""
    from PIL import Image, UnidentifiedImageError

    prepare_pillow()
    try:
        with Image.open(file) as im:
            found = im.format
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        return None
    except Exception:  # plugins raise many types for hostile headers
        return None
    file.seek(0)
    return found
