"""Feedback as training data: the ``feedback_positives`` arrays and how rows become them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spotify_assets.contract import FEEDBACK_POSITIVES
from spotify_assets.feedback.log import FeedbackRows


def load_feedback_positives(artifacts) -> dict[str, np.ndarray] | None:
    """The ``feedback_positives`` arrays from an ArtifactStore, or None when that asset was never
    materialized (a pipeline without the service: no feedback, nothing to add)."""
    if not artifacts.has(FEEDBACK_POSITIVES):
        return None
    return artifacts.read(FEEDBACK_POSITIVES)


@dataclass(frozen=True)
class FeedbackPairs:
    """Feedback as training data over dense ids: positives ``users``/``playlists`` int64 (n,),
    sorted and unique by (user, playlist); ``negatives`` per positive as CSR (``negative_indptr``
    int64 (n+1,), ``negatives`` int64): shown playlists the user neither liked nor owns."""

    users: np.ndarray
    playlists: np.ndarray
    negative_indptr: np.ndarray
    negatives: np.ndarray
    counts: dict[str, int]


def training_pairs(rows: FeedbackRows, user_index: dict[str, int], pids: np.ndarray,
                   liked_indptr: np.ndarray, liked_playlists: np.ndarray, liked_split: np.ndarray,
                   owner: np.ndarray, train_code: int) -> FeedbackPairs:
    """Turn feedback rows into train positives without leaking held-out labels.

    pids : int64 (n_playlists,) public pid per dense playlist index (playlist_dictionary). liked_* : the labels' CSR over users with the split code per pair.
    owner : int (n_playlists,) owning user or -1. Rows whose user or liked pid is unknown are
    dropped and counted; a like that is one of the user's validation/test positives is dropped
    (it would put a held-out answer into training) and counted; repeated likes count once.
    """
    n = rows.feedback_id.size
    counts = {"rows": int(n)}
    users = np.array([user_index.get(u, -1) for u in rows.user_id], np.int64)
    liked = _pid_to_index(rows.liked_pid, pids)
    shown = _pid_to_index(rows.shown_pids, pids)
    known = (users >= 0) & (liked >= 0)
    counts["unknown_user_or_playlist"] = int((~known).sum())
    # held-out leak: is (user, liked) a labelled pair with a non-train split?
    key_stride = np.int64(pids.size + 1)
    label_users = np.repeat(np.arange(liked_indptr.size - 1, dtype=np.int64), np.diff(liked_indptr))
    label_keys = label_users * key_stride + liked_playlists.astype(np.int64)
    order = np.argsort(label_keys, kind="stable")
    sorted_keys, sorted_split = label_keys[order], np.asarray(liked_split)[order]
    keys = users * key_stride + liked
    pos = np.searchsorted(sorted_keys, keys)
    pos_clipped = np.minimum(pos, max(sorted_keys.size - 1, 0))
    labelled = known & (sorted_keys.size > 0) & (sorted_keys[pos_clipped] == keys) if sorted_keys.size else np.zeros(n, bool)
    held_out = labelled & (sorted_split[pos_clipped] != train_code) if sorted_keys.size else np.zeros(n, bool)
    already_train = labelled & ~held_out
    counts["held_out_positive_dropped"] = int(held_out.sum())
    counts["already_a_train_positive"] = int(already_train.sum())
    keep = known & ~held_out
    kept_rows = np.flatnonzero(keep)
    # unique (user, playlist), first occurrence wins for the shown list
    uniq_keys, first = np.unique(keys[kept_rows], return_index=True)
    kept_rows = kept_rows[first]
    counts["duplicates_merged"] = int(keep.sum() - kept_rows.size)
    counts["positives"] = int(kept_rows.size)
    neg_lists = []
    for r in kept_rows.tolist():  # feedback volumes are small (thousands of rows)
        u, p = users[r], liked[r]
        cand = shown[rows.shown_indptr[r]:rows.shown_indptr[r + 1]]
        user_liked = liked_playlists[liked_indptr[u]:liked_indptr[u + 1]]
        ok = (cand >= 0) & (cand != p) & ~np.isin(cand, user_liked) & (owner[np.maximum(cand, 0)] != u)
        neg_lists.append(np.unique(cand[ok]))
    lengths = np.array([a.size for a in neg_lists], np.int64)
    counts["negatives"] = int(lengths.sum())
    return FeedbackPairs(
        users=users[kept_rows], playlists=liked[kept_rows],
        negative_indptr=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        negatives=np.concatenate(neg_lists).astype(np.int64) if neg_lists else np.empty(0, np.int64),
        counts=counts)


def _pid_to_index(values: np.ndarray, pids: np.ndarray) -> np.ndarray:
    """Dense playlist index per pid (int64), -1 where the pid is unknown (``pids`` in any order)."""
    values = np.asarray(values, np.int64)
    if pids.size == 0:
        return np.full(values.shape, -1, np.int64)
    order = np.argsort(pids, kind="stable")
    sorted_pids = np.asarray(pids, np.int64)[order]
    pos = np.minimum(np.searchsorted(sorted_pids, values), sorted_pids.size - 1)
    return np.where(sorted_pids[pos] == values, order[pos], -1).astype(np.int64)
