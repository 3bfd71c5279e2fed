"""Validators behind the split stage's asset checks."""

from __future__ import annotations

import numpy as np
from spotify_assets.label.ownership import OwnershipCandidates
from spotify_assets.label.scores import LIKED_SHARE, liked_counts
from spotify_assets.split.common import Verdict, _verdict
from spotify_assets.split.users import TEST, TRAIN, VAL, _contains, _pair_keys, liked_keys
from spotify_assets.split.ownership import ownership_gini
from spotify_assets.split.sampling import EvalBatch


# --------------------------------------------------------------------------------------
# validators (pure functions used by the asset checks)
# --------------------------------------------------------------------------------------


def check_no_split_overlap(users: np.ndarray, playlists: np.ndarray, split: np.ndarray) -> Verdict:
    """Each (user, playlist) pair carries exactly one split label."""
    n_playlists = int(np.max(playlists, initial=-1)) + 1
    keys = np.sort(_pair_keys(users, playlists, max(n_playlists, 1)))
    duplicated = int((keys[1:] == keys[:-1]).sum()) if keys.size else 0
    bad_code = int((~np.isin(split, (TRAIN, VAL, TEST))).sum())
    return _verdict(duplicated + bad_code, pairs=int(keys.size), duplicated_pairs=duplicated, unknown_codes=bad_code)


def check_liked_counts(n_scored: np.ndarray, liked_indptr: np.ndarray, liked_share: float = LIKED_SHARE) -> Verdict:
    """Every user has ``max(1, ceil(liked_share · n))`` liked playlists (0 when n = 0)."""
    n_liked = np.diff(np.asarray(liked_indptr, dtype=np.int64))
    expected = liked_counts(n_scored, liked_share)
    wrong = np.flatnonzero(n_liked != expected)
    return _verdict(wrong.size, users=int(n_liked.size), users_with_liked=int((n_liked > 0).sum()),
                    wrong_users=wrong[:10].tolist())


def check_ownership_valid(owner: np.ndarray, liked_indptr: np.ndarray, liked_playlists: np.ndarray,
                          split: np.ndarray, cap: int = 100,
                          candidates: OwnershipCandidates | None = None, cold: np.ndarray | None = None) -> Verdict:
    """Owners are valid user ids; no user owns more than ``cap``; no owner has the playlist
    among its val/test positives; with ``candidates``, every owner is a candidate of its
    playlist; with ``cold`` (bool per user), no cold user owns a playlist."""
    liked_indptr = np.asarray(liked_indptr, dtype=np.int64)
    n_users = liked_indptr.size - 1
    n_playlists = owner.size
    owned = np.flatnonzero(owner >= 0)
    out_of_range = int((owner[owned] >= n_users).sum() + (owner < -1).sum())
    owned = owned[owner[owned] < n_users]
    counts = np.bincount(owner[owned], minlength=n_users)
    over_cap = int((counts > cap).sum())
    held = liked_keys(liked_indptr, liked_playlists, n_playlists, split, (VAL, TEST))
    held_out = int(_contains(held, _pair_keys(owner[owned], owned, n_playlists)).sum())
    not_candidate = 0
    if candidates is not None:
        not_candidate = int((~(candidates.users[owned] == owner[owned][:, None]).any(axis=1)).sum())
    cold_owners = int(np.asarray(cold)[owner[owned]].sum()) if cold is not None else 0
    return _verdict(out_of_range + over_cap + held_out + not_candidate + cold_owners, owned_playlists=int(owned.size),
                    unowned_playlists=int(n_playlists - owned.size), owners_out_of_range=out_of_range,
                    users_over_cap=over_cap, owned_held_out_positives=held_out, owners_not_candidates=not_candidate,
                    playlists_owned_by_cold_users=cold_owners,
                    max_owned=int(counts.max(initial=0)), gini=round(ownership_gini(counts), 4))


def check_triplets_valid(triplets: np.ndarray, liked_indptr: np.ndarray, liked_playlists: np.ndarray,
                         split: np.ndarray, owner: np.ndarray, n_playlists: int) -> Verdict:
    """Every positive is a train positive of its user; every negative is a playlist id the
    user neither likes (any split) nor owns."""
    triplets = np.asarray(triplets)
    if triplets.ndim != 2 or triplets.shape[1] != 3:
        return _verdict(max(1, len(triplets)), reason=f"expected shape (N, 3), got {triplets.shape}")
    n_users = np.asarray(liked_indptr).size - 1
    train_keys = liked_keys(liked_indptr, liked_playlists, n_playlists, split, (TRAIN,))
    all_liked = liked_keys(liked_indptr, liked_playlists, n_playlists)
    u, pos, neg = triplets[:, 0], triplets[:, 1], triplets[:, 2]
    bad_user = (u < 0) | (u >= n_users)
    bad_pos = ~_contains(train_keys, _pair_keys(u, pos, n_playlists))
    in_range = (neg >= 0) & (neg < n_playlists)
    clipped = np.clip(neg, 0, n_playlists - 1)
    liked_neg = _contains(all_liked, _pair_keys(u, clipped, n_playlists))
    owned_neg = owner[clipped] == u
    bad = bad_user | bad_pos | ~in_range | liked_neg | owned_neg
    return _verdict(int(bad.sum()), triplets=int(triplets.shape[0]), positive_not_train=int(bad_pos.sum()),
                    negative_out_of_range=int((~in_range).sum()), negative_liked=int((liked_neg & in_range).sum()),
                    negative_owned=int((owned_neg & in_range).sum()))


def check_eval_batches_valid(batch: EvalBatch, liked_indptr: np.ndarray, liked_playlists: np.ndarray,
                             split: np.ndarray, which: int, owner: np.ndarray, n_playlists: int) -> Verdict:
    """Positives are ``which``-split positives of their user, never owned by it; negatives
    are in range, distinct within the row, never liked by the user (any split), never owned
    by it (hence never the positive)."""
    split_keys = liked_keys(liked_indptr, liked_playlists, n_playlists, split, (which,))
    all_liked = liked_keys(liked_indptr, liked_playlists, n_playlists)
    bad_pos = ~_contains(split_keys, _pair_keys(batch.users, batch.positives, n_playlists))
    bad_pos |= owner[np.clip(batch.positives, 0, n_playlists - 1)] == batch.users
    neg = batch.negatives
    if neg.ndim != 2 or neg.shape[0] != batch.users.size:
        return _verdict(max(1, batch.users.size), reason=f"negatives shape {neg.shape} does not match the rows")
    in_range = (neg >= 0) & (neg < n_playlists)
    clipped = np.clip(neg, 0, n_playlists - 1)
    rep_users = np.repeat(batch.users, neg.shape[1])
    liked_neg = _contains(all_liked, _pair_keys(rep_users, clipped.ravel(), n_playlists)).reshape(neg.shape)
    owned_neg = owner[clipped] == batch.users[:, None]
    equal_pos = neg == batch.positives[:, None]
    sorted_neg = np.sort(neg, axis=1)
    duplicate = (sorted_neg[:, 1:] == sorted_neg[:, :-1]).any(axis=1)
    bad_neg = (~in_range | liked_neg | owned_neg | equal_pos).any(axis=1)
    bad = bad_pos | bad_neg | duplicate
    return _verdict(int(bad.sum()), rows=int(batch.users.size), positive_invalid=int(bad_pos.sum()),
                    rows_with_bad_negative=int(bad_neg.sum()), rows_with_duplicates=int(duplicate.sum()))



