"""Keeping an index in step with folders of images.

A run scans (stat only), compares with what the index holds, and embeds only new
and changed files. Files are decoded by a small thread pool while the model
works on the previous batch; each batch is written as soon as it is embedded, so
an interrupted run loses at most the batch in flight and the next run resumes.
Progress leaves the engine as events; what to draw is the caller's business.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clipseek.errors import ClipseekError, ImageReadError
from clipseek.imaging import ImageInfo, load_for_model, worth_retrying
from clipseek.scanner import FileInfo, ScanOptions, normalise_root, scan
from clipseek.store import ImageIndex, Record, Store, StoredEntry, path_id

if TYPE_CHECKING:
    from clipseek.models import ClipModel, ModelSpec


# --------------------------------------------------------------------------- events


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

    @property
    def embedded(self) -> int:
        return self.new + self.updated

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.embed_seconds if self.embed_seconds > 0 else 0.0


@dataclass(frozen=True)
class IndexOptions:
    batch_size: int = 32
    include_hidden: bool = False
    excludes: tuple[str, ...] = ()
    rebuild: bool = False
    max_megapixels: float | None = 200.0
    decode_workers: int | None = None

    def workers(self) -> int:
        if self.decode_workers:
            return max(1, self.decode_workers)
        return max(2, min(8, os.cpu_count() or 2))


# --------------------------------------------------------------------------- indexer


@dataclass
class _Plan:
    files: list[FileInfo]
    to_embed: list[FileInfo]
    changed_ids: set[str]
    removed_ids: list[str]
    unchanged: int
    known_failures: list[FileFailed]
    gone_failures: list[str]


class Indexer:
    """Indexes folders for one model into one store."""

    def __init__(
        self,
        store: Store,
        spec: ModelSpec,
        load_model: Callable[[], ClipModel],
        options: IndexOptions | None = None,
    ) -> None:
        self.store = store
        self.spec = spec
        self._load_model = load_model
        self.options = options or IndexOptions()

    def run(
        self,
        roots: Sequence[str | os.PathLike[str]],
        on_event: EventHandler | None = None,
        cancel: threading.Event | None = None,
    ) -> IndexSummary:
        started = time.perf_counter()
        emit: EventHandler = on_event or (lambda _event: None)
        cancel = cancel or threading.Event()
        norm_roots = self._check_roots(roots)
        summary = IndexSummary(roots=norm_roots)

        files = self._scan(norm_roots, emit, summary, cancel)
        if cancel.is_set():
            # A scan cut short would make every file it did not reach look deleted.
            summary.cancelled = True
            summary.elapsed = time.perf_counter() - started
            emit(IndexFinished(summary))
            return summary
        index = self.store.open_index(self.spec.key, self.spec.collection_slug)
        plan = self._plan(files, norm_roots, index, emit)
        summary.total = len(files)
        summary.unchanged = plan.unchanged
        for failure in plan.known_failures:
            summary.failed.append(failure)
            emit(failure)
        emit(
            PlanReady(
                total=len(files),
                new=len(plan.to_embed) - len(plan.changed_ids),
                changed=len(plan.changed_ids),
                unchanged=plan.unchanged,
                removed=len(plan.removed_ids),
            )
        )

        stale: list[str] = []
        if plan.to_embed and not cancel.is_set():
            emit(ModelLoading(self.spec.name))
            model = self._load_model()
            summary.model_loaded = True
            emit(ModelReady(self.spec.name, model.device, model.precision))
            if index is None:
                index = self.store.create_index(
                    self.spec.key, self.spec.name, self.spec.collection_slug, model.dim
                )
            elif index.dim and index.dim != model.dim:
                raise ClipseekError(
                    f"The index holds {index.dim}-dimensional vectors but {self.spec.name} "
                    f"makes {model.dim}-dimensional ones; rebuild with `clipseek index --rebuild`."
                )
            stale = self._embed(plan, model, index, emit, cancel, summary)

        if index is not None:
            # Files that changed and can no longer be read must not keep their old vector.
            index.delete([*plan.removed_ids, *stale])
            index.forget_failures(plan.gone_failures)
            summary.removed = len(plan.removed_ids)
            index.add_roots(norm_roots)
        summary.elapsed = time.perf_counter() - started
        emit(IndexFinished(summary))
        return summary

    # -- steps

    def _check_roots(self, roots: Sequence[str | os.PathLike[str]]) -> list[str]:
        if not roots:
            raise ClipseekError("Name at least one folder to index.")
        out = []
        for root in roots:
            norm = normalise_root(root)
            if not os.path.exists(norm):
                raise ClipseekError(f"{norm} does not exist; nothing was indexed.")
            if not os.path.isdir(norm):
                raise ClipseekError(f"{norm} is not a folder; `clipseek index` takes folders.")
            out.append(norm)
        return list(dict.fromkeys(out))

    def _scan(
        self,
        roots: list[str],
        emit: EventHandler,
        summary: IndexSummary,
        cancel: threading.Event | None = None,
    ) -> list[FileInfo]:
        self._unreadable_folders: list[str] = []

        def on_error(path: str, reason: str) -> None:
            failure = FileFailed(path, reason)
            summary.failed.append(failure)
            emit(failure)

        def on_folder_error(path: str, reason: str) -> None:
            self._unreadable_folders.append(path)
            on_error(path, reason)

        options = ScanOptions(
            include_hidden=self.options.include_hidden, excludes=tuple(self.options.excludes)
        )
        files = []
        for info in scan(roots, options, on_error, on_folder_error):
            if cancel is not None and cancel.is_set():
                break  # run() then stops without touching the index
            files.append(info)
            if len(files) % 500 == 0:
                emit(ScanProgress(len(files)))
        emit(ScanProgress(len(files)))
        return files

    def _plan(
        self,
        files: list[FileInfo],
        roots: list[str],
        index: ImageIndex | None,
        emit: EventHandler,
    ) -> _Plan:
        stored: dict[str, StoredEntry] = {}
        failures: dict[str, StoredEntry] = {}
        per_root: dict[str, int] = {}
        if index is not None:
            for root in roots:
                entries = index.entries(under=root)
                per_root[root] = len(entries)
                stored.update(entries)
                failures.update(index.failures(under=root))

        on_disk: dict[str, FileInfo] = {path_id(f.path): f for f in files}
        to_embed: list[FileInfo] = []
        changed: set[str] = set()
        unchanged = 0
        known_failures: list[FileFailed] = []
        for id_, info in on_disk.items():
            entry = stored.get(id_)
            failure = failures.get(id_)
            if (
                entry is None
                and failure is not None
                and not self.options.rebuild
                and (failure.size, failure.mtime_ns) == (info.size, info.mtime_ns)
                and not worth_retrying(str(failure.extra.get("reason", "")))
            ):
                # Unreadable last time and untouched since: no need to try again.
                known_failures.append(
                    FileFailed(info.path, str(failure.extra.get("reason", "unreadable")))
                )
            elif entry is None:
                to_embed.append(info)
            elif self.options.rebuild or entry.size != info.size or entry.mtime_ns != info.mtime_ns:
                to_embed.append(info)
                changed.add(id_)
            else:
                unchanged += 1

        removed = [id_ for id_ in stored if id_ not in on_disk]
        unreadable = getattr(self, "_unreadable_folders", [])
        if unreadable:  # a folder that could not be read this time has not lost its images
            removed = [
                i for i in removed if not any(_is_under(stored[i].path, d) for d in unreadable)
            ]
        if removed and not self.options.rebuild:
            removed = self._guard_empty_roots(removed, stored, files, roots, per_root, emit)
        # Forget failures of files now gone, and of files that have a vector after all (a run
        # killed between writing a batch and clearing its old failure records).
        gone_failures = [
            id_
            for id_ in failures
            if id_ not in on_disk or (id_ in stored and _same_stat(stored[id_], on_disk[id_]))
        ]
        return _Plan(files, to_embed, changed, removed, unchanged, known_failures, gone_failures)

    def _guard_empty_roots(
        self,
        removed: list[str],
        stored: dict[str, StoredEntry],
        files: list[FileInfo],
        roots: list[str],
        per_root: dict[str, int],
        emit: EventHandler,
    ) -> list[str]:
        """A root that suddenly holds no images is more often an unmounted drive than a
        deliberate clear-out; keep its entries unless the user asks for --rebuild."""
        keep_under: list[str] = []
        for root in roots:
            if per_root.get(root) and not any(_is_under(f.path, root) for f in files):
                keep_under.append(root)
                emit(
                    Notice(
                        f"Found no images in {root}, where the index has {per_root[root]}; "
                        "kept them (an unmounted drive?). "
                        "Use --rebuild if the folder is really empty."
                    )
                )
        if not keep_under:
            return removed
        return [i for i in removed if not any(_is_under(stored[i].path, r) for r in keep_under)]

    def _embed(
        self,
        plan: _Plan,
        model: ClipModel,
        index: ImageIndex,
        emit: EventHandler,
        cancel: threading.Event,
        summary: IndexSummary,
    ) -> list[str]:
        """Decode ahead on threads, embed and write batch by batch; returns ids to drop."""
        batch_size = self.options.batch_size
        total = len(plan.to_embed)
        lookahead = 2 * batch_size
        stale: list[str] = []
        pending: deque[tuple[FileInfo, Future[Any]]] = deque()
        queue = iter(plan.to_embed)
        batch: list[tuple[FileInfo, Any, ImageInfo]] = []
        new_failures: list[tuple[str, int, int, str]] = []
        done = failed = batch_number = 0
        t0 = time.perf_counter()

        def submit_more(pool: ThreadPoolExecutor) -> None:
            while len(pending) < lookahead:
                info = next(queue, None)
                if info is None:
                    return
                pending.append(
                    (
                        info,
                        pool.submit(
                            load_for_model,
                            info.path,
                            model.transform,
                            model.image_size,
                            self.options.max_megapixels,
                        ),
                    )
                )

        def flush() -> None:
            nonlocal batch_number, done
            if not batch:
                index.record_failures(new_failures)
                new_failures.clear()
                return
            import torch

            batch_number += 1
            vectors = model.encode_images(torch.stack([tensor for _, tensor, _ in batch]))
            records = []
            for (info, _tensor, dims), vector in zip(batch, vectors, strict=True):
                records.append(
                    Record(info.path, vector, info.size, info.mtime_ns, dims.width, dims.height)
                )
                if path_id(info.path) in plan.changed_ids:
                    summary.updated += 1
                else:
                    summary.new += 1
            index.upsert(records)
            index.forget_failures([path_id(info.path) for info, _, _ in batch])
            index.record_failures(new_failures)
            new_failures.clear()
            done += len(batch)
            size = len(batch)
            batch.clear()
            summary.embed_seconds = time.perf_counter() - t0
            emit(
                BatchDone(
                    number=batch_number,
                    size=size,
                    done=done + failed,
                    total=total,
                    embedded=summary.embedded,
                    failed=failed,
                    images_per_second=summary.images_per_second,
                )
            )

        with ThreadPoolExecutor(
            self.options.workers(), thread_name_prefix="clipseek-decode"
        ) as pool:
            try:
                submit_more(pool)
                while pending:
                    info, future = pending.popleft()
                    try:
                        tensor, dims = future.result()
                    except ImageReadError as exc:
                        failed += 1
                        failure = FileFailed(info.path, exc.reason)
                        summary.failed.append(failure)
                        emit(failure)
                        new_failures.append((info.path, info.size, info.mtime_ns, exc.reason))
                        if path_id(info.path) in plan.changed_ids:
                            stale.append(path_id(info.path))
                    else:
                        batch.append((info, tensor, dims))
                    submit_more(pool)
                    if len(batch) >= batch_size or not pending:
                        flush()
                        if cancel.is_set():
                            summary.cancelled = True
                            break
            finally:
                for _info, future in pending:
                    future.cancel()
        summary.embed_seconds = time.perf_counter() - t0
        return stale


def _same_stat(entry: StoredEntry, info: FileInfo) -> bool:
    return (entry.size, entry.mtime_ns) == (info.size, info.mtime_ns)


def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)
