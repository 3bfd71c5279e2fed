"""The fused, blocked labeler: overlap -> score -> liked playlists (DESIGN §3).

For a block of users ``[start, stop)`` it computes the overlap block ``M = U_block · Pᵀ``
(sparse, ``Pᵀ`` prepared once), scores only its non-zeros and keeps only what downstream
needs: per user the liked playlists, the hard-negative candidates, the number of scored
playlists, and, per playlist, the best few ownership candidates. Memory is bounded by the
block, never by users × playlists.

Definitions (all exact; the CPU kernel reproduces :func:`dense_reference` bit for bit)::

    m(u, j) = |songs(u) ∩ songs(j)|,  s(u) = |songs(u)|,  p(j) = |songs(j)|
    score(u, j) = ((1 - e_u) · ln(1 + m) + e_u) / (sqrt(s_u) · sqrt(p_j))    where m > 0
    n(u)        = playlists with m > 0
    liked(u)    = top max(1, ceil(0.015 · n)) by (score desc, playlist id asc); none if n = 0
    hard(u)     = the next ceil(0.2 · (n - |liked|)) in the same order: the top 20% by score
                  of the user's scored, non-liked playlists
    priority    = score / sqrt(s_u)   (ownership, DESIGN §3)

Selection without a full sort. Scores within a user row take few distinct values (they
depend on the row only through (m, p)), so the kernel buckets every score by the bit
pattern of its float32 rounding (exponent + 6 mantissa bits: ~1% wide; fewer bits for
blocks of very short rows), histograms (row, bucket), finds from the per-row cumulative
counts the buckets holding the k-th and the t-th element, and sorts exactly only the
elements of those boundary buckets plus the few above the liked boundary (whose order is
kept). Everything else is classified by one table lookup per element. The overlap itself
calls scipy's SMMP kernel directly with a flop-count upper bound for the output size,
which skips scipy's separate counting pass.

Hard-candidate cap. At full scale a user has thousands of hard candidates. With
``max_hard_candidates=c`` a user whose exact pool is larger keeps a uniform random subset
of ``c``: the ``c`` pool members with the smallest ``hash(seed, user, playlist)``
(splitmix64), so the subset depends on the seed, the user and the pool only, never on the
block boundaries.

Ownership candidates. Greedy ownership (``splits.assign_ownership``) needs, per playlist,
its users in priority order. Keeping all scored pairs is what the labeler must avoid, so it
keeps per playlist the top ``k`` users by ``(priority desc, user asc)``
(:class:`OwnershipCandidates`, exact, merged across blocks and shards). For m = 1 a
playlist ranks its users by ``w = ((1 - e) ln 2 + e) / s`` alone, so :func:`seed_ownership`
first fills the lists in rounds of the highest-w users; the main pass then only looks at
pairs with m >= 2 (see :class:`OwnershipSeed`). The greedy on these lists equals the greedy
on all pairs unless some playlist rejects all k of its candidates; the ownership step
reports that count (``exhausted``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

try:  # scipy's SMMP kernel; the public ``@`` is the fallback if the private module moves
    from scipy.sparse import _sparsetools
except ImportError:  # pragma: no cover - depends on the scipy build
    _sparsetools = None

LIKED_SHARE = 0.015
HARD_SHARE = 0.2
BETA_A, BETA_B = 1.3, 3.3
DEFAULT_OWNERSHIP_K = 48

_SUB_BITS = 6  # mantissa bits kept in a score bucket: 64 buckets per binade (~1.1% wide)
_REJECT, _SURE_HARD, _CANDIDATE = 0, 1, 2
_MAX_TABLE = 1 << 22  # entries of the per-block (user, m) numerator table before falling back


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
    """The DESIGN §3 score for pairs with overlap ``m`` > 0 (arrays broadcast; float64)."""
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


# --------------------------------------------------------------------------------------
# ownership candidates
# --------------------------------------------------------------------------------------


def _group_by(keys: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """Stable counting sort: (permutation int64, group pointers int64 (n_keys + 1,)) such
    that ``keys[perm]`` is sorted and equal keys keep their input order. Uses scipy's CSR ->
    CSC kernel on a one-row matrix (linear time)."""
    n = keys.size
    if _sparsetools is not None and n < 2**31 - 1 and n_keys < 2**31 - 1:
        bp = np.empty(n_keys + 1, dtype=np.int32)
        bi = np.empty(n, dtype=np.int32)
        perm = np.empty(n, dtype=np.int32)
        _sparsetools.csr_tocsc(1, n_keys, np.array([0, n], dtype=np.int32), keys.astype(np.int32),
                               np.arange(n, dtype=np.int32), bp, bi, perm)
        return perm.astype(np.int64), bp.astype(np.int64)
    perm = np.argsort(keys, kind="stable")  # pragma: no cover - fallback
    return perm, _indptr(np.bincount(keys, minlength=n_keys))


class OwnershipCandidates:
    """Per playlist, its best ``k`` users by ``(priority desc, user asc)``.

    users : int32 (n_playlists, k), sorted by rank; -1 in empty slots (which come last).
    priorities : float64 (n_playlists, k), ``score / sqrt(s)``; -inf in empty slots.

    A mutable accumulator: :meth:`add` merges pairs in place, and the result is the exact
    top k of all pairs ever added, whatever the order or grouping of the calls (so block
    and shard results merge freely). While a playlist holds fewer than k candidates, new
    pairs are simply appended. Once it is full, only pairs reaching its :attr:`floor` are
    kept; they wait in a small per-playlist buffer, and the playlist's k best are
    re-selected (one short row-wise sort) only when that buffer fills. Rows are sorted by
    rank once, when read.
    """

    def __init__(self, users: np.ndarray, priorities: np.ndarray, buffer: int | None = None) -> None:
        users = np.array(users, dtype=np.int32)
        priorities = np.array(priorities, dtype=np.float64)
        if users.ndim != 2 or users.shape != priorities.shape or users.shape[1] < 1:
            raise ValueError("users and priorities must be (n_playlists, k) arrays with k >= 1")
        held = users >= 0
        if not np.array_equal(held, np.isfinite(priorities)):
            raise ValueError("empty slots must have user -1 and priority -inf, filled ones a finite priority")
        n_playlists, k = users.shape
        self._users, self._priorities = users, priorities
        self._n_held = held.sum(axis=1).astype(np.int64)
        # empty slots last in every row (arrays() output satisfies this already)
        if not np.array_equal(held, np.arange(k)[None, :] < self._n_held[:, None]):
            order = np.argsort(~held, axis=1, kind="stable")
            self._users = np.take_along_axis(users, order, axis=1)
            self._priorities = np.take_along_axis(priorities, order, axis=1)
        self._floor = np.where(self._n_held == k, self._priorities.min(axis=1), -np.inf)
        width = buffer if buffer is not None else max(4, k // 2)
        self._buffer_users = np.full((n_playlists, width), -1, dtype=np.int32)
        self._buffer_priorities = np.full((n_playlists, width), -np.inf)
        self._buffered = np.zeros(n_playlists, dtype=np.int64)
        self._unsorted = np.ones(n_playlists, dtype=bool)
        self._sorted = False

    @classmethod
    def empty(cls, n_playlists: int, k: int) -> OwnershipCandidates:
        if k < 1:
            raise ValueError("ownership k must be >= 1")
        return cls(np.full((n_playlists, k), -1, dtype=np.int32), np.full((n_playlists, k), -np.inf))

    @classmethod
    def from_arrays(cls, users: np.ndarray, priorities: np.ndarray) -> OwnershipCandidates:
        """Rebuild from :meth:`arrays` output."""
        return cls(users, priorities)

    @property
    def k(self) -> int:
        return int(self._users.shape[1])

    @property
    def n_playlists(self) -> int:
        return int(self._users.shape[0])

    @property
    def users(self) -> np.ndarray:
        self._finish()
        return self._users

    @property
    def priorities(self) -> np.ndarray:
        self._finish()
        return self._priorities

    @property
    def floor(self) -> np.ndarray:
        """float64 (n_playlists,): a lower bound of each playlist's final k-th priority
        (-inf while fewer than k are held). A pair below its playlist's floor can never
        enter the top k, so a labeler need not emit it. A view: it rises as pairs are added."""
        return self._floor

    @property
    def full(self) -> np.ndarray:
        """bool (n_playlists,): k candidates held, so more users may have scored the playlist."""
        return self._n_held == self.k

    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The held candidates as (playlists int64, users int64, priorities float64),
        ordered by playlist, then rank."""
        held = self.users >= 0
        playlists = np.broadcast_to(np.arange(self.n_playlists, dtype=np.int64)[:, None], held.shape)[held]
        return playlists, self._users[held].astype(np.int64), self._priorities[held]

    def arrays(self) -> dict[str, np.ndarray]:
        return {"ownership_users": self.users, "ownership_priorities": self.priorities}

    def merge(self, other: OwnershipCandidates) -> OwnershipCandidates:
        """Merge another accumulator (e.g. another shard's) into this one, in place; returns self."""
        if other.n_playlists != self.n_playlists or other.k != self.k:
            raise ValueError("ownership candidates differ in playlist count or k")
        self.add(*other.pairs())
        return self

    @staticmethod
    def _rank_rows(both_p: np.ndarray, both_u: np.ndarray, k: int) -> np.ndarray:
        """Column order of each row by (priority desc, user asc), exact in the first k + 1."""
        order = np.argsort(-both_p, axis=1)
        top = np.take_along_axis(both_p, order[:, : k + 1], axis=1)
        tied = ((top[:, 1:] == top[:, :-1]) & np.isfinite(top[:, 1:])).any(axis=1)
        if tied.any():  # exact tie-break by user id where it matters
            order[tied] = np.lexsort((both_u[tied], -both_p[tied]), axis=1)
        return order

    def _compact(self, rows: np.ndarray) -> None:
        """Re-select, exactly, the k best of (held + buffer) of ``rows``, sorted by rank;
        empties their buffers."""
        if rows.size == 0:
            return
        k = self.k
        width = self._buffer_users.shape[1]
        live = np.arange(width)[None, :] < self._buffered[rows][:, None]
        both_p = np.hstack([self._priorities[rows], np.where(live, self._buffer_priorities[rows], -np.inf)])
        both_u = np.hstack([self._users[rows], np.where(live, self._buffer_users[rows], -1)])
        order = self._rank_rows(both_p, both_u, k)[:, :k]
        top_p = np.take_along_axis(both_p, order, axis=1)
        self._priorities[rows] = top_p
        self._users[rows] = np.take_along_axis(both_u, order, axis=1)
        self._n_held[rows] = (top_p > -np.inf).sum(axis=1)
        self._floor[rows] = np.where(self._n_held[rows] == k, top_p[:, -1], -np.inf)
        self._buffered[rows] = 0
        self._unsorted[rows] = False

    def _finish(self) -> None:
        """Empty every buffer and sort every row by rank (once per batch of adds)."""
        if self._sorted:
            return
        self._compact(np.flatnonzero(self._buffered))
        self._compact(np.flatnonzero(self._unsorted & (self._n_held > 1)))
        self._unsorted[:] = False
        self._sorted = True

    def add(self, playlists: np.ndarray, users: np.ndarray, priorities: np.ndarray) -> None:
        """Merge pairs (any order, any count; one pair per (user, playlist)) in place."""
        playlists = np.asarray(playlists, dtype=np.int64)
        priorities = np.asarray(priorities, dtype=np.float64)
        keep = priorities >= self._floor[playlists]  # what a floor rules out can never enter
        if not keep.all():
            playlists, users, priorities = playlists[keep], np.asarray(users)[keep], priorities[keep]
        n = playlists.size
        if n == 0:
            return
        self._sorted = False
        k, n_playlists = self.k, self.n_playlists
        users = np.asarray(users, dtype=np.int32)
        perm, gptr = _group_by(playlists, n_playlists)
        counts = np.diff(gptr)
        affected = np.flatnonzero(counts)
        j = np.repeat(affected, counts[affected])
        occurrence = np.arange(n, dtype=np.int64) - np.repeat(gptr[affected], counts[affected])
        users, priorities = users[perm], priorities[perm]
        # 1) fill free slots directly (rows stay unsorted until read or compacted)
        slot = self._n_held[j] + occurrence
        fill = np.flatnonzero(slot < k)
        flat = j[fill] * k + slot[fill]
        self._users.reshape(-1)[flat] = users[fill]
        self._priorities.reshape(-1)[flat] = priorities[fill]
        filling = affected[self._n_held[affected] < k]
        self._unsorted[filling] = True
        self._n_held[filling] = np.minimum(self._n_held[filling] + counts[filling], k)
        now_full = filling[self._n_held[filling] == k]
        self._floor[now_full] = self._priorities[now_full].min(axis=1)
        if fill.size == n:
            return
        # 2) the rest competes with full lists through the buffers
        rest = np.flatnonzero(slot >= k)
        j, users, priorities = j[rest], users[rest], priorities[rest]
        width = self._buffer_users.shape[1]
        while j.size:
            keep = priorities >= self._floor[j]
            j, users, priorities = j[keep], users[keep], priorities[keep]
            if not j.size:
                break
            first = np.empty(j.size, dtype=bool)
            first[0] = True
            np.not_equal(j[1:], j[:-1], out=first[1:])
            starts = np.flatnonzero(first)
            group = np.cumsum(first) - 1
            slot = self._buffered[j] + (np.arange(j.size) - starts[group])
            fits = slot < width
            flat = j[fits] * width + slot[fits]
            self._buffer_users.reshape(-1)[flat] = users[fits]
            self._buffer_priorities.reshape(-1)[flat] = priorities[fits]
            heads = j[starts]
            self._buffered[heads] = np.minimum(self._buffered[heads] + np.diff(np.r_[starts, j.size]), width)
            if fits.all():
                break
            over = ~fits
            self._compact(np.unique(heads[self._buffered[heads] == width]))
            j, users, priorities = j[over], users[over], priorities[over]


# --------------------------------------------------------------------------------------
# block results
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelBlock:
    """Labels of users ``[start, stop)``; playlist ids are matrix row indices (int32).

    n_scored : (b,) int32, playlists with m > 0 per user.
    liked_indptr : (b + 1,) int64 CSR pointers into liked_playlists / liked_scores; each
        user's liked playlists are ordered by score desc, then playlist id.
    liked_playlists : int32; liked_scores : float64.
    hard_indptr : (b + 1,) int64; hard_playlists : int32, each user's hard-negative
        candidates (after the cap, if any); order within a user is deterministic but
        unspecified (use them as a set).
    scored_pairs : total m > 0 pairs scored in the block.
    hard_pool_sizes : (b,) int32, the exact top-20% pool size before any cap (None when
        loaded from an older artifact).
    ownership_pairs : (playlists int32, users int32, priorities float64) of the block's
        pairs whose priority reached the ownership floor it was given; None if not asked.
    """

    start: int
    stop: int
    n_scored: np.ndarray
    liked_indptr: np.ndarray
    liked_playlists: np.ndarray
    liked_scores: np.ndarray
    hard_indptr: np.ndarray
    hard_playlists: np.ndarray
    scored_pairs: int
    hard_pool_sizes: np.ndarray | None = None
    ownership_pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)


def _indptr(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _binary_csr(matrix, name: str) -> sp.csr_matrix:
    """Validate a binary sparse matrix (one stored 1 per (row, song)); returns a canonical
    CSR, copying only when the input is not one already."""
    if not sp.issparse(matrix):
        raise TypeError(f"{name} must be a scipy sparse matrix, got {type(matrix).__name__}")
    csr = matrix if matrix.format == "csr" else sp.csr_matrix(matrix)
    csr = sp.csr_matrix(csr, copy=False) if not isinstance(csr, sp.csr_matrix) else csr
    if not csr.has_canonical_format:
        csr = csr.copy()
        csr.sum_duplicates()
    if csr.nnz and not np.all(csr.data == 1):
        if np.any(csr.data == 0):
            csr = csr.copy()
            csr.eliminate_zeros()
        if csr.nnz and not np.all(csr.data == 1):
            raise ValueError(f"{name} must be binary (every stored value 1, no duplicate entries)")
    return csr


def _validate_e(e: np.ndarray, n_users: int) -> np.ndarray:
    e = np.asarray(e, dtype=np.float64)
    if e.shape != (n_users,):
        raise ValueError(f"e must have shape ({n_users},), got {e.shape}")
    if not np.all(np.isfinite(e)) or np.any((e < 0) | (e > 1)):
        raise ValueError("exploration coefficients must lie in [0, 1]")
    return e


@dataclass(frozen=True)
class OwnershipSeed:
    """What the seeding pass of :func:`seed_ownership` already added.

    seed_round : int32 (n_users,), the round in which a user's pairs on the then-open
        playlists were added (-1 = not seeded).
    close_round : int32 (n_playlists,), the first round at whose start the playlist was
        full (``NEVER`` = still open after seeding).

    Rounds take users by decreasing weight (ties by id) and never split users whose weights
    ``((1 - e) ln 2 + e) / s`` are within 1e-9 of each other, so every m = 1 pair of a later
    user ranks strictly below the k seeded pairs that filled a closed playlist: the main
    pass need only look at pairs with m >= 2 or on never-closed playlists, and must skip
    the pairs a round already added (seeded user, playlist still open in its round).
    """

    seed_round: np.ndarray
    close_round: np.ndarray

    NEVER = np.iinfo(np.int32).max

    @functools.cached_property
    def never_closed(self) -> np.ndarray:
        """bool (n_playlists,): still open after seeding (all their pairs need a look)."""
        return self.close_round == self.NEVER

    def already_added(self, users: np.ndarray, playlists: np.ndarray) -> np.ndarray:
        rounds = self.seed_round[users]
        return (rounds >= 0) & (rounds < self.close_round[playlists])


class BlockLabeler:
    """CPU kernel state prepared once (Pᵀ in the kernel's dtypes, sqrt(s), sqrt(p)).

    Parameters
    ----------
    user_song : (n_users, n_songs) binary sparse.
    playlist_song : (n_playlists, n_songs) binary sparse (a CSC view of Pᵀ, i.e.
        ``playlist_song_t.T``, avoids the transposition).
    e : float64 (n_users,) exploration coefficients in [0, 1].
    max_hard_candidates : cap on each user's hard candidates (None = the exact pool).
    seed : seeds the capped subsample (with the user id and the playlist id).
    validate : check that both matrices are binary (skip only for validated inputs).
    user_ids : int64 (n_users,), the global id of each row of ``user_song`` (default: the
        row index); used for the subsample hash and the ownership candidates.
    """

    def __init__(
        self,
        user_song,
        playlist_song,
        e: np.ndarray,
        liked_share: float = LIKED_SHARE,
        hard_share: float = HARD_SHARE,
        max_hard_candidates: int | None = None,
        seed: int = 0,
        validate: bool = True,
        user_ids: np.ndarray | None = None,
    ) -> None:
        if validate:
            user_song = _binary_csr(user_song, "user_song")
            playlist_song = _binary_csr(playlist_song, "playlist_song")
        if user_song.shape[1] != playlist_song.shape[1]:
            raise ValueError(
                f"song dimensions differ: user_song has {user_song.shape[1]}, playlist_song {playlist_song.shape[1]}"
            )
        if not 0.0 < liked_share <= 1.0 or not 0.0 <= hard_share <= 1.0:
            raise ValueError("liked_share must be in (0, 1] and hard_share in [0, 1]")
        if max_hard_candidates is not None and max_hard_candidates < 0:
            raise ValueError("max_hard_candidates must be >= 0 or None")
        self.liked_share, self.hard_share = liked_share, hard_share
        self.max_hard_candidates = max_hard_candidates
        self.seed = int(seed)
        pt = sp.csr_matrix(playlist_song.T)  # no copy when given a CSC view of Pᵀ
        self.n_playlists = playlist_song.shape[0]
        self.p = np.bincount(pt.indices, minlength=self.n_playlists).astype(np.float64)
        self.sqrt_p = np.sqrt(self.p)
        self._pt_len = np.diff(pt.indptr).astype(np.int64)
        self._pt_data = np.ones(pt.nnz, dtype=np.int32)  # m accumulates in int32
        self._pt_base = (pt.indptr, pt.indices)
        self._pt: dict[np.dtype, tuple[np.ndarray, np.ndarray]] = {}  # one cached index dtype
        self._set_users(sp.csr_matrix(user_song), e, user_ids)

    def _set_users(self, user_song: sp.csr_matrix, e: np.ndarray, user_ids: np.ndarray | None) -> None:
        self.n_users, self.n_songs = user_song.shape
        self.e = _validate_e(e, self.n_users)
        self.user_ids = np.arange(self.n_users, dtype=np.int64) if user_ids is None else np.asarray(user_ids, np.int64)
        if self.user_ids.shape != (self.n_users,):
            raise ValueError("user_ids must have one id per row of user_song")
        self.u_indptr = user_song.indptr.astype(np.int64)
        self.u_indices = user_song.indices
        self.s = np.diff(self.u_indptr).astype(np.float64)
        self.sqrt_s = np.sqrt(self.s)
        self._ones = np.ones(0, dtype=np.int32)

    def subset(self, rows: np.ndarray) -> BlockLabeler:
        """A labeler for ``rows`` of this one's users, in that order (sharing Pᵀ)."""
        rows = np.asarray(rows, dtype=np.int64)
        other = object.__new__(BlockLabeler)
        other.__dict__.update(self.__dict__)
        matrix = sp.csr_matrix((np.ones(self.u_indices.size, np.int8), self.u_indices, self.u_indptr),
                               shape=(self.n_users, self.n_songs))[rows]
        other._set_users(matrix, self.e[rows], self.user_ids[rows])
        return other

    def restrict_playlists(self, playlists: np.ndarray) -> BlockLabeler:
        """A labeler over the columns ``playlists`` of Pᵀ only (same users); its playlist
        ids are positions in ``playlists``."""
        playlists = np.asarray(playlists, dtype=np.int64)
        other = object.__new__(BlockLabeler)
        other.__dict__.update(self.__dict__)
        indptr, indices = self._pt_base
        pt = sp.csr_matrix((self._pt_data, indices, indptr), shape=(self.n_songs, self.n_playlists))[:, playlists]
        other.n_playlists = playlists.size
        other.p, other.sqrt_p = self.p[playlists], self.sqrt_p[playlists]
        other._pt_len = np.diff(pt.indptr).astype(np.int64)
        other._pt_data = np.ones(pt.nnz, dtype=np.int32)
        other._pt_base = (pt.indptr, pt.indices)
        other._pt = {}
        return other

    def flops(self) -> np.ndarray:
        """int64 (n_users,): multiply-adds of each user's overlap row (>= its scored pairs)."""
        per_song = self._pt_len[self.u_indices]
        out = np.zeros(self.n_users, dtype=np.int64)
        nonempty = np.diff(self.u_indptr) > 0
        if per_song.size:
            out[nonempty] = np.add.reduceat(per_song, self.u_indptr[:-1][nonempty])
        return out

    # ---- overlap and scores ---------------------------------------------------------

    def _pt_as(self, index_dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pᵀ's (indptr, indices, data) with the given index dtype (converted once)."""
        if index_dtype not in self._pt:
            indptr, indices = self._pt_base
            self._pt = {index_dtype: (indptr.astype(index_dtype, copy=False), indices.astype(index_dtype, copy=False))}
        return (*self._pt[index_dtype], self._pt_data)

    def overlap(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indptr int64 (b + 1,), playlist ids (nnz,), m int32 (nnz,)) of ``U[start:stop] · Pᵀ``.

        Within a row the playlist ids come in the kernel's order (deterministic, not sorted).
        """
        if not 0 <= start <= stop <= self.n_users:
            raise ValueError(f"block [{start}, {stop}) outside 0..{self.n_users}")
        lo, hi = self.u_indptr[start], self.u_indptr[stop]
        songs = self.u_indices[lo:hi]
        b = stop - start
        flops = int(self._pt_len[songs].sum())  # an upper bound on the block's non-zeros
        small = max(flops, int(hi - lo), int(self._pt_len.sum())) < 2**31 - 1
        index_dtype = np.dtype(np.int32) if small else np.dtype(np.int64)
        if _sparsetools is None:  # pragma: no cover - fallback for a scipy without the module
            block = sp.csr_matrix((np.ones(hi - lo, np.int32), songs, self.u_indptr[start : stop + 1] - lo),
                                  shape=(b, self.n_songs))
            indptr, indices = self._pt_base
            pt = sp.csr_matrix((self._pt_data, indices, indptr), shape=(self.n_songs, self.n_playlists))
            out = (block @ pt).tocsr()
            return out.indptr.astype(np.int64), out.indices, out.data
        bp, bj, bx = self._pt_as(index_dtype)
        ap = (self.u_indptr[start : stop + 1] - lo).astype(index_dtype)
        aj = songs.astype(index_dtype, copy=False)
        if self._ones.size < aj.size:
            self._ones = np.ones(max(aj.size, 1024), dtype=np.int32)
        ax = self._ones[: aj.size]
        cp = np.empty(b + 1, dtype=index_dtype)
        cj = np.empty(flops, dtype=index_dtype)
        cx = np.empty(flops, dtype=np.int32)
        _sparsetools.csr_matmat(b, self.n_playlists, ap, aj, ax, bp, bj, bx, cp, cj, cx)
        nnz = int(cp[-1])
        return cp.astype(np.int64), cj[:nnz], cx[:nnz]

    def _scores(self, start: int, stop: int):
        """Overlap of the block and its scores, bit-identical to ``score_pairs(m, e, s, p)``:
        (indptr, cols, m, score float64, sqrt(s) repeated per pair)."""
        indptr, cols, m = self.overlap(start, stop)
        counts = np.diff(indptr)
        b = stop - start
        e = self.e[start:stop]
        width = int(m.max()) + 1 if m.size else 1
        if b * width <= _MAX_TABLE:  # the numerator depends on (user, m) only: a table lookup
            numerators = (1.0 - e)[:, None] * np.log1p(np.arange(width, dtype=np.float64))[None, :] + e[:, None]
            index = np.repeat(np.arange(0, b * width, width, dtype=np.int32), counts)
            index += m
            score = np.take(numerators.ravel(), index)
            del index
        else:
            e_rep = np.repeat(e, counts)
            score = (1.0 - e_rep) * np.log1p(m.astype(np.float64)) + e_rep
            del e_rep
        sqrt_s_rep = np.repeat(self.sqrt_s[start:stop], counts)
        denominator = np.take(self.sqrt_p, cols)
        denominator *= sqrt_s_rep
        np.divide(score, denominator, out=score)
        return indptr, cols, m, score, sqrt_s_rep

    def _ownership_pairs(self, start: int, stop: int, indptr: np.ndarray, cols: np.ndarray, m: np.ndarray,
                         score: np.ndarray, sqrt_s_rep: np.ndarray, floor: np.ndarray,
                         seeded: OwnershipSeed | None):
        """(playlists int32, users int32, priorities float64) of the pairs whose priority
        ``score / sqrt(s)`` reaches their playlist's floor and that ``seeded`` has not
        already added (see :class:`OwnershipSeed` for which pairs need a look at all)."""
        if seeded is None:
            priority = np.divide(score, sqrt_s_rep, out=sqrt_s_rep)
            passing = np.flatnonzero(priority >= np.take(floor, cols))
            priority = priority[passing]
        else:
            never_closed = seeded.never_closed
            # pairs of seeded users on never-closed playlists were all added already
            all_seeded = bool((seeded.seed_round[self.user_ids[start:stop]] >= 0).all())
            if never_closed.any() and not all_seeded:
                look = np.flatnonzero((m > 1) | np.take(never_closed, cols))
            else:
                look = np.flatnonzero(m > 1)
            priority = score[look] / sqrt_s_rep[look]
            keep = priority >= floor[cols[look]]
            passing, priority = look[keep], priority[keep]
        rows = np.searchsorted(indptr, passing, side="right") - 1
        playlists, users = cols[passing].astype(np.int32), self.user_ids[start:stop][rows].astype(np.int32)
        if seeded is not None:
            fresh = ~seeded.already_added(users, playlists)
            playlists, users, priority = playlists[fresh], users[fresh], priority[fresh]
        return playlists, users, priority

    def ownership_block(self, start: int, stop: int, floor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Only the ownership pairs of users ``[start, stop)`` at or above ``floor``."""
        indptr, cols, m, score, sqrt_s_rep = self._scores(start, stop)
        return self._ownership_pairs(start, stop, indptr, cols, m, score, sqrt_s_rep, floor, None)

    # ---- one block ----------------------------------------------------------------

    def block(self, start: int, stop: int, ownership_floor: np.ndarray | None = None,
              ownership_seeded: OwnershipSeed | None = None) -> LabelBlock:
        """Label users ``[start, stop)`` (rows of this labeler's ``user_song``).

        ownership_floor : float64 (n_playlists,) or None. When given, the block also returns
            its pairs with ``priority >= ownership_floor[playlist]`` (see
            :attr:`OwnershipCandidates.floor`; ``-inf`` everywhere returns every pair).
        ownership_seeded : what :func:`seed_ownership` already added to the accumulator
            whose floor this is (None = nothing).
        """
        b = stop - start
        indptr, cols, m, score, sqrt_s_rep = self._scores(start, stop)
        counts = np.diff(indptr)
        nnz = int(indptr[-1])
        n_liked = liked_counts(counts, self.liked_share)
        n_hard = hard_counts(counts, n_liked, self.hard_share)
        n_top = n_liked + n_hard
        ownership_pairs = None
        if ownership_floor is not None:
            ownership_pairs = self._ownership_pairs(start, stop, indptr, cols, m, score, sqrt_s_rep, ownership_floor,
                                                    ownership_seeded)
        del sqrt_s_rep, m

        # --- bucket histogram per row: a monotone bucket of float32(score) (exponent + a
        # few mantissa bits), numbered from the block's top bucket down
        bucket = score.astype(np.float32).view(np.int32)
        top = int(bucket.max()) if nnz else 0
        low = int(bucket.min()) if nnz else 0
        sub_bits = _SUB_BITS
        while sub_bits > 1 and b * (((top - low) >> (23 - sub_bits)) + 1) > max(4 * nnz, 1 << 16):
            sub_bits -= 1  # a block with many short rows: coarser buckets, fewer bins
        shift = 23 - sub_bits
        bucket >>= shift
        n_buckets = (top >> shift) - (low >> shift) + 1
        row_base = np.arange(b, dtype=np.int64) * n_buckets + (top >> shift)
        if b * n_buckets < 2**31:
            row_base = row_base.astype(np.int32)
        rel = np.repeat(row_base, counts)
        rel -= bucket  # (row, bucket) bin; bucket 0 of a row = the block's highest
        del bucket
        hist = np.bincount(rel, minlength=b * n_buckets).reshape(b, n_buckets)
        cum = np.cumsum(hist, axis=1)  # elements in buckets <= i (scores >= the bucket)
        thr_k = (cum < n_liked[:, None]).sum(axis=1)  # bucket holding the k-th element
        thr_t = (cum < n_top[:, None]).sum(axis=1)
        thr_k[n_liked == 0] = -1
        thr_t[n_top == 0] = -1
        levels = np.arange(n_buckets)[None, :]
        cls = np.where(levels < thr_t[:, None], _SURE_HARD, _REJECT).astype(np.int8)
        cls[(levels <= thr_k[:, None]) | (levels == thr_t[:, None])] = _CANDIDATE
        element_cls = np.take(cls.ravel(), rel)

        # --- exact order inside the candidate buckets
        cand = np.flatnonzero(element_cls == _CANDIDATE)
        cand_bin = rel[cand]
        del rel
        cand_row = cand_bin // n_buckets
        order = np.lexsort((cols[cand], -score[cand], cand_row))
        cand, cand_bin, cand_row = cand[order], cand_bin[order], cand_row[order]
        new_group = np.ones(cand.size, dtype=bool)
        if cand.size:
            np.not_equal(cand_bin[1:], cand_bin[:-1], out=new_group[1:])
        group_start = np.flatnonzero(new_group)
        position = np.arange(cand.size) - group_start[np.cumsum(new_group) - 1]
        before = (cum - hist).ravel()  # elements in strictly higher buckets of the row
        rank = before[cand_bin] + position
        liked = cand[rank < n_liked[cand_row]]
        hard_mask = element_cls == _SURE_HARD
        del element_cls
        boundary = (rank >= n_liked[cand_row]) & (rank < n_top[cand_row])
        hard_mask[cand[boundary]] = True
        hard = np.flatnonzero(hard_mask)
        del hard_mask
        hard_sizes = n_hard

        # --- seeded cap on the hard candidates
        cap = self.max_hard_candidates
        if cap is not None and hard.size and (n_hard > cap).any():
            hard, hard_sizes = _cap_hard(hard, np.repeat(np.arange(b), n_hard), cols[hard].astype(np.int64),
                                         n_hard, self.user_ids[start:stop], cap, self.seed)
        return LabelBlock(
            start=start,
            stop=stop,
            n_scored=counts.astype(np.int32),
            liked_indptr=_indptr(n_liked),
            liked_playlists=cols[liked].astype(np.int32),
            liked_scores=score[liked],
            hard_indptr=_indptr(hard_sizes),
            hard_playlists=cols[hard].astype(np.int32),
            scored_pairs=nnz,
            hard_pool_sizes=n_hard.astype(np.int32),
            ownership_pairs=ownership_pairs,
        )


def _cap_hard(hard: np.ndarray, rows: np.ndarray, playlists: np.ndarray, pool: np.ndarray, user_ids: np.ndarray,
              cap: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep, for rows whose pool exceeds ``cap``, the ``cap`` members with the smallest
    :func:`subsample_keys` (ties by playlist id); rows within the cap keep all. ``hard``
    (positions) and ``rows`` / ``playlists`` are aligned and grouped by row; ``user_ids``
    maps a row to its global user id. Returns (positions, sizes)."""
    over = pool > cap
    over_el = over[rows]
    idx = np.flatnonzero(over_el)
    with np.errstate(over="ignore"):
        user_key = _splitmix64(np.asarray(user_ids, dtype=np.uint64) + _splitmix64(np.full(1, seed, dtype=np.uint64)))
        keys = _splitmix64(user_key[rows[idx]] ^ (playlists[idx].astype(np.uint64) * _PLAYLIST_MIX))
    # keys are uniform: a generous threshold keeps about cap + 6 sqrt(cap) + 16 per row (a
    # row that keeps fewer than cap, vanishingly rare, keeps all its members) ...
    share = np.minimum(1.0, (cap + 6.0 * math.sqrt(cap) + 16.0) / np.maximum(pool, 1))
    limit = np.full(share.size, np.iinfo(np.uint64).max, dtype=np.uint64)
    below = share < 1.0
    limit[below] = (share[below] * 2.0**64).astype(np.uint64)
    kept = keys <= limit[rows[idx]]
    short = np.bincount(rows[idx][kept], minlength=pool.size) < cap
    kept |= short[rows[idx]]
    idx, keys = idx[kept], keys[kept]
    # ... then the cap-th smallest key of each row by one row-wise partition
    r = rows[idx]
    over_rows = np.flatnonzero(over)
    slot = np.searchsorted(over_rows, r)
    counts = np.bincount(slot, minlength=over_rows.size)
    position = np.arange(idx.size) - _indptr(counts)[:-1][slot]
    table = np.full((over_rows.size, int(counts.max(initial=cap))), np.iinfo(np.uint64).max, dtype=np.uint64)
    table[slot, position] = keys
    threshold = np.partition(table, cap - 1, axis=1)[:, cap - 1] if cap > 0 else np.zeros(over_rows.size, np.uint64)
    chosen = (keys <= threshold[slot]) if cap > 0 else np.zeros(idx.size, dtype=bool)
    tied = np.flatnonzero(np.bincount(slot[chosen], minlength=over_rows.size) > cap)
    if tied.size:  # equal 64-bit keys at a row's boundary: order those rows exactly
        in_tied = np.isin(slot, tied)
        sub = np.flatnonzero(in_tied)
        order = sub[np.lexsort((playlists[idx[sub]], keys[sub], slot[sub]))]
        rank = np.arange(order.size) - np.searchsorted(slot[order], slot[order], side="left")
        chosen[sub] = False
        chosen[order[rank < cap]] = True
    keep = ~over_el
    keep[idx[chosen]] = True
    return hard[keep], np.minimum(pool, cap)


def label_block(
    user_song: sp.csr_matrix,
    playlist_song_t: sp.csr_matrix,
    s: np.ndarray,
    p: np.ndarray,
    e: np.ndarray,
    start: int,
    stop: int,
    liked_share: float = LIKED_SHARE,
    hard_share: float = HARD_SHARE,
    max_hard_candidates: int | None = None,
    seed: int = 0,
    ownership_floor: np.ndarray | None = None,
) -> LabelBlock:
    """Label users ``[start, stop)`` (a one-off convenience; loops should reuse a
    :class:`BlockLabeler`, which prepares Pᵀ once).

    Parameters
    ----------
    user_song : (n_users, n_songs) binary CSR.
    playlist_song_t : (n_songs, n_playlists) binary CSR, the transposed playlist-song matrix.
    s, p : song counts per user (n_users,) and per playlist (n_playlists,); must equal the
        row counts of the matrices.
    e : float64 (n_users,) exploration coefficients.
    """
    labeler = BlockLabeler(user_song, sp.csr_matrix(playlist_song_t).T, e, liked_share, hard_share,
                           max_hard_candidates, seed, validate=False)  # .T of a CSR is a CSC view: no copy
    if not (np.array_equal(labeler.s, np.asarray(s, dtype=np.float64))
            and np.array_equal(labeler.p, np.asarray(p, dtype=np.float64))):
        raise ValueError("s and p must be the row song counts of user_song and playlist_song")
    return labeler.block(start, stop, ownership_floor)


# --------------------------------------------------------------------------------------
# torch kernel (GPU when available)
# --------------------------------------------------------------------------------------


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when a GPU is visible to torch, else 'scipy' (the CPU kernel)."""
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "scipy"
    except ImportError:  # pragma: no cover - torch is a dependency
        return "scipy"


class TorchLabeler:
    """The same block labeling with torch kernels (GPU when ``device='cuda'``).

    The overlap block is a dense (b, n_playlists) product of the sparse playlist matrix and
    the dense user block; scores are float64 with the CPU formula, and a stable descending
    sort per row keeps ties in ascending playlist id, so both paths select the same sets
    (hard candidates come in score order here, in kernel order on the CPU).
    """

    def __init__(self, user_song: sp.csr_matrix, playlist_song: sp.csr_matrix, s: np.ndarray, p: np.ndarray,
                 e: np.ndarray, device: str, max_hard_candidates: int | None = None, seed: int = 0,
                 user_ids: np.ndarray | None = None):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        coo = sp.coo_matrix(playlist_song)
        self.playlists = torch.sparse_coo_tensor(
            np.vstack([coo.row, coo.col]), np.ones(coo.nnz, dtype=np.float32), playlist_song.shape, device=self.device,
            check_invariants=False,
        ).coalesce()
        self.user_song = sp.csr_matrix(user_song)
        self.sqrt_s = torch.sqrt(torch.as_tensor(np.asarray(s, dtype=np.float64), device=self.device))
        self.sqrt_p = torch.sqrt(torch.as_tensor(np.asarray(p, dtype=np.float64), device=self.device))
        self.e = torch.as_tensor(np.asarray(e, dtype=np.float64), device=self.device)
        self.max_hard_candidates = max_hard_candidates
        self.seed = seed
        n_users = self.user_song.shape[0]
        self.user_ids = np.arange(n_users, dtype=np.int64) if user_ids is None else np.asarray(user_ids, np.int64)

    def block(self, start: int, stop: int, liked_share: float = LIKED_SHARE, hard_share: float = HARD_SHARE,
              ownership_floor: np.ndarray | None = None, ownership_seeded: OwnershipSeed | None = None) -> LabelBlock:
        torch = self.torch
        b = stop - start
        users = torch.as_tensor((self.user_song[start:stop] != 0).toarray(), dtype=torch.float32, device=self.device)
        overlap = torch.sparse.mm(self.playlists, users.T).T.to(torch.float64)  # (b, n_playlists), exact counts
        scored = overlap > 0
        e = self.e[start:stop, None]
        sqrt_s = self.sqrt_s[start:stop, None]
        scores = ((1.0 - e) * torch.log1p(overlap) + e) / (sqrt_s * self.sqrt_p[None, :])
        scores = torch.where(scored, scores, torch.full_like(scores, -torch.inf))
        n = scored.sum(dim=1).cpu().numpy()
        n_liked = liked_counts(n, liked_share)
        n_hard = hard_counts(n, n_liked, hard_share)
        ownership_pairs = None
        if ownership_floor is not None:
            floor = torch.as_tensor(ownership_floor, device=self.device)
            priority = scores / sqrt_s
            r, c = torch.nonzero(scored & (priority >= floor[None, :]), as_tuple=True)
            playlists = c.cpu().numpy().astype(np.int32)
            users = self.user_ids[start:stop][r.cpu().numpy()].astype(np.int32)
            values = priority[r, c].cpu().numpy()
            if ownership_seeded is not None:
                fresh = ~ownership_seeded.already_added(users, playlists)
                playlists, users, values = playlists[fresh], users[fresh], values[fresh]
            ownership_pairs = (playlists, users, values)
        width = int((n_liked + n_hard).max(initial=0))
        liked_playlists = np.zeros(0, dtype=np.int32)
        liked_scores = np.zeros(0)
        hard_rows = np.zeros(0, dtype=np.int64)
        hard_ids = np.zeros(0, dtype=np.int64)
        if width:
            sorted_scores, order = torch.sort(scores, dim=1, descending=True, stable=True)
            head_ids = order[:, :width].cpu().numpy()
            head_scores = sorted_scores[:, :width].cpu().numpy()
            rank = np.arange(width)[None, :]
            liked_mask = rank < n_liked[:, None]
            hard_mask = (~liked_mask) & (rank < (n_liked + n_hard)[:, None])
            liked_playlists, liked_scores = head_ids[liked_mask].astype(np.int32), head_scores[liked_mask]
            hard_rows = np.nonzero(hard_mask)[0]
            hard_ids = head_ids[hard_mask].astype(np.int64)
        hard_sizes = n_hard
        positions = np.arange(hard_ids.size)
        if self.max_hard_candidates is not None and (n_hard > self.max_hard_candidates).any():
            positions, hard_sizes = _cap_hard(positions, hard_rows, hard_ids, n_hard, self.user_ids[start:stop],
                                              self.max_hard_candidates, self.seed)
        return LabelBlock(
            start=start, stop=stop, n_scored=n.astype(np.int32),
            liked_indptr=_indptr(n_liked), liked_playlists=liked_playlists, liked_scores=liked_scores,
            hard_indptr=_indptr(hard_sizes), hard_playlists=hard_ids[positions].astype(np.int32),
            scored_pairs=int(n.sum()), hard_pool_sizes=n_hard.astype(np.int32), ownership_pairs=ownership_pairs,
        )


# --------------------------------------------------------------------------------------
# all users
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Labels:
    """Labels for all users, concatenated from blocks (same fields as :class:`LabelBlock`),
    plus the merged per-playlist ownership candidates (None when not computed)."""

    n_scored: np.ndarray
    liked_indptr: np.ndarray
    liked_playlists: np.ndarray
    liked_scores: np.ndarray
    hard_indptr: np.ndarray
    hard_playlists: np.ndarray
    scored_pairs: int
    seconds: float
    hard_pool_sizes: np.ndarray | None = None
    ownership: OwnershipCandidates | None = field(default=None, repr=False)

    @property
    def n_users(self) -> int:
        return int(self.n_scored.size)

    def liked_users(self) -> np.ndarray:
        """User id of every liked pair (int32, aligned with liked_playlists)."""
        return np.repeat(np.arange(self.n_users, dtype=np.int32), np.diff(self.liked_indptr))

    def arrays(self, include_optional: bool = False) -> dict[str, np.ndarray]:
        """The label arrays by name (for ``np.savez``). ``include_optional`` adds
        ``hard_pool_sizes`` and the ownership candidates (``ownership_users``,
        ``ownership_priorities``) when present."""
        out = {
            "n_scored": self.n_scored,
            "liked_indptr": self.liked_indptr,
            "liked_playlists": self.liked_playlists,
            "liked_scores": self.liked_scores,
            "hard_indptr": self.hard_indptr,
            "hard_playlists": self.hard_playlists,
        }
        if include_optional and self.hard_pool_sizes is not None:
            out["hard_pool_sizes"] = self.hard_pool_sizes
        if include_optional and self.ownership is not None:
            out.update(self.ownership.arrays())
        return out


def concat_blocks(blocks: list[LabelBlock], seconds: float = 0.0,
                  ownership: OwnershipCandidates | None = None) -> Labels:
    """Join consecutive blocks (sorted by start) into one :class:`Labels`."""
    blocks = sorted(blocks, key=lambda blk: blk.start)
    for previous, current in zip(blocks, blocks[1:]):
        if previous.stop != current.start:
            raise ValueError(f"blocks are not contiguous: {previous.stop} != {current.start}")

    def indptr(parts: list[np.ndarray]) -> np.ndarray:
        out = [np.zeros(1, dtype=np.int64)]
        offset = 0
        for part in parts:
            out.append(part[1:] + offset)
            offset += int(part[-1])
        return np.concatenate(out)

    def cat(name: str, dtype) -> np.ndarray:
        return np.concatenate([getattr(blk, name) for blk in blocks]) if blocks else np.zeros(0, dtype)

    pools = [blk.hard_pool_sizes for blk in blocks]
    return Labels(
        n_scored=cat("n_scored", np.int32),
        liked_indptr=indptr([blk.liked_indptr for blk in blocks]),
        liked_playlists=cat("liked_playlists", np.int32),
        liked_scores=cat("liked_scores", np.float64),
        hard_indptr=indptr([blk.hard_indptr for blk in blocks]),
        hard_playlists=cat("hard_playlists", np.int32),
        scored_pairs=sum(blk.scored_pairs for blk in blocks),
        seconds=seconds,
        hard_pool_sizes=None if any(pool is None for pool in pools) else cat("hard_pool_sizes", np.int32),
        ownership=ownership,
    )


def merge_labels(parts: list[Labels]) -> Labels:
    """Join :func:`label_users` results of consecutive user ranges (shards), given in user
    order: rows concatenate, ownership candidates merge (exact top k of the union), scored
    pairs and seconds add up."""
    blocks, start = [], 0
    for part in parts:
        blocks.append(LabelBlock(start=start, stop=start + part.n_users, n_scored=part.n_scored,
                                 liked_indptr=part.liked_indptr, liked_playlists=part.liked_playlists,
                                 liked_scores=part.liked_scores, hard_indptr=part.hard_indptr,
                                 hard_playlists=part.hard_playlists, scored_pairs=part.scored_pairs,
                                 hard_pool_sizes=part.hard_pool_sizes))
        start += part.n_users
    owned = [part.ownership for part in parts if part.ownership is not None]
    if owned and len(owned) != len(parts):
        raise ValueError("either every shard or none carries ownership candidates")
    ownership = None
    if owned:
        ownership = OwnershipCandidates.from_arrays(owned[0].users, owned[0].priorities)
        for other in owned[1:]:
            ownership.merge(other)
    return concat_blocks(blocks, seconds=sum(part.seconds for part in parts), ownership=ownership)


_INDPTR_ARRAYS = ("liked_indptr", "hard_indptr")
_OWNERSHIP_ARRAYS = ("ownership_users", "ownership_priorities")


def _merged_ownership(readers: list, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Shards' ownership candidates merged as :func:`merge_labels` merges them (exact top k
    of the union per playlist, shard after shard), ``chunk`` playlists at a time: every step
    of the merge is row-wise, so the chunked result is the same, with transients bounded
    by the chunk."""
    users = [r["ownership_users"] for r in readers]
    priorities = [r["ownership_priorities"] for r in readers]
    out_users, out_priorities = np.empty_like(users[0]), np.empty_like(priorities[0])
    for lo in range(0, users[0].shape[0], chunk):
        hi = min(lo + chunk, users[0].shape[0])
        merged = OwnershipCandidates.from_arrays(users[0][lo:hi], priorities[0][lo:hi])
        for u, p in zip(users[1:], priorities[1:]):
            merged.merge(OwnershipCandidates.from_arrays(u[lo:hi], p[lo:hi]))
        out_users[lo:hi], out_priorities[lo:hi] = merged.users, merged.priorities
    return out_users, out_priorities


def merge_label_files(shards: Sequence[Path | str], out: Path | str, chunk_playlists: int = 1 << 16) -> dict:
    """Merge label shard files (``np.savez`` of :meth:`Labels.arrays`, consecutive user ranges
    given in user order) into ``out``, array by array.

    ``out`` is byte for byte the ``np.savez`` of ``merge_labels(shards).arrays(...)`` with the
    shards' optional arrays, but memory holds one array at a time (its shard parts and the
    result) instead of every shard plus the merged copy: at full scale (1M users, 365M liked
    pairs) that is ~3 GB instead of ~13 GB.

    Returns the summary a merge step reports: users, users_with_liked, liked_pairs,
    hard_pool_entries, n_scored_median, ownership_k (0 without ownership arrays).
    """
    if not shards:
        raise ValueError("no label shards to merge")
    readers = [np.load(path, allow_pickle=False) for path in shards]
    try:
        names = list(readers[0].files)
        for path, reader in zip(shards, readers):
            if list(reader.files) != names:
                raise ValueError(f"label shard {path} has arrays {reader.files}, expected {names}")
        summary: dict = {"ownership_k": 0}
        ownership = _merged_ownership(readers, chunk_playlists) if _OWNERSHIP_ARRAYS[0] in names else None
        # the layout np.savez writes: stored (uncompressed) zip64 members "<name>.npy"
        with zipfile.ZipFile(out, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name in names:
                if name in _OWNERSHIP_ARRAYS:
                    array = ownership[_OWNERSHIP_ARRAYS.index(name)]
                    summary["ownership_k"] = int(array.shape[1])
                elif name in _INDPTR_ARRAYS:
                    parts, offset = [np.zeros(1, dtype=np.int64)], 0
                    for reader in readers:
                        part = reader[name]
                        parts.append(part[1:] + offset)
                        offset += int(part[-1])
                    array = np.concatenate(parts)
                    if name == "liked_indptr":
                        summary["users_with_liked"] = int((np.diff(array) > 0).sum())
                else:
                    array = np.concatenate([reader[name] for reader in readers])
                    if name == "n_scored":
                        summary["users"] = int(array.size)
                        summary["n_scored_median"] = float(np.median(array)) if array.size else 0.0
                    elif name == "liked_playlists":
                        summary["liked_pairs"] = int(array.size)
                    elif name == "hard_playlists":
                        summary["hard_pool_entries"] = int(array.size)
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)
                del array
    finally:
        for reader in readers:
            reader.close()
    return summary


def block_ranges(n_users: int, block_size: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of at most ``block_size`` users covering ``0..n_users``."""
    if block_size < 1:
        raise ValueError("block_size must be >= 1")
    return [(start, min(start + block_size, n_users)) for start in range(0, n_users, block_size)]


def flop_blocks(flops: np.ndarray, block_size: int) -> list[tuple[int, int]]:
    """Cut a sequence of users into consecutive blocks of about ``block_size`` average users'
    worth of overlap work each (at least one user, at most ``16 · block_size`` users)."""
    if block_size < 1:
        raise ValueError("block_size must be >= 1")
    n = flops.size
    if n == 0:
        return []
    budget = max(1.0, block_size * float(flops.mean()))
    total = np.cumsum(flops, dtype=np.float64)
    cuts = np.searchsorted(total, budget * np.arange(1, int(total[-1] // budget) + 1), side="right")
    bounds = np.unique(np.concatenate([[0], np.clip(cuts, 1, n), [n], np.arange(0, n, block_size * 16)]))
    return [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _user_weights(e: np.ndarray, s: np.ndarray) -> np.ndarray:
    """float64: ((1 - e) ln 2 + e) / s, the m = 1 ownership priority up to the factor
    1 / sqrt(p) (-inf for users without songs)."""
    weight = np.full(s.shape, -np.inf)
    has = s > 0
    weight[has] = ((1.0 - e[has]) * math.log(2.0) + e[has]) / s[has]
    return weight


def seed_ownership(labeler: BlockLabeler, users: np.ndarray, ownership: OwnershipCandidates, block_size: int,
                   factor: float = 1.5, max_rounds: int = 12) -> OwnershipSeed:
    """Fill the ownership lists from the best-placed users first, in rounds.

    Round r takes the next users of ``users`` by decreasing weight ``((1 - e) ln 2 + e) / s``
    (users without songs never) until about
    ``factor · k · |open|`` overlap pairs with the playlists still open (not yet holding k
    candidates), and adds all their pairs on those playlists. Those users are most
    playlists' best candidates, so afterwards the main pass only has to look at pairs with
    m >= 2 or on playlists that never filled (see :class:`OwnershipSeed`). Only speed
    depends on ``factor`` and ``max_rounds``; the accumulated top k is exact either way.
    """
    if ownership.full.any() or (ownership.users >= 0).any():
        raise ValueError("seed_ownership needs an empty accumulator")
    users = np.asarray(users, dtype=np.int64)
    weight = _user_weights(labeler.e, labeler.s)
    order = users[np.argsort(-weight[users], kind="stable")]
    order = order[labeler.s[order] > 0]
    seed_round = np.full(labeler.n_users, -1, dtype=np.int32)
    close_round = np.where(ownership.full, 0, OwnershipSeed.NEVER).astype(np.int32)
    position = 0
    for r in range(max_rounds):
        open_playlists = np.flatnonzero(close_round == OwnershipSeed.NEVER)
        if position >= order.size or open_playlists.size == 0:
            break
        restricted = labeler.restrict_playlists(open_playlists)
        rest = order[position:]
        flops = restricted.subset(rest).flops()
        take = int(np.searchsorted(np.cumsum(flops, dtype=np.float64), factor * ownership.k * open_playlists.size)) + 1
        take = min(take, rest.size)
        # never split (near-)equal weights across rounds: extend the cut over ties within 1e-9
        last = weight[rest[take - 1]]
        take = int(np.searchsorted(-weight[rest], -last * (1.0 - 1e-9), side="right"))
        chosen = rest[:take]
        front = restricted.subset(chosen)
        for lo, hi in flop_blocks(front.flops(), block_size):
            playlists, chosen_users, priorities = front.ownership_block(lo, hi, ownership.floor[open_playlists])
            ownership.add(open_playlists[playlists], chosen_users, priorities)
        seed_round[chosen] = r
        position += take
        close_round[(close_round == OwnershipSeed.NEVER) & ownership.full] = r + 1
    return OwnershipSeed(seed_round=seed_round, close_round=close_round)


def label_users(
    user_song: sp.csr_matrix,
    playlist_song: sp.csr_matrix,
    e: np.ndarray,
    block_size: int = 512,
    liked_share: float = LIKED_SHARE,
    hard_share: float = HARD_SHARE,
    progress: Callable[[int, int, int], None] | None = None,
    device: str = "scipy",
    max_hard_candidates: int | None = None,
    seed: int = 0,
    ownership_k: int | None = DEFAULT_OWNERSHIP_K,
    start: int = 0,
    stop: int | None = None,
    ownership_seed_factor: float = 1.5,
) -> Labels:
    """Label users ``[start, stop)`` (default: all), block by block.

    The result does not depend on ``block_size`` nor on how a caller shards the users:
    shard results concatenate with :func:`concat_blocks` (in user order) and their
    ownership candidates merge with :meth:`OwnershipCandidates.merge`.

    Parameters
    ----------
    user_song : (n_users, n_songs) binary sparse; playlist_song : (n_playlists, n_songs).
    e : float64 (n_users,) exploration coefficients (all users, indexed by global id).
    block_size : users per overlap block; peak memory grows linearly with it.
    progress : optional callback ``(users_done, users_in_range, scored_pairs_so_far)``.
    device : 'scipy' (CPU sparse kernel), 'cuda' / 'cpu' (torch kernels), or 'auto'.
    max_hard_candidates : per-user cap on hard candidates (None = the exact pool).
    seed : seeds the capped hard subsample.
    ownership_k : ownership candidates kept per playlist (None = skip them).
    start, stop : the user range to label (a shard); user ids stay global.
    ownership_seed_factor : before the main pass, rounds of the best-placed users fill the
        ownership lists (about ``factor · k`` pairs per open playlist and round, see
        :func:`seed_ownership`); 0 disables it. Affects speed only.

    Returns
    -------
    :class:`Labels` with one row per user of ``[start, stop)``, in user-id order.
    """
    user_song = _binary_csr(user_song, "user_song")
    playlist_song = _binary_csr(playlist_song, "playlist_song")
    n_users = user_song.shape[0]
    stop = n_users if stop is None else stop
    if not 0 <= start <= stop <= n_users:
        raise ValueError(f"user range [{start}, {stop}) outside 0..{n_users}")
    started = time.perf_counter()
    device = resolve_device(device)
    labeler = BlockLabeler(user_song, playlist_song, e, liked_share, hard_share, max_hard_candidates, seed,
                           validate=False)
    torch_labeler = None
    if device != "scipy":
        torch_labeler = TorchLabeler(user_song, playlist_song, labeler.s, labeler.p, labeler.e, device,
                                     max_hard_candidates, seed)
    ownership = seeded = None
    if ownership_k is not None:
        ownership = OwnershipCandidates.empty(playlist_song.shape[0], ownership_k)
        if ownership_seed_factor > 0:
            seeded = seed_ownership(labeler, np.arange(start, stop), ownership, block_size, ownership_seed_factor)
    blocks: list[LabelBlock] = []
    scored = 0
    for lo, hi in block_ranges(stop - start, block_size):
        lo, hi = lo + start, hi + start
        floor = None if ownership is None else ownership.floor
        if torch_labeler is not None:
            blk = torch_labeler.block(lo, hi, liked_share, hard_share, ownership_floor=floor,
                                      ownership_seeded=seeded)
        else:
            blk = labeler.block(lo, hi, ownership_floor=floor, ownership_seeded=seeded)
        if ownership is not None:
            ownership.add(*blk.ownership_pairs)
            blk = dataclasses.replace(blk, ownership_pairs=None)  # merged: drop the pairs
        blocks.append(blk)
        scored += blk.scored_pairs
        if progress is not None:
            progress(hi - start, stop - start, scored)
    if ownership is not None:
        ownership.users  # noqa: B018 - sort the candidate lists now, inside the timed region
    return concat_blocks(blocks, seconds=time.perf_counter() - started, ownership=ownership)


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
