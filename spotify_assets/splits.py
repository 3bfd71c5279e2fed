"""Splits, ownership and sampling (DESIGN §3), vectorized and seeded (no Dagster imports).

Conventions. Users and playlists are dense matrix-row ids. A user's liked playlists come
from :class:`spotify_assets.labeling.Labels` as CSR (``liked_indptr``, ``liked_playlists``);
every per-pair array here (``split``…) is aligned with ``liked_playlists``. Split codes per
liked pair: 0 train, 1 val, 2 test.

Cold users. A seeded share of the users with positives is *cold*: all their positives are
held out with code TEST and the user is flagged in ``UserSplits.cold`` (and in every eval
batch row), so evaluation reports them as their own segment and training never sees them.
A cold user's positives count as held out everywhere (never owned by that user, never
sampled as its negatives).

Seeds. Every function that draws takes ``seed`` and derives its own stream from
``SeedSequence([seed, STREAM])``, so changing one stage never shifts another's draws; two
calls with the same arguments return identical arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from spotify_assets.labeling import LIKED_SHARE, OwnershipCandidates, liked_counts

TRAIN, VAL, TEST = 0, 1, 2
SPLIT_NAMES = {TRAIN: "train", VAL: "val", TEST: "test"}
_STREAM_SPLIT, _STREAM_COLD, _STREAM_TRIPLETS, _STREAM_EVAL, _STREAM_DOWNSCALE = 11, 12, 13, 14, 15


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


def _row_ids(indptr: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(indptr.size - 1, dtype=np.int64), np.diff(indptr))


def _indptr(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _check_csr(indptr: np.ndarray, values: np.ndarray, name: str) -> None:
    if indptr.ndim != 1 or indptr.size < 1 or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
        raise ValueError(f"{name}_indptr must be non-decreasing CSR pointers starting at 0")
    if int(indptr[-1]) != values.size:
        raise ValueError(f"{name}_indptr ends at {int(indptr[-1])} but there are {values.size} {name} entries")


def _round_half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(np.round(x, 12) + 0.5).astype(np.int64)


# --------------------------------------------------------------------------------------
# verdicts (used by asset checks)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """A validator's answer: ``passed``, the number of offending items, and details for
    asset-check metadata (plain ints/floats/strings). Unpacks as ``(passed, failures)``."""

    passed: bool
    failures: int
    details: dict = field(default_factory=dict)

    def __iter__(self):
        return iter((self.passed, self.failures))


def _verdict(failures: int, **details) -> Verdict:
    return Verdict(passed=failures == 0, failures=int(failures), details=details)


# --------------------------------------------------------------------------------------
# user sampling
# --------------------------------------------------------------------------------------


def downscale_users(n_users: int, share: float, seed: int) -> np.ndarray:
    """Sorted int64 ids of a seeded uniform sample of ``round(share · n_users)`` users
    (at least one when ``share > 0`` and there are users). ``share = 1`` keeps all."""
    if not 0.0 < share <= 1.0:
        raise ValueError("share must be in (0, 1]")
    if n_users < 0:
        raise ValueError("n_users must be non-negative")
    if share == 1.0:
        return np.arange(n_users, dtype=np.int64)
    n_keep = min(n_users, max(1, int(_round_half_up(np.array(share * n_users))))) if n_users else 0
    return np.sort(_rng(seed, _STREAM_DOWNSCALE).choice(n_users, size=n_keep, replace=False)).astype(np.int64)


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
) -> Ownership:
    """Greedy playlist ownership (DESIGN §3) on the labeler's ownership candidates.

    Parameters
    ----------
    candidates : :class:`~spotify_assets.labeling.OwnershipCandidates`, per playlist its
        top-k users by priority ``score / sqrt(s)`` over all scored pairs.
    liked_indptr, liked_playlists, split : the liked pairs and their split codes; a user
        never owns one of its val or test positives (cold users' positives included).
    cap : at most this many playlists per user.

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
    owner, rounds = _greedy_by_proposals(indptr, cand_users, cand_priorities, valid, n_users, cap)
    exhausted = int(((owner < 0) & candidates.full).sum()) if cap > 0 else 0
    counts = np.bincount(owner[owner >= 0], minlength=n_users).astype(np.int32)
    return Ownership(owner=owner, owned_counts=counts, exhausted=exhausted, rounds=rounds)


def ownership_reference(
    pair_users: np.ndarray,
    pair_playlists: np.ndarray,
    pair_priorities: np.ndarray,
    liked_indptr: np.ndarray,
    liked_playlists: np.ndarray,
    split: np.ndarray,
    n_playlists: int,
    cap: int = 100,
) -> np.ndarray:
    """Slow reference: the plain sequential greedy over candidate pairs (e.g. all scored
    pairs, or ``OwnershipCandidates.pairs()``). Returns owner int32 (n_playlists,)."""
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
        if owner[j] < 0 and counts.get(u, 0) < cap and (u, j) not in held:
            owner[j] = u
            counts[u] = counts.get(u, 0) + 1
    return owner


# --------------------------------------------------------------------------------------
# negatives
# --------------------------------------------------------------------------------------


def usable_hard_pools(hard_indptr: np.ndarray, hard_playlists: np.ndarray, owner: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The hard candidate pools without the playlists each user owns: (indptr, playlists)."""
    hard_indptr = np.asarray(hard_indptr, dtype=np.int64)
    _check_csr(hard_indptr, hard_playlists, "hard")
    keep = owner[hard_playlists] != _row_ids(hard_indptr)
    return _indptr(np.bincount(_row_ids(hard_indptr)[keep], minlength=hard_indptr.size - 1)), hard_playlists[keep]


# Sampling runs over blocks of consecutive users holding about ``_BLOCK_PAIRS`` liked pairs
# (a heavier user is a block of its own). Each block draws from its own seeded stream
# ``SeedSequence([seed, stream, block])``, so the draws depend on the seed and the data only
# (not on threads or timing), and every temporary is bounded by the block (and stays in
# cache) instead of growing with all liked pairs.
_BLOCK_PAIRS = 1 << 16
_SPLIT_BLOCK_PAIRS = 1 << 22  # split_users: one key sort per ~4M liked pairs


def _block_rng(seed: int, stream: int, block: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream, block]))


def _user_blocks(liked_indptr: np.ndarray, target: int = _BLOCK_PAIRS) -> np.ndarray:
    """int64 user boundaries ``[0, …, n_users]`` of blocks of about ``target`` liked pairs."""
    n_users = liked_indptr.size - 1
    cuts = np.searchsorted(liked_indptr, np.arange(target, int(liked_indptr[-1]), target, dtype=np.int64))
    return np.unique(np.concatenate([[0], np.clip(cuts, 0, n_users), [n_users]])).astype(np.int64)


def _uniform_below(rng: np.random.Generator, sizes: np.ndarray) -> np.ndarray:
    """int64 draws uniform in ``[0, sizes)`` (same shape; every size >= 1), one float64
    each: ``floor(U · size)`` (a relative bias below ``size / 2**53``)."""
    out = rng.random(np.shape(sizes))
    out *= sizes
    return out.astype(np.int64)


@dataclass(frozen=True)
class _Owned:
    """Owned playlists as CSR by owner: indptr int64 (n_users + 1,), playlists int64
    (n_owned,) ascending within each owner."""

    indptr: np.ndarray
    playlists: np.ndarray

    @classmethod
    def build(cls, owner: np.ndarray, n_users: int) -> _Owned:
        owned = np.flatnonzero(owner >= 0)
        owners = owner[owned]
        if owners.size and int(owners.max()) >= n_users:
            raise ValueError("owner ids outside the user range")
        order = np.argsort(owners, kind="stable")
        return cls(indptr=_indptr(np.bincount(owners, minlength=n_users)), playlists=owned[order])


@dataclass(frozen=True)
class _AllowedSpace:
    """The easy-negative space of a block of users, ``{0..n_playlists-1} \\ (liked ∪ owned)``,
    indexed by rank: rank ``r`` (0-based among the user's allowed playlists) maps to the
    playlist ``x = r + #{i : q_i <= r}`` where ``q_i = e_i - i`` over the user's sorted
    excluded playlists ``e_0 < e_1 < …`` (``q`` is non-decreasing). A uniform rank is a
    uniform allowed playlist: no rejection loop.

    The count ``#{q_i <= r}`` is read from a per-user bucket directory instead of a binary
    search: user ``u`` has ``2**ceil(log2(4 · n_excluded))`` buckets over the rank range
    (``bucket = r >> shift[u]``), so a bucket holds a quarter of a ``q`` on average and the
    count is one directory read plus a scan of the bucket (rarely more than one entry).

    Attributes (users are local to the block): n_allowed int64 (b,); q int64 (n_excluded,),
    the users' lists concatenated; shift, start, base int64 (b,): bucket shift, first ``q``
    and directory offset of each user; directory int64 (buckets + b,): at ``base[u] + k``
    the index of the first ``q`` of user ``u`` in a bucket ``>= k``.
    """

    n_allowed: np.ndarray
    q: np.ndarray
    shift: np.ndarray
    start: np.ndarray
    base: np.ndarray
    directory: np.ndarray

    @classmethod
    def build(cls, liked_indptr: np.ndarray, liked_playlists: np.ndarray, owned: _Owned, u0: int, u1: int,
              n_playlists: int) -> _AllowedSpace:
        """The space of users ``[u0, u1)`` (local ids 0..u1-u0-1)."""
        b = u1 - u0
        local = np.arange(b, dtype=np.int64) * n_playlists
        lo, hi = int(liked_indptr[u0]), int(liked_indptr[u1])
        olo, ohi = int(owned.indptr[u0]), int(owned.indptr[u1])
        keys = np.empty(hi - lo + ohi - olo, dtype=np.int64)
        keys[:hi - lo] = np.repeat(local, np.diff(liked_indptr[u0:u1 + 1]))
        keys[:hi - lo] += liked_playlists[lo:hi]
        keys[hi - lo:] = np.repeat(local, np.diff(owned.indptr[u0:u1 + 1]))
        keys[hi - lo:] += owned.playlists[olo:ohi]
        keys.sort()
        if keys.size > 1:
            repeated = keys[1:] == keys[:-1]  # a train positive may also be owned
            if repeated.any():
                keys = keys[np.r_[True, ~repeated]]
        start = np.searchsorted(keys, np.append(local, b * n_playlists))
        counts = np.diff(start)
        # q = e - rank = key - position - (u · n_playlists - start[u])
        q = keys - np.arange(keys.size) - np.repeat(local - start[:-1], counts)
        log = max(1, int(np.ceil(np.log2(max(n_playlists, 2)))))
        log_buckets = np.minimum(np.ceil(np.log2(np.maximum(4 * counts, 1))).astype(np.int64), log)
        shift = log - log_buckets
        base = _indptr((1 << log_buckets) + 1)
        slots = (q >> np.repeat(shift, counts)) + np.repeat(base[:-1] + 1, counts)
        directory = np.cumsum(np.bincount(slots, minlength=int(base[-1])))
        return cls(n_allowed=n_playlists - counts, q=q, shift=shift, start=start[:-1], base=base[:-1],
                   directory=directory)

    def playlists(self, users: np.ndarray, ranks: np.ndarray) -> np.ndarray:
        """int64 playlists of the given allowed ranks (``0 <= ranks < n_allowed[users]``);
        ``users`` (local ids) broadcasts against ``ranks`` (e.g. (b, 1) against (b, k))."""
        slot = (ranks >> self.shift[users]) + self.base[users]
        lo = self.directory[slot]
        out = ranks + (lo - self.start[users])
        hi = self.directory[slot + 1]
        active = np.flatnonzero(lo < hi)
        if active.size:
            lo, hi, ranks, flat = lo.ravel()[active], hi.ravel()[active], ranks.ravel()[active], out.ravel()
            while active.size:  # bucket scan: one round per entry of the fullest bucket touched
                flat[active] += self.q[lo] <= ranks
                lo += 1
                keep = lo < hi
                if not keep.all():
                    active, lo, hi, ranks = active[keep], lo[keep], hi[keep], ranks[keep]
        return out

    def draw(self, rng: np.random.Generator, users: np.ndarray, k: int | None = None) -> np.ndarray:
        """Uniform allowed playlists (int64): one per entry of ``users`` (local ids), or
        (b, k) when ``k`` is given (k per user)."""
        if k is None:
            return self.playlists(users, _uniform_below(rng, self.n_allowed[users]))
        users = users[:, None]
        return self.playlists(users, _uniform_below(rng, np.broadcast_to(self.n_allowed[users], (users.size, k))))


@dataclass(frozen=True)
class _HardPools:
    """The usable hard pools (hard candidates minus owned playlists) without filtering every
    candidate: a draw from a user's raw pool is rejected when the user owns it, which is
    exact and cheap when the user owns few of its candidates. Users whose raw pool is small
    next to what they own (``size <= 4 · owned + slack``: a draw could be rejected often, or
    the pool could be empty or shorter than ``slack / 2``) get their usable pool listed
    exactly in ``compact``.

    Attributes: indptr (n_users + 1,) int64 and playlists, the raw pools; owner (n_playlists,);
    exact (n_users,) bool; usable (n_users,) int64, the usable size of exact users and the raw
    size of the others (whose usable size is then > 3/4 of it); compact_lo (n_users,) int64
    and compact int64, the listed pools of exact users.
    """

    indptr: np.ndarray
    playlists: np.ndarray
    owner: np.ndarray
    exact: np.ndarray
    usable: np.ndarray
    compact_lo: np.ndarray
    compact: np.ndarray

    @classmethod
    def build(cls, hard_indptr: np.ndarray, hard_playlists: np.ndarray, owner: np.ndarray, owned: _Owned,
              slack: int) -> _HardPools:
        sizes = np.diff(hard_indptr)
        exact = (sizes > 0) & (sizes <= 4 * np.diff(owned.indptr) + slack)
        users = np.flatnonzero(exact)
        lengths = sizes[users]
        entry = np.arange(int(lengths.sum())) + np.repeat(hard_indptr[users] - _indptr(lengths)[:-1], lengths)
        values = hard_playlists[entry].astype(np.int64)
        keep = owner[values] != np.repeat(users, lengths)
        usable_exact = np.bincount(np.repeat(np.arange(users.size), lengths)[keep], minlength=users.size)
        usable = sizes.copy()
        usable[users] = usable_exact
        compact_lo = np.zeros(sizes.size, dtype=np.int64)
        compact_lo[users] = _indptr(usable_exact)[:-1]
        return cls(indptr=hard_indptr, playlists=hard_playlists, owner=owner, exact=exact, usable=usable,
                   compact_lo=compact_lo, compact=values[keep])

    def draw(self, rng: np.random.Generator, users: np.ndarray, k: int | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """One uniform draw per entry of ``users`` (global ids, each with a non-empty usable
        pool), or (b, k) draws when ``k`` is given: (playlists int64, rejected bool);
        rejected draws (owned by the user) must be redrawn."""
        exact = self.exact[users]
        if k is not None or not exact.any():
            column = users if k is None else users[:, None]
            offset = _uniform_below(rng, self.usable[column] if k is None
                                    else np.broadcast_to(self.usable[column], (users.size, k)))
            if k is None or not exact.any():
                offset += self.indptr[column]
                out = self.playlists[offset].astype(np.int64)
                return out, self.owner[out] == column
            out = self.playlists[np.where(exact[:, None], 0, offset + self.indptr[column])].astype(np.int64)
            out[exact] = self.compact[self.compact_lo[column[exact]] + offset[exact]]
            return out, (self.owner[out] == column) & ~exact[:, None]
        offset = _uniform_below(rng, self.usable[users])
        out = np.empty(users.size, dtype=np.int64)
        out[exact] = self.compact[self.compact_lo[users[exact]] + offset[exact]]
        raw = ~exact
        out[raw] = self.playlists[self.indptr[users[raw]] + offset[raw]]
        rejected = np.zeros(users.size, dtype=bool)
        rejected[raw] = self.owner[out[raw]] == users[raw]
        return out, rejected

    def draw_usable(self, rng: np.random.Generator, users: np.ndarray, k: int | None = None) -> np.ndarray:
        """Like :meth:`draw`, redrawing the rejected entries until none is left."""
        out, rejected = self.draw(rng, users, k)
        redo = np.flatnonzero(rejected)
        if redo.size:
            flat, cell_users = out.ravel(), np.broadcast_to(users[:, None] if k else users, out.shape).ravel()
            while redo.size:  # each round keeps < 1/4 of the previous (see the class docstring)
                flat[redo], rejected = self.draw(rng, cell_users[redo])
                redo = redo[rejected]
        return out


def _check_easy_possible(liked_indptr: np.ndarray, liked_playlists: np.ndarray, owned: _Owned, users: np.ndarray,
                         n_playlists: int, need: int) -> None:
    """Raise unless every user in ``users`` has at least ``need`` allowed (neither liked nor
    owned) playlists. Liked and owned may overlap, so only candidates are checked exactly."""
    users = np.unique(users)
    upper = np.diff(liked_indptr)[users] + np.diff(owned.indptr)[users]
    candidates = users[upper > n_playlists - need]
    short = [int(u) for u in candidates
             if n_playlists - np.union1d(liked_playlists[liked_indptr[u]:liked_indptr[u + 1]],
                                         owned.playlists[owned.indptr[u]:owned.indptr[u + 1]]).size < need]
    if short:
        raise ValueError(f"{len(short)} users like or own all but fewer than {need} playlists "
                         f"(e.g. user {short[0]}): no easy negatives exist for them")


@dataclass(frozen=True)
class TripletSample:
    """triplets : int64 (N, 3) rows (user, positive, negative), grouped per train positive
    as ``n_hard`` hard rows then ``n_easy`` easy rows. n_fallback : hard slots filled with
    an easy negative because the user's usable hard pool was empty. Unpacks as
    ``(triplets, n_fallback)``."""

    triplets: np.ndarray
    n_fallback: int

    def __iter__(self):
        return iter((self.triplets, self.n_fallback))


def _check_sampling_inputs(liked_indptr, liked_playlists, split, hard_indptr, hard_playlists, owner, n_playlists):
    liked_indptr = np.asarray(liked_indptr, dtype=np.int64)
    _check_csr(liked_indptr, liked_playlists, "liked")
    hard_indptr = np.asarray(hard_indptr, dtype=np.int64)
    _check_csr(hard_indptr, hard_playlists, "hard")
    if hard_indptr.size != liked_indptr.size:
        raise ValueError("hard_indptr and liked_indptr must describe the same users")
    owner = np.asarray(owner)
    if owner.shape != (n_playlists,):
        raise ValueError(f"owner must have shape ({n_playlists},)")
    split = np.asarray(split)
    if split.shape != np.shape(liked_playlists):
        raise ValueError("split must have one code per liked pair")
    return liked_indptr, np.asarray(liked_playlists), split, hard_indptr, np.asarray(hard_playlists), owner


def sample_triplets(
    liked_indptr: np.ndarray,
    liked_playlists: np.ndarray,
    split: np.ndarray,
    hard_indptr: np.ndarray,
    hard_playlists: np.ndarray,
    owner: np.ndarray,
    n_playlists: int,
    seed: int,
    n_hard: int = 2,
    n_easy: int = 2,
) -> TripletSample:
    """BPR training triplets (user, positive, negative), int64 (N, 3).

    Parameters
    ----------
    liked_indptr : (n_users + 1,) int64 CSR pointers; liked_playlists : int (n_liked,);
        split : int8 (n_liked,) codes (train positives are code TRAIN).
    hard_indptr : (n_users + 1,) int64; hard_playlists : int, each user's hard candidates.
    owner : int (n_playlists,) owning user or -1.
    seed : drives every draw (same seed, same bytes).

    Per train positive: ``n_hard`` negatives drawn uniformly (independently, so two may
    coincide) from the user's hard candidates minus the playlists it owns, and ``n_easy``
    uniformly over the playlists the user neither likes (any split) nor owns. A user whose
    usable hard pool is empty gets easy negatives in those slots instead (counted in
    ``n_fallback``). Hard candidates are never liked (the labeler excludes them).

    Returns
    -------
    :class:`TripletSample`; ``triplets`` has ``(n_hard + n_easy) · n_train`` rows in liked-pair
    order. Vectorized over blocks of users (see ``_BLOCK_PAIRS``): easy draws are uniform
    ranks mapped into each user's allowed space (:class:`_AllowedSpace`), hard draws index
    the raw pools and redraw the rare owned pick (:class:`_HardPools`).
    """
    liked_indptr, liked_playlists, split, hard_indptr, hard_playlists, owner = _check_sampling_inputs(
        liked_indptr, liked_playlists, split, hard_indptr, hard_playlists, owner, n_playlists)
    if n_hard < 0 or n_easy < 0:
        raise ValueError("n_hard and n_easy must be >= 0")
    n_users = liked_indptr.size - 1
    per = n_hard + n_easy
    train = split == TRAIN
    train_before = np.concatenate([[0], np.cumsum(train, dtype=np.int64)])[liked_indptr]  # (n_users + 1,)
    owned = _Owned.build(owner, n_users)
    pools = _HardPools.build(hard_indptr, hard_playlists, owner, owned, slack=0)
    no_pool = pools.usable == 0
    easy_users = np.flatnonzero((np.diff(train_before) > 0) & (no_pool | (n_easy > 0)))
    if per:
        _check_easy_possible(liked_indptr, liked_playlists, owned, easy_users, n_playlists, 1)
    triplets = np.empty((int(train_before[-1]), per, 3), dtype=np.int64)
    bounds = _user_blocks(liked_indptr)
    for block, (u0, u1) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist())):
        r0, r1 = int(train_before[u0]), int(train_before[u1])
        if r0 == r1 or per == 0:
            continue
        rng = _block_rng(seed, _STREAM_TRIPLETS, block)
        lo, hi = int(liked_indptr[u0]), int(liked_indptr[u1])
        local = np.repeat(np.arange(u1 - u0), np.diff(train_before[u0:u1 + 1]))  # (b,) local user per row
        users = local + u0
        out = triplets[r0:r1]  # a view: the block is written in place, never copied
        out[:, :, 0] = users[:, None]
        out[:, :, 1] = liked_playlists[lo:hi][train[lo:hi]][:, None]
        space = _AllowedSpace.build(liked_indptr, liked_playlists, owned, u0, u1, n_playlists)
        fallback = no_pool[users]
        if n_hard:
            with_pool = np.flatnonzero(~fallback)
            if with_pool.size == users.size:
                out[:, :n_hard, 2] = pools.draw_usable(rng, users, n_hard)
            else:
                out[with_pool, :n_hard, 2] = pools.draw_usable(rng, users[with_pool], n_hard)
                without = np.flatnonzero(fallback)
                out[without, :n_hard, 2] = space.draw(rng, local[without], n_hard)
        if n_easy:
            out[:, n_hard:, 2] = space.draw(rng, local, n_easy)
    return TripletSample(triplets=triplets.reshape(-1, 3),
                         n_fallback=int(np.diff(train_before)[no_pool].sum()) * n_hard)


def _later_duplicates(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the cells of ``values`` (b, k), ints >= 0, that repeat a value held
    by an earlier column of their row. One row sort of packed keys ``value · k' + col``
    (k' = next power of two >= k), int32 when they fit."""
    b, k = values.shape
    col_bits = max(1, (k - 1).bit_length())
    small = b and int(values.max(initial=0)) < (1 << (31 - col_bits))
    keys = values.astype(np.int32 if small else np.int64)
    keys <<= col_bits
    keys |= np.arange(k, dtype=keys.dtype)
    keys.sort(axis=1)
    value_of = keys >> col_bits
    rows, at = np.nonzero(value_of[:, 1:] == value_of[:, :-1])
    return rows, (keys[rows, at + 1] & ((1 << col_bits) - 1)).astype(np.int64)


def _make_distinct(values: np.ndarray, redraw) -> None:
    """Redraw later duplicates of each row of ``values`` (b, k) in place until every row is
    distinct; ``redraw(rows, cols) -> new values`` draws from the cells' distribution.
    Leading cells that are already distinct and must stay (a row's hard negatives) are never
    redrawn, as only the later of two equal cells is. Each round re-examines only the rows
    that changed. The result is a uniform ordered sample without replacement of the redrawn
    cells' distribution (the procedure only compares values, so it is invariant under
    relabelling the pool)."""
    rows = np.arange(values.shape[0])
    while rows.size:
        r, c = _later_duplicates(values[rows])
        rows_hit = rows[r]
        values[rows_hit, c] = redraw(rows_hit, c)
        rows = np.unique(rows_hit)


@dataclass(frozen=True)
class EvalBatch:
    """users (B,), positives (B,), negatives (B, n_negatives) int64; ``cold`` (B,) flags
    rows of cold users. Negatives are distinct within a row, never liked by the user in any
    split, never owned by it (so never the positive)."""

    users: np.ndarray
    positives: np.ndarray
    negatives: np.ndarray
    cold: np.ndarray
    n_hard_short: int = 0


def _hard_rows(rng: np.random.Generator, pools: _HardPools, users: np.ndarray, want: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Hard part of a block of eval rows (global ``users`` (b,)): (values int64 (b, want),
    count int64 (b,)); row i holds ``count[i] = min(want, usable pool)`` distinct hard
    negatives, uniform without replacement, in its first columns (the rest is -1)."""
    b = users.size
    values = np.full((b, want), -1, dtype=np.int64)
    usable = pools.usable[users]
    count = np.minimum(usable, want)
    if want == 0:
        return values, count
    # small listed pools: a random permutation of the whole pool, first ``want`` kept
    listed = pools.exact[users] & (usable <= 2 * want)
    small = np.flatnonzero(listed)
    if small.size:
        lengths = usable[small]
        row = np.repeat(np.arange(small.size), lengths)
        rank = np.arange(row.size) - np.repeat(_indptr(lengths)[:-1], lengths)
        order = np.lexsort((rng.random(row.size), row))
        source = pools.compact[np.repeat(pools.compact_lo[users[small]], lengths) + rank][order]
        take = rank < want
        values[small[row[take]], rank[take]] = source[take]
    # larger pools: independent draws, owned ones and later duplicates redrawn
    large = np.flatnonzero(~listed & (usable > 0))
    if large.size:
        block = pools.draw_usable(rng, users[large], want)
        _make_distinct(block, lambda r, c: pools.draw_usable(rng, users[large[r]]))
        values[large] = block
    return values, count


def sample_eval_batches(
    liked_indptr: np.ndarray,
    liked_playlists: np.ndarray,
    split: np.ndarray,
    which: int,
    hard_indptr: np.ndarray,
    hard_playlists: np.ndarray,
    owner: np.ndarray,
    cold_users: np.ndarray,
    n_playlists: int,
    seed: int,
    n_negatives: int = 50,
) -> EvalBatch:
    """1 positive + ``n_negatives`` negatives per positive of split ``which`` (VAL or TEST).

    Parameters
    ----------
    liked_indptr : (n_users + 1,) int64; liked_playlists : int (n_liked,); split : int8
        (n_liked,); hard_indptr : (n_users + 1,) int64; hard_playlists : int; owner : int
        (n_playlists,), -1 = no owner; cold_users : bool (n_users,); seed drives every draw.

    Half the negatives (``n_negatives // 2``) are hard: drawn without replacement from the
    user's hard candidates minus its owned playlists (the whole pool when it is smaller;
    ``n_hard_short`` counts the hard slots that fell back to easy). The rest are easy:
    uniform over playlists the user neither likes (any split) nor owns, distinct within the
    row and from the row's hard negatives. Rows are ordered like the liked pairs.

    Returns
    -------
    :class:`EvalBatch` (users, positives int64 (B,), negatives int64 (B, n_negatives)).
    Vectorized over blocks of users: hard draws first (then fixed), easy draws as uniform
    allowed ranks (:class:`_AllowedSpace`); duplicates are found by one row sort of packed
    keys and only they are redrawn.
    """
    if which not in (VAL, TEST):
        raise ValueError("which must be VAL or TEST")
    if n_negatives < 0:
        raise ValueError("n_negatives must be >= 0")
    liked_indptr, liked_playlists, split, hard_indptr, hard_playlists, owner = _check_sampling_inputs(
        liked_indptr, liked_playlists, split, hard_indptr, hard_playlists, owner, n_playlists)
    n_users = liked_indptr.size - 1
    chosen = split == which
    before = np.concatenate([[0], np.cumsum(chosen, dtype=np.int64)])[liked_indptr]  # (n_users + 1,)
    users = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(before))
    positives = liked_playlists[chosen].astype(np.int64)
    want = n_negatives // 2
    owned = _Owned.build(owner, n_users)
    _check_easy_possible(liked_indptr, liked_playlists, owned, np.flatnonzero(np.diff(before)), n_playlists,
                         n_negatives)
    pools = _HardPools.build(hard_indptr, hard_playlists, owner, owned, slack=2 * want)
    negatives = np.empty((users.size, n_negatives), dtype=np.int64)
    short = 0
    bounds = _user_blocks(liked_indptr)
    for block, (u0, u1) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist())):
        r0, r1 = int(before[u0]), int(before[u1])
        if r0 == r1 or n_negatives == 0:
            continue
        rng = _block_rng(seed, _STREAM_EVAL + 100 * which, block)
        u = users[r0:r1]
        hard, count = _hard_rows(rng, pools, u, want)
        short += int((want - count).sum())
        space = _AllowedSpace.build(liked_indptr, liked_playlists, owned, u0, u1, n_playlists)
        local = u - u0
        values = np.empty((u.size, n_negatives), dtype=np.int64)
        values[:, :want] = hard
        values[:, want:] = space.draw(rng, local, n_negatives - want)
        short_rows = np.flatnonzero(count < want)  # their missing hard slots take easy negatives
        if short_rows.size:
            r, c = np.nonzero(np.arange(want) >= count[short_rows, None])
            values[short_rows[r], c] = space.draw(rng, local[short_rows[r]])
        _make_distinct(values, lambda r, c: space.draw(rng, local[r]))
        negatives[r0:r1] = values
    return EvalBatch(users=users, positives=positives, negatives=negatives, cold=np.asarray(cold_users)[users],
                     n_hard_short=short)



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
                          candidates: OwnershipCandidates | None = None) -> Verdict:
    """Owners are valid user ids; no user owns more than ``cap``; no owner has the playlist
    among its val/test positives; with ``candidates``, every owner is a candidate of its
    playlist."""
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
    return _verdict(out_of_range + over_cap + held_out + not_candidate, owned_playlists=int(owned.size),
                    unowned_playlists=int(n_playlists - owned.size), owners_out_of_range=out_of_range,
                    users_over_cap=over_cap, owned_held_out_positives=held_out, owners_not_candidates=not_candidate,
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



# --------------------------------------------------------------------------------------
# slow per-user references (tests compare the vectorized samplers with these)
# --------------------------------------------------------------------------------------


def _user_sets(liked_indptr, liked_playlists, owner, n_users):
    liked = [set(liked_playlists[liked_indptr[u]:liked_indptr[u + 1]].tolist()) for u in range(n_users)]
    owned: list[set[int]] = [set() for _ in range(n_users)]
    for j, o in enumerate(owner.tolist()):
        if o >= 0:
            owned[o].add(j)
    return liked, owned


def triplets_reference(liked_indptr, liked_playlists, split, hard_indptr, hard_playlists, owner, n_playlists, seed,
                       n_hard: int = 2, n_easy: int = 2) -> TripletSample:
    """Per-user loop with the same rules as :func:`sample_triplets` (different draws)."""
    rng = np.random.default_rng(seed)
    n_users = len(liked_indptr) - 1
    liked, owned = _user_sets(liked_indptr, liked_playlists, owner, n_users)
    rows, fallback = [], 0
    for u in range(n_users):
        pool = [j for j in hard_playlists[hard_indptr[u]:hard_indptr[u + 1]].tolist() if j not in owned[u]]
        allowed = [j for j in range(n_playlists) if j not in liked[u] and j not in owned[u]]
        for i in range(liked_indptr[u], liked_indptr[u + 1]):
            if split[i] != TRAIN:
                continue
            for slot in range(n_hard + n_easy):
                if slot < n_hard and pool:
                    neg = pool[rng.integers(len(pool))]
                else:
                    fallback += slot < n_hard
                    neg = allowed[rng.integers(len(allowed))]
                rows.append((u, int(liked_playlists[i]), neg))
    return TripletSample(np.array(rows, dtype=np.int64).reshape(-1, 3), fallback)


def eval_batches_reference(liked_indptr, liked_playlists, split, which, hard_indptr, hard_playlists, owner, cold_users,
                           n_playlists, seed, n_negatives: int = 50) -> EvalBatch:
    """Per-row loop with the same rules as :func:`sample_eval_batches` (different draws)."""
    rng = np.random.default_rng(seed)
    n_users = len(liked_indptr) - 1
    liked, owned = _user_sets(liked_indptr, liked_playlists, owner, n_users)
    users, positives, negatives = [], [], []
    want_hard = n_negatives // 2
    for u in range(n_users):
        pool = [j for j in hard_playlists[hard_indptr[u]:hard_indptr[u + 1]].tolist() if j not in owned[u]]
        allowed = [j for j in range(n_playlists) if j not in liked[u] and j not in owned[u]]
        for i in range(liked_indptr[u], liked_indptr[u + 1]):
            if split[i] != which:
                continue
            hard = list(rng.choice(pool, size=min(want_hard, len(pool)), replace=False)) if pool else []
            rest = [j for j in allowed if j not in set(hard)]
            easy = list(rng.choice(rest, size=n_negatives - len(hard), replace=False))
            users.append(u)
            positives.append(int(liked_playlists[i]))
            negatives.append([int(x) for x in hard + easy])
    return EvalBatch(np.array(users, dtype=np.int64), np.array(positives, dtype=np.int64),
                     np.array(negatives, dtype=np.int64).reshape(-1, n_negatives),
                     np.asarray(cold_users)[np.array(users, dtype=np.int64)] if users else np.zeros(0, bool))


def feedback_triplets(users: np.ndarray, playlists: np.ndarray, negative_indptr: np.ndarray,
                      negatives: np.ndarray, per_positive: int) -> np.ndarray:
    """BPR triplets from feedback: (user, liked, shown-not-liked) int64 (N, 3).

    users, playlists : int64 (n,) feedback positives; negatives per positive as CSR
    (negative_indptr int64 (n+1,)). Each positive contributes its first ``per_positive``
    negatives (the shown list's order is the service's ranking: the ones ranked above or beside
    the liked playlist are the most informative); positives without negatives contribute none.
    """
    negative_indptr = np.asarray(negative_indptr, np.int64)
    lengths = np.diff(negative_indptr)
    row = np.repeat(np.arange(lengths.size), lengths)
    rank = np.arange(negatives.size) - negative_indptr[row]
    take = rank < per_positive
    row = row[take]
    return np.stack([np.asarray(users, np.int64)[row], np.asarray(playlists, np.int64)[row],
                     np.asarray(negatives, np.int64)[take]], axis=1).reshape(-1, 3)
