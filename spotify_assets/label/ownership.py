"""Ownership candidates: per playlist its top-k users by priority, merged exactly."""

from __future__ import annotations

import numpy as np
from spotify_assets.label.sparse import _group_by, _indptr


# --------------------------------------------------------------------------------------
# ownership candidates
# --------------------------------------------------------------------------------------


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


