"""Keeping an index in step with folders of images.

A run scans (stat only), compares with what the index holds, and embeds only new
and changed files. A file whose bytes the index already holds under another name
(renamed, moved, copied, or only touched) takes its stored vector instead of a
model run: same size and same hash of its first and last MiB. Files are decoded by
a small thread pool while the model works on the previous batch; each batch is
written as soon as it is embedded, so an interrupted run loses at most the batch in
flight and the next run resumes. Progress leaves the engine as events; what to draw
is the caller's business.
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
from clipseek.indexing.decoders import SharedDecoder
from clipseek.indexing.events import (
    BatchDone,
    EventHandler,
    FileFailed,
    IndexFinished,
    IndexSummary,
    ModelLoading,
    ModelReady,
    Notice,
    PlanReady,
    ScanProgress,
)
from clipseek.indexing.fingerprint import (
    content_hash,
    identity_changed,
    identity_unknown,
    same_stat,
    stat_extra,
)
from clipseek.indexing.model_loading import BackgroundLoad, warm_image_tower
from clipseek.indexing.options import (
    CPU_BATCH_SIZE,
    WRITE_BATCH,
    IndexOptions,
    decode_in_processes,
    default_batch_size,
)
from clipseek.indexing.scanner import FileInfo, PseudoFilesystems, ScanOptions, normalise_root, scan
from clipseek.indexing.threads import ThreadTuner, thread_plan
from clipseek.indexing.writer import BatchWriter, WriteJob
from clipseek.models.preprocess import pil_supported
from clipseek.photos.imaging import ImageInfo, load_for_model, worth_retrying
from clipseek.photos.metadata import META_KEYS, PhotoMeta, carried_metadata, read_photo_meta
from clipseek.store import ImageIndex, Record, Store, StoredEntry, path_id

if TYPE_CHECKING:
    from clipseek.indexing.decoders import ImagePrep
    from clipseek.indexing.unchanged import TreeDelta
    from clipseek.models import Embedder, ModelSpec


# --------------------------------------------------------------------------- indexer


@dataclass(frozen=True)
class _Reuse:
    """A file whose bytes the index already embedded (under this or another name)."""

    info: FileInfo
    digest: str
    source_id: str


@dataclass
class _Plan:
    to_embed: list[FileInfo]
    changed_ids: set[str]
    removed_ids: list[str]
    unchanged: int
    known_failures: list[FileFailed]
    gone_failures: list[str]
    reuse: list[_Reuse] = field(default_factory=list)
    #: Content hashes already computed while planning, by path.
    digests: dict[str, str] = field(default_factory=dict)
    #: Unchanged files whose record predates ctime/inode: those are added, nothing else.
    restat: list[FileInfo] = field(default_factory=list)
    #: Unchanged files indexed before clipseek read photo metadata: (id, file).
    backfill: list[tuple[str, FileInfo]] = field(default_factory=list)


class Indexer:
    """Indexes folders for one model into one store."""

    def __init__(
        self,
        store: Store,
        spec: ModelSpec,
        load_model: Callable[[int], Embedder],
        options: IndexOptions | None = None,
    ) -> None:
        self.store = store
        self.spec = spec
        #: Called with the number of images to embed: the runtime is chosen for the run.
        self._load_model = load_model
        self.options = options or IndexOptions()

    def run(
        self,
        roots: Sequence[str | os.PathLike[str]],
        on_event: EventHandler | None = None,
        cancel: threading.Event | None = None,
        delta: TreeDelta | None = None,
    ) -> IndexSummary:
        """Index ``roots``. ``delta``: the tree already scanned and compared with the
        index's records (:func:`~clipseek.indexing.unchanged.tree_delta`, under the
        writer lock this run holds): only the files that differ are planned."""
        started = time.perf_counter()
        emit: EventHandler = on_event or (lambda _event: None)
        cancel = cancel or threading.Event()
        norm_roots = self._check_roots(roots)
        summary = IndexSummary(roots=norm_roots)

        if delta is not None and not self.options.rebuild:
            files = delta.files
            summary.outside_links = list(delta.links)
            emit(ScanProgress(len(files)))
        else:
            delta = None
            files = self._scan(norm_roots, emit, summary, cancel)
        if cancel.is_set():
            # A scan cut short would make every file it did not reach look deleted.
            summary.cancelled = True
            summary.elapsed = time.perf_counter() - started
            emit(IndexFinished(summary))
            return summary
        index = self.store.open_index(self.spec.key, self.spec.collection_slug)
        if index is not None and index.migrate():  # older key schema: before any comparison
            emit(Notice(f"Updated the index at {self.store.location} to the current format."))
        plan = self._plan(files, norm_roots, index, emit, delta)
        summary.total = len(files)
        summary.unchanged = plan.unchanged
        for failure in plan.known_failures:
            summary.failed.append(failure)
            emit(failure)
        emit(
            PlanReady(
                total=len(files),
                new=len(plan.to_embed) + len(plan.reuse) - len(plan.changed_ids),
                changed=len(plan.changed_ids),
                unchanged=plan.unchanged,
                removed=len(plan.removed_ids),
                reused=len(plan.reuse),
            )
        )
        progress = _Progress(total=len(plan.to_embed) + len(plan.reuse))

        stale: list[str] = []
        loading: BackgroundLoad | None = None

        def load() -> Embedder:
            return self._load_model(len(plan.to_embed))

        if plan.to_embed and not cancel.is_set():
            # The model loads (imports, weights) while stored vectors are copied and the
            # first files are fingerprinted; CUDA itself waits for the first batch.
            loading = BackgroundLoad(load)
        if plan.reuse and index is not None and not cancel.is_set():
            self._reuse(plan, index, emit, summary, progress)
        if plan.to_embed and not cancel.is_set():
            emit(ModelLoading(self.spec.name))
            if loading is None:  # files whose stored vector vanished meanwhile
                loading = BackgroundLoad(load)
            self._hash_ahead(plan, loading, cancel)
            model = loading.result()
            warm_image_tower(model)
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
            stale = self._embed(plan, model, index, emit, cancel, summary, progress)

        if index is not None:
            # Files that changed and can no longer be read must not keep their old vector.
            index.delete([*plan.removed_ids, *stale])
            index.forget_failures(plan.gone_failures)
            index.record_file_ids([(path_id(f.path), stat_extra(f)) for f in plan.restat])
            summary.removed = len(plan.removed_ids)
            index.add_roots(norm_roots)
            if plan.backfill and not cancel.is_set():
                self._backfill(plan.backfill, index, emit)
        summary.elapsed = time.perf_counter() - started
        if summary.write_seconds:
            # Lazy: logging is not on a quick run's path (and --debug shows this line).
            import logging

            logging.getLogger("clipseek").debug(
                "writing to the index took %.2f s of the run's %.2f s",
                summary.write_seconds,
                summary.elapsed,
            )
        emit(IndexFinished(summary))
        return summary

    # -- steps

    def _check_roots(self, roots: Sequence[str | os.PathLike[str]]) -> list[str]:
        return check_roots(roots)

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
            summary.unreadable_folders.append(path)
            on_error(path, reason)

        def on_link(link: str, target: str, skipped: bool) -> None:
            summary.outside_links.append((link, target))

        options = ScanOptions(
            include_hidden=self.options.include_hidden,
            excludes=tuple(self.options.excludes),
            skip_outside_links=self.options.skip_outside_links,
        )
        files = []
        for info in scan(roots, options, on_error, on_folder_error, on_link):
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
        delta: TreeDelta | None = None,
    ) -> _Plan:
        stored: dict[str, StoredEntry] = {}
        failures: dict[str, StoredEntry] = {}
        per_root: dict[str, int] = {}
        considered = files
        # Delta planned: only the entries of files that differ, of records whose file went
        # and of recorded failures, by id: O(changes) (docs/PERFORMANCE.md).
        from_delta = delta is not None and index is not None
        if index is not None:
            for root in roots:
                failures.update(index.failures(under=root))
        if from_delta:
            per_root = dict(delta.per_root)
            considered = delta.differing
            removed_ids = [path_id(p) for p in delta.removed]
            stored = index.lookup([*(path_id(f.path) for f in considered), *removed_ids])
            stored.update(index.lookup([i for i in failures if i not in stored]))
        elif index is not None:
            for root in roots:
                entries = index.entries(under=root)
                per_root[root] = len(entries)
                stored.update(entries)

        on_disk: dict[str, FileInfo] = {path_id(f.path): f for f in considered}
        to_embed: list[FileInfo] = []
        changed: set[str] = set()
        unchanged = 0
        known_failures: list[FileFailed] = []
        restat: list[FileInfo] = []
        backfill: list[tuple[str, FileInfo]] = []
        # The files the recorded failures name, where the scan found them.
        failed_on_disk = on_disk
        if from_delta:
            unchanged = delta.unchanged
            known_failures = list(delta.known)
            failed_on_disk = delta.files_at({f.path for f in failures.values()})
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
            elif (
                self.options.rebuild
                or entry.size != info.size
                or entry.mtime_ns != info.mtime_ns
                or identity_changed(entry, info)
            ):
                # A new ctime or inode with the same size and mtime is confirmed by the
                # content hash (_find_reusable): same bytes keep their vector, no model run.
                to_embed.append(info)
                changed.add(id_)
            else:
                unchanged += 1
                if identity_unknown(entry, info):
                    restat.append(info)
                if META_KEYS[0] not in entry.extra:
                    backfill.append((id_, info))

        if from_delta:
            removed = [i for i in removed_ids if i in stored]
        else:
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
            if id_ not in failed_on_disk
            or (id_ in stored and same_stat(stored[id_], failed_on_disk[id_]))
        ]
        plan = _Plan(to_embed, changed, removed, unchanged, known_failures, gone_failures)
        plan.restat = restat
        plan.backfill = backfill
        if index is not None and to_embed and not self.options.rebuild:
            self._find_reusable(plan, index, stored, delta.sizes if delta is not None else None)
        return plan

    def _find_reusable(
        self,
        plan: _Plan,
        index: ImageIndex,
        stored: dict[str, StoredEntry],
        known_sizes: set[int] | None = None,
    ) -> None:
        """Move files whose bytes the index already holds from ``to_embed`` to ``reuse``.

        Only files whose size matches a stored file are hashed, so a first run over new
        photos reads nothing extra here; a renamed folder is all matches and is written
        back from the stored vectors without decoding an image or loading the model.
        ``known_sizes``: the size of every record (a delta's plan, where ``stored`` holds
        only the entries that differ); the records that may match are then found by the
        candidates' hashes, however many records share their sizes.
        """
        # Keyed by size and hash, not size alone: files of one size are common (a camera's
        # uncompressed formats, generated images), and a renamed folder of them compared
        # each file with every stored one of its size: quadratic (docs/PERFORMANCE.md).
        by_content: dict[tuple[int, str], list[StoredEntry]] = {}
        for entry in stored.values():
            if entry.extra.get("content_hash"):
                key = (entry.size, str(entry.extra["content_hash"]))
                by_content.setdefault(key, []).append(entry)
        if known_sizes is not None:
            candidates = [f for f in plan.to_embed if f.size in known_sizes]
        else:
            sizes = {size for size, _ in by_content}
            elsewhere = {f.size for f in plan.to_embed} - sizes
            if elsewhere:  # the same bytes may be indexed under another root
                for entry in index.entries_with_sizes(sorted(elsewhere)).values():
                    if entry.extra.get("content_hash") and entry.id not in stored:
                        key = (entry.size, str(entry.extra["content_hash"]))
                        by_content.setdefault(key, []).append(entry)
                        sizes.add(entry.size)
            candidates = [f for f in plan.to_embed if f.size in sizes]
        if not candidates:
            return

        def digest(info: FileInfo) -> str | None:
            try:
                return content_hash(info.path, info.size)
            except OSError:
                return None  # the decoder will meet the same problem and report it

        workers = self.options.workers()
        with ThreadPoolExecutor(workers, thread_name_prefix="clipseek-hash") as pool:
            digests = list(pool.map(digest, candidates))
        if known_sizes is not None:
            found = index.entries_with_hashes(sorted({d for d in digests if d}))
            for entry in found.values():
                if entry.id not in stored:
                    key = (entry.size, str(entry.extra["content_hash"]))
                    by_content.setdefault(key, []).append(entry)
        removed = set(plan.removed_ids)
        reuse_ids: set[str] = set()
        for info, value in zip(candidates, digests, strict=True):
            if value is None:
                continue
            plan.digests[info.path] = value
            matches = list(by_content.get((info.size, value), ()))
            if not matches:
                continue
            # Prefer the file's own old record, then one that is going away (a rename).
            own = path_id(info.path)
            matches.sort(key=lambda e: (e.id != own, e.id not in removed))
            plan.reuse.append(_Reuse(info, value, matches[0].id))
            reuse_ids.add(own)
        if reuse_ids:
            plan.to_embed = [f for f in plan.to_embed if path_id(f.path) not in reuse_ids]

    def _reuse(
        self,
        plan: _Plan,
        index: ImageIndex,
        emit: EventHandler,
        summary: IndexSummary,
        progress: _Progress,
    ) -> None:
        """Write the reused files from their stored vectors, in batches like embedded ones."""
        step = max(1, self.options.batch_size or CPU_BATCH_SIZE) * 8
        for start in range(0, len(plan.reuse), step):
            chunk = plan.reuse[start : start + step]
            sources = index.get(sorted({r.source_id for r in chunk}))
            records = []
            for item in chunk:
                found = sources.get(item.source_id)
                if found is None:  # vanished meanwhile: embed it like any new file
                    plan.to_embed.append(item.info)
                    continue
                vector, meta = found
                photo = carried_metadata(meta, item.info.mtime_ns)
                if photo is None:  # the source predates metadata: read this file's header
                    photo = read_photo_meta(item.info.path, item.info.mtime_ns).metadata()
                records.append(
                    Record(
                        item.info.path,
                        vector,
                        item.info.size,
                        item.info.mtime_ns,
                        int(meta.get("width", 0) or 0),
                        int(meta.get("height", 0) or 0),
                        extra={
                            "content_hash": item.digest,
                            **stat_extra(item.info),
                            **photo,
                        },
                    )
                )
                if path_id(item.info.path) in plan.changed_ids:
                    summary.updated += 1
                else:
                    summary.new += 1
                summary.reused += 1
            index.upsert(records)
            index.forget_failures([path_id(r.path) for r in records])
            progress.number += 1
            progress.done += len(records)
            emit(
                BatchDone(
                    number=progress.number,
                    size=len(records),
                    done=progress.done,
                    total=progress.total,
                    embedded=summary.embedded,
                    failed=0,
                    images_per_second=0.0,
                )
            )

    def _hash_ahead(self, plan: _Plan, loading: BackgroundLoad, cancel: threading.Event) -> None:
        """Fingerprint files to embed until the model is ready (decoders would otherwise
        do it); the reads also bring the files into the page cache for decoding."""
        todo = [f for f in plan.to_embed if f.path not in plan.digests]
        if not todo or loading.done():
            return
        step = 64
        with ThreadPoolExecutor(self.options.workers(), thread_name_prefix="clipseek-hash") as pool:
            for start in range(0, len(todo), step):
                if loading.done() or cancel.is_set():
                    return
                chunk = todo[start : start + step]
                for info, value in zip(chunk, pool.map(_digest_or_none, chunk), strict=True):
                    if value is not None:
                        plan.digests[info.path] = value

    def _backfill(
        self, items: list[tuple[str, FileInfo]], index: ImageIndex, emit: EventHandler
    ) -> None:
        """Give entries of an older index their photo metadata from the file headers, keeping
        their vectors: an upgrade costs a header read per file, never a model run."""
        workers = self.options.workers()

        def read(item: tuple[str, FileInfo]) -> PhotoMeta:
            return read_photo_meta(item[1].path, item[1].mtime_ns)

        with ThreadPoolExecutor(workers, thread_name_prefix="clipseek-meta") as pool:
            metas = list(pool.map(read, items))
        pairs = zip(items, metas, strict=True)
        index.update_metadata({id_: meta.metadata() for (id_, _), meta in pairs})
        unreadable = sum(1 for meta in metas if meta.problem)
        note = f" ({unreadable} had no readable metadata: dated by file time)" if unreadable else ""
        emit(Notice(f"Read dates and cameras for {len(items)} file(s) indexed before{note}."))

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
        model: Embedder,
        index: ImageIndex,
        emit: EventHandler,
        cancel: threading.Event,
        summary: IndexSummary,
        progress: _Progress,
    ) -> list[str]:
        """Decode ahead, embed and write batch by batch; returns ids to drop.

        Decoders turn files into small uint8 arrays: threads on a CPU (Pillow releases
        the GIL, and the cores are shared with the model), processes writing into shared
        memory on a GPU machine, where the GIL would cap decoding far below the model
        (:func:`decode_in_processes`). The calling thread hands each batch to the model
        while the decoders work on the next two. Batches are written in order by
        :class:`BatchWriter`: inline on a CPU, on a writer thread while the model works on
        a GPU. Memory stays a few batches either way.
        """
        device = model.device
        batch_size = self.options.batch_size or default_batch_size(device)
        lookahead = 2 * batch_size
        stale: list[str] = []
        pending: deque[_Pending] = deque()
        queue = iter(plan.to_embed)
        batch: list[tuple[FileInfo, Any, ImageInfo, str | None, int | None]] = []
        new_failures: list[tuple[str, int, int, str]] = []
        threads, workers = thread_plan(
            device, self.options.decode_workers, self.options.torch_threads
        )
        tuner: ThreadTuner | None = None
        cycled = 0  # files through the model loop so far (embedded or failed)
        if device == "cpu" and not self.options.torch_threads and threads > 1:
            tuner = ThreadTuner.for_cpu(threads, model.precision, plan.to_embed)
            tuner.switch_cost = float(getattr(model, "thread_switch_seconds", 0.0))
            threads = tuner.threads
        cores = thread_plan(device, cores=None)[0]
        # While torch runs on every core, decoders wait: OpenMP threads meet at a barrier
        # after each operation, and one preempted by a decoder stalls all the others.
        gate = threading.Event()
        gate.set()
        cycle_start = time.perf_counter()
        waited = 0.0  # this batch cycle's time blocked on decoders
        embedded_before = summary.embedded
        max_mp = self.options.max_megapixels
        t0 = time.perf_counter()
        processes = self.options.decode_processes
        if processes is None:
            processes = decode_in_processes(device, workers)
        processes = processes and _shared_memory_ok(model)
        write_behind = self.options.write_behind
        if write_behind is None:
            write_behind = device != "cpu"
        writer = BatchWriter(
            index,
            asynchronous=write_behind,
            coalesce=max(batch_size, WRITE_BATCH),
            queued=max(2, WRITE_BATCH // batch_size),
        )
        chunk = max(1, min(16, batch_size // max(1, workers)))
        shared: Any = None
        pool: ThreadPoolExecutor | None = None

        def submit_more() -> None:
            while len(pending) < lookahead:
                if shared is not None:
                    if shared.free < chunk:
                        return
                    files = [f for f in (next(queue, None) for _ in range(chunk)) if f]
                    if not files:
                        return
                    slots, future = shared.submit(files, [plan.digests.get(f.path) for f in files])
                    for position, (info, slot) in enumerate(zip(files, slots, strict=True)):
                        pending.append(_Pending(info, future, position, slot))
                    continue
                info = next(queue, None)
                if info is None:
                    return
                assert pool is not None
                future = pool.submit(
                    decode_file, info, model, plan.digests.get(info.path), max_mp, gate
                )
                pending.append(_Pending(info, future))

        def take(entry: _Pending) -> tuple[Any, ImageInfo, str | None]:
            """The decoded image of ``entry``, or ImageReadError (its slot then freed)."""
            if entry.slot is None:
                return entry.future.result()
            decoded = entry.future.result()[entry.position]
            if decoded.reason is not None:
                shared.release([entry.slot])
                raise ImageReadError(entry.info.path, decoded.reason)
            return (
                shared.image(entry.slot),
                ImageInfo(decoded.width, decoded.height, decoded.meta or {}),
                decoded.digest,
            )

        def report() -> None:
            """BatchDone for every batch the writer has finished, in order."""
            for job in writer.completed():
                if not job.records:  # failures only: named as they happened
                    continue
                summary.new += job.new
                summary.updated += job.updated
                progress.number += 1
                progress.done += len(job.records)
                summary.embed_seconds = time.perf_counter() - t0
                rate = (summary.embedded - embedded_before) / max(summary.embed_seconds, 1e-9)
                emit(
                    BatchDone(
                        number=progress.number,
                        size=len(job.records),
                        done=progress.done + progress.failed,
                        total=progress.total,
                        embedded=summary.embedded,
                        failed=progress.failed,
                        images_per_second=rate,
                    )
                )

        def flush() -> None:
            nonlocal cycle_start, waited, cycled
            if not batch:
                if new_failures:
                    writer.put(WriteJob([], list(new_failures)))
                    new_failures.clear()
                report()
                return
            summary.model_batches += 1
            inputs = [item for _, item, _, _, _ in batch]
            exclusive = device == "cpu" and model.threads >= cores
            if exclusive:
                gate.clear()
            model_started = time.perf_counter()
            try:
                vectors = model.encode_prepared(inputs)
            finally:
                gate.set()
            model_seconds = time.perf_counter() - model_started
            del inputs
            if shared is not None:  # the pixels are on their way to the model: slots free
                shared.release([slot for *_, slot in batch if slot is not None])
            records = []
            new = updated = 0
            for (info, _item, dims, digest, _slot), vector in zip(batch, vectors, strict=True):
                extra = {"content_hash": digest} if digest else {}
                extra.update(stat_extra(info))
                extra.update(dims.meta)
                records.append(
                    Record(
                        info.path,
                        vector,
                        info.size,
                        info.mtime_ns,
                        dims.width,
                        dims.height,
                        extra=extra,
                    )
                )
                if path_id(info.path) in plan.changed_ids:
                    updated += 1
                else:
                    new += 1
            size = len(batch)
            batch.clear()
            writer.put(WriteJob(records, list(new_failures), new=new, updated=updated))
            new_failures.clear()
            now = time.perf_counter()
            if tuner is not None:
                cycled += size
                tuner.remaining = len(plan.to_embed) - cycled
                model.set_threads(tuner.record(size, now - cycle_start, waited, model_seconds))
            cycle_start, waited = now, 0.0
            report()

        previous_threads = model.threads
        model.set_threads(threads)
        try:
            if processes:
                shared = SharedDecoder(
                    workers, model.preprocess_cfg, lookahead + batch_size + chunk, max_mp
                )
            else:
                pool = ThreadPoolExecutor(workers, thread_name_prefix="clipseek-decode")
            try:
                submit_more()
                while pending:
                    entry = pending.popleft()
                    before = time.perf_counter()
                    try:
                        item, dims, digest = take(entry)
                    except ImageReadError as exc:
                        info = entry.info
                        progress.failed += 1
                        failure = FileFailed(info.path, exc.reason)
                        summary.failed.append(failure)
                        emit(failure)
                        new_failures.append((info.path, info.size, info.mtime_ns, exc.reason))
                        if path_id(info.path) in plan.changed_ids:
                            stale.append(path_id(info.path))
                    else:
                        batch.append((entry.info, item, dims, digest, entry.slot))
                    finally:
                        waited += time.perf_counter() - before
                    submit_more()
                    if len(batch) >= batch_size or not pending:
                        flush()
                        if cancel.is_set():
                            summary.cancelled = True
                            break
                writer.finish()
                report()
            finally:
                writer.close()
                summary.write_seconds += writer.seconds
                for entry in pending:
                    entry.future.cancel()
                if shared is not None:
                    shared.close()
                if pool is not None:
                    pool.shutdown(wait=True, cancel_futures=True)
        finally:
            summary.torch_threads = model.threads
            model.set_threads(previous_threads)
        summary.embed_seconds = time.perf_counter() - t0
        return stale


def _shared_memory_ok(model: Embedder) -> bool:
    """Processes decode with the torch-free preprocessing, so only where it is exact."""
    cfg = getattr(model, "preprocess_cfg", None)
    return cfg is not None and pil_supported(cfg)


@dataclass
class _Pending:
    """A file handed to a decoder: a thread's future, or a process chunk's and a slot."""

    info: FileInfo
    future: Future[Any]
    position: int = 0
    slot: int | None = None


@dataclass
class _Progress:
    """Counters shared by the reuse and embedding steps, for one stream of BatchDone events."""

    total: int
    number: int = 0
    done: int = 0
    failed: int = 0


def _digest_or_none(info: FileInfo) -> str | None:
    try:
        return content_hash(info.path, info.size)
    except OSError:
        return None  # the decoder meets the same problem and reports it


def decode_file(
    info: FileInfo,
    model: Embedder | ImagePrep,
    digest: str | None,
    max_megapixels: float | None,
    gate: threading.Event | None = None,
) -> tuple[Any, ImageInfo, str | None]:
    """One file's work on a decoder thread: fingerprint, decode (reduced when the format
    allows), resize and crop for the model; starts only while ``gate`` is open. Public so
    that benchmarks/bench_gpu.py times this very work."""
    if gate is not None:
        gate.wait()
    if digest is None:
        try:
            digest = content_hash(info.path, info.size)
        except OSError:
            digest = None  # load_for_model reports why the file cannot be read
    item, dims = load_for_model(
        info.path, model.prepare, model.image_size, max_megapixels, info.mtime_ns
    )
    return item, dims, digest


def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def check_roots(roots: Sequence[str | os.PathLike[str]]) -> list[str]:
    """The folders to index, normalised, or the error that says why one cannot be: before
    a run marks the index as being written (a typo is not an interruption)."""
    if not roots:
        raise ClipseekError("Name at least one folder to index.")
    out = []
    pseudo = PseudoFilesystems()
    for root in roots:
        norm = normalise_root(root)
        why = pseudo.describe(norm) if os.path.exists(norm) else None
        if why:
            raise ClipseekError(f"{why}, not a folder of pictures; nothing was indexed.")
        if not os.path.exists(norm):
            raise ClipseekError(f"{norm} does not exist; nothing was indexed.")
        if not os.path.isdir(norm):
            raise ClipseekError(f"{norm} is not a folder; `clipseek index` takes folders.")
        out.append(norm)
    return list(dict.fromkeys(out))
