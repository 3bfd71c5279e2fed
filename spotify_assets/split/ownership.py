"""Greedy playlist ownership on the labeler's candidates (and its reference)."""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np
from spotify_assets.label.ownership import OwnershipCandidates
from spotify_assets.split.common import _check_csr, _indptr, _row_ids
from spotify_assets.split.users import TEST, TRAIN, VAL, _contains, _pair_keys, liked_keys


# --------------------------------------------------------------------------------------
# ownership
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ownership:
    """owner : int32 (n_playlists,), the owning user or -1. owned_counts : int32 (n_users,).
    exhausted : playlists left unowned after rejecting every one of a *full* candidate list
    (more users may have scored them, so the greedy over all pairs might have found an
    owner further down); 0 means the result equals the greedy over all scored pairs."""

    owner: np.ndarray
    owned_counts: np.ndarray
    exhausted: int = 0
    rounds: int = 0

    @property
    def unowned(self) -> int:
        return int((self.owner < 0).sum())

    @property
    def gini(self) -> float:
        return ownership_gini(self.owned_counts)


def ownership_gini(owned_counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0 = equal, -> 1 = concentrated)."""
    x = np.sort(np.asarray(owned_counts, dtype=np.float64))
    if x.size == 0 or x.sum() == 0:
        return 0.0
    n = x.size
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


def _held_out_mask(cand_users: np.ndarray, cand_playlists: np.ndarray, liked_indptr: np.ndarray,
                   liked_playlists: np.ndarray, split: np.ndarray, n_playlists: int) -> np.ndarray:
    held = liked_keys(liked_indptr, liked_playlists, n_playlists, split, (VAL, TEST))
    return _contains(held, _pair_keys(cand_users, cand_playlists, n_playlists))


def _greedy_by_proposals(indptr: np.ndarray, users: np.ndarray, priorities: np.ndarray, valid: np.ndarray,
                         n_users: int, cap: int) -> tuple[np.ndarray, int]:
    """Exact greedy ownership on per-playlist candidate lists.

    indptr : (n_playlists + 1,) pointers; users / priorities per entry, each playlist's
    entries sorted by (priority desc, user asc); valid : bool per entry (False = may not own).

    The greedy "highest (priority, then lower user, then lower playlist) first, each
    playlist once, each user at most ``cap``" is the unique stable assignment when both
    sides rank pairs by that one global order, so deferred acceptance finds it with
    vectorized rounds: every free playlist proposes to its next valid candidate; each user
    keeps its ``cap`` best proposals (old and new) and rejects the rest. Returns (owner,
    rounds).
    """
    n_playlists = indptr.size - 1
    n = users.size
    ends = indptr[1:]
    # next valid entry at or after each position (n = none)
    nxt = np.where(valid, np.arange(n), n)
    nxt = np.minimum.accumulate(nxt[::-1])[::-1] if n else nxt
    nxt = np.append(nxt, n)
    pointer = nxt[indptr[:-1]]
    owner_entry = np.full(n_playlists, -1, dtype=np.int64)  # accepted entry per playlist
    free = np.flatnonzero(pointer < ends)
    rounds = 0
    while free.size:
        rounds += 1
        proposals = pointer[free]
        accepted = np.flatnonzero(owner_entry >= 0)
        load = np.bincount(users[proposals], minlength=n_users) + np.bincount(users[owner_entry[accepted]],
                                                                               minlength=n_users)
        over_users = load > cap
        if not over_users.any():
            owner_entry[free] = proposals
            break
        # users over their cap rank old + new pairs and keep the best ``cap``
        contested_old = accepted[over_users[users[owner_entry[accepted]]]]
        contested_new = free[over_users[users[proposals]]]
        quiet_new = free[~over_users[users[proposals]]]
        owner_entry[quiet_new] = pointer[quiet_new]
        playlists = np.concatenate([contested_old, contested_new])
        entries = np.concatenate([owner_entry[contested_old], pointer[contested_new]])
        u = users[entries]
        order = np.lexsort((playlists, -priorities[entries], u))
        u_sorted = u[order]
        first = np.r_[True, u_sorted[1:] != u_sorted[:-1]]
        starts = np.flatnonzero(first)
        rank = np.arange(order.size) - starts[np.cumsum(first) - 1]
        keep = order[rank < cap]
        drop = order[rank >= cap]
        owner_entry[playlists[keep]] = entries[keep]
        rejected = playlists[drop]
        owner_entry[rejected] = -1
        pointer[rejected] = nxt[entries[drop] + 1]
        free = rejected[pointer[rejected] < ends[rejected]]
    owner = np.full(n_playlists, -1, dtype=np.int32)
    has = owner_entry >= 0
    owner[has] = users[owner_entry[has]]
    return owner, rounds


def assign_ownership(
    candidates,
    liked_indptr: np.ndarray,
    liked_playlists: np.ndarray,
    split: np.ndarray,
    cap: int = 100,
    cold: np.ndarray | None = None,
) -> Ownership:
    """Greedy playlist ownership (docs/architecture.md#ownership) on the labeler's ownership candidates.

    Parameters
    ----------
    candidates : :class:`~spotify_assets.label.OwnershipCandidates`, per playlist its
        top-k users by priority ``score / sqrt(s)`` over all scored pairs.
    liked_indptr, liked_playlists, split : the liked pairs and their split codes; a user
        never owns one of its val or test positives (cold users' positives included).
    cap : at most this many playlists per user.
    cold : bool (n_users,), the cold-start users; they own nothing, so that a cold user has
        no training interaction at all (the model sees only its songs). None = no cold users.

    Greedy: highest priority first (ties: lower user id, then lower playlist id); each
    playlist gets at most one owner. Computed exactly by vectorized deferred acceptance
    (see :func:`_greedy_by_proposals`); equals :func:`ownership_reference` on the same
    candidates, and the greedy over all scored pairs whenever ``exhausted == 0``.
    """
    if not isinstance(candidates, OwnershipCandidates):
        raise TypeError(f"candidates must be the labeler's OwnershipCandidates, got {type(candidates).__name__}")
    if cap < 0:
        raise ValueError("cap must be >= 0")
    liked_indptr = np.asarray(liked_indptr, dtype=np.int64)
    _check_csr(liked_indptr, liked_playlists, "liked")
    if split.shape != liked_playlists.shape:
        raise ValueError("split must have one code per liked pair")
    n_users = liked_indptr.size - 1
    cand_playlists, cand_users, cand_priorities = candidates.pairs()
    if cand_users.size and cand_users.max() >= n_users:
        raise ValueError("an ownership candidate's user id is outside the liked matrix")
    indptr = _indptr(np.bincount(cand_playlists, minlength=candidates.n_playlists))
    valid = ~_held_out_mask(cand_users, cand_playlists, liked_indptr, liked_playlists, split, candidates.n_playlists)
    if cold is not None:
        cold = _cold_mask(cold, n_users)
        valid &= ~cold[cand_users]
    owner, rounds = _greedy_by_proposals(indptr, cand_users, cand_priorities, valid, n_users, cap)
    exhausted = int(((owner < 0) & candidates.full).sum()) if cap > 0 else 0
    counts = np.bincount(owner[owner >= 0], minlength=n_users).astype(np.int32)
    return Ownership(owner=owner, owned_counts=counts, exhausted=exhausted, rounds=rounds)


def _cold_mask(cold: np.ndarray, n_users: int) -> np.ndarray:
    cold = np.asarray(cold)
    if cold.dtype != np.bool_ or cold.shape != (n_users,):
        raise ValueError(f"cold must be bool ({n_users},), got {cold.dtype} {cold.shape}")
    return cold


def ownership_reference(
    pair_users: np.ndarray,
    pair_playlists: np.ndarray,
    pair_priorities: np.ndarray,
    liked_indptr: np.ndarray,
    liked_playlists: np.ndarray,
    split: np.ndarray,
    n_playlists: int,
    cap: int = 100,
    cold: np.ndarray | None = None,
) -> np.ndarray:
    """Slow reference: the plain sequential greedy over candidate pairs (e.g. all scored
    pairs, or ``OwnershipCandidates.pairs()``), cold users skipped. Returns owner int32 (n_playlists,)."""
    cold_users = set(np.flatnonzero(cold).tolist()) if cold is not None else set()
    held = set()
    users = _row_ids(np.asarray(liked_indptr))
    for u, j, code in zip(users.tolist(), np.asarray(liked_playlists).tolist(), np.asarray(split).tolist()):
        if code != TRAIN:
            held.add((u, j))
    pairs = sorted(zip((-np.asarray(pair_priorities, dtype=np.float64)).tolist(),
                       np.asarray(pair_users).tolist(), np.asarray(pair_playlists).tolist()))
    owner = np.full(n_playlists, -1, dtype=np.int32)
    counts: dict[int, int] = {}
    for _, u, j in pairs:
        if owner[j] < 0 and counts.get(u, 0) < cap and (u, j) not in held and u not in cold_users:
            owner[j] = u
            counts[u] = counts.get(u, 0) + 1
    return owner


