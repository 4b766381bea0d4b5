"""Writing embedded batches to the index, inline or on a thread behind the model."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from clipseek.store import ImageIndex, Record, path_id


@dataclass
class WriteJob:
    """One embedded batch and the failures met since the last one, written together."""

    records: list[Record]
    failures: list[tuple[str, int, int, str]]
    new: int = 0
    updated: int = 0


class BatchWriter:
    """Writes batches to the index in order: at once, or on a thread behind the model.

    Each write stores the vectors, then clears the files' old failure records and
    records new ones, as the inline path always did; a job is only reported (and
    counted in the summary) once written. Behind the model, jobs that queued up while a
    write was running go to Chroma as one larger write (Chroma inserts faster in large
    batches); the queue is short, so a killed run loses at most the few batches that
    were embedded but not yet written, and the next run embeds them again.
    """

    def __init__(
        self, index: ImageIndex, *, asynchronous: bool, coalesce: int, queued: int
    ) -> None:
        self._index = index
        self._done: deque[WriteJob] = deque()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._coalesce = coalesce
        #: Time spent in the store's writes, for the run's summary (a first index on a
        #: CPU writes inline: this is the share of its time that Chroma takes).
        self.seconds = 0.0
        if asynchronous:
            import queue as queue_module

            self._queue: Any = queue_module.Queue(maxsize=queued)
            self._thread = threading.Thread(target=self._loop, name="clipseek-write", daemon=True)
            self._thread.start()

    def put(self, job: WriteJob) -> None:
        if self._thread is None:
            self._write([job])
            self._done.append(job)
            return
        import queue as queue_module

        while True:
            self._raise()
            try:
                self._queue.put(job, timeout=0.2)
                return
            except queue_module.Full:
                continue

    def completed(self) -> list[WriteJob]:
        out = []
        while self._done:
            out.append(self._done.popleft())
        self._raise()
        return out

    def finish(self) -> None:
        """Wait until everything queued is written; raise what a write raised."""
        self.close()
        self._raise()

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            while self._thread.is_alive():
                try:
                    self._queue.put(None, timeout=0.2)
                    break
                except Exception:
                    continue
            self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _loop(self) -> None:
        import queue as queue_module

        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs, count, stop = [job], len(job.records), False
            while count < self._coalesce:
                try:
                    more = self._queue.get_nowait()
                except queue_module.Empty:
                    break
                if more is None:
                    stop = True
                    break
                jobs.append(more)
                count += len(more.records)
            try:
                self._write(jobs)
            except BaseException as exc:
                self._error = exc
                while True:  # unblock a producer waiting on a full queue
                    try:
                        self._queue.get_nowait()
                    except queue_module.Empty:
                        return
            self._done.extend(jobs)
            if stop:
                return

    def _write(self, jobs: list[WriteJob]) -> None:
        records = [r for job in jobs for r in job.records]
        failures = [f for job in jobs for f in job.failures]
        started = time.perf_counter()
        try:
            if records:
                self._index.upsert(records)
                self._index.forget_failures([path_id(r.path) for r in records])
            self._index.record_failures(failures)
        finally:
            self.seconds += time.perf_counter() - started
