"""The HTTP protocol ``pvwind serve`` runs uvicorn with: uvicorn's own, plus a deadline for a
request's headers.

uvicorn has no timeout for receiving a request: its keep-alive timer only covers idle time
between requests and is cancelled by every byte that arrives, so a client that trickles a header
line a byte at a time holds a connection (and a file descriptor) for as long as it likes
("slowloris"). The body of an upload is paced by the application (``upload_min_bytes_per_second``,
408 ``upload_too_slow``), but the application only sees a request once its headers are complete.
Here a connection gets ``header_timeout_seconds`` from its first byte of a request to the end of
that request's headers; past it the server answers 408 and closes the connection. The deadline is
disarmed as soon as the headers are in, so long uploads and slow responses are not affected.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("pvwind.serve")

_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)


def header_deadline_protocol(base: type, seconds: float) -> type:
    """A subclass of uvicorn's protocol class ``base`` (h11 or httptools) with the header deadline."""

    class HeaderDeadline(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._header_timer: asyncio.TimerHandle | None = None
            self._awaiting_headers = True

        def data_received(self, data: bytes) -> None:
            if self._awaiting_headers and self._header_timer is None:
                self._header_timer = self.loop.call_later(seconds, self._header_timeout)
            before = self.cycle
            super().data_received(data)
            if self.cycle is not before and self.cycle is not None:  # a request's headers are complete
                self._disarm()
                self._awaiting_headers = False

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._awaiting_headers = True  # the next request on this connection starts its own deadline

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            peer = self.transport.get_extra_info("peername")
            log.warning("closing a connection from %s: request headers incomplete after %.0f s", peer, seconds)
            body = b'{"code":"header_timeout","detail":"the request headers did not arrive within %d s"}' % int(seconds)
            self.transport.write(_TIMEOUT_RESPONSE % (len(body), body))
            self.transport.close()

    HeaderDeadline.__name__ = f"HeaderDeadline{base.__name__}"
    return HeaderDeadline


def protocol_class(seconds: float) -> type | str:
    """What to pass as uvicorn's ``http``: its automatic choice, with the deadline unless ``seconds`` is 0."""
    if not seconds:
        return "auto"
    try:
        import httptools  # noqa: F401 - uvicorn's "auto" takes httptools when it is installed
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        base: type = HttpToolsProtocol
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol

        base = H11Protocol
    return header_deadline_protocol(base, seconds)
