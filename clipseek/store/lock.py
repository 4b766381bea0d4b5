"""OS file locks that keep concurrent clipseek processes from damaging one index.

ChromaDB's embedded store is not safe for several writing processes, and it
rewrites its vector files in place. Two locks, both files inside the database
folder, keep it whole:

- the *writer lock* is held exclusively for a whole ``clipseek index`` run, so
  a second run waits (or, with ``--no-wait``, stops and says who holds it);
- the *data lock* is held exclusively while a writer calls into Chroma and
  shared while a reader (a query, the TUI) does, so a reader never loads vector
  files that are half rewritten, yet queries keep working during a long run.

Both are ``flock`` locks, which the kernel drops when the holding process dies
however it dies: a lock left by a killed process never blocks anyone. The
writer lock file also records who holds it (pid, host, start time, command),
purely so that the waiting process can name the holder.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from clipseek.errors import IndexBusyError, StoreError

WRITER_LOCK_NAME = "clipseek-writer.lock"
DATA_LOCK_NAME = "clipseek-data.lock"
LOCK_NAMES = frozenset({WRITER_LOCK_NAME, DATA_LOCK_NAME})

try:  # POSIX
    import fcntl

    def _try_lock(fd: int, exclusive: bool) -> bool:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _lock(fd: int, exclusive: bool) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # pragma: no cover - Windows: byte-range locks, exclusive only
    import msvcrt

    _WIN_OFFSET = 1 << 30  # lock a byte far past the holder text so it stays readable

    def _try_lock(fd: int, exclusive: bool) -> bool:
        os.lseek(fd, _WIN_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _lock(fd: int, exclusive: bool) -> None:
        while not _try_lock(fd, exclusive):
            time.sleep(0.05)

    def _unlock(fd: int) -> None:
        os.lseek(fd, _WIN_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _not_writable(folder: Path, exc: OSError) -> StoreError:
    return StoreError(
        f"The index folder {folder} is not writable ({exc.strerror or exc}). "
        "Choose another place with --db PATH or CLIPSEEK_DB."
    )


# --------------------------------------------------------------------------- writer lock


@dataclass(frozen=True)
class LockHolder:
    """Who holds the writer lock, as that process wrote it down."""

    pid: int | None
    host: str
    started: str
    command: str

    def describe(self) -> str:
        where = "this computer" if self.host == socket.gethostname() else f"host {self.host}"
        text = f"process {self.pid} on {where}" if self.pid else f"a process on {where}"
        if self.started:
            text += f", running since {self.started}"
        if self.command:
            text += f": {self.command}"
        return text


class WriterLock:
    """The one-writer-at-a-time lock for an index folder; use as a context manager."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / WRITER_LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> LockHolder | None:
        """The holder recorded in the lock file, or None if it cannot be read yet."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8") or "null")
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        pid = data.get("pid")
        return LockHolder(
            pid=pid if isinstance(pid, int) else None,
            host=str(data.get("host", "")),
            started=str(data.get("started", "")),
            command=str(data.get("command", "")),
        )

    def acquire(
        self,
        *,
        wait: bool = True,
        on_wait: Callable[[LockHolder | None], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
        poll: float = 0.2,
    ) -> bool:
        """Take the lock; returns False only if ``cancelled`` became true while waiting.

        Without ``wait``, a held lock raises :class:`IndexBusyError` naming the holder.
        ``on_wait`` is called once, when waiting starts, so the caller can say why it paused.
        """
        if self._fd is not None:
            return True
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except NotADirectoryError as exc:
            raise StoreError(
                f"Cannot create the index folder {self.folder}: a file is in the way "
                f"({exc.strerror}). Choose another place with --db PATH or CLIPSEEK_DB."
            ) from None
        except OSError as exc:
            raise _not_writable(self.folder, exc) from None
        told = False
        try:
            while not _try_lock(fd, exclusive=True):
                if not wait:
                    raise IndexBusyError(self._busy_message(self.holder()))
                if not told:
                    told = True
                    if on_wait is not None:
                        on_wait(self.holder())
                if cancelled is not None and cancelled():
                    os.close(fd)
                    return False
                time.sleep(poll)
        except BaseException:
            with suppress(OSError):
                os.close(fd)
            raise
        self._fd = fd
        self._write_holder()
        return True

    def _busy_message(self, holder: LockHolder | None) -> str:
        who = holder.describe() if holder else "another clipseek process"
        return (
            f"Another clipseek index run ({who}) is updating the index at {self.folder}. "
            "Try again when it has finished, or leave out --no-wait to wait for it."
        )

    def _write_holder(self) -> None:
        assert self._fd is not None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(["clipseek", *sys.argv[1:]])[:300],
        }
        try:
            os.ftruncate(self._fd, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)
            os.write(self._fd, json.dumps(info).encode("utf-8", "backslashreplace"))
        except OSError:
            pass  # the record is a courtesy for the waiting process; the lock is what counts

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with suppress(OSError):
            os.ftruncate(fd, 0)
        try:
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# --------------------------------------------------------------------------- data lock


class DataLock:
    """Shared for reading, exclusive for writing; re-entrant within a process.

    One instance exists per folder and process (see :func:`data_lock`), and
    threads of that process take turns through a re-entrant mutex, because a
    process cannot hold ``flock`` in two modes at once.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / DATA_LOCK_NAME
        self._mutex = threading.RLock()
        self._fd: int | None = None
        self._modes: list[bool] = []  # stack of "exclusive?" for nested holds

    def _open(self, create: bool) -> int | None:
        if self._fd is not None:
            return self._fd
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        try:
            self._fd = os.open(self.path, flags, 0o644)
        except OSError:
            try:  # a read-only index (a shared drive, say) can still be read under a lock
                self._fd = os.open(self.path, os.O_RDONLY)
            except OSError:
                return None  # no lock file and no way to make one: nobody can be writing
        return self._fd

    @contextmanager
    def hold(self, exclusive: bool) -> Iterator[None]:
        with self._mutex:
            current = any(self._modes)
            need_change = not self._modes or (exclusive and not current)
            fd = self._open(create=exclusive or self.folder.is_dir()) if need_change else self._fd
            if need_change and fd is not None:
                _lock(fd, exclusive or current)
            self._modes.append(exclusive or current)
            try:
                yield
            finally:
                self._modes.pop()
                if fd is not None and need_change:
                    if self._modes:
                        _lock(fd, any(self._modes))  # back to the mode held before
                    else:
                        _unlock(fd)

    def shared(self) -> AbstractContextManager[None]:
        return self.hold(exclusive=False)

    def exclusive(self) -> AbstractContextManager[None]:
        return self.hold(exclusive=True)


_data_locks: dict[str, DataLock] = {}
_data_locks_guard = threading.Lock()


def data_lock(folder: str | os.PathLike[str]) -> DataLock:
    """The process-wide data lock for ``folder``."""
    key = os.path.realpath(os.fspath(folder))
    with _data_locks_guard:
        lock = _data_locks.get(key)
        if lock is None:
            lock = _data_locks[key] = DataLock(Path(key))
        return lock
