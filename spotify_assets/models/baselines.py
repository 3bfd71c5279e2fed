"""Baselines: random, popularity, the oracle (true score) and ALS via ``implicit``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from spotify_assets.labeling import score_pairs


def popularity_scores(train_positives: sp.csr_matrix) -> np.ndarray:
    """(n_playlists,) float32: how many users like each playlist in train."""
    return np.asarray(train_positives.sum(axis=0)).ravel().astype(np.float32)


def random_scores(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """Seeded uniform scores (the floor every model must clear)."""
    return np.random.default_rng(np.random.SeedSequence([seed, 0xBA5E])).random(shape).astype(np.float32)


@dataclass(frozen=True)
class Oracle:
    """Ranks by the true relevance score of DESIGN §3 (computed, not learned)."""

    user_song: sp.csr_matrix
    playlist_song: sp.csr_matrix
    e: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "_pt", self.playlist_song.T.tocsr())
        object.__setattr__(self, "_s", np.diff(self.user_song.indptr).astype(np.float64))
        object.__setattr__(self, "_p", np.diff(self.playlist_song.indptr).astype(np.float64))

    # Equal true scores are common (same overlap and playlist length); the labels break such
    # ties by the lower playlist id, so the oracle does too: a shift far below the gap
    # between distinct scores (<= 1e-9 in total for a million playlists).
    TIE_BREAK = 1e-15

    def score_all(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_playlists) float64 true scores (0 where no song is shared), ties
        broken towards the lower playlist id."""
        overlap = (self.user_song[users] @ self._pt).tocoo()
        out = np.zeros((len(users), self.playlist_song.shape[0]))
        u = np.asarray(users)[overlap.row]
        out[overlap.row, overlap.col] = score_pairs(overlap.data.astype(np.float64), self.e[u], self._s[u], self._p[overlap.col])
        return out - self.TIE_BREAK * np.arange(out.shape[1])

    def score_candidates(self, users: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """(B, n) true scores of candidate playlists."""
        out = np.zeros(candidates.shape)
        for c in range(candidates.shape[1]):
            m = np.asarray(self.user_song[users].multiply(self.playlist_song[candidates[:, c]]).sum(axis=1)).ravel()
            hit = m > 0
            out[hit, c] = score_pairs(m[hit], self.e[users[hit]], self._s[users[hit]], self._p[candidates[hit, c]])
        return out - self.TIE_BREAK * candidates


@dataclass(frozen=True)
class ALSResult:
    user_factors: np.ndarray
    item_factors: np.ndarray
    factors: int
    alpha: float
    regularization: float


def train_als(train_positives: sp.csr_matrix, factors: int = 64, alpha: float = 10.0, regularization: float = 0.01,
              iterations: int = 15, seed: int = 0, bm25: bool = True) -> ALSResult:
    """ALS on the user x playlist train positives with ``implicit`` (CPU), BM25-weighted
    confidences as in the original notebook, scaled by ``alpha``."""
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.nearest_neighbours import bm25_weight

    weighted = bm25_weight(sp.csr_matrix(train_positives, dtype=np.float32), K1=100, B=0.8) if bm25 else train_positives
    model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=alpha,
                                    iterations=iterations, random_state=seed, calculate_training_loss=False)
    model.fit(sp.csr_matrix(weighted, dtype=np.float32), show_progress=False)
    return ALSResult(np.asarray(model.user_factors), np.asarray(model.item_factors), factors, alpha, regularization)
