"""BPR triplets from the service's feedback (the original recipe's companion)."""

from __future__ import annotations

import numpy as np


def feedback_triplets(users: np.ndarray, playlists: np.ndarray, negative_indptr: np.ndarray,
                      negatives: np.ndarray, per_positive: int) -> np.ndarray:
    """BPR triplets from feedback: (user, liked, shown-not-liked) int64 (N, 3).

    users, playlists : int64 (n,) feedback positives; negatives per positive as CSR
    (negative_indptr int64 (n+1,)). Each positive contributes its first ``per_positive``
    negatives (the shown list's order is the service's ranking: the ones ranked above or beside
    the liked playlist are the most informative); positives without negatives contribute none.
    """
    negative_indptr = np.asarray(negative_indptr, np.int64)
    lengths = np.diff(negative_indptr)
    row = np.repeat(np.arange(lengths.size), lengths)
    rank = np.arange(negatives.size) - negative_indptr[row]
    take = rank < per_positive
    row = row[take]
    return np.stack([np.asarray(users, np.int64)[row], np.asarray(playlists, np.int64)[row],
                     np.asarray(negatives, np.int64)[take]], axis=1).reshape(-1, 3)
