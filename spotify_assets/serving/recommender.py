"""Top-k playlists per user from the serving bundle: index search, exclusions, cold start.

The serving bundle (``serve/serving_model.npz`` plus ``serve/playlists.parquet`` and
``serve/users.parquet`` under the artifacts folder) is what the ``serving_model`` asset
writes; ``playlist_index`` writes ``serve/playlist_index.ann`` over its playlist vectors.
:class:`Recommender` loads them once (the index is memory-mapped) and answers queries without
touching DuckDB, so the service never contends for the warehouse's single-writer lock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import scipy.sparse as sp

from spotify_assets.serving.index import load_annoy, top_k_per_row

SERVE = "serve"
BUNDLE = (SERVE, "serving_model.npz")
BUNDLE_INFO = (SERVE, "serving_model.json")
PLAYLISTS = (SERVE, "playlists.parquet")
USERS = (SERVE, "users.parquet")
PLAYLIST_INDEX = (SERVE, "playlist_index.ann")
USER_INDEX = (SERVE, "user_index.ann")
TRACK_INDEX = (SERVE, "track_index.ann")


def index_info_path(index_parts: tuple[str, ...]) -> tuple[str, ...]:
    """``serve/x.ann`` -> ``serve/x.json``: metric, dim, settings, measured recall, bundle id."""
    *head, name = index_parts
    return (*head, name.rsplit(".", 1)[0] + ".json")


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
    """Loaded serving bundle: ``recommend_index`` / ``recommend_many`` by dense index,
    ``recommend`` by public ids."""

    def __init__(self, artifacts_dir: Path, search_k: int | None = None):
        folder = Path(artifacts_dir)
        bundle_path = folder.joinpath(*BUNDLE)
        if not bundle_path.exists():
            raise FileNotFoundError(
                f"no serving bundle at {bundle_path}: materialize the serve assets first "
                "(`make run`, or `dagster job execute -m spotify_assets.definitions -j serve_job`)")
        with np.load(bundle_path, allow_pickle=False) as z:
            bundle = {name: z[name] for name in z.files}
        self.info: dict = json.loads(folder.joinpath(*BUNDLE_INFO).read_text())
        self.model: str = self.info["model"]
        self.user_vectors: np.ndarray = bundle["user_vectors"]
        self.excluded = sp.csr_matrix((np.ones(bundle["excluded"].size, np.int8), bundle["excluded"],
                                       bundle["excluded_indptr"]),
                                      shape=(self.user_vectors.shape[0], int(self.info["n_playlists"])))
        self.cold: np.ndarray = bundle["cold_start"]
        self.popular: np.ndarray = bundle["popular"]
        self.popular_scores: np.ndarray = bundle["popular_scores"]
        self.indexed_playlists: np.ndarray = bundle["indexed_playlists"]
        self.n_playlists = int(self.info["n_playlists"])
        index_info_file = folder.joinpath(*index_info_path(PLAYLIST_INDEX))
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
        self.use_index = bool(self.index_info.get("index_faster_than_exact", True))
        self.item_vectors: np.ndarray = bundle["playlist_vectors"][bundle["indexed_playlists"]]
        self.index = load_annoy(folder.joinpath(*PLAYLIST_INDEX), self.user_vectors.shape[1],
                                self.index_info["metric"])
        playlists = pq.read_table(folder.joinpath(*PLAYLISTS))
        self.pids: np.ndarray = playlists.column("pid").to_numpy()
        self.names: list[str] = playlists.column("name").to_pylist()
        self.pid_to_index = dict(zip(self.pids.tolist(), range(self.pids.size)))
        user_ids = pq.read_table(folder.joinpath(*USERS)).column("user_id").to_pylist()
        self.user_ids = user_ids
        self.user_to_index = dict(zip(user_ids, range(len(user_ids))))

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

    def recommend_index(self, user: int, k: int = 5) -> Recommendation:
        """Top ``k`` playlists for dense user ``user``: index search minus train likes, owned and
        feedback-liked playlists; users without any of those (cold) get the popularity list."""
        row = self._excluded_row(user)
        if self.cold[user]:
            return popularity_fallback(self.popular, self.popular_scores, row, k)
        if self.use_index:
            ids, scores = search_excluding(self.index, self.user_vectors[user].tolist(), row, k, self.search_k,
                                           self.indexed_playlists)
        else:
            ids, scores = exact_top_k_excluding(self.user_vectors, self.item_vectors, self.indexed_playlists,
                                                self.excluded, np.array([user]), k)
            ids, scores = ids[0][ids[0] >= 0], scores[0][ids[0] >= 0]
        return self._topped_up(user, ids, scores, k)

    def recommend_many(self, users: np.ndarray, k: int = 5) -> list[Recommendation]:
        """:meth:`recommend_index` for many dense users; exact scoring runs block-wise."""
        if self.use_index:
            return [self.recommend_index(int(u), k) for u in users]
        users = np.asarray(users, np.int64)
        warm = users[~self.cold[users]]
        ids, scores = exact_top_k_excluding(self.user_vectors, self.item_vectors, self.indexed_playlists,
                                            self.excluded, warm, k)
        by_user = {int(u): self._topped_up(int(u), i[i >= 0], sc[i >= 0], k)
                   for u, i, sc in zip(warm.tolist(), ids, scores)}
        # cold users are not in by_user: recommend_index serves them the popularity list
        return [by_user[u] if u in by_user else self.recommend_index(u, k) for u in users.tolist()]

    def cold_start_list(self, k: int = 5) -> Recommendation:
        """The popularity list an unknown user gets."""
        return popularity_fallback(self.popular, self.popular_scores, np.empty(0, np.int64), k)

    def recommend(self, user_ids: list[str], k: int = 5) -> list[dict]:
        """Public API: ``[{"user_id", "known", "cold_start", "model", "playlists": [{"pid", "name",
        "score"}, ...k]}]`` in the order asked. Unknown ids get the cold-start list, flagged."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        out = []
        for user_id in user_ids:
            user = self.user_to_index.get(str(user_id))
            rec = self.cold_start_list(k) if user is None else self.recommend_index(user, k)
            out.append({
                "user_id": str(user_id),
                "known": user is not None,
                "cold_start": rec.cold_start,
                "model": "popularity" if rec.cold_start else self.model,
                "playlists": [{"pid": int(self.pids[j]), "name": self.names[j], "score": round(float(s), 6)}
                              for j, s in zip(rec.playlists.tolist(), rec.scores.tolist())],
            })
        return out

