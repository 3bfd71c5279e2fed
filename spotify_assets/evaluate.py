"""Every model on the same held-out data (no Dagster imports).

Scorers share one interface: ``candidates(users, cands) -> (B, n)`` for sampled batches and
``full(users) -> (b, n_playlists)`` for full ranking, so the leaderboard treats random,
popularity, ALS, KNN, BPR and the oracle alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from spotify_assets.metrics import full_ranking_metrics, sampled_metrics
from spotify_assets.models.baselines import Oracle, factor_candidate_scores, random_scores
from spotify_assets.models.knn import Neighbors, knn_scores, knn_scores_sparse


@dataclass(frozen=True)
class Scorer:
    name: str
    candidates: Callable[[np.ndarray, np.ndarray], np.ndarray]
    full: Callable[[np.ndarray], np.ndarray]


def _chunked(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], chunk: int = 4096):
    def run(users: np.ndarray, cands: np.ndarray) -> np.ndarray:
        parts = [fn(users[i : i + chunk], cands[i : i + chunk]) for i in range(0, users.size, chunk)]
        return np.concatenate(parts) if parts else np.zeros(cands.shape, np.float32)
    return run


def random_scorer(seed: int, n_playlists: int) -> Scorer:
    return Scorer(
        "random",
        lambda users, cands: random_scores(seed, cands.shape),
        lambda users: random_scores(seed + 1, (users.size, n_playlists)),
    )


def popularity_scorer(scores: np.ndarray) -> Scorer:
    return Scorer("popularity", lambda users, cands: scores[cands], lambda users: np.tile(scores, (users.size, 1)))


def factor_scorer(name: str, user_factors: np.ndarray, item_factors: np.ndarray, item_bias: np.ndarray | None = None) -> Scorer:
    bias = np.zeros(item_factors.shape[0], np.float32) if item_bias is None else item_bias

    def cand(users, cands):
        return factor_candidate_scores(user_factors, item_factors, users, cands, bias)

    return Scorer(name, cand, lambda users: user_factors[users] @ item_factors.T + bias)


def knn_scorer(neighbors: Neighbors, item_matrix: sp.csr_matrix) -> Scorer:
    def cand(users, cands):
        full = knn_scores_sparse(neighbors.neighbors[users], neighbors.similarities[users], item_matrix)
        return np.asarray(full[np.arange(users.size)[:, None], cands].toarray(), dtype=np.float32)

    return Scorer("knn", _chunked(cand, 2048), lambda users: knn_scores(neighbors, users, item_matrix))


def oracle_scorer(oracle: Oracle) -> Scorer:
    return Scorer("oracle", _chunked(oracle.score_candidates), oracle.score_all)


def evaluate_sampled(scorer: Scorer, users: np.ndarray, positives: np.ndarray, negatives: np.ndarray,
                     segments: dict[str, np.ndarray]) -> list[dict]:
    """MRR and Hit@1/5/10 overall and per segment (boolean row masks)."""
    cands = np.concatenate([positives[:, None], negatives], axis=1)
    scores = scorer.candidates(users, cands)
    rows = []
    for segment, mask in {"all": np.ones(users.size, bool), **segments}.items():
        if mask.any():
            rows.append({"model": scorer.name, "segment": segment, "rows": int(mask.sum()),
                         **sampled_metrics(scores[mask])})
    return rows


def evaluate_full(scorer: Scorer, users: np.ndarray, relevant: sp.csr_matrix, excluded: sp.csr_matrix,
                  block_size: int = 256) -> dict[str, float]:
    return full_ranking_metrics(scorer.full, users, relevant, excluded, ks=(10, 50), ndcg_k=10, block_size=block_size)
