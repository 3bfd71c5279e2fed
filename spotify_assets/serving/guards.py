"""ASGI middleware that refuses bad requests before a handler sees them.

* :class:`AllowedHosts`: only configured ``Host`` names (400 otherwise). A service on
  127.0.0.1 is still reachable from a browser page through DNS rebinding (the attacker's name
  resolves to 127.0.0.1, the browser sends ``Host: attacker.example``); refusing unknown
  names closes that door.
* :class:`BufferedJsonBody`: reads the whole body before the app runs, so the limits hold
  whatever the framing: over ``limit`` bytes, by ``Content-Length`` or by counting chunks of
  a chunked body, is a 413; a body that stops arriving for ``timeout`` seconds is a 408; a body
  that is not standard JSON (RFC 8259: UTF-8, no ``NaN``/``Infinity``, numbers a double can
  hold, no lone surrogates) is a 422; a body with another media type is a 415. Python's
  ``json`` accepts all of those extensions, and the values they produce (NaN, an unencodable
  string) later fail to serialize in the error response or in SQLite: a 500 and a dropped
  connection instead of an answer.

Every refusal is JSON ``{"detail": "..."}``; the ones sent before the body was read completely
also close the connection (the rest of the body would otherwise be read as the next request).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import anyio


async def send_json(send, status: int, detail: str, close: bool = False) -> None:
    """Send a complete ``{"detail": ...}`` response."""
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def host_name(header: str | None) -> str | None:
    """The lower-cased name in a ``Host`` header (port and IPv6 brackets removed), or None
    when it is missing or malformed."""
    if header is None:
        return None
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1:]
    else:
        name, colon, port = value.partition(":")
        rest = colon + port
    if rest and not (rest.startswith(":") and rest[1:].isascii() and rest[1:].isdigit()):
        return None
    return name or None


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class AllowedHosts:
    """400 for a request whose ``Host`` names none of ``hosts`` (names or IP literals, any port)."""

    def __init__(self, app, hosts: Iterable[str]):
        self.app = app
        self.hosts = frozenset(h.strip().lower().strip("[]") for h in hosts if h.strip())
        if not self.hosts:
            raise ValueError("allowed hosts is empty: the service would refuse every request")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        header = _header(scope, b"host")
        name = host_name(header)
        if name not in self.hosts:
            shown = "no Host header" if header is None else f"Host {header!r}"
            return await send_json(send, 400, f"{shown} is not served here (allowed: {', '.join(sorted(self.hosts))}); "
                                              "start the service with --allowed-host NAME to add a name")
        await self.app(scope, receive, send)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        repeated = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"key {repeated[:40]!r} appears twice in one object")
    return value


def json_problem(body: bytes) -> str | None:
    """None when ``body`` is standard JSON (RFC 8259), else why not (one line)."""
    try:
        text = body.decode("utf-8")  # strict: refuses encoded surrogates and invalid bytes
    except UnicodeDecodeError as exc:
        return f"body is not UTF-8 JSON: invalid byte at offset {exc.start}"
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float,
                           object_pairs_hook=_unique_keys)
        if "\\u" in text:  # only an escape can produce a lone surrogate after a strict decode
            json.dumps(value, ensure_ascii=False).encode("utf-8")
    except json.JSONDecodeError as exc:
        return f"body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    except RecursionError:
        return "body is not accepted JSON: nested too deeply"
    except UnicodeEncodeError:
        return "body is not standard JSON: a string holds a lone UTF-16 surrogate escape"
    except ValueError as exc:  # NaN/Infinity, 1e400, a repeated key, integers beyond Python's digit limit
        return f"body is not standard JSON: {exc}"
    return None


def _is_json_media_type(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class BufferedJsonBody:
    """Read the body (at most ``limit`` bytes, within ``timeout`` seconds), check it is
    standard JSON, then hand the app the whole body in one message."""

    def __init__(self, app, limit: int, timeout: float):
        self.app, self.limit, self.timeout = app, int(limit), float(timeout)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = f"request body larger than {self.limit} bytes"
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.limit:
            return await send_json(send, 413, too_large, close=True)
        chunks: list[bytes] = []
        size = 0
        try:
            with anyio.fail_after(self.timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return  # the client left: nobody to answer
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.limit:
                        return await send_json(send, 413, too_large, close=True)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            return await send_json(send, 408, f"request body not received within {self.timeout:g} s", close=True)
        body = b"".join(chunks)
        if body:
            if not _is_json_media_type(_header(scope, b"content-type")):
                return await send_json(send, 415, "send the body as JSON with Content-Type: application/json")
            problem = json_problem(body)
            if problem is not None:
                return await send_json(send, 422, problem)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as a server would

        await self.app(scope, replay, send)
