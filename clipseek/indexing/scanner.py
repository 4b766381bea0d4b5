"""Finding the images under a folder: only ``stat`` calls, so a re-index of an unchanged
tree costs a directory walk and nothing more."""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from clipseek.photos.imaging import IMAGE_EXTENSIONS

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


class FileInfo(NamedTuple):
    """What the index compares to decide whether a file changed. (A named tuple: one is
    made per file of the library on every run, and a tuple is made in a tenth of the time
    of a frozen dataclass.)"""

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
    #: Leave out links that lead outside the folders being scanned (they are reported either way).
    skip_outside_links: bool = False


ErrorHandler = Callable[[str, str], None]
#: Called with (link, where it leads, whether it was skipped).
LinkHandler = Callable[[str, str, bool], None]

#: Kernel and virtual file systems: no photos, endless or hostile "files" (/proc/*/cwd
#: leads everywhere, /dev/zero never ends). Never indexed, never entered through a link.
PSEUDO_FS_TYPES: frozenset[str] = frozenset(
    {
        "proc",
        "sysfs",
        "devtmpfs",
        "devpts",
        "debugfs",
        "tracefs",
        "securityfs",
        "cgroup",
        "cgroup2",
        "pstore",
        "bpf",
        "configfs",
        "fusectl",
        "mqueue",
        "hugetlbfs",
        "binfmt_misc",
        "efivarfs",
        "selinuxfs",
        "rpc_pipefs",
        "nsfs",
    }
)
PSEUDO_PATHS: tuple[str, ...] = ("/proc", "/sys", "/dev")


def _unescape_mount(field: str) -> str:
    """/proc/self/mounts writes spaces and tabs in mount points as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mount_table(mounts_file: str) -> list[tuple[str, str]]:
    """(mount point, type) of every mount in ``mounts_file``."""
    try:
        with open(mounts_file, encoding="utf-8", errors="surrogateescape") as fh:
            lines = fh.read().splitlines()
    except OSError:
        lines = []
    out = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 3:
            out.append((_unescape_mount(fields[1]), fields[2]))
    return out


def _holds_files(point: str, kind: str) -> bool:
    """A tmpfs mounted below /dev (/dev/shm): ordinary files in memory, not devices. /dev
    itself stays a pseudo file system even where a container makes it a plain tmpfs."""
    return kind == "tmpfs" and point.rstrip(os.sep) != "/dev" and _is_under(point, ("/dev",))


def pseudo_mounts(mounts_file: str = "/proc/self/mounts") -> dict[str, str]:
    """Mount point -> type of every pseudo file system, and of anything mounted under
    /proc, /sys or /dev (a container's /dev is often a plain tmpfs) but a tmpfs below
    /dev, such as /dev/shm, which holds ordinary files."""
    found: dict[str, str] = {}
    for point, kind in _mount_table(mounts_file):
        if kind in PSEUDO_FS_TYPES or (
            _is_under(point, PSEUDO_PATHS) and not _holds_files(point, kind)
        ):
            found[point] = kind
    return found


def file_mounts_under_dev(mounts_file: str = "/proc/self/mounts") -> list[str]:
    """The tmpfs mount points below /dev (/dev/shm): folders there may be indexed."""
    return [point for point, kind in _mount_table(mounts_file) if _holds_files(point, kind)]


class PseudoFilesystems:
    """Recognises files and folders on pseudo file systems by device number (one stat each,
    already made by the walk) and, for paths named directly, by where they resolve."""

    def __init__(
        self, mounts: dict[str, str] | None = None, file_mounts: list[str] | None = None
    ) -> None:
        self.mounts = pseudo_mounts() if mounts is None else mounts
        if file_mounts is None:
            file_mounts = file_mounts_under_dev() if mounts is None else []
        #: Mount points below a pseudo path that hold ordinary files (/dev/shm).
        self.file_mounts = file_mounts
        self.devices: dict[int, str] = {}
        for point, kind in self.mounts.items():
            try:
                self.devices[os.stat(point).st_dev] = kind
            except OSError:
                continue

    def kind_of_device(self, st: os.stat_result) -> str | None:
        return self.devices.get(st.st_dev)

    def describe(self, path: str) -> str | None:
        """Why ``path`` (a root the user named, a link's target) is a pseudo file system,
        or None if it is not one."""
        real = os.path.realpath(path)
        for prefix in PSEUDO_PATHS:
            if _is_under(real, (prefix,)) and not _is_under(real, self.file_mounts):
                return f"{prefix} is a pseudo file system"
        try:
            kind = self.kind_of_device(os.stat(real))
        except OSError:
            return None
        return f"{real} is on a pseudo file system ({kind})" if kind else None


def _is_under(path: str, folders: Iterable[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip(os.sep) + os.sep) for f in folders)


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
    on_link: LinkHandler | None = None,
    pseudo: PseudoFilesystems | None = None,
) -> Iterator[FileInfo]:
    """Yield every image file under ``roots`` once, following symlinks without looping.

    A folder is entered only if its (device, inode) has not been seen, which stops
    symlink loops and avoids walking the same folder twice through two links.
    Unreadable files and broken links go to ``on_error`` and the walk goes on; so do
    unreadable folders, unless ``on_folder_error`` is given to hear of those apart
    (the indexer keeps what it knew of a folder it could not read this time).

    Pseudo file systems (/proc, /sys, /dev and their kin) are never entered, through a
    link or as a mount met on the way. A link that leads outside the roots goes to
    ``on_link`` (once, where the walk first crosses out) and is followed unless
    ``options.skip_outside_links``; a link into a pseudo file system is always skipped.
    """
    opts = options or ScanOptions()
    report = on_error or (lambda _path, _reason: None)
    report_folder = on_folder_error or report
    report_link = on_link or (lambda _link, _target, _skipped: None)
    pseudo = pseudo or PseudoFilesystems()
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[str] = set()
    roots = [normalise_root(r) for r in roots]
    real_roots = [os.path.realpath(r) for r in roots]
    excludes = opts.excludes
    file_roots = any(os.path.isfile(r) for r in roots)

    for root in roots:
        try:
            st = os.stat(root)
        except OSError as exc:
            report(root, _reason(exc))
            continue
        if pseudo.kind_of_device(st) or pseudo.describe(root):
            continue  # the indexer refuses such roots with a message before scanning
        if stat.S_ISREG(st.st_mode):
            if os.path.splitext(root)[1].lower() in opts.extensions and root not in seen_files:
                seen_files.add(root)
                yield FileInfo.from_stat(root, st)
            continue
        # (folder, its stat, whether the walk already left the roots through a link)
        stack = [(root, st, False)]
        while stack:
            folder, folder_st, outside = stack.pop()
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
                name = entry.name
                if _skipped(name, opts) or (excludes and _excluded(entry.path, name, excludes)):
                    continue
                try:
                    entry_st = entry.stat(follow_symlinks=True)
                except FileNotFoundError:
                    if entry.is_symlink() and _has_image_ext(name, opts):
                        report(entry.path, "broken symbolic link")
                    continue
                except OSError as exc:
                    if _has_image_ext(name, opts):
                        report(entry.path, _reason(exc))
                    continue
                if pseudo.kind_of_device(entry_st):
                    continue  # /proc met as a mount, or a link into it: never entered
                is_dir = stat.S_ISDIR(entry_st.st_mode)
                is_image = stat.S_ISREG(entry_st.st_mode) and _has_image_ext(name, opts)
                entry_outside = outside
                if (is_dir or is_image) and entry.is_symlink():
                    target = os.path.realpath(entry.path)
                    if pseudo.describe(target):
                        continue
                    if not outside and not _is_under(target, real_roots):
                        report_link(entry.path, target, opts.skip_outside_links)
                        if opts.skip_outside_links:
                            continue
                        entry_outside = True
                if is_dir:
                    subfolders.append((entry.path, entry_st, entry_outside))
                elif is_image and not (file_roots and entry.path in seen_files):
                    # Each folder is walked once, so a path recurs only where a root
                    # named a file (no set of a million paths otherwise).
                    if file_roots:
                        seen_files.add(entry.path)
                    yield FileInfo.from_stat(entry.path, entry_st)
            stack.extend(reversed(subfolders))


def _has_image_ext(name: str, options: ScanOptions) -> bool:
    # os.path.splitext's answer without its generality (a third of a scan's own time at a
    # million files): the text from the last dot, unless only dots come before it.
    dot = name.rfind(".")
    if dot <= 0 or not name[:dot].strip("."):
        return False
    return name[dot:].lower() in options.extensions


def _reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "no such file or folder"
    if isinstance(exc, NotADirectoryError):
        return "not a folder"
    return (exc.strerror or str(exc)).lower()
