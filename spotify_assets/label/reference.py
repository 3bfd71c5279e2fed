"""Slow dense references the fast labeler is tested against."""

from __future__ import annotations

import math
from dataclasses import dataclass
import numpy as np
import scipy.sparse as sp
from spotify_assets.label.scores import HARD_SHARE, LIKED_SHARE, score_pairs


# --------------------------------------------------------------------------------------
# slow references
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReferenceLabels:
    """Output of :func:`dense_reference`: per user the liked playlists in order, the exact
    hard pool (ascending ids), and the dense float64 score matrix (NaN where m = 0)."""

    liked: list[list[int]]
    hard: list[list[int]]
    scores: np.ndarray

    def __iter__(self):  # (liked, hard, scores) unpacking, as before
        return iter((self.liked, self.hard, self.scores))


def dense_reference(
    user_song: np.ndarray | sp.spmatrix,
    playlist_song: np.ndarray | sp.spmatrix,
    e: np.ndarray,
    liked_share: float = LIKED_SHARE,
    hard_share: float = HARD_SHARE,
) -> ReferenceLabels:
    """Slow reference: the formula on the full dense matrix, per-user Python selection."""
    u = np.asarray(user_song.toarray() if sp.issparse(user_song) else user_song, dtype=np.float64)
    pl = np.asarray(playlist_song.toarray() if sp.issparse(playlist_song) else playlist_song, dtype=np.float64)
    m = u @ pl.T
    s = u.sum(axis=1)
    p = pl.sum(axis=1)
    e = np.asarray(e, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        dense = score_pairs(m, e[:, None], s[:, None], p[None, :])
    scores = np.where(m > 0, dense, np.nan)
    liked, hard = [], []
    for user in range(m.shape[0]):
        candidates = sorted((-scores[user, j], j) for j in range(m.shape[1]) if m[user, j] > 0)
        n = len(candidates)
        k = max(1, math.ceil(round(liked_share * n, 12))) if n else 0
        h = math.ceil(round(hard_share * (n - k), 12))
        liked.append([j for _, j in candidates[:k]])
        hard.append(sorted(j for _, j in candidates[k : k + h]))
    return ReferenceLabels(liked, hard, scores)


def ownership_candidates_reference(scores: np.ndarray, s: np.ndarray, k: int) -> tuple[list[list[int]], list[list[float]]]:
    """Per playlist, its top-k users by (priority desc, user asc) from a dense score matrix
    (NaN = not scored): the slow reference of :class:`OwnershipCandidates`."""
    priority = scores / np.sqrt(np.asarray(s, dtype=np.float64))[:, None]
    users, values = [], []
    for j in range(scores.shape[1]):
        ranked = sorted((-priority[u, j], u) for u in range(scores.shape[0]) if not np.isnan(scores[u, j]))[:k]
        users.append([u for _, u in ranked])
        values.append([-v for v, _ in ranked])
    return users, values
