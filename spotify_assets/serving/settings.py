"""The service's limits and server settings (plain dataclasses: the CLI reads their defaults
without importing FastAPI or uvicorn)."""

from __future__ import annotations

from dataclasses import dataclass

# Names a service bound to loopback is reached by; any other Host header is refused.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class ServiceSettings:
    """What one request may cost, and which ``Host`` names are served (the app's side)."""

    max_body_bytes: int = MAX_BODY_BYTES
    body_timeout_seconds: float = 30.0
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    # user ids x k: 1,000 ids at k=10 or 100 ids at k=100 (~0.15 s of scoring, ~0.7 MB of JSON)
    max_playlists_per_request: int = 10_000
    # recommend requests scored at once; more wait their turn without holding a thread
    scoring_threads: int = 2
    # vector bundles: "auto" (Annoy when it was measured faster than exact), "annoy" or "exact"
    search: str = "auto"


@dataclass(frozen=True)
class ServerSettings:
    """Socket-level limits (the server's side, see :mod:`spotify_assets.serving.server`)."""

    host: str = "127.0.0.1"
    port: int = 8000
    header_timeout_seconds: float = 10.0  # from connect (or the end of the last response) to the end of the headers
    keep_alive_timeout_seconds: float = 5.0  # idle time allowed between requests on one connection
    max_header_bytes: int = 64 * 1024
    max_connections: int = 100  # open connections (and running requests) before new requests get 503
    log_level: str = "info"
