"""What an index run reports as it goes: events for a progress display, and the summary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ScanProgress:
    """Emitted every few hundred files while walking the folders."""

    found: int


@dataclass(frozen=True)
class PlanReady:
    """The scan is done and the work is known."""

    total: int
    new: int
    changed: int
    unchanged: int
    removed: int
    #: Of ``new + changed``, how many take a stored vector (same bytes) without a model run.
    reused: int = 0

    @property
    def to_embed(self) -> int:
        return self.new + self.changed


@dataclass(frozen=True)
class ModelLoading:
    model: str


@dataclass(frozen=True)
class ModelReady:
    model: str
    device: str
    precision: str


@dataclass(frozen=True)
class BatchDone:
    """One batch is embedded and written: ``done`` of ``total`` files are dealt with."""

    number: int
    size: int
    done: int
    total: int
    embedded: int
    failed: int
    images_per_second: float


@dataclass(frozen=True)
class FileFailed:
    path: str
    reason: str


@dataclass(frozen=True)
class Notice:
    """Something the user should know that is not an error (a root kept as it was, say)."""

    message: str


@dataclass(frozen=True)
class IndexFinished:
    summary: IndexSummary


IndexEvent = (
    ScanProgress
    | PlanReady
    | ModelLoading
    | ModelReady
    | BatchDone
    | FileFailed
    | Notice
    | IndexFinished
)
EventHandler = Callable[[IndexEvent], None]


@dataclass
class IndexSummary:
    roots: list[str]
    total: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: list[FileFailed] = field(default_factory=list)
    cancelled: bool = False
    model_loaded: bool = False
    elapsed: float = 0.0
    embed_seconds: float = 0.0
    #: Of the run, seconds spent writing embedded batches to the store (behind the model
    #: on a GPU, inline on a CPU).
    write_seconds: float = 0.0
    #: Of ``new + updated``, files whose stored vector was reused (same bytes elsewhere).
    reused: int = 0
    #: Model forward passes (batches) this run; 0 when everything was reused or unchanged.
    model_batches: int = 0
    #: torch intra-op threads in use when embedding ended (0: no embedding this run).
    torch_threads: int = 0
    #: Links that lead outside the indexed folders: (link, real target). Followed unless
    #: ``IndexOptions.skip_outside_links``; ``clipseek serve`` does not share what is behind.
    outside_links: list[tuple[str, str]] = field(default_factory=list)
    #: Of ``failed``, the folders that could not be read (not files).
    unreadable_folders: list[str] = field(default_factory=list)

    @property
    def embedded(self) -> int:
        """Files that went through the model in this run."""
        return self.new + self.updated - self.reused

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.embed_seconds if self.embed_seconds > 0 else 0.0
