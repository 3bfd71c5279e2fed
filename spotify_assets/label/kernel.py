"""The CPU labeler: one block of users from overlap to liked playlists, hard pools and ownership candidates."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
import numpy as np
import scipy.sparse as sp
from spotify_assets.label.scores import HARD_SHARE, LIKED_SHARE, _PLAYLIST_MIX, _splitmix64, hard_counts, liked_counts
from spotify_assets.label.sparse import _indptr, _sparsetools


_SUB_BITS = 6  # mantissa bits kept in a score bucket: 64 buckets per binade (~1.1% wide)
_REJECT, _SURE_HARD, _CANDIDATE = 0, 1, 2
_MAX_TABLE = 1 << 22  # entries of the per-block (user, m) numerator table before falling back


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


