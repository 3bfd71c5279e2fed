"""Every model on the same held-out data (no Dagster imports).

Two evaluations, one interface:

* **Full ranking** (primary): a :class:`RankingTask` ranks every playlist for each of its
  users except the excluded ones, and scores the held-out answers with Recall@K and NDCG@K
  per segment. The validation task (answers: val positives; excluded: the training
  interactions) is what sweeps, early stopping, the serving choice and the quality gate read;
  the test task (answers: test positives; excluded: the training interactions and the
  validation positives) is only reported.
* **Sampled** (secondary, comparable with the original system): MRR and Hit@K of each
  held-out positive against its 50 sampled negatives (``eval_batches``).

Scorers share one interface: ``candidates(users, cands) -> (B, n)`` for sampled batches and
``full(users) -> (b, n_playlists)`` for full ranking, so the leaderboard treats random,
popularity, ALS, KNN, BPR, the song ranker and the oracle alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from spotify_assets.evaluate.metrics import average_per_user, full_ranking_per_user, sampled_metrics
from spotify_assets.train.baselines import Oracle, factor_candidate_scores, random_scores
from spotify_assets.train.knn import Neighbors, knn_scores, knn_scores_sparse
from spotify_assets.split.users import TEST, VAL, pairs_matrix, split_pairs

#: stream of the seeded user samples of the ranking tasks (see :func:`ranking_tasks`)
_STREAM_TASK_USERS = 0x1EAD
SEGMENTS = ("all", "warm", "cold", "light")


@dataclass(frozen=True)
class Scorer:
    name: str
    candidates: Callable[[np.ndarray, np.ndarray], np.ndarray]
    full: Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class RankingTask:
    """One full-ranking evaluation.

    Attributes
    ----------
    name : "val" or "test".
    users : int64 (n,), sorted, every one with at least one relevant playlist.
    relevant : float32 CSR (n_users, n_playlists), the held-out answers.
    excluded : float32 CSR (n_users, n_playlists), never ranked (disjoint from relevant).
    segments : name -> bool (n,) aligned with ``users``: "all", "warm" (at least one train
        positive), "cold" (all positives held out), "light" (fewer than ``min_positives``
        liked playlists in all; only cold ones have held-out answers).
    """

    name: str
    users: np.ndarray
    relevant: sp.csr_matrix
    excluded: sp.csr_matrix
    segments: dict[str, np.ndarray] = field(default_factory=dict)

    def subset(self, n: int, seed: int) -> RankingTask:
        """The task on a seeded uniform sample of ``n`` of its users (all when n <= 0 or
        n >= len(users)); segments follow."""
        if n <= 0 or n >= self.users.size:
            return self
        rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM_TASK_USERS, 1 if self.name == "val" else 2]))
        keep = np.sort(rng.choice(self.users.size, size=n, replace=False))
        return RankingTask(self.name, self.users[keep], self.relevant, self.excluded,
                           {k: v[keep] for k, v in self.segments.items()})


def ranking_tasks(interactions: sp.csr_matrix, liked_indptr: np.ndarray, liked_playlists: np.ndarray,
                  split: np.ndarray, cold: np.ndarray, min_positives: int = 5) -> tuple[RankingTask, RankingTask]:
    """The validation and test tasks.

    Parameters
    ----------
    interactions : (n_users, n_playlists) CSR of the training interactions (train likes,
        feedback likes, owned playlists).
    liked_indptr, liked_playlists, split : the labels and their split codes.
    cold : bool (n_users,), the split's cold users.
    min_positives : the "light" segment is users with fewer liked playlists than this.

    Returns
    -------
    (val, test): val ranks all but the interactions, answers = val positives; test ranks all
    but the interactions and the val positives, answers = test positives.
    """
    interactions = sp.csr_matrix(interactions, dtype=np.float32)
    shape = interactions.shape
    n_liked = np.diff(np.asarray(liked_indptr, np.int64))
    val = pairs_matrix(*split_pairs(liked_indptr, liked_playlists, split, (VAL,)), shape)
    test = pairs_matrix(*split_pairs(liked_indptr, liked_playlists, split, (TEST,)), shape)
    test_excluded = (interactions + val).tocsr()
    test_excluded.data[:] = 1.0
    tasks = []
    for name, relevant, excluded in (("val", val, interactions), ("test", test, test_excluded)):
        users = np.flatnonzero(np.diff(relevant.indptr) > 0).astype(np.int64)
        is_cold = np.asarray(cold, bool)[users]
        segments = {"all": np.ones(users.size, bool), "warm": ~is_cold, "cold": is_cold,
                    "light": n_liked[users] < min_positives}
        tasks.append(RankingTask(name, users, relevant, excluded, segments))
    return tasks[0], tasks[1]


def evaluate_full(scorer: Scorer | Callable[[np.ndarray], np.ndarray], task: RankingTask,
                  block_size: int = 256) -> dict[str, dict[str, float]]:
    """Recall@10/50 and NDCG@10 of ``scorer`` on ``task``, per segment.

    Returns ``{segment: {"recall@10", "recall@50", "ndcg@10", "users"}}`` for every segment
    of the task (a segment without users has NaN metrics and ``users`` 0).
    """
    score = scorer.full if isinstance(scorer, Scorer) else scorer
    per_user = full_ranking_per_user(score, task.users, task.relevant, task.excluded, ks=(10, 50), ndcg_k=10,
                                     block_size=block_size)
    return {segment: average_per_user(per_user, mask) for segment, mask in task.segments.items()}


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


def block_scorer(name: str, score_block: Callable[[np.ndarray], np.ndarray]) -> Scorer:
    """A scorer from a full-ranking function alone (candidates read out of its rows)."""
    def cand(users, cands):
        unique, inverse = np.unique(users, return_inverse=True)
        scores = score_block(unique)
        return np.take_along_axis(scores[inverse.ravel()], cands, axis=1).astype(np.float32)

    return Scorer(name, _chunked(cand, 1024), score_block)


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
