"""Health (JSON) and the web page: ``/``, ``/health`` and ``/ui``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from clipseek import __version__
from clipseek.server.schemas import ERRORS, Health
from clipseek.server.state import ServerState, State

#: Only the page's own files; no inline scripts, nothing from other origins.
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

router = APIRouter()


def health(state: ServerState) -> Health:
    engine = state.engine
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
        max_upload_bytes=state.options.max_upload_bytes,
        message=None
        if indexed
        else f"Nothing is indexed with {info.model} yet; run `clipseek index FOLDER`.",
    )


def html_page(state: ServerState) -> HTMLResponse:
    return HTMLResponse(state.page, headers={"Content-Security-Policy": CSP})


@router.get(
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
def root(request: Request, state: State) -> Any:
    if prefers_html(request.headers.get("accept", "")):
        return html_page(state)
    return health(state)


@router.get(
    "/health",
    response_model=Health,
    summary="Health, always JSON",
    responses={503: ERRORS[503]},
)
def health_json(state: State) -> Health:
    return health(state)


@router.get("/ui", response_class=HTMLResponse, summary="The web page")
def ui(state: State) -> HTMLResponse:
    return html_page(state)


def prefers_html(accept: str) -> bool:
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
