"""Call an ASGI app in-process with raw bytes: what a socket would deliver, without one.

Used where a test needs many requests fast (the HTTP fuzzer) or control an HTTP client does not
give (a body split into chunks without Content-Length, a body that stops arriving, any Host
header). Each request runs on one long-lived event loop in a helper thread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import anyio
from anyio.from_thread import start_blocking_portal

DEFAULT_HOST = "127.0.0.1:8000"


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    error: BaseException | None  # what the app raised (a server would log it and send 500)

    def json(self):
        return json.loads(self.body)


class AsgiClient:
    """``request()`` sends one HTTP request to ``app`` and returns its :class:`Reply`."""

    def __init__(self, app):
        self.app = app
        self._portal_context = start_blocking_portal()
        self._portal = self._portal_context.__enter__()

    def close(self) -> None:
        self._portal_context.__exit__(None, None, None)

    def __enter__(self) -> AsgiClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def request(self, method: str, path: str, body: bytes = b"", *, chunks: list[bytes] | None = None,
                content_type: str | None = "application/json", host: str | None = DEFAULT_HOST,
                headers: list[tuple[bytes, bytes]] | None = None, stall_after: int | None = None,
                timeout: float = 60.0) -> Reply:
        """``body`` goes in one message with its Content-Length; ``chunks`` go as separate
        messages without one (what chunked transfer encoding delivers). ``stall_after``: after
        that many chunks the body stops arriving (the client stays connected). ``host=None``
        sends no Host header."""
        return self._portal.call(self._request, method, path, body, chunks, content_type, host, headers,
                                 stall_after, timeout)

    async def _request(self, method, path, body, chunks, content_type, host, headers, stall_after, timeout) -> Reply:
        raw_headers = list(headers or [])
        if host is not None:
            raw_headers.append((b"host", host.encode("latin-1")))
        if content_type is not None:
            raw_headers.append((b"content-type", content_type.encode("latin-1")))
        if chunks is None:
            chunks = [body]
            raw_headers.append((b"content-length", str(len(body)).encode()))
        else:
            raw_headers.append((b"transfer-encoding", b"chunked"))
        path, _, query = path.partition("?")
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
                 "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
                 "query_string": query.encode(),
                 "root_path": "", "headers": raw_headers, "client": ("127.0.0.1", 50000),
                 "server": ("127.0.0.1", 8000), "state": {}}
        pending = list(chunks)
        sent_chunks = 0
        done = anyio.Event()
        started: dict = {}
        parts: list[bytes] = []

        async def receive():
            nonlocal sent_chunks
            if pending and (stall_after is None or sent_chunks < stall_after):
                sent_chunks += 1
                return {"type": "http.request", "body": pending.pop(0), "more_body": bool(pending)}
            await done.wait()  # the body is complete (or stalled): the next event is the disconnect
            return {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                started.update(message)
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))
                if not message.get("more_body", False):
                    done.set()

        error = None
        with anyio.fail_after(timeout):
            try:
                await self.app(scope, receive, send)
            except Exception as exc:  # noqa: BLE001 - reported in the Reply, as a server would log it
                error = exc
        done.set()
        headers_out = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in started.get("headers", [])}
        return Reply(status=started.get("status", 500), headers=headers_out, body=b"".join(parts), error=error)
