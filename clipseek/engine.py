"""The engine: the one object every face (CLI, TUI, server) drives.

It owns the settings, the store and the lazily loaded model, and decides which
model an operation uses: the one the user named, or, when they named none, the
one their index was built with, so that ``clipseek query`` just works after
``clipseek index --model ViT-B/16``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from clipseek.config import Settings
from clipseek.errors import (
    ImageReadError,
    IndexMissingError,
    ModelMismatchError,
    QueryError,
    StoreError,
)
from clipseek.indexer import (
    EventHandler,
    Indexer,
    IndexFinished,
    IndexOptions,
    IndexSummary,
    Notice,
)
from clipseek.models import Embedder, ModelSpec, load_model, resolve_model
from clipseek.search import Query, Searcher, SearchResponse, check_top_k, encode_image
from clipseek.store import ImageIndex, IndexInfo, Store, StoredEntry

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from clipseek.duplicates import DuplicateGroup
    from clipseek.filters import Filters


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
        model_loader: Callable[[ModelSpec, str, str], Embedder] = load_model,
    ) -> None:
        self.settings = settings
        self.store = Store(settings.store_location)
        self._model_loader = model_loader
        self._model: Embedder | None = None
        self._model_lock = threading.Lock()
        self._spec: ModelSpec | None = None

    # -- model choice

    @property
    def spec(self) -> ModelSpec:
        """The model this engine works with (resolved once, then fixed)."""
        if self._spec is None:
            self._spec = self._choose_spec()
        return self._spec

    def _choose_spec(self) -> ModelSpec:
        requested = resolve_model(self.settings.model)
        if self.settings.model_explicit:
            return requested
        try:
            indexes = self._known_indexes()
        except StoreError:  # a damaged store says so when it is used; naming a model needn't
            return requested
        if not indexes or any(i.model_key == requested.key for i in indexes):
            return requested
        if len(indexes) == 1:
            return resolve_model(indexes[0].model_name)
        return requested

    @property
    def model_loaded(self) -> bool:
        return self._model is not None

    def model(self) -> Embedder:
        """Load the model once; safe to call from several threads (the TUI's workers)."""
        with self._model_lock:
            if self._model is None:
                self._model = self._model_loader(
                    self.spec, self.settings.device, self.settings.precision
                )
            return self._model

    # -- indexing

    def indexer(self, options: IndexOptions | None = None) -> Indexer:
        opts = options or IndexOptions(
            batch_size=self.settings.batch_size, max_megapixels=self.settings.max_megapixels
        )
        return Indexer(self.store, self.spec, self.model, opts)

    def index(
        self,
        roots: Sequence[str | os.PathLike[str]],
        options: IndexOptions | None = None,
        on_event: EventHandler | None = None,
        cancel: threading.Event | None = None,
        *,
        wait: bool = True,
    ) -> IndexSummary:
        """Index ``roots`` while holding the index's writer lock (see :mod:`clipseek.lock`).

        If another process is indexing into the same database, this waits for it (saying
        so through a :class:`Notice`) or, with ``wait=False``, raises
        :class:`~clipseek.errors.IndexBusyError` naming the holder. With ``rebuild``, a
        damaged database is first moved aside so the rebuild starts from a clean one.
        """
        from clipseek.lock import LockHolder, WriterLock

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
                from clipseek.scanner import normalise_root

                summary = IndexSummary(roots=[normalise_root(r) for r in roots], cancelled=True)
                emit(IndexFinished(summary))
                return summary
        try:
            opts = options or IndexOptions(
                batch_size=self.settings.batch_size, max_megapixels=self.settings.max_megapixels
            )
            if opts.rebuild:
                moved = self.store.recover()
                if moved:
                    emit(
                        Notice(
                            f"The index at {self.store.location} was damaged; it was moved to "
                            f"{moved} and is rebuilt from your images."
                        )
                    )
            return self.indexer(opts).run(roots, on_event=emit, cancel=cancel)
        finally:
            if lock is not None:
                lock.release()

    # -- searching

    def open_index(self) -> ImageIndex:
        """The index for this engine's model, or a message that says what to do instead."""
        spec = self.spec
        index = self.store.open_index(spec.key, spec.collection_slug)
        if index is not None:
            return index
        others = self.store.indexes() if self.store.exists else []
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

    def searcher(self) -> Searcher:
        """The index is opened before the model loads: a missing index is a quick answer."""
        index = self.open_index()
        return Searcher(index, self.model(), self.settings.max_megapixels)

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
            from clipseek.search import parse_query

            query = parse_query(list(query))
        return self.searcher().search(
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
            from clipseek.imaging import to_rgb

            return encode_image(model, to_rgb(image))
        from clipseek.imaging import open_image_bytes

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
        searcher = self.searcher()
        vector = self.embed_image(image, label=label, max_megapixels=max_megapixels)
        response = searcher.search_vector(vector, top_k, in_dir=in_dir, filters=filters, sort=sort)
        response.query = label
        return response

    def image_entry(self, image_id: str) -> StoredEntry | None:
        """The indexed file behind ``image_id`` (as given in search results), or None.
        Faces serve files by id through this, never by a path a client names."""
        return self.open_index().lookup([image_id]).get(image_id)

    def duplicates(
        self, threshold: float = 0.95, in_dir: str | None = None
    ) -> list[DuplicateGroup]:
        """Groups of near-identical pictures (no model needed: the stored vectors are compared)."""
        from clipseek.duplicates import existing_only, find_duplicates

        folder = None
        if in_dir is not None:
            folder = os.path.abspath(os.path.expanduser(in_dir))
            if not os.path.isdir(folder):
                raise QueryError(f"--in {in_dir}: no such folder.")
        return existing_only(find_duplicates(self.open_index(), threshold, under=folder))

    # -- facts

    def info(self) -> EngineInfo:
        source = self.settings.sources.get("model", "default")
        spec = self.spec
        if not self.settings.model_explicit and spec.name != self.settings.model:
            source = "adopted from the index"
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
