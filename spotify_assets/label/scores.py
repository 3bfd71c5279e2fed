"""Exploration coefficients, the score and the liked/hard counts, and the seeded pair hash."""

from __future__ import annotations

import numpy as np


LIKED_SHARE = 0.015
HARD_SHARE = 0.2
BETA_A, BETA_B = 1.3, 3.3


# --------------------------------------------------------------------------------------
# definitions
# --------------------------------------------------------------------------------------


def exploration_coefficients(n_users: int, seed: int) -> np.ndarray:
    """e(u) ~ Beta(1.3, 3.3), drawn once for all users in user-id order.

    Returns
    -------
    float64 (n_users,), drawn from ``numpy.random.default_rng(seed)`` so results do not
    depend on how users are later blocked.
    """
    if n_users < 0:
        raise ValueError("n_users must be non-negative")
    return np.random.default_rng(seed).beta(BETA_A, BETA_B, size=n_users)


def _ceil_share(share: float, n: np.ndarray) -> np.ndarray:
    # round to 12 decimals first so that 0.015 · 200 = 3.0, not 3.0000000000000004 -> 4
    return np.ceil(np.round(share * n, 12)).astype(np.int64)


def liked_counts(n_scored: np.ndarray, liked_share: float = LIKED_SHARE) -> np.ndarray:
    """``max(1, ceil(liked_share · n))`` where n > 0, else 0 (int64, same shape)."""
    n = np.asarray(n_scored, dtype=np.int64)
    return np.where(n > 0, np.maximum(1, _ceil_share(liked_share, n)), 0)


def hard_counts(n_scored: np.ndarray, n_liked: np.ndarray, hard_share: float = HARD_SHARE) -> np.ndarray:
    """Exact hard-candidate pool size per user: ``ceil(hard_share · (n - k))`` (int64)."""
    rest = np.asarray(n_scored, dtype=np.int64) - np.asarray(n_liked, dtype=np.int64)
    return _ceil_share(hard_share, rest)


def score_pairs(m: np.ndarray, e: np.ndarray, s: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The label score (docs/architecture.md#score) for pairs with overlap ``m`` > 0 (arrays broadcast;
    float64)."""
    return ((1.0 - e) * np.log1p(m) + e) / (np.sqrt(s) * np.sqrt(p))


# --------------------------------------------------------------------------------------
# hashing (seeded, order-free subsampling)
# --------------------------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_PLAYLIST_MIX = np.uint64(0xD6E8FEB86659FD93)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def subsample_keys(seed: int, users: np.ndarray, playlists: np.ndarray) -> np.ndarray:
    """uint64 pseudo-random key of each (user, playlist) pair, a pure function of
    ``(seed, user, playlist)``. A user's capped hard pool is the ``c`` pool members with the
    smallest keys: a seeded uniform subsample that no block boundary can change."""
    with np.errstate(over="ignore"):
        user_key = _splitmix64(np.asarray(users, dtype=np.uint64) + _splitmix64(np.full(1, seed, dtype=np.uint64)))
        return _splitmix64(user_key ^ (np.asarray(playlists, dtype=np.uint64) * _PLAYLIST_MIX))


