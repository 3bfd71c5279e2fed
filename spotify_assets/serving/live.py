"""The bundles the service answers from right now: champion and candidate, reloaded on change.

:class:`LiveServing` reads ``serve/rollout.json`` (see :mod:`spotify_assets.serving.rollout`)
and keeps the deployed bundles it names loaded; without a rollout it serves the flat ``serve/``
bundle as the champion and reloads it when the pipeline writes a new one (``playlist_index``
writes its ``.json`` last, after the bundle and the index). A load that fails mid-rewrite keeps
the bundles already loaded answering.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spotify_assets.feedback.log import Impression
from spotify_assets.contract import BUNDLE_DIR, PLAYLIST_INDEX_INFO
from spotify_assets.serving.recommender import Recommendation, Recommender, StaleIndexError
from spotify_assets.serving.rollout import CANDIDATE, CHAMPION, Rollout, deployed_dir, read_rollout, rollout_path


@dataclass(frozen=True)
class Served:
    """One user's list and where it came from."""

    user_id: str
    arm: str
    recommender: Recommender
    user: int | None  # dense id in that bundle, None when unknown
    recommendation: Recommendation

    def impression(self) -> Impression:
        pids = self.recommender.pids[self.recommendation.playlists].tolist()
        return Impression(self.user_id, self.recommender.version, self.arm, self.recommendation.cold_start,
                          self.user is not None, pids)


@dataclass(frozen=True)
class Serving:
    """The champion, the candidate (None outside a canary) and the rollout that routes between them."""

    champion: Recommender
    candidate: Recommender | None
    rollout: Rollout | None

    def arm_of(self, user_id: str) -> str:
        if self.candidate is None or self.rollout is None:
            return CHAMPION
        return self.rollout.arm_of(user_id)

    def recommender(self, arm: str) -> Recommender:
        return self.candidate if arm == CANDIDATE and self.candidate is not None else self.champion

    def recommend(self, user_ids: list[str], k: int) -> list[Served]:
        """Each user's list from the arm the rollout routes them to, in the order asked."""
        arms = [self.arm_of(u) for u in user_ids]
        out: list[Served | None] = [None] * len(user_ids)
        for arm in (CHAMPION, CANDIDATE):
            positions = [i for i, a in enumerate(arms) if a == arm]
            if not positions:
                continue
            rec = self.recommender(arm)
            lists = rec.recommend_lists([user_ids[i] for i in positions], k)
            for i, (user, recommendation) in zip(positions, lists):
                out[i] = Served(str(user_ids[i]), arm, rec, user, recommendation)
        return out  # type: ignore[return-value]

    def versions(self) -> dict[str, str]:
        found = {CHAMPION: self.champion.version}
        if self.candidate is not None:
            found[CANDIDATE] = self.candidate.version
        return found


class LiveServing:
    """Holds the loaded bundles and reloads them when the pipeline or a canary decision changes them."""

    def __init__(self, artifacts_dir: Path, search: str = "auto"):
        self.artifacts_dir = Path(artifacts_dir)
        self.search = search
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._current: Serving | None = None
        self._by_bundle: dict[str, Recommender] = {}  # deployed bundles never change: load each once

    def _stamp_now(self) -> tuple:
        rollout = rollout_path(self.artifacts_dir)
        if rollout.exists():
            return ("rollout", rollout.stat().st_mtime_ns, rollout.stat().st_size)
        info = PLAYLIST_INDEX_INFO.under(self.artifacts_dir)
        return ("flat", info.stat().st_mtime_ns if info.exists() else None)

    def _deployed(self, bundle_id: str) -> Recommender:
        if bundle_id not in self._by_bundle:
            self._by_bundle[bundle_id] = Recommender(bundle_dir=deployed_dir(self.artifacts_dir, bundle_id),
                                                     search=self.search)
        return self._by_bundle[bundle_id]

    def _load(self) -> Serving:
        rollout = read_rollout(self.artifacts_dir)
        if rollout is None:
            return Serving(Recommender(bundle_dir=self.artifacts_dir.joinpath(*BUNDLE_DIR), search=self.search), None, None)
        champion = self._deployed(rollout.champion.bundle_id)
        candidate = None if rollout.candidate is None else self._deployed(rollout.candidate.bundle_id)
        keep = {rollout.champion.bundle_id} | ({rollout.candidate.bundle_id} if rollout.candidate else set())
        self._by_bundle = {b: r for b, r in self._by_bundle.items() if b in keep}
        return Serving(champion, candidate, rollout)

    def get(self) -> Serving:
        stamp = self._stamp_now()
        with self._lock:
            if self._current is None or stamp != self._stamp:
                try:
                    self._current = self._load()
                    self._stamp = stamp
                except (StaleIndexError, OSError, ValueError, KeyError):
                    if self._current is None:
                        raise
                    # mid-rewrite by the pipeline: keep answering from the loaded bundles
            return self._current


def shared_songs(rec: Recommender, user: int | None, playlist: int) -> np.ndarray:
    """Song columns (int64, ascending) in both the user's history and the playlist."""
    if user is None or rec.user_song is None or rec.playlist_song is None:
        return np.empty(0, np.int64)
    mine = rec.user_song.indices[rec.user_song.indptr[user]:rec.user_song.indptr[user + 1]]
    theirs = rec.playlist_song.indices[rec.playlist_song.indptr[playlist]:rec.playlist_song.indptr[playlist + 1]]
    return np.intersect1d(mine, theirs).astype(np.int64)
