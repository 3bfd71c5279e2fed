"""Top-k playlists per user from a serving bundle: index search or exact scoring, exclusions,
cold start.

A serving bundle is a folder (``serve/`` under the artifacts, or a deployed copy under
``serve/deployed/<bundle_id>/``) holding the files :data:`spotify_assets.contract.BUNDLE_FILES`
declares, the ones the ``serving_model`` asset writes:
``serving_model.npz`` + ``serving_model.json``, ``playlists.parquet``, ``users.parquet`` and
``playlist_tracks.parquet`` / ``songs.parquet`` (what the page shows); ``playlist_index``
writes ``playlist_index.ann`` + ``.json`` beside them. Two kinds exist (``kind`` in the .json):

* ``vectors`` (BPR, ALS): user and playlist vectors whose dot product is the model's score,
  searched through the Annoy index or exactly, whichever was measured faster;
* ``song_ranker``: the song-aware ranker's weights and signals, scored exactly by
  :meth:`spotify_assets.train.song_scoring.SongRanker.score_all` (numpy only).

:class:`Recommender` loads a bundle once (the index is memory-mapped) and answers queries without
touching DuckDB, so the service never contends for the warehouse's single-writer lock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import scipy.sparse as sp

from spotify_assets.contract import (
    BUNDLE,
    BUNDLE_DIR,
    BUNDLE_INFO,
    BUNDLE_PLAYLIST_TRACKS,
    BUNDLE_PLAYLISTS,
    BUNDLE_SONGS,
    BUNDLE_USERS,
    PLAYLIST_INDEX,
    PLAYLIST_INDEX_INFO,
    RANKER_PREFIX,
)
from spotify_assets.serving.index import load_annoy, top_k_per_row

VECTORS, SONG_RANKER = "vectors", "song_ranker"
#: bundle kinds and the models that produce them
BUNDLE_KINDS = {"bpr": VECTORS, "als": VECTORS, "song_ranker": SONG_RANKER}
SEARCH_MODES = ("auto", "annoy", "exact")


def model_version(info: dict) -> str:
    """The version a bundle is known by in responses, feedback and metrics: ``<model>-<bundle id[:8]>``."""
    return f"{info['model']}-{str(info['bundle_id'])[:8]}"


def csr_from_parts(arrays: dict, name: str, shape: tuple[int, int], dtype=np.float32) -> sp.csr_matrix:
    """Binary CSR stored as ``<name>_indptr`` / ``<name>_indices`` arrays in a bundle."""
    indices = arrays[f"{name}_indices"]
    return sp.csr_matrix((np.ones(indices.size, dtype), indices, arrays[f"{name}_indptr"]), shape=shape)


class StaleIndexError(RuntimeError):
    """The playlist index and the serving bundle come from different materializations."""


@dataclass(frozen=True)
class Recommendation:
    """One user's list: playlist indices (dense), scores, and whether cold start served it."""

    playlists: np.ndarray  # int64 (k,)
    scores: np.ndarray  # float32 (k,)
    cold_start: bool


def popularity_fallback(popular: np.ndarray, popular_scores: np.ndarray, excluded: np.ndarray,
                        k: int) -> Recommendation:
    """The first ``k`` of ``popular`` (int64 playlist ids, most popular first) not in ``excluded``."""
    keep = ~np.isin(popular, excluded)
    return Recommendation(popular[keep][:k], popular_scores[keep][:k].astype(np.float32), True)


def search_excluding(index, vector: list[float], excluded: np.ndarray, k: int, search_k: int,
                     item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` items of ``index`` for ``vector`` whose ids are not in ``excluded`` (int array).

    ``item_ids`` (int64, one per index item) maps index items to playlist ids: the index
    holds only the playlists the model can rank. Asks for ``k + len(excluded)`` neighbours,
    so after dropping the excluded ones ``k`` are left; Annoy can return fewer than asked when
    ``search_k`` is small, so the request grows until enough are found or the index is
    exhausted. Returns (playlist ids int64, scores float32), best first.
    """
    n_items = item_ids.size
    want = min(k + excluded.size, n_items)
    while True:
        found, scores = index.get_nns_by_vector(vector, want, search_k=search_k, include_distances=True)
        ids = item_ids[np.asarray(found, np.int64)]
        scores = np.asarray(scores, np.float32)
        keep = ~np.isin(ids, excluded)
        if keep.sum() >= k or want >= n_items:
            return ids[keep][:k], scores[keep][:k]
        want = min(2 * want, n_items)
        search_k = -1 if search_k < 0 else 2 * search_k


def exact_top_k_excluding(user_vectors: np.ndarray, item_vectors: np.ndarray, item_ids: np.ndarray,
                          excluded: sp.csr_matrix, users: np.ndarray, k: int, block: int = 512
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` by inner product for ``users`` (int64 (n,)), excluded playlists skipped.

    user_vectors : float32 (n_users, d); item_vectors : float32 (n_items, d) with playlist ids
    ``item_ids`` (int64 (n_items,)); excluded : (n_users, n_playlists) CSR. Returns playlist ids
    int64 (n, k) and scores float32 (n, k), best first (ties by lower id); -1 / -inf pad rows
    with fewer than ``k`` rankable playlists. Users go in blocks of ``block`` (memory
    ``block * n_items`` floats).
    """
    n_items = item_ids.size
    kk = min(k, n_items)
    position = np.full(excluded.shape[1], -1, np.int64)
    position[item_ids] = np.arange(n_items)
    out_ids = np.full((users.size, k), -1, np.int64)
    out_scores = np.full((users.size, k), -np.inf, np.float32)
    for start in range(0, users.size, block):
        rows = users[start:start + block]
        scores = user_vectors[rows] @ item_vectors.T
        sub = excluded[rows]
        cols = position[sub.indices]
        r = np.repeat(np.arange(rows.size), np.diff(sub.indptr))
        hit = cols >= 0
        scores[r[hit], cols[hit]] = -np.inf
        best, best_scores = top_k_per_row(scores, kk)
        found = np.isfinite(best_scores)
        out_ids[start:start + rows.size, :kk] = np.where(found, item_ids[best], -1)
        out_scores[start:start + rows.size, :kk] = best_scores
    return out_ids, out_scores


class Recommender:
    """A loaded serving bundle: ``recommend_index`` / ``recommend_many`` by dense index,
    ``recommend`` by public ids.

    ``artifacts_dir`` is the artifacts root (the bundle is its ``serve/``), or pass the bundle's
    folder as ``bundle_dir``. ``search`` applies to vector bundles: ``auto`` uses the Annoy index
    when it was measured faster than exact scoring at its tuned recall, ``annoy`` / ``exact``
    force one path. Song-ranker bundles are always scored exactly.
    """

    def __init__(self, artifacts_dir: Path | None = None, search_k: int | None = None, *,
                 bundle_dir: Path | None = None, search: str = "auto"):
        if search not in SEARCH_MODES:
            raise ValueError(f"search must be one of {SEARCH_MODES}, got {search!r}")
        if bundle_dir is None:
            if artifacts_dir is None:
                raise ValueError("give artifacts_dir or bundle_dir")
            bundle_dir = Path(artifacts_dir).joinpath(*BUNDLE_DIR)
        folder = Path(bundle_dir)
        self.bundle_dir = folder
        bundle_path = folder / BUNDLE.name
        if not bundle_path.exists():
            raise FileNotFoundError(
                f"no serving bundle at {bundle_path}: materialize the serve assets first "
                "(`make run`, or `dagster job execute -m spotify_assets.definitions -j serve_job`)")
        bundle = BUNDLE.load(bundle_path)
        self.info: dict = json.loads((folder / BUNDLE_INFO.name).read_text())
        self.model: str = self.info["model"]
        self.kind: str = self.info.get("kind", VECTORS)
        self.version: str = model_version(self.info)
        self.n_playlists = int(self.info["n_playlists"])
        n_users = int(self.info["n_users"])
        self.excluded = csr_from_parts({"excluded_indptr": bundle["excluded_indptr"],
                                        "excluded_indices": bundle["excluded"]}, "excluded",
                                       (n_users, self.n_playlists), np.int8)
        self.cold: np.ndarray = bundle["cold_start"]
        self.popular: np.ndarray = bundle["popular"]
        self.popular_scores: np.ndarray = bundle["popular_scores"]
        n_songs = int(self.info.get("n_songs", 0))
        # songs per user and per playlist: what the page shows as shared songs (and the ranker's input)
        self.user_song = (csr_from_parts(bundle, "user_song", (n_users, n_songs))
                          if "user_song_indptr" in bundle else None)
        self.playlist_song = (csr_from_parts(bundle, "playlist_song", (self.n_playlists, n_songs))
                              if "playlist_song_indptr" in bundle else None)
        self.use_index = False
        self.index = None
        if self.kind == VECTORS:
            self._load_vectors(folder, bundle, search, search_k)
        elif self.kind == SONG_RANKER:
            self._load_ranker(bundle)
        else:
            raise ValueError(f"{bundle_path}: unknown bundle kind {self.kind!r}")
        playlists = pq.read_table(folder / BUNDLE_PLAYLISTS.name)
        self.pids: np.ndarray = playlists.column("pid").to_numpy()
        self.names: list[str] = playlists.column("name").to_pylist()
        self.pid_to_index = dict(zip(self.pids.tolist(), range(self.pids.size)))
        user_ids = pq.read_table(folder / BUNDLE_USERS.name).column("user_id").to_pylist()
        self.user_ids = user_ids
        self.user_to_index = dict(zip(user_ids, range(len(user_ids))))

    def _load_vectors(self, folder: Path, bundle: dict, search: str, search_k: int | None) -> None:
        self.user_vectors: np.ndarray = bundle["user_vectors"]
        self.indexed_playlists: np.ndarray = bundle["indexed_playlists"]
        self.item_vectors: np.ndarray = bundle["playlist_vectors"][self.indexed_playlists]
        index_info_file = folder / PLAYLIST_INDEX_INFO.name
        if not index_info_file.exists():
            raise FileNotFoundError(f"no playlist index at {index_info_file}: materialize playlist_index first")
        self.index_info: dict = json.loads(index_info_file.read_text())
        if self.index_info["bundle_id"] != self.info["bundle_id"]:
            # serving_model was rewritten and playlist_index not yet: never mix the two
            raise StaleIndexError(f"playlist index was built for bundle {self.index_info['bundle_id']}, "
                                  f"the bundle is {self.info['bundle_id']}: materialize playlist_index")
        self.search_k = int(self.index_info["search_k"] if search_k is None else search_k)
        # Annoy is used when, at the recall it was tuned to, it answers faster than exact
        # scoring; dot-product search over skewed factor norms can need a near-exhaustive
        # search_k, and then a matrix-vector product is the faster exact answer.
        self.use_index = (search == "annoy" or
                          (search == "auto" and bool(self.index_info.get("index_faster_than_exact", True))))
        self.index = load_annoy(folder / PLAYLIST_INDEX.name, self.user_vectors.shape[1], self.index_info["metric"])

    def _load_ranker(self, bundle: dict) -> None:
        # imported here: the vector path needs none of it
        from spotify_assets.train.knn import Neighbors
        from spotify_assets.train.song_scoring import SongRanker, SongSignals

        if self.user_song is None or self.playlist_song is None:
            raise ValueError(f"{self.bundle_dir}: a song_ranker bundle needs the user-song and playlist-song matrices")
        interactions = self.excluded.astype(np.float32)
        signals = SongSignals.build(self.user_song, self.playlist_song, interactions,
                                    Neighbors(bundle["neighbors"], bundle["similarities"]))
        weights = {name[len(RANKER_PREFIX):]: bundle[name] for name in bundle if name.startswith(RANKER_PREFIX)}
        self.ranker = SongRanker(signals, weights)

    def _excluded_row(self, user: int) -> np.ndarray:
        return self.excluded.indices[self.excluded.indptr[user]:self.excluded.indptr[user + 1]].astype(np.int64)

    def _topped_up(self, user: int, ids: np.ndarray, scores: np.ndarray, k: int) -> Recommendation:
        """``ids`` (best first) of a warm user; when fewer than ``k`` rankable playlists are left,
        the rest come from the popularity list (score 0)."""
        if ids.size < k:
            extra = popularity_fallback(self.popular, np.zeros(self.popular.size, np.float32),
                                        np.concatenate([self._excluded_row(user), ids]), k - ids.size)
            ids, scores = np.concatenate([ids, extra.playlists]), np.concatenate([scores, extra.scores])
        return Recommendation(ids, scores, False)

    def _exact_top_k(self, users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``k`` (ids int64 (n, k), scores float32 (n, k); -1 / -inf pad) for warm users."""
        if self.kind == SONG_RANKER:
            return ranker_top_k_excluding(self.ranker, self.excluded, users, k)
        return exact_top_k_excluding(self.user_vectors, self.item_vectors, self.indexed_playlists,
                                     self.excluded, users, k)

    def recommend_index(self, user: int, k: int = 5) -> Recommendation:
        """Top ``k`` playlists for dense user ``user``: index search or exact scoring minus train
        likes, owned and feedback-liked playlists; cold users get the popularity list."""
        row = self._excluded_row(user)
        if self.cold[user]:
            return popularity_fallback(self.popular, self.popular_scores, row, k)
        if self.use_index:
            ids, scores = search_excluding(self.index, self.user_vectors[user].tolist(), row, k, self.search_k,
                                           self.indexed_playlists)
        else:
            ids, scores = self._exact_top_k(np.array([user]), k)
            ids, scores = ids[0][ids[0] >= 0], scores[0][ids[0] >= 0]
        return self._topped_up(user, ids, scores, k)

    def recommend_many(self, users: np.ndarray, k: int = 5) -> list[Recommendation]:
        """:meth:`recommend_index` for many dense users; exact scoring runs block-wise."""
        if self.use_index:
            return [self.recommend_index(int(u), k) for u in users]
        users = np.asarray(users, np.int64)
        warm = users[~self.cold[users]]
        ids, scores = self._exact_top_k(warm, k)
        by_user = {int(u): self._topped_up(int(u), i[i >= 0], sc[i >= 0], k)
                   for u, i, sc in zip(warm.tolist(), ids, scores)}
        # cold users are not in by_user: recommend_index serves them the popularity list
        return [by_user[u] if u in by_user else self.recommend_index(u, k) for u in users.tolist()]

    def cold_start_list(self, k: int = 5) -> Recommendation:
        """The popularity list an unknown user gets."""
        return popularity_fallback(self.popular, self.popular_scores, np.empty(0, np.int64), k)

    def recommend_lists(self, user_ids: list[str], k: int = 5) -> list[tuple[int | None, Recommendation]]:
        """(dense user or None when unknown, its list) per public id, in the order asked; warm
        known users are scored together (one block for exact scoring)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        dense = [self.user_to_index.get(str(u)) for u in user_ids]
        known = np.array(sorted({u for u in dense if u is not None}), np.int64)
        lists = dict(zip(known.tolist(), self.recommend_many(known, k))) if known.size else {}
        cold = self.cold_start_list(k)
        return [(u, cold if u is None else lists[u]) for u in dense]

    def recommend(self, user_ids: list[str], k: int = 5) -> list[dict]:
        """Public API: ``[{"user_id", "known", "cold_start", "model", "model_version", "playlists":
        [{"pid", "name", "score"}, ...k]}]`` in the order asked. Unknown ids get the cold-start
        list, flagged."""
        return [self.as_dict(str(user_id), user, rec)
                for user_id, (user, rec) in zip(user_ids, self.recommend_lists(user_ids, k))]

    @cached_property
    def playlist_tracks(self) -> list[list[str]]:
        """The first tracks ("Title — Artist") of each playlist, dense order (what the page shows);
        empty lists when the bundle predates them. Read on first use."""
        path = self.bundle_dir / BUNDLE_PLAYLIST_TRACKS.name
        if not path.exists():
            return [[] for _ in range(self.n_playlists)]
        return pq.read_table(path).column("tracks").to_pylist()

    @cached_property
    def song_names(self) -> list[str]:
        """Song name per song column of the user-song / playlist-song matrices. Read on first use."""
        path = self.bundle_dir / BUNDLE_SONGS.name
        return pq.read_table(path).column("name").to_pylist() if path.exists() else []

    def as_dict(self, user_id: str, user: int | None, rec: Recommendation) -> dict:
        """One user's answer as the API returns it."""
        return {
            "user_id": user_id,
            "known": user is not None,
            "cold_start": rec.cold_start,
            "model": "popularity" if rec.cold_start else self.model,
            "model_version": self.version,
            "playlists": [{"pid": int(self.pids[j]), "name": self.names[j], "score": round(float(s), 6)}
                          for j, s in zip(rec.playlists.tolist(), rec.scores.tolist())],
        }


def ranker_top_k_excluding(ranker, excluded: sp.csr_matrix, users: np.ndarray, k: int,
                           block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` of the song ranker for ``users`` (int64 (n,)), excluded playlists skipped.

    ranker : :class:`spotify_assets.train.song_scoring.SongRanker`; excluded : (n_users,
    n_playlists) CSR. Scores come from ``ranker.score_all`` (candidates sharing a song by the
    MLP, every other playlist after them in popularity order). Returns playlist ids int64 (n, k)
    and scores float32 (n, k), best first (ties by lower id); -1 / -inf pad rows with fewer
    than ``k`` rankable playlists. Memory: ``block * n_playlists`` float64.
    """
    n_playlists = excluded.shape[1]
    kk = min(k, n_playlists)
    users = np.asarray(users, np.int64)
    out_ids = np.full((users.size, k), -1, np.int64)
    out_scores = np.full((users.size, k), -np.inf, np.float32)
    for start in range(0, users.size, block):
        rows = users[start:start + block]
        scores = ranker.score_all(rows)
        sub = excluded[rows]
        scores[np.repeat(np.arange(rows.size), np.diff(sub.indptr)), sub.indices] = -np.inf
        best, best_scores = top_k_per_row(scores, kk)
        found = np.isfinite(best_scores)
        out_ids[start:start + rows.size, :kk] = np.where(found, best, -1)
        out_scores[start:start + rows.size, :kk] = best_scores
    return out_ids, out_scores
