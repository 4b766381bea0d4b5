"""The engine: the one object every front end (CLI, TUI, server) drives.

It owns the settings, the store and the lazily loaded model, and decides which
model an operation uses: the one the user named, or, when they named none, the
one their index was built with, so that ``clipseek query`` just works after
``clipseek index --model ViT-B/16``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from clipseek.config import Settings
from clipseek.errors import (
    ImageReadError,
    IndexMissingError,
    ModelError,
    ModelMismatchError,
    QueryError,
    StoreError,
)
from clipseek.models import Embedder, ModelSpec, resolve_model
from clipseek.models.runtime import (
    ExportOutcome,
    export_after_use,
    load_index_model,
    load_reader_model,
    needs_export,
)
from clipseek.photos.imaging import open_image_bytes, to_rgb
from clipseek.search.query import (
    Query,
    Searcher,
    SearchResponse,
    check_top_k,
    encode_image,
    parse_query,
)
from clipseek.store import ImageIndex, IndexInfo, Store, StoredEntry
from clipseek.store.lock import LockHolder, WriterLock

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    # Imported when an index run starts: a query does not pay for the indexer.
    from clipseek.indexing.events import EventHandler, IndexSummary
    from clipseek.indexing.options import IndexOptions
    from clipseek.indexing.pipeline import Indexer
    from clipseek.indexing.unchanged import TreeDelta
    from clipseek.models.calibration import Calibration
    from clipseek.models.runtime import ExportOutcome
    from clipseek.search.duplicates import DuplicateGroup
    from clipseek.search.filters import Filters


@dataclass(frozen=True)
class EngineInfo:
    location: str
    remote: bool
    model: str
    model_source: str
    indexes: list[IndexInfo]


class Engine:
    def __init__(
        self,
        settings: Settings,
        model_loader: Callable[[ModelSpec, str, str], Embedder] | None = None,
        backend: str = "auto",
        direct: bool = False,
        quick_start: bool = False,
        approximate: bool = False,
    ) -> None:
        self.settings = settings
        #: Reads never write and follow other processes' writes. With ``direct`` (a query,
        #: the app, the server) searches are answered from the index files without
        #: chromadb, whose import is a second of a cold answer, and a writer's commit is
        #: caught up from what it appended; otherwise through a private snapshot, a copy of
        #: the database taken anew after each commit (see store/direct.py, store/snapshot.py).
        #: :meth:`index` writes through its own store on the folder itself.
        #: ``approximate``: a long-lived face (the app, the server) may answer unfiltered
        #: searches from an approximate index where the library is large (see Store).
        self.store = Store(
            settings.store_location, reader=True, direct=direct, approximate=approximate
        )
        #: A front end where the first answer matters more than a few milliseconds on each later
        #: one (a query, the app) builds its ONNX sessions for a quick start
        #: (see OnnxModel.prepack).
        self.quick_start = quick_start
        self._model_loader = model_loader
        #: "auto", "torch" or "onnx": the runtime for indexing on a CPU (readers use the
        #: ONNX export whenever it is ready unless this is "torch").
        self.backend = backend
        self._model: Embedder | None = None
        self._model_lock = threading.Lock()
        self._spec: ModelSpec | None = None
        #: The index whose model was taken because none was named (see _choose_spec).
        self._adopted: IndexInfo | None = None
        self._for_indexing = False

    # -- model choice

    @property
    def spec(self) -> ModelSpec:
        """The model this engine works with (resolved once, then fixed)."""
        if self._spec is None:
            self._spec = self._choose_spec()
        return self._spec

    def _choose_spec(self) -> ModelSpec:
        """The named model; when none was named, the default if the index holds it, else
        the model the index holds (a previous default first, then the largest), so that
        an index is never abandoned or mixed because clipseek's default changed."""
        requested = resolve_model(self.settings.model)
        if self.settings.model_explicit:
            return requested
        try:
            indexes = self._known_indexes()
        except StoreError:  # a damaged store says so when it is used; naming a model needn't
            return requested
        if not indexes or any(i.model_key == requested.key for i in indexes):
            return requested
        from clipseek.models.catalogue import PREVIOUS_DEFAULTS

        def rank(i: IndexInfo) -> tuple[bool, int]:
            return (i.model_name in PREVIOUS_DEFAULTS, i.count)

        chosen = max(indexes, key=rank)
        try:
            adopted = resolve_model(chosen.model_name)
        except ModelError:  # an index of a name this version no longer knows
            return requested
        self._adopted = chosen
        return adopted

    def model_notice(self, *, remember: bool = True) -> str | None:
        """One sentence when the model was taken from the index rather than named (the
        default may have changed since the index was built); said once per index and
        model on this machine, and shown by :meth:`info` always."""
        spec = self.spec
        adopted = self._adopted
        if adopted is None:
            return None
        if remember and not _first_time(f"adopted|{self.store.location}|{spec.key}"):
            return None
        default = self.settings.model
        return (
            f"Using {spec.name}, the model the index at {self.store.location} was built with "
            f"(clipseek's default is {default}; `clipseek models` says how to move to it, "
            "or name a model with --model)."
        )

    def index_plan(self) -> str | None:
        """Before indexing with a model the index does not hold (while it holds others):
        what will happen, in one sentence, so that nothing is re-embedded by surprise."""
        spec = self.spec
        try:
            indexes = self._known_indexes() if self.store.exists else []
        except StoreError:
            return None
        if not indexes or any(i.model_key == spec.key for i in indexes):
            return None
        held = ", ".join(f"{i.model_name} ({i.count:,} images)" for i in indexes)
        return (
            f"The index at {self.store.location} holds {held}; {spec.name} is another model, "
            f"so every image is embedded again into a separate index beside it (about as "
            "long as the first run), and the existing one stays as it is."
        )

    @property
    def model_loaded(self) -> bool:
        return self._model is not None

    def model(self) -> Embedder:
        """The model for searching, loaded once; safe to call from several threads (the
        TUI's workers). That is the ONNX export when it is ready (no torch imported), else
        torch on the CPU: a query never initialises a GPU."""
        with self._model_lock:
            if self._model is None:
                if self._model_loader is not None:
                    self._model = self._model_loader(
                        self.spec, self.settings.device, self.settings.precision
                    )
                else:
                    self._model = load_reader_model(
                        self.spec,
                        self.settings.device,
                        self.settings.precision,
                        self.backend,
                        quick_start=self.quick_start,
                    )
            return self._model

    def index_model(self, files: int | None = None) -> Embedder:
        """The model for indexing: a GPU when there is one, else the CPU runtime that
        embeds ``files`` images soonest (see :mod:`clipseek.models.runtime`). Replaces a
        reader's model once loaded."""
        with self._model_lock:
            if self._model_loader is not None:
                if self._model is None:
                    self._model = self._model_loader(
                        self.spec, self.settings.device, self.settings.precision
                    )
                return self._model
            if self._model is None or not self._for_indexing:
                self._model = None  # the reader's model is dropped before the next loads
                self._model = load_index_model(
                    self.spec, self.settings.device, self.settings.precision, self.backend, files
                )
                self._for_indexing = True
            return self._model

    def fast_path_ready(self) -> bool:
        """Whether this engine's model has a ready ONNX export (no torch imported)."""
        # Lazy: an unchanged re-index does not import the export module.
        from clipseek.models.export import find_export

        return find_export(self.spec) is not None

    def fast_path_pending(self) -> bool:
        """Whether :meth:`export_fast_path` has work to do (a torch model without export)."""
        model = self._model
        return model is not None and self._model_loader is None and needs_export(model)

    def export_fast_path(self) -> ExportOutcome:
        """Export the ONNX fast path if a torch model is loaded and none exists yet.

        Faces call this after answering (the first query pays for the export once, the
        later ones load in a fraction of the time); it never raises, and a failure is
        remembered so that it is reported once (see :mod:`clipseek.models.runtime`).
        """
        model = self._model
        if model is None or self._model_loader is not None:
            return ExportOutcome()
        return export_after_use(model)

    # -- indexing

    def indexer(self, options: IndexOptions | None = None) -> Indexer:
        # Lazy: a query does not import the indexer's modules.
        from clipseek.indexing.options import IndexOptions
        from clipseek.indexing.pipeline import Indexer

        self.settings.require("batch_size")
        opts = options or IndexOptions.from_settings(self.settings)
        return Indexer(self.store.writer(), self.spec, self.index_model, opts)

    def index(
        self,
        roots: Sequence[str | os.PathLike[str]],
        options: IndexOptions | None = None,
        on_event: EventHandler | None = None,
        cancel: threading.Event | None = None,
        *,
        wait: bool = True,
    ) -> IndexSummary:
        """Index ``roots`` while holding the index's writer lock (see :mod:`clipseek.store.lock`).

        If another process is indexing into the same database, this waits for it (saying
        so through a :class:`Notice`) or, with ``wait=False``, raises
        :class:`~clipseek.errors.IndexBusyError` naming the holder. With ``rebuild``, a
        damaged database is first moved aside so the rebuild starts from a clean one.
        """
        # Lazy: a query does not import the indexer's modules.
        from clipseek.indexing.events import IndexFinished, IndexSummary, Notice
        from clipseek.indexing.options import IndexOptions
        from clipseek.indexing.pipeline import Indexer

        self.settings.require("batch_size")
        emit: EventHandler = on_event or (lambda _event: None)
        cancel = cancel or threading.Event()
        lock = None
        if not self.store.is_remote:
            lock = WriterLock(self.store.location)

            def on_wait(holder: LockHolder | None) -> None:
                who = holder.describe() if holder is not None else "another clipseek process"
                emit(
                    Notice(
                        f"Another clipseek index run ({who}) is updating {self.store.location}; "
                        "waiting for it to finish (Ctrl-C to give up)."
                    )
                )

            if not lock.acquire(wait=wait, on_wait=on_wait, cancelled=cancel.is_set):
                # Lazy: a query does not import the indexer's modules.
                from clipseek.indexing.scanner import normalise_root

                summary = IndexSummary(roots=[normalise_root(r) for r in roots], cancelled=True)
                emit(IndexFinished(summary))
                return summary
        try:
            opts = options or IndexOptions.from_settings(self.settings)
            marker = None
            delta: TreeDelta | None = None
            if not self.store.is_remote:
                # Lazy: a query does not import the repair or indexing modules.
                from clipseek.indexing.unchanged import take_handed, unchanged_summary
                from clipseek.store.repair import RunMarker

                marker = RunMarker(self.store.location)
                if opts.quick_check:
                    started = time.perf_counter()
                    delta = self._tree_delta(roots, opts)
                    if delta is not None and delta.nothing_to_do:
                        return unchanged_summary(delta, emit, started)
                else:  # compared already by index_if_unchanged, in this process
                    delta = take_handed(self.store.location, self.spec, roots, opts)
            writer = self.store.writer()
            try:
                if opts.rebuild:
                    moved = writer.recover()
                    if moved:
                        emit(
                            Notice(
                                f"The index at {self.store.location} was damaged; it was moved "
                                f"to {moved} and is rebuilt from your images."
                            )
                        )
                if marker is not None:
                    from clipseek.indexing.pipeline import check_roots

                    check_roots(roots)  # a mistyped folder: an error, not an interrupted run
                if marker is not None and marker.begin() and not opts.rebuild and writer.exists:
                    self._after_interruption(emit, writer)
                    if opts.quick_check:  # checked now: plan from the comparison after all
                        delta = self._tree_delta(roots, opts, checked=True)
                summary = Indexer(writer, self.spec, self.index_model, opts).run(
                    roots, on_event=emit, cancel=cancel, delta=delta
                )
                if marker is not None and not summary.cancelled:
                    marker.end()
            finally:
                # Chroma caches what it loaded per path: the next run, after other processes
                # may have written, must load the folder afresh.
                writer._forget_client()
            if not self.store.is_remote and not summary.cancelled:
                # (A cancelled run's writes kept an existing cache current as they went.)
                _refresh_vector_cache(self.store)
            if delta is not None:
                from clipseek.indexing.unchanged import remember_after_run

                remember_after_run(self.store.location, self.spec, delta)
        finally:
            if lock is not None:
                lock.release()
        return summary

    def index_if_unchanged(
        self, roots: Sequence[str | os.PathLike[str]], options: IndexOptions
    ) -> IndexSummary | None:
        """The summary of an index run when the tree has not changed since the last one,
        else None, having written nothing: :meth:`index` without its waiting, its events or
        any import it does not need.

        For a front end that answers the commonest index run (a scheduled one over an unchanged
        library) before it has imported its own toolkit; on None it goes on to
        :meth:`index` with ``quick_check=False``, so differences are not looked for twice.
        Raises :class:`~clipseek.errors.IndexBusyError` while another run holds the index
        (the front end then waits for it in :meth:`index`, with its message, and checks again).
        """
        if self.store.is_remote or options.rebuild:
            return None
        if not os.path.isfile(os.path.join(self.store.location, "chroma.sqlite3")):
            return None  # nothing indexed here yet (and no folder to create for it)
        # Lazy: a query does not import the indexer's modules.
        from clipseek.indexing.unchanged import hand_over, unchanged_summary

        lock = WriterLock(self.store.location)
        lock.acquire(wait=False)
        try:
            started = time.perf_counter()
            delta = self._tree_delta(roots, options)
            if delta is None:
                return None
            if delta.nothing_to_do:
                return unchanged_summary(delta, lambda _event: None, started)
            hand_over(delta)  # the run that follows plans from it, without a second scan
            return None
        finally:
            lock.release()

    def _tree_delta(
        self, roots: Sequence[str | os.PathLike[str]], opts: IndexOptions, *, checked: bool = False
    ) -> TreeDelta | None:
        """The scanned tree against the records in the SQLite file (see
        :mod:`clipseek.indexing.unchanged`), or None when the normal path must read and
        scan for itself. The caller holds the writer lock. ``checked``: an interrupted
        run's index has just been checked (and repaired), and may be compared now."""
        if self.store.is_remote or opts.rebuild:
            return None
        # Lazy: a query does not import the indexer's modules.
        from clipseek.indexing.unchanged import tree_delta
        from clipseek.store.repair import RunMarker

        if not checked and RunMarker(self.store.location).path.exists():
            return None  # an interrupted run is checked by the normal path, not skipped
        try:
            # The writer lock is held, so the graphs this finds sound may be noted.
            if self.store.damage(notes="keep") is not None:
                return None
            with self.store.reading():
                return tree_delta(self.store.location, self.spec, roots, opts)
        except (OSError, StoreError):
            return None

    def _after_interruption(self, emit: EventHandler, store: Store) -> None:
        """The last run never finished: check the index before trusting it, and rebuild
        its vector files from the stored vectors if they disagree (no model needed)."""
        # Lazy: a query does not import the indexer's modules.
        from clipseek.indexing.events import Notice
        from clipseek.store.repair import check, repair

        # Every record against the stored vectors; the self-search on a sample, since a
        # search per vector costs minutes on a large index (docs/RELIABILITY.md).
        report = check(store, sample=2000)
        if report.inconclusive:
            emit(Notice(f"The last index run was interrupted; {report.problems[0]}"))
        elif report.healthy:
            emit(
                Notice(
                    f"The last index run was interrupted; the index checked healthy "
                    f"({report.records} images, every vector finds itself)."
                )
            )
        elif report.repairable:
            repaired = repair(store, locked=True, before=report)
            found = report.problems[0]
            emit(Notice(f"The last index run was interrupted; the check found: {found}"))
            if repaired is not None:
                emit(Notice(repaired.sentence()))
        else:
            emit(Notice(report.sentence()))

    # -- searching

    def open_index(self) -> ImageIndex:
        """The index for this engine's model, or a message that says what to do instead."""
        spec = self.spec
        index = self.store.open_index(spec.key, spec.collection_slug)
        if index is not None:
            return index
        others = self._known_indexes() if self.store.exists else []
        if not others:
            raise IndexMissingError(
                f"There is no index at {self.store.location} yet. "
                "Run `clipseek index FOLDER` to build one."
            )
        names = sorted({i.model_name for i in others})
        raise ModelMismatchError(
            f"The index at {self.store.location} was built with {', '.join(names)}, not "
            f"{spec.name}; vectors of different models cannot be compared. Query with --model "
            f"{names[0]}, or index with --model {spec.name} first."
        )

    def searcher(self, warm: str | None = None) -> Searcher:
        """The index is opened before the model loads: a missing index is a quick answer.
        ``warm`` ("text" or "image") names the tower to load while the index opens."""
        if warm is not None:
            self.warm_model(warm)
        index = self.open_index()
        return Searcher(index, self.model(), self.settings.max_megapixels)

    def warm_model(self, tower: str = "text") -> None:
        """Load an ONNX tower (and for text, the tokenizer) on a thread while the index
        opens or the user types: the session builds in native code, beside the rest."""
        if self._model is not None or self._model_loader is not None or self.backend == "torch":
            return
        if not self.fast_path_ready():
            return

        def warm() -> None:
            try:
                model = self.model()
                warm_tower = getattr(model, "warm", None)
                if warm_tower is not None:
                    warm_tower(tower)
            except Exception:
                pass

        # numpy is imported by both sides; two threads importing it for the first time at
        # once can see it half-initialised, so it is imported here first.
        import numpy  # noqa: F401

        # Not a daemon: a process that ends early (a damaged index, a bad --in) waits for the
        # session to finish building. Tearing ONNX Runtime down under a thread still inside
        # it aborts the process ("terminate called…", exit -6) after the clear message.
        threading.Thread(target=warm, name="clipseek-warm", daemon=False).start()

    def search(
        self,
        query: Query | str | Sequence[str],
        top_k: int,
        in_dir: str | None = None,
        exclude: Sequence[str] = (),
        filters: Filters | None = None,
        sort: str = "score",
    ) -> SearchResponse:
        if isinstance(query, str):
            query = Query.text(query)
        elif not isinstance(query, Query):
            query = parse_query(list(query))
        tower = "text" if any(t.kind == "text" for t in query.terms) else "image"
        return self.searcher(warm=tower).search(
            query, top_k, in_dir=in_dir, exclude=exclude, filters=filters, sort=sort
        )

    def embed_image(
        self,
        image: bytes | Image.Image,
        label: str = "the uploaded image",
        max_megapixels: float | None = None,
    ) -> np.ndarray:
        """Embed an image that is not a file of the index: raw bytes (an upload) or a PIL
        image. Unreadable data is a :class:`QueryError` naming ``label``."""
        model = self.model()
        if not isinstance(image, bytes | bytearray | memoryview):
            return encode_image(model, to_rgb(image))

        limit = self.settings.max_megapixels if max_megapixels is None else max_megapixels
        try:
            decoded = open_image_bytes(
                bytes(image), label=label, max_megapixels=limit, min_size=model.image_size
            )
        except ImageReadError as exc:
            raise QueryError(
                f"{label[:1].upper()}{label[1:]} cannot be used: {exc.reason}."
            ) from None
        return encode_image(model, decoded)

    def search_vector(
        self,
        vector: np.ndarray,
        top_k: int,
        in_dir: str | None = None,
        exclude: Sequence[str] = (),
        label: str = "",
        filters: Filters | None = None,
        sort: str = "score",
    ) -> SearchResponse:
        """Rank the index against a ready query vector (e.g. from :meth:`embed_image`)."""
        response = self.searcher().search_vector(
            vector, top_k, in_dir=in_dir, exclude=exclude, filters=filters, sort=sort
        )
        response.query = label
        return response

    def search_image(
        self,
        image: bytes | Image.Image,
        top_k: int,
        in_dir: str | None = None,
        label: str = "the uploaded image",
        max_megapixels: float | None = None,
        filters: Filters | None = None,
        sort: str = "score",
    ) -> SearchResponse:
        """Search by an example image that is not (necessarily) a file on this machine."""
        check_top_k(top_k)
        # Opening the index first: a missing index is a quicker, clearer answer than a decode error.
        searcher = self.searcher(warm="image")
        vector = self.embed_image(image, label=label, max_megapixels=max_megapixels)
        response = searcher.search_vector(vector, top_k, in_dir=in_dir, filters=filters, sort=sort)
        response.query = label
        return response

    def image_entry(self, image_id: str) -> StoredEntry | None:
        """The indexed file behind ``image_id`` (as given in search results), or None.
        Faces serve files by id through this, never by a path a client names."""
        return self.open_index().lookup([image_id]).get(image_id)

    def calibration(self) -> Calibration:
        """What this model's cosines mean (its family's thresholds and match scale); read
        from the export's manifest when there is one, without loading the model."""
        from clipseek.models.calibration import calibration_for, model_family
        from clipseek.models.export import find_export

        try:
            export = find_export(self.spec)
        except OSError:
            export = None
        manifest = export.manifest if export is not None else None
        if manifest is None and getattr(self._model, "backend", None) == "torch":
            # Not exported yet but loaded: the model's own learned scale and bias (what its
            # export will record), not typical values.
            from clipseek.models.export import _scale_and_bias

            manifest = _scale_and_bias(getattr(self._model, "_model", None)) or None
        return calibration_for(model_family(self.spec, manifest), manifest)

    def duplicates(
        self, threshold: float | None = None, in_dir: str | None = None
    ) -> list[DuplicateGroup]:
        """Groups of near-identical pictures (no model needed: the stored vectors are
        compared); without a threshold, the model family's (see :meth:`calibration`)."""
        # Lazy: a query does not import the duplicate finder.
        from clipseek.search.duplicates import existing_only, find_duplicates
        from clipseek.search.query import in_folder

        if threshold is None:
            threshold = self.calibration().duplicate_threshold
        index: ImageIndex | None = None
        if not self.store.is_remote and not self.store.direct:
            # The stored vectors straight from the files (their cache when current): no
            # snapshot, and no Python object per picture for the whole library.
            spec = self.spec
            index = Store(self.store.location, reader=True, direct=True).open_index(
                spec.key, spec.collection_slug
            )
        index = index or self.open_index()
        folder = in_folder(in_dir, index) if in_dir is not None else None
        return existing_only(find_duplicates(index, threshold, under=folder))

    def holds_pictures_under(self, folder: str) -> bool:
        """Whether the index holds any picture inside ``folder`` (by the path it was
        indexed under); the disk is not looked at."""
        return self.open_index().holds_under(folder)

    # -- facts

    def info(self) -> EngineInfo:
        source = self.settings.sources.get("model", "default")
        spec = self.spec
        if self._adopted is not None:
            source = f"the index's model; the default is {self.settings.model}"
        return EngineInfo(
            location=self.store.location,
            remote=self.store.is_remote,
            model=spec.name,
            model_source=source,
            indexes=self._known_indexes(),
        )

    def _known_indexes(self) -> list[IndexInfo]:
        """The store's indexes; read from the SQLite file when possible, so that ``info``
        and choosing a model do not import chromadb (over a second on a small machine)."""
        peeked = self.store.peek_indexes()
        return peeked if peeked is not None else self.store.indexes()


def _refresh_vector_cache(store: Store) -> None:
    """After an index run, under its writer lock: build the vector cache where it is
    missing or stale (store/vector_cache.py), and note the graphs whose links are sound,
    so that readers do not read every link again (1.2 s of a query at a million). Both
    only save readers time, so a failure here costs them that, never the run."""
    import contextlib

    from clipseek.store.cache_build import refresh_caches

    with contextlib.suppress(Exception):
        refresh_caches(store.location, store._lock)
    with contextlib.suppress(Exception):
        store.damage(notes="keep")


def _first_time(what: str) -> bool:
    """Whether ``what`` is said for the first time on this machine (then remembered in the
    cache: forgetting it only means saying it once more)."""
    import hashlib
    import json

    from clipseek.config import cache_dir
    from clipseek.fileio import write_whole

    path = cache_dir() / "said.json"
    key = hashlib.sha1(what.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    try:
        said = json.loads(path.read_text(encoding="utf-8"))
        said = said if isinstance(said, list) else []
    except (OSError, ValueError):
        said = []
    if key in said:
        return False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_whole(path, json.dumps([*said, key][-200:]).encode("utf-8"))
    except OSError:
        pass
    return True
