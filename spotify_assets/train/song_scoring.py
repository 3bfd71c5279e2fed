"""Scoring with the song-aware ranker: numpy only (no torch, no Dagster), so the service can
load and serve it. Training lives in :mod:`spotify_assets.train.song_ranker`.

Candidates of a user are the playlists sharing at least one song with them (one sparse
product); each candidate pair gets the features in :data:`FEATURES`, and the ranker's MLP
(plus a small per-user embedding) scores them. Every other playlist follows, ordered by
popularity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from spotify_assets.train.knn import Neighbors, knn_scores_sparse

#: the pair features, in column order
FEATURES: tuple[str, ...] = (
    "log1p(shared songs)",
    "log(playlist songs)",
    "shared / playlist songs",
    "shared / user songs",
    "log1p(playlist interactions)",
    "log1p(knn score)",
)
#: score given to playlists that share no song with the user (then popularity orders them)
NON_CANDIDATE = -1.0e9


@dataclass(frozen=True)
class SongSignals:
    """Everything the features are computed from (inputs and training data only).

    Attributes
    ----------
    user_song : float32 binary CSR (n_users, n_songs).
    song_playlist : float32 binary CSR (n_songs, n_playlists), the transposed playlist-song matrix.
    playlist_songs : float32 (n_playlists,) songs per playlist.
    playlist_interactions : float32 (n_playlists,) training interactions per playlist.
    neighbors : int32 (n_users, k) and similarities float32 (n_users, k), song-cosine neighbours.
    interactions : float32 binary CSR (n_users, n_playlists), what neighbours vouch for.
    """

    user_song: sp.csr_matrix
    song_playlist: sp.csr_matrix
    playlist_songs: np.ndarray
    playlist_interactions: np.ndarray
    neighbors: np.ndarray
    similarities: np.ndarray
    interactions: sp.csr_matrix

    @classmethod
    def build(cls, user_song: sp.csr_matrix, playlist_song: sp.csr_matrix, interactions: sp.csr_matrix,
              neighbors: Neighbors) -> SongSignals:
        user_song = sp.csr_matrix(user_song, dtype=np.float32)
        playlist_song = sp.csr_matrix(playlist_song, dtype=np.float32)
        interactions = sp.csr_matrix(interactions, dtype=np.float32)
        if user_song.shape[1] != playlist_song.shape[1]:
            raise ValueError(f"user_song {user_song.shape} and playlist_song {playlist_song.shape} disagree on songs")
        if interactions.shape != (user_song.shape[0], playlist_song.shape[0]):
            raise ValueError(f"interactions {interactions.shape} is not users x playlists "
                             f"{(user_song.shape[0], playlist_song.shape[0])}")
        return cls(user_song, playlist_song.T.tocsr(), np.diff(playlist_song.indptr).astype(np.float32),
                   np.bincount(interactions.indices, minlength=interactions.shape[1]).astype(np.float32),
                   neighbors.neighbors, neighbors.similarities, interactions)

    @property
    def n_users(self) -> int:
        return self.user_song.shape[0]

    @property
    def n_playlists(self) -> int:
        return self.song_playlist.shape[1]

    def overlap(self, users: np.ndarray) -> sp.csr_matrix:
        """float32 CSR (b, n_playlists): the shared-song count of every candidate of the
        users (int64 (b,)) — the playlists sharing at least one song (entries in any order)."""
        # a sparse product has no duplicate entries; its column order does not matter here
        return (self.user_song[np.asarray(users, np.int64)] @ self.song_playlist).tocsr()

    def features(self, users: np.ndarray, overlap: sp.csr_matrix, entries: np.ndarray | None = None) -> np.ndarray:
        """float32 (n, len(FEATURES)) features of the overlap's entries (all, or the
        positions ``entries`` int64 (n,) into ``overlap.data``), in that order."""
        users = np.asarray(users, np.int64)
        rows = np.repeat(np.arange(users.size), np.diff(overlap.indptr))
        cols, shared = overlap.indices, overlap.data
        if entries is not None:
            rows, cols, shared = rows[entries], cols[entries], shared[entries]
        shared = shared.astype(np.float32)
        user_songs = np.diff(self.user_song.indptr)[users].astype(np.float32)
        knn = knn_scores_sparse(self.neighbors[users], self.similarities[users], self.interactions)
        features = np.empty((shared.size, len(FEATURES)), np.float32)
        features[:, 0] = np.log1p(shared)
        features[:, 1] = np.log(self.playlist_songs[cols])
        features[:, 2] = shared / self.playlist_songs[cols]
        features[:, 3] = shared / user_songs[rows]
        features[:, 4] = np.log1p(self.playlist_interactions[cols])
        features[:, 5] = np.log1p(_values_at(knn, rows, cols))
        return features

    def candidates(self, users: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
        """(overlap, features of every entry): :meth:`overlap` and :meth:`features`."""
        overlap = self.overlap(users)
        return overlap, self.features(users, overlap)


def _values_at(matrix: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """float32 values of ``matrix`` at (rows, cols) (0 where not stored), by sorted keys."""
    matrix = sp.csr_matrix(matrix)
    matrix.sum_duplicates()
    matrix.sort_indices()
    n = matrix.shape[1]
    keys = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr)) * n + matrix.indices
    query = np.asarray(rows, np.int64) * n + np.asarray(cols, np.int64)
    out = np.zeros(query.size, np.float32)
    if keys.size:
        at = np.minimum(np.searchsorted(keys, query), keys.size - 1)
        hit = keys[at] == query
        out[hit] = matrix.data[at[hit]]
    return out


@dataclass(frozen=True)
class SongRanker:
    """The trained ranker as numpy arrays, scoring every playlist for blocks of users.

    Attributes: signals (:class:`SongSignals`); weights (``feature_mean``, ``feature_std``
    (F,), ``user_embeddings`` (n_users, user_dim), ``w0..w2``, ``b0..b2``).
    """

    signals: SongSignals
    weights: dict[str, np.ndarray]

    def pair_scores(self, users: np.ndarray, features: np.ndarray) -> np.ndarray:
        """float32 (n,) scores of n (user, candidate) pairs with features (n, F)."""
        w = self.weights
        x = (features - w["feature_mean"]) / w["feature_std"]
        if w["user_embeddings"].shape[1]:
            x = np.concatenate([x, w["user_embeddings"][users]], axis=1)
        x = np.maximum(x @ w["w0"] + w["b0"], 0.0)
        x = np.maximum(x @ w["w1"] + w["b1"], 0.0)
        return (x @ w["w2"] + w["b2"])[:, 0].astype(np.float32)

    def score_all(self, users: np.ndarray) -> np.ndarray:
        """float64 (b, n_playlists): candidates by the ranker, then every other playlist at
        :data:`NON_CANDIDATE` plus a popularity share in [0, 1) (so they follow in popularity
        order)."""
        users = np.asarray(users, np.int64)
        overlap, features = self.signals.candidates(users)
        popularity = self.signals.playlist_interactions.astype(np.float64)  # float32 could not resolve it at 1e9
        out = np.empty((users.size, self.signals.n_playlists), np.float64)
        out[:] = NON_CANDIDATE + popularity / (popularity.max(initial=0.0) + 1.0)
        rows = np.repeat(np.arange(users.size), np.diff(overlap.indptr))
        out[rows, overlap.indices] = self.pair_scores(users[rows], features)
        return out


