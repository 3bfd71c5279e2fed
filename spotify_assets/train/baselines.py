"""Baselines every model is compared with (no Dagster imports).

* popularity: how many users like each playlist in train (the same list for every user);
* random: seeded uniform scores (the floor);
* oracle: the true relevance score that defines the labels, as order-preserving integer scores that
  rank exactly as the labels do (score desc, ties by lower playlist id);
* ALS: ``implicit``'s CPU alternating least squares on BM25-weighted training interactions,
  as in the original notebook, with a small factors x alpha sweep chosen on the validation
  full ranking.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from spotify_assets.label.scores import score_pairs


def popularity_scores(train_positives: sp.csr_matrix) -> np.ndarray:
    """float32 (n_playlists,): the number of users with each playlist among their training
    interactions.

    train_positives : (n_users, n_playlists) CSR, non-zero = a training interaction (train
        like, feedback like or owned playlist; values ignored).
    Equal counts are real ties (see the tie rules in :mod:`spotify_assets.evaluate.metrics`).
    """
    train_positives = sp.csr_matrix(train_positives)
    train_positives.eliminate_zeros()
    return np.bincount(train_positives.indices, minlength=train_positives.shape[1]).astype(np.float32)


def random_scores(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """float32 array of ``shape``, uniform in [0, 1), the same for the same seed and shape."""
    return np.random.default_rng(np.random.SeedSequence([seed, 0xBA5E])).random(shape, dtype=np.float32)


# --------------------------------------------------------------------------------------
# oracle
# --------------------------------------------------------------------------------------


def _rank_csr_rows(true_scores: sp.csr_matrix) -> sp.csr_matrix:
    """Same sparsity; each stored score replaced by ``nnz_in_row - position`` where
    position orders the row's entries by (score desc, column asc): float32 values 1..nnz."""
    true_scores = sp.csr_matrix(true_scores)
    true_scores.sum_duplicates()
    rows = np.repeat(np.arange(true_scores.shape[0]), np.diff(true_scores.indptr))
    order = np.lexsort((true_scores.indices, -true_scores.data, rows))
    position = np.empty(rows.size, np.int64)
    position[order] = np.arange(rows.size) - true_scores.indptr[rows[order]]
    counts = np.diff(true_scores.indptr)[rows]
    return sp.csr_matrix(((counts - position).astype(np.float32), true_scores.indices.copy(),
                          true_scores.indptr.copy()), shape=true_scores.shape)


def _rank_candidate_rows(true_scores: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """(B, n) float32: within each row, scored candidates (true score > 0) get n - position
    by (score desc, id asc); unscored get 0 (tied: the oracle knows nothing about them)."""
    order = np.lexsort((candidates, -true_scores), axis=1)
    position = np.empty_like(order)
    np.put_along_axis(position, order, np.arange(candidates.shape[1])[None, :], axis=1)
    return np.where(true_scores > 0, candidates.shape[1] - position, 0).astype(np.float32)


def oracle_scores(true_scores: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
    """Full-ranking oracle from a CSR of true scores.

    Parameters
    ----------
    true_scores : (n_users, n_playlists) CSR, the true relevance score of every scored
        pair (positive; unscored pairs absent).
    users : int64 (b,)

    Returns
    -------
    float32 (b, n_playlists): order-preserving scores, distinct for scored playlists and
    ordered by (true score desc, playlist id asc) like the labels; 0 for unscored.
    """
    ranked = _rank_csr_rows(sp.csr_matrix(true_scores)[np.asarray(users, dtype=np.int64)])
    return ranked.toarray()


def oracle_candidate_scores(true_scores: sp.csr_matrix, users: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Sampled-batch oracle: float32 (B, n) order-preserving scores of ``candidates``
    (B, n) for ``users`` (B,), ranked within each row like :func:`oracle_scores`."""
    users = np.asarray(users, dtype=np.int64)
    candidates = np.asarray(candidates, dtype=np.int64)
    rows = sp.csr_matrix(true_scores)[users]
    values = np.asarray(rows[np.arange(users.size)[:, None], candidates].toarray(), dtype=np.float64)
    return _rank_candidate_rows(values, candidates)


@dataclass(frozen=True)
class Oracle:
    """The true score, the label score of docs/architecture.md#score, computed from the binary
    matrices (nothing learned).

    Attributes
    ----------
    user_song : (n_users, n_songs) binary CSR.
    playlist_song : (n_playlists, n_songs) binary CSR.
    e : float64 (n_users,) exploration coefficients.
    """

    user_song: sp.csr_matrix
    playlist_song: sp.csr_matrix
    e: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pt", sp.csr_matrix(self.playlist_song).T.tocsr())
        object.__setattr__(self, "_s", np.diff(self.user_song.indptr).astype(np.float64))
        object.__setattr__(self, "_p", np.diff(self.playlist_song.indptr).astype(np.float64))

    def true_scores(self, users: np.ndarray) -> sp.csr_matrix:
        """float64 CSR (b, n_playlists): the true score of every pair that shares a song."""
        users = np.asarray(users, dtype=np.int64)
        overlap = (self.user_song[users] @ self._pt).tocsr()
        overlap.sum_duplicates()
        rows = np.repeat(np.arange(users.size), np.diff(overlap.indptr))
        u = users[rows]
        data = score_pairs(overlap.data.astype(np.float64), self.e[u], self._s[u], self._p[overlap.indices])
        return sp.csr_matrix((data, overlap.indices, overlap.indptr), shape=overlap.shape)

    def score_all(self, users: np.ndarray) -> np.ndarray:
        """float32 (b, n_playlists) order-preserving scores (see :func:`oracle_scores`)."""
        return _rank_csr_rows(self.true_scores(users)).toarray()

    def score_candidates(self, users: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """float32 (B, n) order-preserving scores of candidates (B, n), ranked within each
        row by (true score desc, id asc); the order agrees with :meth:`score_all`."""
        users = np.asarray(users, dtype=np.int64)
        candidates = np.asarray(candidates, dtype=np.int64)
        n = candidates.shape[1]
        pair_users = np.repeat(users, n)
        pair_playlists = candidates.ravel()
        overlap = np.asarray(
            self.user_song[pair_users].multiply(self.playlist_song[pair_playlists]).sum(axis=1)
        ).ravel()
        values = np.zeros(overlap.size)
        hit = overlap > 0
        values[hit] = score_pairs(overlap[hit], self.e[pair_users[hit]], self._s[pair_users[hit]],
                                  self._p[pair_playlists[hit]])
        return _rank_candidate_rows(values.reshape(candidates.shape), candidates)


# --------------------------------------------------------------------------------------
# matrix factorization scoring (ALS here; any user/item factor pair)
# --------------------------------------------------------------------------------------


def factor_candidate_scores(user_factors: np.ndarray, item_factors: np.ndarray, users: np.ndarray,
                            candidates: np.ndarray, item_bias: np.ndarray | None = None,
                            chunk_rows: int = 4096) -> np.ndarray:
    """float32 (B, n): ``<user_factors[u], item_factors[c]> (+ item_bias[c])`` for users
    (B,) and candidates (B, n), in chunks of ``chunk_rows`` rows (memory ~ chunk x n x d)."""
    users = np.asarray(users, dtype=np.int64)
    candidates = np.asarray(candidates, dtype=np.int64)
    out = np.empty(candidates.shape, np.float32)
    for start in range(0, users.size, chunk_rows):
        stop = start + chunk_rows
        out[start:stop] = np.einsum("bd,bnd->bn", user_factors[users[start:stop]], item_factors[candidates[start:stop]])
    if item_bias is not None:
        out += item_bias[candidates]
    return out


# --------------------------------------------------------------------------------------
# ALS via implicit
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ALSResult:
    """user_factors float32 (n_users, factors); item_factors float32 (n_playlists, factors)."""

    user_factors: np.ndarray
    item_factors: np.ndarray
    factors: int
    alpha: float
    regularization: float
    iterations: int
    seconds: float

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """float32 (b, n_playlists) scores of every playlist."""
        return (self.user_factors[np.asarray(users, dtype=np.int64)] @ self.item_factors.T).astype(np.float32)

    def score_candidates(self, users: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """float32 (B, n) scores of candidates (B, n)."""
        return factor_candidate_scores(self.user_factors, self.item_factors, users, candidates)


def bm25_confidence(train_positives: sp.csr_matrix, k1: float = 100.0, b: float = 0.8) -> sp.csr_matrix:
    """BM25-weighted float32 CSR of the train positives (``implicit.nearest_neighbours.bm25_weight``
    with the original notebook's K1 = 100, B = 0.8)."""
    from implicit.nearest_neighbours import bm25_weight

    return sp.csr_matrix(bm25_weight(sp.csr_matrix(train_positives, dtype=np.float32), K1=k1, B=b), dtype=np.float32)


def train_als(train_positives: sp.csr_matrix, factors: int = 64, alpha: float = 10.0, regularization: float = 0.01,
              iterations: int = 15, seed: int = 0, bm25: bool = True, num_threads: int = 0) -> ALSResult:
    """ALS on the user x playlist train positives with ``implicit`` (CPU).

    Parameters
    ----------
    train_positives : (n_users, n_playlists) CSR, non-zero = liked in train.
    factors, regularization, iterations : ``implicit.cpu.als.AlternatingLeastSquares`` settings.
    alpha : confidence scale (implicit multiplies the weighted matrix by it).
    seed : ``random_state`` of the factor initialisation.
    bm25 : weight the positives with :func:`bm25_confidence` first (the original notebook).
    num_threads : implicit's threads, 0 = all cores.
    """
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits  # a dependency of implicit

    positives = sp.csr_matrix(train_positives, dtype=np.float32)
    weighted = bm25_confidence(positives) if bm25 else positives
    started = time.perf_counter()
    # implicit parallelises over users itself; a BLAS thread pool on top only oversubscribes
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=alpha,
                                        iterations=iterations, random_state=seed, num_threads=num_threads,
                                        calculate_training_loss=False)
        model.fit(weighted, show_progress=False)
    return ALSResult(np.asarray(model.user_factors, np.float32), np.asarray(model.item_factors, np.float32),
                     factors, float(alpha), float(regularization), iterations, time.perf_counter() - started)


@dataclass(frozen=True)
class ALSTrial:
    """One sweep point: its settings, validation metrics and the fitted factors."""

    factors: int
    alpha: float
    val_metrics: dict[str, float]
    seconds: float
    result: ALSResult

    @property
    def val_recall(self) -> float:
        """Validation Recall@10 (what the sweep maximizes; NaN when not measured)."""
        return float(self.val_metrics.get("recall@10", float("nan")))

    def row(self) -> dict[str, float | int]:
        """A flat table row (no factors)."""
        return {"factors": self.factors, "alpha": self.alpha,
                **{f"val_{k}": (round(v, 5) if isinstance(v, float) else v) for k, v in self.val_metrics.items()},
                "seconds": round(self.seconds, 3)}


def als_sweep(train_positives: sp.csr_matrix, validate: Callable[[ALSResult], dict[str, float]],
              factors: Sequence[int] = (32, 64), alphas: Sequence[float] = (1.0, 10.0),
              regularization: float = 0.01, iterations: int = 15, seed: int = 0,
              num_threads: int = 0) -> list[ALSTrial]:
    """Train ALS for every (factors, alpha) pair and score each with ``validate``.

    ``validate`` maps a fitted :class:`ALSResult` to its validation metrics (the pipeline
    passes the validation full ranking: Recall@10, NDCG@10); it is the only place held-out
    answers are read, and only to choose. Returns the trials in grid order (factors outer,
    alpha inner); pick the best with ``max(trials, key=lambda t: t.val_recall)``.
    """
    trials = []
    for f in factors:
        for alpha in alphas:
            started = time.perf_counter()
            result = train_als(train_positives, factors=f, alpha=alpha, regularization=regularization,
                               iterations=iterations, seed=seed, num_threads=num_threads)
            trials.append(ALSTrial(int(f), float(alpha), dict(validate(result)), time.perf_counter() - started,
                                   result))
    return trials
