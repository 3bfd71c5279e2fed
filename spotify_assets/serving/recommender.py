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
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from spotify_assets.serving.index import load_annoy

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


class Recommender:
    """Loaded serving bundle: ``recommend_indices`` by dense index, ``recommend`` by public ids."""

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
        self.index = load_annoy(folder.joinpath(*PLAYLIST_INDEX), self.user_vectors.shape[1],
                                self.index_info["metric"])
        playlists = pq.read_table(folder.joinpath(*PLAYLISTS))
        self.pids: np.ndarray = playlists.column("pid").to_numpy()
        self.names: list[str] = playlists.column("name").to_pylist()
        self.pid_to_index = dict(zip(self.pids.tolist(), range(self.pids.size)))
        user_ids = pq.read_table(folder.joinpath(*USERS)).column("user_id").to_pylist()
        self.user_ids = user_ids
        self.user_to_index = dict(zip(user_ids, range(len(user_ids))))

    def recommend_index(self, user: int, k: int = 5) -> Recommendation:
        """Top ``k`` playlists for dense user ``user``: index search minus train likes, owned and
        feedback-liked playlists; users without any of those (cold) get the popularity list."""
        row = self.excluded.indices[self.excluded.indptr[user]:self.excluded.indptr[user + 1]].astype(np.int64)
        if self.cold[user]:
            return popularity_fallback(self.popular, self.popular_scores, row, k)
        ids, scores = search_excluding(self.index, self.user_vectors[user].tolist(), row, k, self.search_k,
                                       self.indexed_playlists)
        if ids.size < k:
            # fewer rankable playlists than k are left: top up from the popularity list
            extra = popularity_fallback(self.popular, np.zeros(self.popular.size, np.float32),
                                        np.concatenate([row, ids]), k - ids.size)
            ids, scores = np.concatenate([ids, extra.playlists]), np.concatenate([scores, extra.scores])
        return Recommendation(ids, scores, False)

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


def write_table(table: pa.Table, path: Path) -> None:
    """Parquet written to a temp file and renamed (readers never see a partial file)."""
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        pq.write_table(table, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
