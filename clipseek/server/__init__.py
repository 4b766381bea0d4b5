"""``clipseek serve``: the REST API and web page, one more front end over the engine.

This module imports nothing heavy at import time; FastAPI and uvicorn come from the
optional extra ``clipseek[serve]`` and are only imported once a server starts.
"""

from __future__ import annotations

import errno
import importlib.util
import ipaddress
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from clipseek.errors import ClipseekError
from clipseek.server.security import uvicorn_config

if TYPE_CHECKING:
    from clipseek.config import Settings
    from clipseek.engine import Engine
    from clipseek.models import Embedder, ModelSpec
    from clipseek.server.app import ServerOptions

#: The import names the server needs, and the distribution each comes from.
REQUIRED_MODULES = {"fastapi": "fastapi", "uvicorn": "uvicorn", "multipart": "python-multipart"}
INSTALL_HINT = "pip install 'clipseek[serve]'"


class ServerError(ClipseekError):
    """The server cannot start (missing extra, port taken, bad address)."""


def missing_packages() -> list[str]:
    """Distributions of the ``serve`` extra that are not installed."""
    missing = []
    for module, dist in REQUIRED_MODULES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules, or broken
            found = False
        if not found:
            missing.append(dist)
    return missing


def check_installed() -> None:
    missing = missing_packages()
    if missing:
        raise ServerError(
            f"The web server needs {', '.join(missing)}, which is not installed; "
            f"install it with: {INSTALL_HINT}"
        )


def serving_engine(
    settings: Settings, model_loader: Callable[[ModelSpec, str, str], Embedder] | None = None
) -> Engine:
    """The engine ``clipseek serve`` answers with.

    On a local index it reads like the app: the direct reader (:mod:`clipseek.store.direct`)
    answers searches from the files and the vector cache, without chromadb, a private
    snapshot of the database or Chroma's HNSW graph in memory (3 GB at a million
    pictures), and catches up with another process's commit by reading what it appended;
    unfiltered searches may come from an approximate index where the library is large
    (``approximate``). What that reader does not do still goes through Chroma. A
    ``--chroma-url`` server is read through Chroma's client (the store ignores both).
    The ONNX sessions are built for speed of use, not of start (no ``quick_start``): a
    server answers many searches.
    """
    # Lazy: importing the server package stays cheap (the command line imports it for serve).
    from clipseek.engine import Engine

    return Engine(settings, model_loader=model_loader, direct=True, approximate=True)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket before loading the model, so a taken port is a one-line
    answer in a second rather than a traceback after the model has loaded."""
    if not 0 <= port <= 65535:
        raise ServerError(f"--port must be from 1 to 65535 (0 picks a free one), not {port}.")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServerError(
            f"Cannot listen on {host!r}: {exc.strerror}. Use an IP address."
        ) from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServerError(
                f"Port {port} on {host} is already in use; choose another with --port."
            ) from None
        if exc.errno == errno.EACCES:
            raise ServerError(
                f"Not allowed to listen on port {port}; ports below 1024 need privileges. "
                "Choose another with --port."
            ) from None
        raise ServerError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.") from None
    sock.set_inheritable(True)
    return sock


def url_for(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        shown = "localhost"
    return f"http://{shown}:{port}"


def serve(
    engine: Engine,
    sock: socket.socket,
    options: ServerOptions | None = None,
    on_ready: Callable[[str], None] | None = None,
    log_level: str = "warning",
    on_stopping: Callable[[int], None] | None = None,
) -> int | None:
    """Run the server on an already bound socket until Ctrl-C (or SIGTERM).

    ``on_stopping(requests_in_flight)`` is called on the first Ctrl-C, so the command
    can say at once what (if anything) it is waiting for. Returns the signal that stopped
    it, when it returns at all (uvicorn may raise it again once stopped instead).
    """
    import uvicorn

    # Lazy: fastapi and uvicorn load only when a server starts.
    from clipseek.server.app import ServerOptions, create_app

    opts = options or ServerOptions()
    app = create_app(engine, opts, on_startup=lambda: on_ready and on_ready(url_for(sock)))
    config = uvicorn_config(
        app,
        opts.limits,
        log_level=log_level,
        access_log=log_level in ("info", "debug", "trace"),
        server_header=False,
        timeout_graceful_shutdown=GRACE_SECONDS,
    )

    stopped_by: list[int] = []

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:
            first = not self.should_exit
            super().handle_exit(sig, frame)  # type: ignore[arg-type]
            if first:
                stopped_by.append(sig)
                if on_stopping is not None:
                    on_stopping(len(self.server_state.tasks))

    _Server(config).run(sockets=[sock])
    return stopped_by[0] if stopped_by else None


#: Seconds a stopping server lets requests in flight finish (a search, a thumbnail).
GRACE_SECONDS = 3
