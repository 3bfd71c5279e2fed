"""A small closed-loop load generator for the recommend endpoint and the page (keep-alive HTTP, N clients)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import numpy as np


@dataclass(frozen=True)
class LoadReport:
    requests: int
    errors: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    concurrency: int
    users_per_request: int
    target: str = "api"

    def as_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


TARGETS = ("api", "page")


def run_load(url: str, user_ids: list[str], concurrency: int = 4, seconds: float = 10.0,
             users_per_request: int = 1, seed: int = 0, target: str = "api") -> LoadReport:
    """``concurrency`` clients each POST ``/api/playlist/recommend`` (``target="api"``, asking for
    ``users_per_request`` users) or GET the page ``/?user_id=`` (``target="page"``, one user) back
    to back for ``seconds``, users drawn (seeded) from ``user_ids``; latencies per request."""
    if not user_ids:
        raise ValueError("user_ids is empty")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    parts = urlsplit(url)
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    deadline = time.perf_counter() + seconds

    def client(worker: int) -> None:
        rng = np.random.default_rng(np.random.SeedSequence([seed, worker]))
        con = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=30)
        try:
            while time.perf_counter() < deadline:
                asked = [user_ids[i] for i in rng.integers(0, len(user_ids), users_per_request)]
                started = time.perf_counter()
                try:
                    if target == "page":
                        con.request("GET", f"/?user_id={quote(asked[0])}")
                    else:
                        con.request("POST", "/api/playlist/recommend", json.dumps({"user_ids": asked}),
                                    {"Content-Type": "application/json"})
                    response = con.getresponse()
                    response.read()
                    ok = response.status == 200
                except (OSError, http.client.HTTPException):
                    ok = False
                    con.close()
                    con = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=30)
                latencies[worker].append(time.perf_counter() - started)
                errors[worker] += not ok
        finally:
            con.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    all_ms = np.concatenate([np.asarray(x) for x in latencies]) * 1000 if any(latencies) else np.zeros(1)
    n = int(sum(len(x) for x in latencies))
    return LoadReport(requests=n, errors=int(sum(errors)), seconds=elapsed, requests_per_second=n / elapsed,
                      p50_ms=float(np.percentile(all_ms, 50)), p95_ms=float(np.percentile(all_ms, 95)),
                      p99_ms=float(np.percentile(all_ms, 99)), concurrency=concurrency,
                      users_per_request=users_per_request, target=target)
