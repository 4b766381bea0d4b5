"""The HTTP front end: a REST API and a web page over one :class:`clipseek.engine.Engine`.

The app is a thin translation layer. :func:`create_app` builds it from the routers in
:mod:`clipseek.server.routes`, which reach the engine and the server's options through a
dependency (:mod:`clipseek.server.state`). Every endpoint that touches the model, the
store or the disk is a plain ``def``, so FastAPI runs it in its thread pool and the event
loop stays free to answer other requests (the health check, the page, thumbnails) while
a query is being embedded; the model itself serialises its forward passes with its own
lock. Files are served only by the id the index gave them, never by a path a client names.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from clipseek import __version__
from clipseek.errors import (
    ClipseekError,
    IndexMissingError,
    ModelMismatchError,
    QueryError,
    StoreError,
)
from clipseek.photos.pathtext import display_text
from clipseek.server.routes import duplicates, health, images, search
from clipseek.server.security import HostCheck, allowed_hosts
from clipseek.server.state import UPLOAD_MAX_MEGAPIXELS, ServerOptions, ServerState
from clipseek.server.thumbs import ThumbnailCache

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    from clipseek.engine import Engine

__all__ = ["ServerOptions", "create_app"]

log = logging.getLogger("clipseek.server")

STATIC_DIR = Path(__file__).parent / "static"


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
    app.state.server = ServerState(engine, opts, thumbs, upload_limit, page)

    app.add_exception_handler(ClipseekError, _clipseek_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)

    app.include_router(health.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(search.router)
    app.include_router(duplicates.router)
    app.include_router(images.router)

    def limit_for(path: str) -> int:
        return opts.max_upload_bytes if path.rstrip("/") == "/search/image" else opts.max_json_bytes

    app.add_middleware(BodyLimit, limit_for=limit_for)
    app.add_middleware(_SecurityHeaders)
    # Outermost: a request for another site's name is refused before anything else runs.
    app.add_middleware(HostCheck, allowed=allowed_hosts(opts.host, opts.allowed_hosts))
    return app


async def _clipseek_error(request: Request, exc: ClipseekError) -> JSONResponse:
    return JSONResponse({"detail": display_text(str(exc))}, status_code=_status_for(exc))


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
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


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("Unexpected error while serving %s %s", request.method, request.url.path)
    return JSONResponse(
        {"detail": f"clipseek hit an unexpected problem: {type(exc).__name__}."},
        status_code=500,
    )


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
