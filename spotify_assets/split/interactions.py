"""The training interactions: everything a model may learn from."""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np
import scipy.sparse as sp
from spotify_assets.split.common import Verdict, _verdict
from spotify_assets.split.users import TEST, TRAIN, VAL, _contains, _pair_keys, pairs_matrix, split_pairs


# --------------------------------------------------------------------------------------
# training interactions: everything a model may learn from
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interactions:
    """What training may read, as one binary matrix.

    Attributes
    ----------
    matrix : float32 CSR (n_users, n_playlists), 1 where the user liked the playlist in the
        train split, liked it through feedback, or owns it.
    counts : pairs per source before the union (``train``, ``feedback``, ``owned``) and
        ``total`` (the union).
    """

    matrix: sp.csr_matrix
    counts: dict[str, int]

    @property
    def users_with_history(self) -> np.ndarray:
        """bool (n_users,): users with at least one interaction (the others are cold)."""
        return np.diff(self.matrix.indptr) > 0


def training_interactions(liked_indptr: np.ndarray, liked_playlists: np.ndarray, split: np.ndarray,
                          owner: np.ndarray, feedback_users: np.ndarray | None = None,
                          feedback_playlists: np.ndarray | None = None) -> Interactions:
    """The training interactions: train-split likes ∪ feedback likes ∪ owned playlists.

    Parameters
    ----------
    liked_indptr : int64 (n_users + 1,); liked_playlists : int (n_liked,); split : int8
        (n_liked,) split codes. Only the pairs coded TRAIN are read: validation and test
        positives cannot reach a model through this function.
    owner : int (n_playlists,), owning user or -1.
    feedback_users, feedback_playlists : int64 (n,), likes from the service (held-out
        answers already removed by the feedback asset).

    Returns
    -------
    :class:`Interactions` of shape (n_users, n_playlists).
    """
    owner = np.asarray(owner, np.int64)
    n_users, n_playlists = np.asarray(liked_indptr).size - 1, owner.size
    users, playlists = split_pairs(liked_indptr, liked_playlists, split, (TRAIN,))
    owned = np.flatnonzero(owner >= 0)
    if owned.size and int(owner[owned].max()) >= n_users:
        raise ValueError("owner ids outside the user range")
    parts_users, parts_playlists = [users, owner[owned]], [playlists, owned]
    n_feedback = 0
    if feedback_users is not None and np.size(feedback_users):
        feedback_users = np.asarray(feedback_users, np.int64)
        feedback_playlists = np.asarray(feedback_playlists, np.int64)
        if feedback_users.max() >= n_users or feedback_playlists.max() >= n_playlists:
            raise ValueError("feedback positives index users/playlists beyond the current dictionaries: "
                             "they are older than the labels; materialize feedback_positives again")
        parts_users.append(feedback_users)
        parts_playlists.append(feedback_playlists)
        n_feedback = int(feedback_users.size)
    matrix = pairs_matrix(np.concatenate(parts_users), np.concatenate(parts_playlists), (n_users, n_playlists))
    return Interactions(matrix, {"train": int(users.size), "feedback": n_feedback, "owned": int(owned.size),
                                 "total": int(matrix.nnz)})


def check_interactions_hold_out(interactions: sp.csr_matrix, liked_indptr: np.ndarray,
                                liked_playlists: np.ndarray, split: np.ndarray) -> Verdict:
    """No validation or test positive is among the training interactions."""
    interactions = sp.csr_matrix(interactions)
    users, playlists = split_pairs(liked_indptr, liked_playlists, split, (VAL, TEST))
    rows = np.repeat(np.arange(interactions.shape[0], dtype=np.int64), np.diff(interactions.indptr))
    keys = np.sort(_pair_keys(rows, interactions.indices, interactions.shape[1]))
    leaked = int(_contains(keys, _pair_keys(users, playlists, interactions.shape[1])).sum())
    return _verdict(leaked, held_out_pairs=int(users.size), interactions=int(interactions.nnz),
                    held_out_pairs_in_training=leaked)


