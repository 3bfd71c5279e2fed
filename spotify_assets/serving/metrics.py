"""Prometheus metrics of the service (``GET /metrics``, text exposition format).

Every app gets its own ``CollectorRegistry`` (several apps in one test process must not share
counters). :class:`RequestMetrics` is ASGI middleware placed outermost, so requests the guards
refuse (bad Host, oversized or non-JSON bodies) are counted too; the path label is the route
(known paths only, anything else is ``other``) so a scanner cannot blow up the label set.
"""

from __future__ import annotations

import time

import anyio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

ROUTES = ("/", "/api/playlist/recommend", "/api/feedback", "/healthz", "/metrics", "/docs", "/openapi.json",
          "/static/page.js", "/static/page.css")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServiceMetrics:
    """The service's counters and gauges in one registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("spotify_http_requests", "HTTP requests answered, by route, method and status.",
                                ("route", "method", "status"), registry=r)
        self.errors = Counter("spotify_http_errors", "HTTP requests answered with a 4xx (client) or 5xx (server).",
                              ("route", "kind"), registry=r)
        self.latency = Histogram("spotify_http_request_seconds", "Time from the request to the end of the response.",
                                 ("route",), buckets=LATENCY_BUCKETS, registry=r)
        self.lists = Counter("spotify_recommendation_lists", "User lists served, by model version, canary arm and "
                             "whether the popularity fallback (cold start) served them.",
                             ("model_version", "arm", "cold_start"), registry=r)
        self.cold_share = Gauge("spotify_cold_start_share", "Share of user lists served by the cold-start "
                                "popularity fallback since the service started.", registry=r)
        self.model = Gauge("spotify_model_info", "1 for each bundle being served: its canary arm, model, kind and "
                           "version.", ("arm", "model", "kind", "version"), registry=r)
        self.candidate_share = Gauge("spotify_canary_candidate_share", "Share of users routed to the candidate "
                                     "(0 outside a canary).", registry=r)
        self.feedback = Counter("spotify_feedback_stored", "Feedback rows this process stored, by whether a "
                                "playlist was liked.", ("liked",), registry=r)
        self.feedback_rows = Gauge("spotify_feedback_log_rows", "Rows in the feedback log (all processes), read at "
                                   "scrape time.", registry=r)
        self._served = [0, 0]  # lists, cold-start lists

    def served(self, model_version: str, arm: str, cold_start: bool) -> None:
        self.lists.labels(model_version, arm, "true" if cold_start else "false").inc()
        self._served[0] += 1
        self._served[1] += bool(cold_start)
        self.cold_share.set(self._served[1] / self._served[0])

    def serving(self, bundles: dict[str, tuple[str, str, str]], candidate_share: float) -> None:
        """``bundles``: arm -> (model, kind, version) of what is loaded now."""
        self.model.clear()
        for arm, (model, kind, version) in bundles.items():
            self.model.labels(arm, model, kind, version).set(1)
        self.candidate_share.set(candidate_share)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def route_of(path: str) -> str:
    if path in ROUTES:
        return path
    return "/docs" if path.startswith("/docs/") else "other"


class RequestMetrics:
    """Count and time every HTTP request; report refused feedback requests to ``on_refused``
    (called with (route, status, detail) off the event loop)."""

    def __init__(self, app, metrics: ServiceMetrics, on_refused=None):
        self.app, self.metrics, self.on_refused = app, metrics, on_refused

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        route = route_of(scope.get("path", ""))
        status = [500]
        refused_body: list[bytes] = []
        watch = self.on_refused is not None and route == "/api/feedback"

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            elif watch and message["type"] == "http.response.body" and 400 <= status[0] < 500:
                refused_body.append(message.get("body", b"")[:2000])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            code = status[0]
            self.metrics.requests.labels(route, scope.get("method", ""), str(code)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
            if code >= 400:
                self.metrics.errors.labels(route, "server" if code >= 500 else "client").inc()
        if watch and 400 <= status[0] < 500:
            await anyio.to_thread.run_sync(self.on_refused, route, status[0], b"".join(refused_body))
