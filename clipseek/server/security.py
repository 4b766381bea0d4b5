"""What the server refuses before a request reaches the app: foreign Host headers, slow
clients, too many connections, and malformed HTTP (answered as JSON like every error).

- **Host allow-list.** A web page on another site can point its own host name at
  127.0.0.1 (DNS rebinding) and then read a loopback-only server with the user's
  browser. Such a request carries the attacker's name in ``Host``, so only the names
  the server was started for are accepted: the localhost names, the ``--host`` value,
  and ``--allowed-host`` additions. A bare IP address is always accepted, since
  rebinding needs a name.
- **Timeouts.** A request's headers must arrive within ``header_timeout`` seconds and
  its body within ``body_timeout`` seconds, however slowly the bytes trickle in; an idle
  keep-alive connection closes after ``keep_alive`` seconds; at most ``max_connections``
  are open at once (more get a 503).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

LOCAL_NAMES = ("localhost", "127.0.0.1", "::1", "localhost.localdomain", "ip6-localhost")
#: --host values that mean "every interface": they name no host a client would use.
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class Limits:
    """Protocol-level limits; the defaults suit a photo library shared on a home network."""

    header_timeout: float = 10.0
    body_timeout: float = 60.0
    keep_alive: float = 5.0
    max_connections: int = 100
    #: Largest request head (request line and headers) in bytes.
    max_header_bytes: int = 16 * 1024


# --------------------------------------------------------------------------- Host header


def allowed_hosts(bind_host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The Host names a server started with ``--host bind_host`` answers to."""
    names = {*LOCAL_NAMES}
    host = bind_host.strip().strip("[]").lower()
    if host not in WILDCARD_HOSTS:
        names.add(host)
    for name in extra:
        cleaned = name.strip().strip("[]").lower().rstrip(".")
        if cleaned:
            names.add(cleaned)
    return frozenset(names)


def host_name(header: str) -> str:
    """The name in a Host header, without the port, brackets or a trailing dot."""
    value = header.strip().lower()
    if value.startswith("["):  # [::1]:8000
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def host_allowed(header: str | None, allowed: frozenset[str]) -> bool:
    if header is None:
        return True  # HTTP/1.0 without Host: not a browser, so not a rebinding page
    name = host_name(header)
    if "*" in allowed or name in allowed:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostCheck:
    """ASGI middleware: refuse requests whose Host header names another site."""

    def __init__(self, app: Any, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = None
        for key, value in scope.get("headers") or []:
            if key == b"host":
                header = value.decode("latin-1")
                break
        if host_allowed(header, self.allowed):
            await self.app(scope, receive, send)
            return
        from starlette.responses import JSONResponse

        shown = host_name(header or "")[:100]
        detail = (
            f"This server does not answer to the host name {shown!r}; start it with "
            f"--allowed-host {shown} if that name is really meant to reach it."
        )
        await JSONResponse({"detail": detail}, status_code=400)(scope, receive, send)


# --------------------------------------------------------------------------- protocol


def protocol_class(limits: Limits) -> type:
    """uvicorn's h11 protocol with deadlines for the request head and body, and JSON for
    the errors it answers itself."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._deadline: asyncio.TimerHandle | None = None
            self._waiting_for = ""

        # -- deadlines: absolute, so trickling one byte at a time does not extend them

        def _arm(self, what: str, seconds: float) -> None:
            self._disarm()
            self._waiting_for = what
            self._deadline = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
                self._waiting_for = ""

        def _follow_state(self) -> None:
            """Arm the deadline that fits where the client is in its request."""
            theirs = self.conn.their_state
            if theirs is h11.IDLE:
                if self._waiting_for != "head" and self.conn.our_state is h11.IDLE:
                    self._arm("head", limits.header_timeout)
            elif theirs is h11.SEND_BODY:
                if self._waiting_for != "body":
                    self._arm("body", limits.body_timeout)
            else:
                self._disarm()

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm("head", limits.header_timeout)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if not self.transport.is_closing():
                self._follow_state()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.transport.is_closing():
                self._disarm()
            elif self.conn.their_state is h11.IDLE:
                # Idle keep-alive: uvicorn's own timer closes it; a partial next request
                # (data arrived, no complete head yet) gets the head deadline.
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _expired(self) -> None:
            what = self._waiting_for
            self._deadline = None
            self._waiting_for = ""
            if self.transport.is_closing():
                return
            seconds = limits.header_timeout if what == "head" else limits.body_timeout
            part = "headers" if what == "head" else "body"
            self._answer(408, f"The request {part} did not arrive within {seconds:g} s.")

        # -- errors uvicorn answers itself, as JSON like the app's

        def send_400_response(self, msg: str) -> None:
            self._answer(400, "The request is not valid HTTP.")

        def _answer(self, status: int, detail: str) -> None:
            """Write a JSON error and close; written raw, since h11 refuses a response
            before a complete request head (a header timeout, say)."""
            if self.cycle is None or not self.cycle.response_started:
                body = json.dumps({"detail": detail}).encode()
                reason = b"Request Timeout" if status == 408 else b"Bad Request"
                self.transport.write(
                    b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                    % (status, reason, len(body), body)
                )
            if self.cycle is not None:
                self.cycle.disconnected = True  # the app's own answer, if any, is dropped
                self.cycle.message_event.set()
            self.transport.close()

    return GuardedH11Protocol


def uvicorn_config(app: Any, limits: Limits | None = None, **kwargs: Any) -> Any:
    """A ``uvicorn.Config`` with clipseek's protocol limits; ``kwargs`` go to uvicorn."""
    import uvicorn

    lim = limits or Limits()
    return uvicorn.Config(
        app,
        http=protocol_class(lim),
        timeout_keep_alive=max(1, int(lim.keep_alive)),
        limit_concurrency=lim.max_connections,
        h11_max_incomplete_event_size=lim.max_header_bytes,
        **kwargs,
    )
