"""Ranking metrics (no Dagster imports).

Two families, one tie rule:

* **Sampled** (MRR, Hit@k): a score matrix ``(B, 1 + n_neg)`` whose column 0 is the held-out
  positive and the other columns its sampled negatives (an :class:`EvalBatch`).
* **Full ranking** (Recall@K, NDCG@K): every playlist is ranked except the user's excluded
  ones (the training interactions: train likes, feedback likes, owned playlists; for the test
  task also the validation positives, see :mod:`spotify_assets.evaluate.tasks`), block by
  block over users from a scoring callback, so memory is bounded by ``block_size x n_playlists``.

Ties
----
A score tie is resolved by one of two documented rules, never in the model's favour by
accident (e.g. by playlist id):

``"pessimistic"`` (default)
    Every tied non-relevant item ranks ahead of the relevant one. A model that scores
    everything equal gets the worst possible rank (MRR ``1 / (1 + n_neg)``), never MRR 1.
    Models with many exact ties (popularity counts, KNN's zeros) are penalised for them.
``"expected"``
    The exact expectation under a uniformly random order of the tied items: a relevant
    item tied with ``t - 1`` others is equally likely at each of the ``t`` positions. A
    constant model gets the random model's expected metrics.

NaN scores are never rewarded: a NaN positive ranks last (behind NaN negatives) and a NaN
negative ranks ahead of any positive (both ``"pessimistic"`` and ``"expected"``).

All metrics are averages over rows (sampled) or users (full ranking).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import numpy as np
import scipy.sparse as sp

Ties = Literal["pessimistic", "expected"]
TIE_RULES: tuple[str, ...] = ("pessimistic", "expected")


class EvalBatch(NamedTuple):
    """One positive and its sampled negatives per row.

    Attributes
    ----------
    users : int64 (B,)
    positives : int64 (B,)
        The held-out positive playlist of each row.
    negatives : int64 (B, n_neg)
        Sampled negative playlists (never the row's positive).
    """

    users: np.ndarray
    positives: np.ndarray
    negatives: np.ndarray

    @property
    def rows(self) -> int:
        return int(np.asarray(self.users).shape[0])

    def candidates(self) -> np.ndarray:
        """int64 (B, 1 + n_neg): the positive in column 0, then the negatives."""
        return np.concatenate([np.asarray(self.positives, np.int64)[:, None], np.asarray(self.negatives, np.int64)],
                              axis=1)

    def validate(self, n_users: int, n_playlists: int) -> "EvalBatch":
        """Checked int64 copy; raises ValueError on bad shapes or out-of-range ids."""
        users = np.asarray(self.users, dtype=np.int64)
        positives = np.asarray(self.positives, dtype=np.int64)
        negatives = np.asarray(self.negatives, dtype=np.int64)
        if users.ndim != 1 or positives.shape != users.shape or negatives.ndim != 2 \
                or negatives.shape[0] != users.shape[0]:
            raise ValueError(f"eval batch must be users (B,), positives (B,), negatives (B, n); got "
                             f"{users.shape}, {positives.shape}, {negatives.shape}")
        if users.size and (users.min() < 0 or users.max() >= n_users):
            raise ValueError(f"eval batch user ids outside [0, {n_users})")
        cands = np.concatenate([positives[:, None], negatives], axis=1)
        if cands.size and (cands.min() < 0 or cands.max() >= n_playlists):
            raise ValueError(f"eval batch playlist ids outside [0, {n_playlists})")
        return EvalBatch(users, positives, negatives)


def _check_ties(ties: str) -> None:
    if ties not in TIE_RULES:
        raise ValueError(f"ties must be one of {TIE_RULES}, got {ties!r}")


def _mean_over_positions(cumulative: np.ndarray, lo: np.ndarray, span: np.ndarray) -> np.ndarray:
    """Mean of a per-position weight over 1-based positions ``lo + 1 .. lo + span``.

    cumulative : float64 (L + 1,), ``cumulative[q]`` = sum of the weights of positions 1..q
    (constant past the last weighted position). lo, span : int64 arrays, span >= 1.
    """
    last = cumulative.size - 1
    top = np.minimum(lo + span, last)
    bottom = np.minimum(lo, last)
    return (cumulative[top] - cumulative[bottom]) / span


def _positions(greater: np.ndarray, tied: np.ndarray, tied_relevant: np.ndarray, ties: str
               ) -> tuple[np.ndarray, np.ndarray]:
    """(lo, span): a relevant item occupies positions lo+1 .. lo+span with equal weight.

    greater : items strictly ahead; tied : items with an equal score, the item itself
    included; tied_relevant : relevant items among ``tied`` (itself included).
    """
    if ties == "pessimistic":
        return greater + tied - tied_relevant, tied_relevant
    return greater, tied


def sampled_tie_counts(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Negatives strictly ahead of and tied with each row's positive.

    Parameters
    ----------
    scores : float (B, 1 + n_neg), column 0 the positive.

    Returns
    -------
    greater, tied : int64 (B,), ``greater + tied <= n_neg``. NaN negatives count as
    ahead; a NaN positive has every negative ahead.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] < 1:
        raise ValueError(f"scores must be (B, 1 + n_neg), got shape {scores.shape}")
    positive, negatives = scores[:, :1], scores[:, 1:]
    greater = (negatives > positive) | np.isnan(negatives) | np.isnan(positive)
    tied = (negatives == positive) & ~greater
    return greater.sum(axis=1).astype(np.int64), tied.sum(axis=1).astype(np.int64)


def sampled_ranks(scores: np.ndarray) -> np.ndarray:
    """Pessimistic 1-based rank of column 0 in each row.

    scores : float (B, 1 + n_neg) -> int64 (B,) in ``1 .. 1 + n_neg``.
    """
    greater, tied = sampled_tie_counts(scores)
    return 1 + greater + tied


def sampled_metrics(scores: np.ndarray, ks: Sequence[int] = (1, 5, 10), ties: Ties = "pessimistic"
                    ) -> dict[str, float]:
    """MRR and Hit@k of the positive (column 0) against its negatives.

    Parameters
    ----------
    scores : float (B, 1 + n_neg), column 0 the positive.
    ks : cutoffs for Hit@k (k larger than 1 + n_neg is allowed: every row hits).
    ties : "pessimistic" or "expected" (see the module docstring).

    Returns
    -------
    ``{"mrr": float, "hit@k": float for k in ks}``; NaN for every metric when B == 0.
    """
    greater, tied = sampled_tie_counts(scores)
    return metrics_from_tie_counts(greater, tied, ks=ks, ties=ties)


def metrics_from_tie_counts(greater: np.ndarray, tied: np.ndarray, ks: Sequence[int] = (1, 5, 10),
                            ties: Ties = "pessimistic") -> dict[str, float]:
    """:func:`sampled_metrics` from the per-row counts of :func:`sampled_tie_counts`
    (so chunks of a large batch can be scored separately and combined exactly).

    greater, tied : int64 (B,) negatives strictly ahead of / tied with each positive.
    """
    _check_ties(ties)
    greater = np.asarray(greater, dtype=np.int64)
    tied = np.asarray(tied, dtype=np.int64)
    if greater.size == 0:
        return {"mrr": float("nan"), **{f"hit@{k}": float("nan") for k in ks}}
    lo, span = _positions(greater, tied + 1, np.ones_like(tied), ties)
    n = int((greater + tied).max()) + 1  # the last position any row can occupy
    positions = np.arange(1, n + 1)
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / positions)])
    out = {"mrr": float(_mean_over_positions(harmonic, lo, span).mean())}
    for k in ks:
        if k < 1:
            raise ValueError(f"cutoffs must be >= 1, got {k}")
        hit = np.concatenate([[0.0], np.cumsum(positions <= k)])
        out[f"hit@{k}"] = float(_mean_over_positions(hit, lo, span).mean())
    return out


def _row_tie_counts(scores: np.ndarray, rows: np.ndarray, values: np.ndarray, kth: int,
                    chunk_elements: int = 1 << 24) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items strictly greater than and equal to each query value in its row, for the
    queries that reach the row's ``kth``-largest score.

    Parameters
    ----------
    scores : float (b, n), no NaN.
    rows : int64 (q,) row of each query; values : float (q,) its value (present in the row).
    kth : 1..n. A query below the row's kth-largest score has at least ``kth`` items
        strictly ahead and is not counted.
    chunk_elements : bound on the scratch memory of one comparison pass.

    Returns
    -------
    in_head : bool (q,); greater, equal : int64 (q,) (0 where not in_head).
    """
    b, n = scores.shape
    threshold = np.partition(scores, n - kth, axis=1)[:, n - kth]
    in_head = values >= threshold[rows]
    greater = np.zeros(rows.size, np.int64)
    equal = np.zeros(rows.size, np.int64)
    queries = np.flatnonzero(in_head)
    step = max(1, chunk_elements // max(n, 1))
    for start in range(0, queries.size, step):
        q = queries[start : start + step]
        row_scores = scores[rows[q]]
        greater[q] = (row_scores > values[q, None]).sum(axis=1)
        equal[q] = (row_scores == values[q, None]).sum(axis=1)
    return in_head, greater, equal


def full_ranking_metrics(
    score_block: Callable[[np.ndarray], np.ndarray],
    users: np.ndarray,
    relevant: sp.csr_matrix,
    excluded: sp.csr_matrix,
    ks: Sequence[int] = (10, 50),
    ndcg_k: int | Sequence[int] = 10,
    block_size: int = 1024,
    ties: Ties = "pessimistic",
) -> dict[str, float]:
    """Recall@K and NDCG@K of ranking every non-excluded playlist, averaged over users
    (:func:`full_ranking_per_user` averaged; same parameters).

    Returns
    -------
    ``{"recall@K": float, ..., "ndcg@K": float, ..., "users": int}`` (metrics NaN if no
    user has a relevant playlist).
    """
    per_user = full_ranking_per_user(score_block, users, relevant, excluded, ks, ndcg_k, block_size, ties)
    return average_per_user(per_user)


def average_per_user(per_user: dict[str, np.ndarray], mask: np.ndarray | None = None) -> dict[str, float]:
    """Means of :func:`full_ranking_per_user`'s arrays over the users in ``mask`` (bool,
    aligned with ``per_user["users"]``; all when None), plus ``"users"``: how many."""
    chosen = np.ones(per_user["users"].size, bool) if mask is None else np.asarray(mask, bool)
    n = int(chosen.sum())
    return {name: (float(values[chosen].mean()) if n else float("nan"))
            for name, values in per_user.items() if name != "users"} | {"users": n}


def full_ranking_per_user(
    score_block: Callable[[np.ndarray], np.ndarray],
    users: np.ndarray,
    relevant: sp.csr_matrix,
    excluded: sp.csr_matrix,
    ks: Sequence[int] = (10, 50),
    ndcg_k: int | Sequence[int] = 10,
    block_size: int = 1024,
    ties: Ties = "pessimistic",
) -> dict[str, np.ndarray]:
    """Recall@K and NDCG@K of ranking every non-excluded playlist, per user.

    Parameters
    ----------
    score_block : callable ``(user_ids int64 (b,)) -> float (b, n_playlists)``
        Called once per block of at most ``block_size`` users; float64 scores stay
        float64 (no precision lost to ties).
    users : int64 (n,) users to evaluate; users with no relevant playlist are skipped.
    relevant : (n_users, n_playlists) CSR, non-zero = held-out positive.
    excluded : (n_users, n_playlists) CSR, non-zero = never ranked (the training interactions,
        and for a test task the validation positives).
        A relevant playlist that is also excluded is a leak: ValueError.
    ks : Recall cutoffs. Recall@K = hits in the top K / min(K, |relevant|), so a perfect
        ranking scores 1 even when K < |relevant| (K beyond the candidates is allowed).
    ndcg_k : NDCG cutoff(s); binary gains, discount ``1 / log2(1 + position)``, ideal DCG
        of ``min(K, |relevant|)`` hits.
    block_size : users per call of ``score_block`` (memory ~ block_size x n_playlists).
    ties : "pessimistic" or "expected" (see the module docstring).

    Returns
    -------
    ``{"users": int64 (n',), "recall@K": float64 (n',), ..., "ndcg@K": float64 (n',), ...}``
    over the n' users that have a relevant playlist, in the order given.
    """
    _check_ties(ties)
    recall_ks = [int(k) for k in ks]
    ndcg_ks = [int(ndcg_k)] if np.isscalar(ndcg_k) else [int(k) for k in ndcg_k]
    if min(recall_ks + ndcg_ks, default=1) < 1:
        raise ValueError("cutoffs must be >= 1")
    if block_size < 1:
        raise ValueError("block_size must be >= 1")
    relevant = sp.csr_matrix(relevant, copy=True)  # canonicalised below: never the caller's matrix
    excluded = sp.csr_matrix(excluded, copy=True)
    if relevant.shape != excluded.shape:
        raise ValueError(f"relevant {relevant.shape} and excluded {excluded.shape} differ in shape")
    for matrix in (relevant, excluded):
        matrix.sum_duplicates()
        matrix.eliminate_zeros()
    leaked = relevant.multiply(excluded).nnz
    if leaked:
        raise ValueError(f"{leaked} relevant (user, playlist) pairs are also excluded from ranking")
    users = np.asarray(users, dtype=np.int64)
    users = users[np.diff(relevant.indptr)[users] > 0]
    n_playlists = relevant.shape[1]
    top = min(max(recall_ks + ndcg_ks), n_playlists)
    positions = np.arange(1, top + 1)
    discount = 1.0 / np.log2(positions + 1)
    cumulative_hits = {k: np.concatenate([[0.0], np.cumsum(positions <= k)]) for k in set(recall_ks)}
    # DCG of the positions 1..q up to the cutoff; also the ideal DCG of q hits
    cumulative_gain = {k: np.concatenate([[0.0], np.cumsum(discount * (positions <= k))]) for k in set(ndcg_ks)}
    out = {f"recall@{k}": np.zeros(users.size) for k in recall_ks} | {f"ndcg@{k}": np.zeros(users.size)
                                                                       for k in ndcg_ks}
    for start in range(0, users.size, block_size):
        block = users[start : start + block_size]
        raw = np.asarray(score_block(block))
        if raw.shape != (block.size, n_playlists):
            raise ValueError(f"score_block returned {raw.shape}, expected {(block.size, n_playlists)}")
        scores = np.array(raw, dtype=np.result_type(raw.dtype, np.float32))
        scores[np.isnan(scores)] = -np.inf
        ex = excluded[block]
        scores[np.repeat(np.arange(block.size), np.diff(ex.indptr)), ex.indices] = -np.inf
        rel = relevant[block]
        rows = np.repeat(np.arange(block.size), np.diff(rel.indptr))
        values = scores[rows, rel.indices]
        in_head, greater, tied = _row_tie_counts(scores, rows, values, top)
        # excluded playlists sit at -inf: a relevant playlist scored -inf is not tied with them
        tied -= np.where(in_head & (values == -np.inf), np.diff(ex.indptr)[rows], 0)
        # relevant items tied with each other (same row, same score)
        codes = np.unique(values, return_inverse=True)[1].ravel()
        _, group, group_size = np.unique(rows * (codes.max(initial=0) + 1) + codes, return_inverse=True,
                                         return_counts=True)
        tied_relevant = group_size[group.ravel()]
        lo, span = _positions(greater, tied, tied_relevant, ties)
        lo = np.where(in_head, lo, top)  # outside the head: at least `top` items are ahead
        span = np.where(in_head, span, 1)
        n_relevant = np.diff(rel.indptr)
        here = slice(start, start + block.size)
        for k in recall_ks:
            hits = np.bincount(rows, _mean_over_positions(cumulative_hits[k], lo, span), minlength=block.size)
            out[f"recall@{k}"][here] = hits / np.minimum(k, n_relevant)
        for k in ndcg_ks:
            dcg = np.bincount(rows, _mean_over_positions(cumulative_gain[k], lo, span), minlength=block.size)
            out[f"ndcg@{k}"][here] = dcg / cumulative_gain[k][np.minimum(n_relevant, top)]
    return {"users": users} | out
