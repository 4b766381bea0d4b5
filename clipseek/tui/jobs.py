"""What the app knows about an indexing run, built from the engine's events.

The run lives on a worker thread and outlives the indexing screen (the user may go
back to searching), so its state is kept here, in one plain object the screens
read from, rather than in the widgets of a screen that may not be on display.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clipseek.indexing import events as ev
#: At most this many failures are kept for display; the count stays exact.
MAX_FAILURES_SHOWN = 1000


@dataclass
class IndexJob:
    roots: list[str]
    model: str
    location: str
    clock: Callable[[], float]
    started: float = 0.0
    cancel: threading.Event = field(default_factory=threading.Event)
    phase: str = "Starting"
    found: int = 0
    plan: ev.PlanReady | None = None
    batch: ev.BatchDone | None = None
    device: str | None = None
    precision: str | None = None
    failures: list[ev.FileFailed] = field(default_factory=list)
    failed_count: int = 0
    notices: list[str] = field(default_factory=list)
    summary: ev.IndexSummary | None = None
    error: str | None = None
    finished_at: float | None = None

    def __post_init__(self) -> None:
        if not self.started:
            self.started = self.clock()

    # -- state

    @property
    def running(self) -> bool:
        return self.summary is None and self.error is None

    @property
    def cancelling(self) -> bool:
        return self.running and self.cancel.is_set()

    def request_cancel(self) -> bool:
        """Ask the indexer to stop after the batch in flight; False if nothing to stop."""
        if not self.running or self.cancel.is_set():
            return False
        self.cancel.set()
        return True

    # -- events

    def apply(self, event: ev.IndexEvent) -> None:
        # Lazy: the engine's modules load after the first paint.
        from clipseek.indexing import events as ev

        if isinstance(event, ev.ScanProgress):
            self.found = event.found
            self.phase = f"Scanning · {event.found:,} images found"
        elif isinstance(event, ev.PlanReady):
            self.plan = event
            self.found = event.total
            self.phase = "Embedding" if event.to_embed else "Up to date"
        elif isinstance(event, ev.ModelLoading):
            self.phase = f"Loading {event.model}"
        elif isinstance(event, ev.ModelReady):
            self.device, self.precision = event.device, event.precision
            self.phase = f"Embedding on {event.device} ({event.precision})"
        elif isinstance(event, ev.BatchDone):
            self.batch = event
        elif isinstance(event, ev.FileFailed):
            self.failed_count += 1
            if len(self.failures) < MAX_FAILURES_SHOWN:
                self.failures.append(event)
        elif isinstance(event, ev.Notice):
            self.notices.append(event.message)
        elif isinstance(event, ev.IndexFinished):
            self.summary = event.summary
            self.finished_at = self.clock()
            self.phase = "Stopped" if event.summary.cancelled else "Done"

    def fail(self, message: str) -> None:
        self.error = message
        self.finished_at = self.clock()
        self.phase = "Failed"

    # -- figures for display

    @property
    def to_embed(self) -> int:
        return self.plan.to_embed if self.plan else 0

    @property
    def done(self) -> int:
        return self.batch.done if self.batch else 0

    @property
    def embedded(self) -> int:
        if self.summary is not None:
            return self.summary.embedded
        return self.batch.embedded if self.batch else 0

    @property
    def rate(self) -> float:
        if self.summary is not None:
            return self.summary.images_per_second
        return self.batch.images_per_second if self.batch else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate; None before the first batch or when finished."""
        if not self.running or self.batch is None or self.rate <= 0:
            return None
        return max(0, self.to_embed - self.done) / self.rate

    @property
    def elapsed(self) -> float:
        end = self.finished_at if self.finished_at is not None else self.clock()
        return max(0.0, end - self.started)

    def counts(self) -> dict[str, int]:
        """new / updated / unchanged / removed / failed: planned while running, actual after."""
        if self.summary is not None:
            s = self.summary
            return {
                "new": s.new,
                "updated": s.updated,
                "unchanged": s.unchanged,
                "removed": s.removed,
                "failed": len(s.failed),
            }
        plan = self.plan
        return {
            "new": plan.new if plan else 0,
            "updated": plan.changed if plan else 0,
            "unchanged": plan.unchanged if plan else 0,
            "removed": plan.removed if plan else 0,
            "failed": self.failed_count,
        }

    def outcome(self) -> str:
        """One sentence for a notification when the run ends."""
        if self.error is not None:
            return self.error
        s = self.summary
        if s is None:
            return self.phase
        parts = f"{s.new} new, {s.updated} updated, {s.removed} removed, {len(s.failed)} failed"
        if s.cancelled:
            return f"Stopped: {parts}. Index the folder again to carry on where it stopped."
        if not s.embedded and not s.removed:
            return f"The index was already up to date ({s.unchanged:,} images)."
        return f"Indexed: {parts}."
