"""The HTTP face: a REST API and a web page over one :class:`clipseek.engine.Engine`.

The app is a thin translation layer. Every endpoint that touches the model, the
store or the disk is a plain ``def``, so FastAPI runs it in its thread pool and
the event loop stays free to answer other requests (the health check, the page,
thumbnails) while a query is being embedded; the model itself serialises its
forward passes with its own lock. Files are served only by the id the index gave
them, never by a path a client names.
"""

from __future__ import annotations

import base64
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from clipseek import __version__
from clipseek.errors import (
    ClipseekError,
    ImageReadError,
    IndexMissingError,
    ModelMismatchError,
    QueryError,
    StoreError,
)
from clipseek.photos.pathtext import display_path, display_text, dumps, json_path_fields
from clipseek.search.query import parse_query
from clipseek.server.files import FileRefused, OpenedImage, changed, open_indexed
from clipseek.server.security import HostCheck, Limits, allowed_hosts
from clipseek.server.thumbs import ThumbnailCache, render_jpeg
from clipseek.server.validation import (
    duplicate_threshold,
    no_bool,
    search_filters,
    search_folder,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    from clipseek.engine import Engine
    from clipseek.search.query import SearchResponse
    from clipseek.search.query import SearchResult as SearchHitSource

log = logging.getLogger("clipseek.server")

STATIC_DIR = Path(__file__).parent / "static"
MAX_TOP_K = 200
DEFAULT_TOP_K = 5
MAX_QUERY_CHARS = 1000
#: Upper bound on an uploaded query image once decoded: a small PNG can inflate to
#: gigabytes, and a query needs 224 pixels, not 200 megapixels.
UPLOAD_MAX_MEGAPIXELS = 50.0
ID_PATTERN = r"^[0-9a-f]{40}$"

#: Only the page's own files; no inline scripts, nothing from other origins.
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


@dataclass(frozen=True)
class ServerOptions:
    """Limits of one server; the defaults suit a photo library on a laptop."""

    max_upload_bytes: int = 20 * 1024 * 1024
    max_json_bytes: int = 64 * 1024
    thumbnail_size: int = 256
    thumbnail_cache_bytes: int = 64 * 1024 * 1024
    #: Decoded size limit of an uploaded query image; ``serve --max-megapixels`` sets it.
    #: None: the settings' limit, but at most :data:`UPLOAD_MAX_MEGAPIXELS`.
    upload_max_megapixels: float | None = None
    #: The address the server listens on: a name there is an accepted Host header.
    host: str = "127.0.0.1"
    #: More accepted Host names (``--allowed-host``); "*" accepts any.
    allowed_hosts: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)


# --------------------------------------------------------------------------- schemas

ImageId = Annotated[str, PathParam(pattern=ID_PATTERN, description="An id from a search result.")]


class SearchRequest(BaseModel):
    """A text search, compound queries included (``"a cat" + "a hat" - "blurry"``)."""

    model_config = ConfigDict(
        populate_by_name=True,
        extra="forbid",
        json_schema_extra={"examples": [{"query": "a dog playing in the park", "top_k": 5}]},
    )

    query: str = Field(
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        description='What to look for; terms may be joined with + and - and weighted (2:"beach").',
    )
    top_k: Annotated[int, BeforeValidator(no_bool)] = Field(
        DEFAULT_TOP_K, ge=1, le=MAX_TOP_K, description="How many results."
    )
    in_: str | None = Field(
        None,
        alias="in",
        max_length=4096,
        description="Only images inside this folder (a path on the server, inside an "
        "indexed folder).",
    )
    after: str | None = Field(
        None, max_length=32, description="Taken in or after: YYYY, YYYY-MM or YYYY-MM-DD."
    )
    before: str | None = Field(
        None, max_length=32, description="Taken before the start of: YYYY, YYYY-MM or YYYY-MM-DD."
    )
    camera: str | None = Field(
        None, max_length=200, description="Camera make or model contains this (any case)."
    )
    min_size: str | None = Field(
        None, max_length=32, description="At least WIDTHxHEIGHT pixels, e.g. 1000x800."
    )
    sort: str = Field(
        "score",
        max_length=16,
        description='"score" (best first) or "date" (the top-k, oldest taken first).',
    )


class SearchHit(BaseModel):
    id: str = Field(
        description="Stable id of the indexed file; use it with /images and /thumbnails."
    )
    rank: int
    score: float = Field(description="Cosine similarity between the query and the image.")
    path: str = Field(
        description="The file's path. Bytes that are not UTF-8 appear as the escapes "
        "\\udc80-\\udcff (Python's os.fsencode turns it back into the exact bytes)."
    )
    path_b64: str | None = Field(
        None,
        description="Only for names that are not UTF-8: the exact bytes of the path, base64.",
    )
    image: str | None = Field(
        description="A JPEG thumbnail as a data: URL, or null if the file cannot be read now."
    )
    thumbnail_url: str
    image_url: str
    width: int | None = None
    height: int | None = None
    taken: str | None = Field(
        None, description="When it was taken, ISO 8601 local time; null when unknown."
    )
    taken_source: str | None = Field(
        None, description='"exif", or "mtime" when the date is the file\'s time.'
    )
    camera: str | None = Field(None, description="Camera make and model from EXIF, or null.")


class SearchResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "query": '"a dog playing in the park"',
                    "model": "ViT-B/32",
                    "results": [
                        {
                            "id": "5f1c0d0c4a6f3f1e0b6f2b8f9d1e2a3b4c5d6e7f",
                            "rank": 1,
                            "score": 0.312,
                            "path": "/home/ana/Pictures/park/IMG_0420.jpg",
                            "image": "data:image/jpeg;base64,/9j/4AAQSkZJRg...",
                            "thumbnail_url": "/thumbnails/5f1c0d0c4a6f3f1e0b6f2b8f9d1e2a3b4c5d6e7f",
                            "image_url": "/images/5f1c0d0c4a6f3f1e0b6f2b8f9d1e2a3b4c5d6e7f",
                            "width": 4032,
                            "height": 3024,
                            "taken": "2024-07-14T10:00:00",
                            "taken_source": "exif",
                            "camera": "Google Pixel 7",
                        }
                    ],
                    "total_results": 1,
                    "notes": [],
                }
            ]
        }
    )

    query: str
    model: str
    results: list[SearchHit]
    total_results: int
    notes: list[str] = Field(default_factory=list, description="Things the user should know.")


class Health(BaseModel):
    status: str = Field(description='"ok", or "no index" before anything was indexed.')
    model: str
    indexed_images: int
    index: str = Field(description="Index folder, or the Chroma server's URL.")
    remote: bool = Field(description="True when the index is on a Chroma server.")
    version: str
    max_upload_bytes: int = Field(description="Largest image /search/image accepts.")
    message: str | None = None


class ErrorBody(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (409, "There is no index yet, or it was built with another model."),
        (413, "The request body is larger than the server accepts."),
        (422, "The request is not valid; `detail` says why."),
        (503, "The index (e.g. a Chroma server) cannot be reached."),
    )
}


# --------------------------------------------------------------------------- body limit


class BodyLimit:
    """Refuse request bodies over a per-path limit, by Content-Length up front and by
    counting as the body streams in (chunked uploads announce no length)."""

    def __init__(self, app: Any, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        message = _too_large_message(limit)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await JSONResponse({"detail": message}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def limited() -> MutableMapping[str, Any]:
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > limit:
                    raise HTTPException(413, message)
            return msg

        await self.app(scope, limited, send)


def _too_large_message(limit: int) -> str:
    size = f"{limit / 1024 / 1024:g} MB" if limit >= 1024 * 1024 else f"{limit // 1024} KB"
    return f"The request body is larger than this server accepts ({size})."


# --------------------------------------------------------------------------- errors


def _status_for(exc: ClipseekError) -> int:
    if isinstance(exc, IndexMissingError | ModelMismatchError):
        return 409
    if isinstance(exc, StoreError):
        return 503
    if isinstance(exc, QueryError):
        return 422
    return 400


def _content_type_message(request: Request, errors: list[dict[str, Any]]) -> str | None:
    """A JSON body sent without ``Content-Type: application/json`` reaches pydantic as text,
    which it calls "not a valid dictionary"; say what to change instead."""
    whole_body = any(
        tuple(e.get("loc", ())) == ("body",)
        and e.get("type") in ("model_attributes_type", "dict_type")
        for e in errors
    )
    sent = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not whole_body or sent == "application/json" or sent.endswith("+json"):
        return None
    had = f"it had {sent}" if sent else "it had none"
    return f"Send the body as JSON with the header Content-Type: application/json ({had})."


def _validation_message(errors: list[dict[str, Any]]) -> str:
    """One readable sentence per problem, e.g. "top_k: Input should be less than or equal
    to 200", instead of pydantic's nested structure."""
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path", "form", "header"):
            loc = loc[1:]  # where the field came from; the field's name is what people know
        where = ".".join(loc)
        msg = str(err.get("msg", "invalid value"))
        if err.get("type") == "json_invalid":
            msg = "The body is not valid JSON"
            where = ""
        elif err.get("type") == "missing":
            msg = "This field is required"
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts) + "." if parts else "The request is not valid."


# --------------------------------------------------------------------------- the app


def create_app(
    engine: Engine,
    options: ServerOptions | None = None,
    on_startup: Callable[[], object] | None = None,
) -> FastAPI:
    """Build the ASGI app around an engine; the model loads at start-up, once, and
    ``on_startup`` runs when the server is ready for requests."""
    from contextlib import asynccontextmanager

    from starlette.concurrency import run_in_threadpool

    opts = options or ServerOptions()
    upload_limit = opts.upload_max_megapixels
    if upload_limit is None:
        upload_limit = min(UPLOAD_MAX_MEGAPIXELS, engine.settings.max_megapixels)
    thumbs = ThumbnailCache(engine.settings.max_megapixels, opts.thumbnail_cache_bytes)
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        await run_in_threadpool(engine.model)
        if on_startup is not None:
            on_startup()
        yield

    app = FastAPI(
        title="clipseek",
        version=__version__,
        summary="Semantic image search: find photos by describing them.",
        description="The REST API of `clipseek serve`. The web page is at `/ui` "
        "(and at `/` for browsers).",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.engine = engine
    app.state.thumbnails = thumbs

    # -- errors

    @app.exception_handler(ClipseekError)
    async def clipseek_error(request: Request, exc: ClipseekError) -> JSONResponse:
        return JSONResponse({"detail": display_text(str(exc))}, status_code=_status_for(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        return JSONResponse(
            {
                "detail": _content_type_message(request, errors) or _validation_message(errors),
                "errors": [
                    {
                        "loc": list(e.get("loc", ())),
                        "msg": str(e.get("msg", "")),
                        "type": e.get("type"),
                    }
                    for e in errors
                ],
            },
            status_code=422,
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("Unexpected error while serving %s %s", request.method, request.url.path)
        return JSONResponse(
            {"detail": f"clipseek hit an unexpected problem: {type(exc).__name__}."},
            status_code=500,
        )

    # -- health and page

    def health() -> Health:
        info = engine.info()
        spec = engine.spec
        count = sum(i.count for i in info.indexes if i.model_key == spec.key)
        indexed = any(i.model_key == spec.key for i in info.indexes)
        return Health(
            status="ok" if indexed else "no index",
            model=info.model,
            indexed_images=count,
            index=info.location,
            remote=info.remote,
            version=__version__,
            max_upload_bytes=opts.max_upload_bytes,
            message=None
            if indexed
            else f"Nothing is indexed with {info.model} yet; run `clipseek index FOLDER`.",
        )

    def html_page() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": CSP})

    @app.get(
        "/",
        response_model=Health,
        summary="Health (JSON), or the web page for browsers",
        responses={
            200: {
                "content": {"text/html": {}},
                "description": "JSON health; the HTML page when the Accept header prefers "
                "text/html (as browsers send).",
            },
            503: ERRORS[503],
        },
    )
    def root(request: Request) -> Any:
        if _prefers_html(request.headers.get("accept", "")):
            return html_page()
        return health()

    @app.get(
        "/health",
        response_model=Health,
        summary="Health, always JSON",
        responses={503: ERRORS[503]},
    )
    def health_json() -> Health:
        return health()

    @app.get("/ui", response_class=HTMLResponse, summary="The web page")
    def ui() -> HTMLResponse:
        return html_page()

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # -- search

    def roots() -> list[str]:
        return engine.open_index().roots

    def hit_list(response: SearchResponse) -> Response:
        hits = []
        folders = roots() if response.results else []
        for r in response.results:
            hits.append(
                SearchHit(
                    id=r.id,
                    rank=r.rank,
                    score=_finite_score(r.score),
                    **json_path_fields(r.path),
                    image=_data_url(thumbs, r, folders, opts.thumbnail_size),
                    thumbnail_url=f"/thumbnails/{r.id}",
                    image_url=f"/images/{r.id}",
                    width=r.width,
                    height=r.height,
                    taken=r.taken or None,
                    taken_source=r.taken_source or None,
                    camera=r.camera or None,
                )
            )
        result = SearchResult(
            query=response.query,
            model=response.model,
            results=hits,
            total_results=len(hits),
            notes=list(response.notes),
        )
        # Written by clipseek's own JSON rule, not pydantic's: a file name that is not
        # UTF-8 must come out as \udcXX escapes, where pydantic would raise (a 500).
        payload = result.model_dump(exclude_none=False)
        for hit in payload["results"]:
            if hit.get("path_b64") is None:
                hit.pop("path_b64", None)
        return Response(dumps(payload), media_type="application/json")

    @app.post(
        "/search",
        response_model=SearchResult,
        summary="Search by text",
        responses={k: ERRORS[k] for k in (409, 413, 422, 503)},
    )
    def search(body: SearchRequest) -> Response:

        query = parse_query([body.query], allow_images=False)
        folder = (
            search_folder(body.in_, roots(), engine.holds_pictures_under)
            if body.in_ is not None
            else None
        )
        filters, order = search_filters(
            body.after, body.before, body.camera, body.min_size, body.sort
        )
        return hit_list(
            engine.search(query, body.top_k, in_dir=folder, filters=filters, sort=order)
        )

    @app.post(
        "/search/image",
        response_model=SearchResult,
        summary="Search by an example image (multipart upload)",
        responses={k: ERRORS[k] for k in (409, 413, 422, 503)},
    )
    def search_image(
        file: Annotated[UploadFile, File(description="The example image (JPEG, PNG, WebP, ...).")],
        top_k: Annotated[int, BeforeValidator(no_bool), Form(ge=1, le=MAX_TOP_K)] = DEFAULT_TOP_K,
        in_: Annotated[str | None, Form(alias="in", max_length=4096)] = None,
        after: Annotated[str | None, Form(max_length=32)] = None,
        before: Annotated[str | None, Form(max_length=32)] = None,
        camera: Annotated[str | None, Form(max_length=200)] = None,
        min_size: Annotated[str | None, Form(max_length=32)] = None,
        sort: Annotated[str, Form(max_length=16)] = "score",
    ) -> Response:
        data = file.file.read(opts.max_upload_bytes + 1)
        name = os.path.basename(file.filename or "") or "image"
        label = f"the uploaded image {name}"
        folder = (
            search_folder(in_, roots(), engine.holds_pictures_under) if in_ is not None else None
        )
        filters, order = search_filters(after, before, camera, min_size, sort)
        response = engine.search_image(
            data,
            top_k,
            in_dir=folder,
            label=label,
            max_megapixels=upload_limit,
            filters=filters,
            sort=order,
        )
        response.query = f"image: {name}"
        return hit_list(response)

    @app.get(
        "/duplicates",
        summary="Groups of near-identical pictures (lists only; nothing is deleted)",
        responses={
            200: {
                "description": '{"threshold": 0.95, "groups": [{"count": 2, "items": [{"id", '
                '"path", "size", "width", "height", "taken", "similarity", "thumbnail_url", '
                '"image_url"}]}]}, largest group first.'
            },
            **{k: ERRORS[k] for k in (409, 422, 503)},
        },
    )
    def duplicates(
        threshold: Annotated[
            float, Query(description="Cosine similarity to count as a copy: above 0, at most 1.")
        ] = 0.95,
        in_: Annotated[
            str | None,
            Query(alias="in", max_length=4096, description="Only pictures inside this folder."),
        ] = None,
    ) -> Response:
        limit = duplicate_threshold(threshold)
        folder = (
            search_folder(in_, roots(), engine.holds_pictures_under) if in_ is not None else None
        )
        groups = []
        for group in engine.duplicates(limit, in_dir=folder):
            data = group.to_json()
            for item in data["items"]:
                item["thumbnail_url"] = f"/thumbnails/{item['id']}"
                item["image_url"] = f"/images/{item['id']}"
            groups.append(data)
        payload = {"threshold": limit, "groups": groups}
        return Response(dumps(payload), media_type="application/json")

    # -- files, by id only

    def open_by_id(image_id: str, identify: bool = True) -> OpenedImage:
        """The checked, open file behind an id (see :mod:`clipseek.server.files`)."""
        entry = engine.image_entry(image_id)
        if entry is None:
            raise HTTPException(404, f"No indexed image has the id {image_id}.")
        try:
            return open_indexed(entry.path, entry.size, entry.mtime_ns, roots(), identify=identify)
        except FileRefused as exc:
            raise HTTPException(exc.status, exc.detail) from None

    @app.get(
        "/images/{image_id}",
        summary="The indexed image itself",
        response_class=Response,
        responses={
            200: {"content": {"image/*": {}}, "description": "The file, or a JPEG of it."},
            404: {"model": ErrorBody, "description": "No indexed image has this id."},
            410: {"model": ErrorBody, "description": "The file was deleted since indexing."},
        },
    )
    def image(image_id: ImageId) -> Response:
        opened = open_by_id(image_id)
        media = opened.media_type
        if media is not None:  # sent from the descriptor that was checked, never the path
            return StreamingResponse(
                opened.chunks(),
                media_type=media,
                headers={
                    "Cache-Control": "private, max-age=60",
                    "Content-Length": str(opened.size),
                },
            )
        # TIFF and friends: browsers cannot show them, so send a large JPEG instead.
        with opened:
            data = _render(opened, 4096, engine.settings.max_megapixels)
        return Response(
            data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"}
        )

    @app.get(
        "/thumbnails/{image_id}",
        summary="A JPEG thumbnail of an indexed image",
        response_class=Response,
        responses={
            200: {"content": {"image/jpeg": {}}},
            404: {"model": ErrorBody, "description": "No indexed image has this id."},
            410: {"model": ErrorBody, "description": "The file was deleted since indexing."},
        },
    )
    def thumbnail(
        image_id: ImageId,
        size: Annotated[int, Query(ge=16, le=2048, description="Longest side in pixels.")] = 256,
    ) -> Response:
        with open_by_id(image_id, identify=False) as opened:  # decoded in full below
            try:
                data = thumbs.get(opened, size)
            except (ImageReadError, OSError) as exc:
                reason = exc.reason if isinstance(exc, ImageReadError) else str(exc)
                if "--max-megapixels" in reason:  # the limit changed, not the file
                    raise HTTPException(
                        422,
                        f"The indexed file {display_path(opened.path)} cannot be read now: "
                        f"{reason}.",
                    ) from None
                # same size and time as when it was indexed, yet no longer readable
                refused = changed(opened.path, f" ({reason})")
                raise HTTPException(refused.status, refused.detail) from None
        return Response(
            data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"}
        )

    def limit_for(path: str) -> int:
        return opts.max_upload_bytes if path.rstrip("/") == "/search/image" else opts.max_json_bytes

    app.add_middleware(BodyLimit, limit_for=limit_for)
    app.add_middleware(_SecurityHeaders)
    # Outermost: a request for another site's name is refused before anything else runs.
    app.add_middleware(HostCheck, allowed=allowed_hosts(opts.host, opts.allowed_hosts))
    return app


class _SecurityHeaders:
    """``nosniff`` everywhere: a served file is only ever what its type says."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def _render(opened: OpenedImage, size: int, max_megapixels: float | None) -> bytes:
    try:
        return render_jpeg(opened.file, opened.path, size, max_megapixels, quality=90)
    except ImageReadError as exc:
        raise HTTPException(
            422, f"The indexed file {display_path(opened.path)} cannot be read now: {exc.reason}."
        ) from None


def _data_url(
    thumbs: ThumbnailCache, hit: SearchHitSource, roots: list[str], size: int
) -> str | None:
    try:
        with open_indexed(hit.path, hit.size, hit.mtime_ns, roots, identify=False) as opened:
            data = thumbs.get(opened, size)
    except (FileRefused, ImageReadError, OSError):
        return None  # the hit stays in the list; the page shows a placeholder
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def _finite_score(score: float) -> float:
    """JSON has no NaN: a score that is not a number (it never should be) reads as 0."""
    return round(score, 6) if math.isfinite(score) else 0.0


def _prefers_html(accept: str) -> bool:
    """True when the client ranks text/html above JSON, as browsers do; ``*/*`` (curl,
    scripts) and ``application/json`` get JSON."""
    html_q = json_q = 0.0
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        kind = fields[0].lower()
        q = 1.0
        for f in fields[1:]:
            if f.startswith("q="):
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        if kind in ("text/html", "application/xhtml+xml"):
            html_q = max(html_q, q)
        elif kind == "application/json":
            json_q = max(json_q, q)
    return html_q > 0 and html_q > json_q
