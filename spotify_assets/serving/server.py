"""Run the ASGI app on uvicorn with read timeouts and a connection cap.

uvicorn closes a connection that idles *after* a response (``timeout_keep_alive``), but it has
no deadline for a request's headers: a client that connects and sends nothing, or trickles a
header byte at a time, holds its connection (and a file descriptor) forever, and 400 such
clients exhaust the process. :func:`guarded_protocol` adds that deadline to uvicorn's own
HTTP protocol class; the body deadline lives in the app
(:class:`spotify_assets.serving.guards.BufferedJsonBody`), and ``limit_concurrency`` caps
connections (503 past the cap).
"""

from __future__ import annotations

import json

from spotify_assets.serving.settings import ServerSettings


def guarded_protocol(header_timeout: float, max_header_bytes: int) -> type:
    """uvicorn's HTTP protocol class (httptools when installed, else h11) with a deadline on each
    request's headers.

    The deadline is armed when the connection opens and again when a response completes with no
    request waiting, and disarmed by the next request's headers (uvicorn starts a new request
    cycle then). Bytes arriving do not push it back, so trickling headers does not help. When it
    expires, a client that sent part of a request gets a 408, an idle one is just closed. Headers
    over ``max_header_bytes`` get a 431.
    """
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class HeaderDeadlineProtocol(AutoHTTPProtocol):
        _deadline = None
        _awaited_cycle = None
        _header_bytes = 0

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._await_headers()

        def data_received(self, data: bytes) -> None:
            waiting = self._waiting_for_headers()
            if waiting:
                self._header_bytes += len(data)
            super().data_received(data)
            if (waiting and self._waiting_for_headers() and self._header_bytes > max_header_bytes
                    and not self.transport.is_closing()):
                self._refuse(431, "Request Header Fields Too Large", f"request headers over {max_header_bytes} bytes")

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self._waiting_for_headers() and not self.transport.is_closing():
                self._await_headers()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _waiting_for_headers(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _await_headers(self) -> None:
            self._disarm()
            self._awaited_cycle, self._header_bytes = self.cycle, 0
            self._deadline = self.loop.call_later(header_timeout, self._headers_overdue)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _headers_overdue(self) -> None:
            self._deadline = None
            if self.transport.is_closing() or self.cycle is not self._awaited_cycle:
                return  # closed already, or a request's headers arrived
            if self._header_bytes:
                self._refuse(408, "Request Timeout", f"request headers not received within {header_timeout:g} s")
            else:
                self.transport.close()

        def _refuse(self, status: int, reason: str, detail: str) -> None:
            body = json.dumps({"detail": detail}).encode()
            self.transport.write(f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
                                 f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body)
            self.transport.close()

    return HeaderDeadlineProtocol


def run_server(app, settings: ServerSettings) -> None:
    """Serve ``app`` until interrupted."""
    import uvicorn

    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=settings.log_level,
        http=guarded_protocol(settings.header_timeout_seconds, settings.max_header_bytes),
        timeout_keep_alive=settings.keep_alive_timeout_seconds, limit_concurrency=settings.max_connections,
        ws="none")
    uvicorn.Server(config).run()
