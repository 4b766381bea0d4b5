"""Finding the images under a folder: only ``stat`` calls, so a re-index of an unchanged
tree costs a directory walk and nothing more."""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from clipseek.imaging import IMAGE_EXTENSIONS

#: Folder and file names that hold no user photos: thumbnails, metadata, dependencies.
JUNK_NAMES: frozenset[str] = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        "__pycache__",
        "@eaDir",  # Synology thumbnails
        "__MACOSX",
        ".DS_Store",
        "Thumbs.db",
        "$RECYCLE.BIN",
        "System Volume Information",
        ".Trash",
        ".Trashes",
        ".thumbnails",
    }
)


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What the index compares to decide whether a file changed."""

    path: str
    size: int
    mtime_ns: int
    #: Change time and inode: a copy, an edit or a replace always changes one of them,
    #: even when size and mtime were kept (``cp -p``, ``touch -r``); 0 when unknown.
    ctime_ns: int = 0
    inode: int = 0

    @classmethod
    def from_stat(cls, path: str, st: os.stat_result) -> FileInfo:
        return cls(path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino & _INODE_MASK)


#: Inodes are stored as signed 64-bit metadata.
_INODE_MASK = (1 << 63) - 1


@dataclass(frozen=True)
class ScanOptions:
    include_hidden: bool = False
    excludes: tuple[str, ...] = ()
    extensions: frozenset[str] = IMAGE_EXTENSIONS


ErrorHandler = Callable[[str, str], None]


def normalise_root(root: str | os.PathLike[str]) -> str:
    """Absolute, ``~`` expanded, no trailing slash; symlinks stay as the user named them."""
    return os.path.abspath(os.path.expanduser(os.fspath(root)))


def _skipped(name: str, options: ScanOptions) -> bool:
    if name in JUNK_NAMES or name.startswith("._"):
        return True
    return not options.include_hidden and name.startswith(".")


def _excluded(path: str, name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in patterns)


def scan(
    roots: Iterable[str],
    options: ScanOptions | None = None,
    on_error: ErrorHandler | None = None,
    on_folder_error: ErrorHandler | None = None,
) -> Iterator[FileInfo]:
    """Yield every image file under ``roots`` once, following symlinks without looping.

    A folder is entered only if its (device, inode) has not been seen, which stops
    symlink loops and avoids walking the same folder twice through two links.
    Unreadable files and broken links go to ``on_error`` and the walk goes on; so do
    unreadable folders, unless ``on_folder_error`` is given to hear of those apart
    (the indexer keeps what it knew of a folder it could not read this time).
    """
    opts = options or ScanOptions()
    report = on_error or (lambda _path, _reason: None)
    report_folder = on_folder_error or report
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[str] = set()

    for root in roots:
        root = normalise_root(root)
        try:
            st = os.stat(root)
        except OSError as exc:
            report(root, _reason(exc))
            continue
        if stat.S_ISREG(st.st_mode):
            if os.path.splitext(root)[1].lower() in opts.extensions and root not in seen_files:
                seen_files.add(root)
                yield FileInfo.from_stat(root, st)
            continue
        stack = [(root, st)]
        while stack:
            folder, folder_st = stack.pop()
            key = (folder_st.st_dev, folder_st.st_ino)
            if key in seen_dirs:
                continue
            seen_dirs.add(key)
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                report_folder(folder, _reason(exc))
                continue
            subfolders = []
            for entry in entries:
                if _skipped(entry.name, opts) or _excluded(entry.path, entry.name, opts.excludes):
                    continue
                try:
                    entry_st = entry.stat(follow_symlinks=True)
                except FileNotFoundError:
                    if entry.is_symlink() and _has_image_ext(entry.name, opts):
                        report(entry.path, "broken symbolic link")
                    continue
                except OSError as exc:
                    if _has_image_ext(entry.name, opts):
                        report(entry.path, _reason(exc))
                    continue
                if stat.S_ISDIR(entry_st.st_mode):
                    subfolders.append((entry.path, entry_st))
                elif (
                    stat.S_ISREG(entry_st.st_mode)
                    and _has_image_ext(entry.name, opts)
                    and entry.path not in seen_files
                ):
                    seen_files.add(entry.path)
                    yield FileInfo.from_stat(entry.path, entry_st)
            stack.extend(reversed(subfolders))


def _has_image_ext(name: str, options: ScanOptions) -> bool:
    return os.path.splitext(name)[1].lower() in options.extensions


def _reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "no such file or folder"
    if isinstance(exc, NotADirectoryError):
        return "not a folder"
    return (exc.strerror or str(exc)).lower()
