"""Ranking metrics (no Dagster imports).

Sampled metrics score 1 positive against its negatives: a score matrix (B, 1 + n) whose
column 0 is the positive. Ties are counted *pessimistically*: a negative scoring equal to
the positive ranks ahead of it, so a model that scores everything equal gets the worst
rank, never MRR 1.

Full-ranking metrics rank every playlist except the user's excluded ones (train positives
and owned playlists), block by block over users, so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp


def sampled_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of column 0 among each row (pessimistic ties). scores: (B, 1 + n) -> int64 (B,)."""
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] < 1:
        raise ValueError(f"scores must be (B, 1 + n), got shape {scores.shape}")
    positive = scores[:, :1]
    return 1 + (scores[:, 1:] >= positive).sum(axis=1).astype(np.int64)


def sampled_metrics(scores: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """MRR and Hit@k over rows of (B, 1 + n) scores (column 0 = positive)."""
    ranks = sampled_ranks(scores)
    if ranks.size == 0:
        return {"mrr": float("nan"), **{f"hit@{k}": float("nan") for k in ks}}
    out = {"mrr": float(np.mean(1.0 / ranks))}
    for k in ks:
        out[f"hit@{k}"] = float(np.mean(ranks <= k))
    return out


def full_ranking_metrics(
    score_block: Callable[[np.ndarray], np.ndarray],
    users: np.ndarray,
    relevant: sp.csr_matrix,
    excluded: sp.csr_matrix,
    ks: Sequence[int] = (10, 50),
    ndcg_k: int = 10,
    block_size: int = 1024,
) -> dict[str, float]:
    """Recall@k and NDCG@k of ranking all playlists, averaged over ``users``.

    score_block(user_ids) -> (b, n_playlists) float scores.
    relevant : (n_users, n_playlists) CSR of held-out positives (users without any are skipped).
    excluded : (n_users, n_playlists) CSR of playlists never ranked (train positives, owned).
    Recall@k = hits in top k / min(k, |relevant|) (the RecSys convention that a perfect
    ranking scores 1). Ties in score are broken by lower playlist id.
    """
    relevant = sp.csr_matrix(relevant)
    excluded = sp.csr_matrix(excluded)
    users = np.asarray(users, dtype=np.int64)
    users = users[np.diff(relevant.indptr)[users] > 0]
    top = max(max(ks), ndcg_k)
    sums = {f"recall@{k}": 0.0 for k in ks}
    sums[f"ndcg@{ndcg_k}"] = 0.0
    discounts = 1.0 / np.log2(np.arange(2, top + 2))
    for start in range(0, users.size, block_size):
        block = users[start : start + block_size]
        scores = np.asarray(score_block(block), dtype=np.float64).copy()
        rows, cols = excluded[block].nonzero()
        scores[rows, cols] = -np.inf
        n = scores.shape[1]
        k_eff = min(top, n)
        # top-k by score desc, ties by lower id: partition, then a stable sort of the head
        head = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff] if k_eff < n else np.tile(np.arange(n), (block.size, 1))
        head_scores = np.take_along_axis(scores, head, axis=1)
        order = np.lexsort((head, -head_scores), axis=1)
        ranked = np.take_along_axis(head, order, axis=1)
        hits = relevant[block][np.arange(block.size)[:, None], ranked].toarray() > 0
        hits &= np.isfinite(np.take_along_axis(scores, ranked, axis=1))
        n_relevant = np.diff(relevant[block].indptr)
        for k in ks:
            sums[f"recall@{k}"] += float((hits[:, :k].sum(axis=1) / np.minimum(k, n_relevant)).sum())
        dcg = (hits[:, :ndcg_k] * discounts[: min(ndcg_k, k_eff)]).sum(axis=1)
        ideal = np.array([discounts[: min(int(r), ndcg_k)].sum() for r in n_relevant])
        sums[f"ndcg@{ndcg_k}"] += float((dcg / ideal).sum())
    count = max(users.size, 1)
    return {name: value / count for name, value in sums.items()} | {"users": int(users.size)}
