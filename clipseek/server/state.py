"""What every route needs: the server's options and its state, handed to the routes as a
FastAPI dependency (``state: State``) instead of closing over ``create_app``'s locals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from clipseek.server.security import Limits

if TYPE_CHECKING:
    from clipseek.engine import Engine
    from clipseek.server.thumbs import ThumbnailCache


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


#: Upper bound on an uploaded query image once decoded: a small PNG can inflate to
#: gigabytes, and a query needs 224 pixels, not 200 megapixels.
UPLOAD_MAX_MEGAPIXELS = 50.0


@dataclass(frozen=True)
class ServerState:
    """One server's engine, options, thumbnail cache, upload limit and web page."""

    engine: Engine
    options: ServerOptions
    thumbnails: ThumbnailCache
    #: Decoded size limit of an uploaded query image, in megapixels.
    upload_limit: float
    #: The web page's HTML, read once.
    page: str

    def roots(self) -> list[str]:
        """The indexed folders: files are served only from inside them."""
        return self.engine.open_index().roots


async def server_state(request: Request) -> ServerState:
    """The state :func:`clipseek.server.app.create_app` keeps on the app (async: resolved
    on the event loop, not in the thread pool)."""
    return request.app.state.server  # type: ignore[no-any-return]


#: A route's parameter ``state: State`` receives the server's :class:`ServerState`.
State = Annotated[ServerState, Depends(server_state)]
