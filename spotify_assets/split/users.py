"""The user split (cold users, light users, 70/20/10) and liked-pair keys."""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np
import scipy.sparse as sp
from spotify_assets.split.common import _SPLIT_BLOCK_PAIRS, _rng, _round_half_up, _row_ids, _user_blocks


TRAIN, VAL, TEST = 0, 1, 2
SPLIT_NAMES = {TRAIN: "train", VAL: "val", TEST: "test"}
_STREAM_SPLIT, _STREAM_COLD, _STREAM_TRIPLETS, _STREAM_EVAL = 11, 12, 13, 14  # 15 was the user downscale stream


# --------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserSplits:
    """split : int8 per liked pair (aligned with liked_playlists), TRAIN / VAL / TEST.
    cold : bool per user; a cold user's positives are all TEST."""

    split: np.ndarray
    cold: np.ndarray

    def counts(self) -> dict[str, int]:
        per = np.bincount(self.split, minlength=3) if self.split.size else np.zeros(3, np.int64)
        return {SPLIT_NAMES[code]: int(per[code]) for code in (TRAIN, VAL, TEST)}


def split_sizes(n_positives: np.ndarray, fractions: tuple[float, float, float] = (0.7, 0.2, 0.1),
                min_positives: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n_train, n_val, n_test) per user, int64.

    Users with fewer than ``min_positives`` keep all in train. Others get
    ``n_val = max(1, round(f_val · n))`` and ``n_test = max(1, round(f_test · n))``
    (round half up) and the rest in train; if that leaves no train positive, val (then
    test) gives one back. So 5 -> 3/1/1, 10 -> 7/2/1, 15 -> 10/3/2, 33 -> 23/7/3.
    """
    _check_fractions(fractions, min_positives)
    n = np.asarray(n_positives, dtype=np.int64)
    eligible = n >= min_positives
    n_val = np.where(eligible, np.maximum(1, _round_half_up(fractions[1] * n)), 0)
    n_test = np.where(eligible, np.maximum(1, _round_half_up(fractions[2] * n)), 0)
    short = np.where(eligible, np.maximum(0, 1 - (n - n_val - n_test)), 0)
    from_val = np.minimum(short, np.maximum(n_val - 1, 0))
    n_val = n_val - from_val
    n_test = n_test - (short - from_val)
    return n - n_val - n_test, n_val, n_test


def _check_fractions(fractions: tuple[float, float, float], min_positives: int) -> None:
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError("fractions must be three non-negative shares (train, val, test) summing to 1")
    if min_positives < 3:
        raise ValueError("min_positives must be >= 3 (one train, one val and one test positive)")


def split_users(
    liked_indptr: np.ndarray,
    seed: int,
    cold_share: float = 0.05,
    min_positives: int = 5,
    fractions: tuple[float, float, float] = (0.7, 0.2, 0.1),
) -> UserSplits:
    """Assign every liked pair to train / val / test.

    Parameters
    ----------
    liked_indptr : (n_users + 1,) int64 CSR pointers of the liked pairs (n_users is implied).
    seed : drives the cold draw and the per-user shuffles.
    cold_share : exactly ``round(cold_share · u)`` of the ``u`` users with at least one
        positive (seeded, uniform) are cold: all positives TEST.
    min_positives, fractions : see :func:`split_sizes` (warm users).

    Returns
    -------
    :class:`UserSplits`; no pair gets two labels (one label per pair by construction).
    """
    if not 0.0 <= cold_share < 1.0:
        raise ValueError("cold_share must be in [0, 1)")
    _check_fractions(fractions, min_positives)
    liked_indptr = np.asarray(liked_indptr, dtype=np.int64)
    n_users = liked_indptr.size - 1
    counts = np.diff(liked_indptr)
    with_positives = np.flatnonzero(counts > 0)
    cold = np.zeros(n_users, dtype=bool)
    n_cold = int(_round_half_up(np.array(cold_share * with_positives.size)))
    if n_cold:
        cold[_rng(seed, _STREAM_COLD).choice(with_positives, size=n_cold, replace=False)] = True
    n_train, n_val, _ = split_sizes(counts, fractions, min_positives)
    train_end, val_end = n_train, n_train + n_val
    split = np.empty(int(liked_indptr[-1]), dtype=np.int8)
    # A uniformly random rank of each positive within its user: one key per pair from one
    # stream, sorted per user. Blocks of whole users draw consecutive pieces of that stream
    # (the same keys as one draw of all of them), so temporaries are bounded by the block,
    # not by all liked pairs (365M at full scale: ~15 GB at once).
    keys_rng = _rng(seed, _STREAM_SPLIT)
    bounds = _user_blocks(liked_indptr, _SPLIT_BLOCK_PAIRS)
    for u0, u1 in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        lo, hi = int(liked_indptr[u0]), int(liked_indptr[u1])
        users = np.repeat(np.arange(u0, u1, dtype=np.int64), counts[u0:u1])
        keys = keys_rng.random(hi - lo)
        order = np.lexsort((keys, users))
        rank = np.empty(hi - lo, dtype=np.int64)
        rank[order] = np.arange(lo, hi) - liked_indptr[users[order]]
        split[lo:hi] = np.where(rank < train_end[users], TRAIN, np.where(rank < val_end[users], VAL, TEST))
        split[lo:hi][cold[users]] = TEST
    return UserSplits(split=split, cold=cold)


# --------------------------------------------------------------------------------------
# pair keys
# --------------------------------------------------------------------------------------


def _pair_keys(users: np.ndarray, playlists: np.ndarray, n_playlists: int) -> np.ndarray:
    return np.asarray(users, dtype=np.int64) * n_playlists + np.asarray(playlists, dtype=np.int64)


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if sorted_keys.size == 0:
        return np.zeros(np.shape(keys), dtype=bool)
    pos = np.searchsorted(sorted_keys, keys)
    pos[pos == sorted_keys.size] = 0
    return sorted_keys[pos] == keys


def liked_keys(liked_indptr: np.ndarray, liked_playlists: np.ndarray, n_playlists: int,
               split: np.ndarray | None = None, which: tuple[int, ...] | None = None) -> np.ndarray:
    """Sorted int64 keys ``user · n_playlists + playlist`` of the liked pairs (of the
    splits in ``which`` when given)."""
    if which is None:
        users, playlists = _row_ids(liked_indptr), liked_playlists
    else:  # the users of the chosen pairs only (not a row id for every liked pair)
        chosen = np.flatnonzero(np.isin(split, which))
        users = np.searchsorted(liked_indptr, chosen, side="right") - 1
        playlists = liked_playlists[chosen]
    return np.sort(_pair_keys(users, playlists, n_playlists))


def split_pairs(liked_indptr: np.ndarray, liked_playlists: np.ndarray, split: np.ndarray, which: tuple[int, ...]
                ) -> tuple[np.ndarray, np.ndarray]:
    """(users, playlists) int64 of the liked pairs whose split code is in ``which``, in
    liked-pair order."""
    chosen = np.flatnonzero(np.isin(split, which))
    users = np.searchsorted(np.asarray(liked_indptr, np.int64), chosen, side="right") - 1
    return users.astype(np.int64), np.asarray(liked_playlists)[chosen].astype(np.int64)


def pairs_matrix(users: np.ndarray, playlists: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """Binary float32 CSR of ``shape`` with a 1 at every (user, playlist) pair (duplicates
    collapse), indices sorted."""
    matrix = sp.csr_matrix((np.ones(np.size(users), np.float32), (np.asarray(users, np.int64),
                                                                   np.asarray(playlists, np.int64))), shape=shape)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


