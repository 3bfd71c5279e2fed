"""Simulated users of a running service: ask for the top 5, like what the labels say they like.

The label truth stands in for a person: a simulated user likes the best-ranked recommended
playlist that is one of their held-out (validation or test) positives; when none is, they send
feedback that likes nothing (``no_like="dismiss"``) or send nothing (``"skip"``). Requests go
one at a time over one keep-alive connection, to a loopback address only, and stop after the
users or the time budget run out, whichever comes first. Every request is recorded.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

import numpy as np

from spotify_assets.serving.settings import LOOPBACK_HOSTS

NO_LIKE_POLICIES = ("dismiss", "skip")


@dataclass(frozen=True)
class SimulatedRequest:
    """One request a simulated user made, and what came back."""

    seq: int
    started_at: float
    user_id: str
    endpoint: str  # "recommend" | "feedback"
    status: int  # HTTP status, 0 when no answer came
    latency_ms: float
    model_version: str | None
    arm: str | None
    impression_id: int | None
    liked_pid: int | None  # feedback: the liked pid (None: liked nothing); recommend: None
    error: str | None

    def row(self) -> dict:
        return asdict(self)


def held_out_of_test_users(user_ids: Sequence[str], liked_indptr: np.ndarray, liked_playlists: np.ndarray,
                     split: np.ndarray, pids: np.ndarray, test_code: int, train_code: int
                     ) -> dict[str, frozenset[int]]:
    """Users with at least one test positive -> their held-out (non-train) positives as pids.

    liked_indptr int64 (n_users+1,) / liked_playlists int (n_pairs,) / split int8 (n_pairs,): the
    labels' CSR with each pair's split code; pids int64 (n_playlists,) public pid per dense
    playlist."""
    users = np.repeat(np.arange(liked_indptr.size - 1), np.diff(liked_indptr))
    tested = np.unique(users[split == test_code])
    held = split != train_code
    held_users, held_pids = users[held], np.asarray(pids, np.int64)[liked_playlists[held]]
    order = np.argsort(held_users, kind="stable")
    held_users, held_pids = held_users[order], held_pids[order]
    bounds = np.searchsorted(held_users, np.stack([tested, tested + 1]))
    return {user_ids[u]: frozenset(held_pids[a:b].tolist()) for u, a, b in zip(tested.tolist(), *bounds)}


def draw_users(candidates: Sequence[str], n: int, seed: int, draw: int) -> list[str]:
    """``n`` distinct users (fewer when there are fewer), from the seeded stream ``[seed, draw]``:
    each draw number gives another set, the same draw the same set."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x51A1, draw]))
    ordered = sorted(candidates)
    picks = rng.choice(len(ordered), size=min(n, len(ordered)), replace=False)
    return [ordered[i] for i in picks.tolist()]


def check_loopback(base_url: str) -> tuple[str, int]:
    """(host, port) of an ``http://`` URL on a loopback address; anything else is refused."""
    parts = urlsplit(base_url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(f"simulated users call a local service only (http:// on {', '.join(LOOPBACK_HOSTS)}), "
                         f"not {base_url!r}")
    return parts.hostname, parts.port or 80


class _Client:
    """Keep-alive JSON over HTTP; reconnects after a failed request."""

    def __init__(self, host: str, port: int, timeout: float):
        self.host, self.port, self.timeout = host, port, timeout
        self.con = http.client.HTTPConnection(host, port, timeout=timeout)

    def post(self, path: str, body: object) -> tuple[int, object, str | None]:
        try:
            self.con.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            response = self.con.getresponse()
            raw = response.read()
            try:
                return response.status, json.loads(raw), None
            except ValueError:
                return response.status, None, f"answer is not JSON: {raw[:200]!r}"
        except (OSError, http.client.HTTPException) as exc:
            self.con.close()
            self.con = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            return 0, None, f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        self.con.close()


def simulate_sessions(base_url: str, users: Sequence[str], held_out: Mapping[str, frozenset[int]], *, k: int = 5,
                      no_like: str = "dismiss", max_seconds: float = 60.0,
                      timeout_seconds: float = 10.0) -> list[SimulatedRequest]:
    """Each user in turn asks ``base_url`` for their top ``k`` and reacts (see the module
    docstring); stops when ``max_seconds`` have passed. Returns every request made, in order."""
    if no_like not in NO_LIKE_POLICIES:
        raise ValueError(f"no_like must be one of {NO_LIKE_POLICIES}, got {no_like!r}")
    client = _Client(*check_loopback(base_url), timeout_seconds)
    records: list[SimulatedRequest] = []
    deadline = time.monotonic() + max_seconds

    def call(user_id: str, endpoint: str, path: str, body: dict, liked: int | None = None,
             impression: int | None = None) -> tuple[int, object]:
        started_at, started = time.time(), time.perf_counter()
        status, answer, error = client.post(path, body)
        latency = (time.perf_counter() - started) * 1000
        if status and not 200 <= status < 300:
            error = f"{status}: {json.dumps(answer)[:200]}"
        first = answer[0] if endpoint == "recommend" and status == 200 and isinstance(answer, list) and answer else {}
        version = first.get("model_version") if first else (answer or {}).get("model_version") if status == 201 else None
        records.append(SimulatedRequest(len(records), started_at, user_id, endpoint, status, round(latency, 3),
                                        version, first.get("arm"), first.get("impression_id", impression),
                                        liked, error))
        return status, answer

    try:
        for user_id in users:
            if time.monotonic() >= deadline:
                break
            status, answer = call(user_id, "recommend", "/api/playlist/recommend", {"user_ids": [user_id], "k": k})
            if status != 200:
                continue
            served = answer[0]
            shown = [p["pid"] for p in served["playlists"]]
            positives = held_out.get(user_id, frozenset())
            liked = next((pid for pid in shown if pid in positives), None)
            if liked is None and no_like == "skip":
                continue
            call(user_id, "feedback", "/api/feedback",
                 {"user_id": user_id, "liked_playlist": liked, "shown_playlists": shown,
                  "impression_id": served["impression_id"]}, liked, served["impression_id"])
    finally:
        client.close()
    return records
