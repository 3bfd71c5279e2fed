"""Splits, ownership and sampling (DESIGN §3), vectorized and seeded (no Dagster imports).

Conventions: users and playlists are dense matrix-row ids. A user's liked playlists come
from :class:`spotify_assets.labeling.Labels` (CSR ``liked_indptr`` / ``liked_playlists``).
Split codes per liked pair: 0 train, 1 val, 2 test. Cold users hold out *all* their
positives as test (flagged, so evaluation can report them as their own segment).

Every function that draws takes ``seed`` and derives its own stream from
``SeedSequence([seed, STREAM])``, so changing one stage never shifts another's draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TRAIN, VAL, TEST = 0, 1, 2
_STREAM_SPLIT, _STREAM_COLD, _STREAM_TRIPLETS, _STREAM_EVAL = 11, 12, 13, 14


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


def _row_ids(indptr: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(indptr.size - 1, dtype=np.int64), np.diff(indptr))


# --------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserSplits:
    """split : int8 per liked pair (aligned with liked_playlists); cold : bool per user."""

    split: np.ndarray
    cold: np.ndarray


def split_sizes(n_positives: np.ndarray, fractions: tuple[float, float, float] = (0.7, 0.2, 0.1),
                min_positives: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n_train, n_val, n_test) per user. Users with fewer than ``min_positives`` keep all in
    train; others get ``max(1, round(f_val·n))`` val, ``max(1, round(f_test·n))`` test and
    the rest train (so 5 positives -> 3/1/1)."""
    n = np.asarray(n_positives, dtype=np.int64)
    eligible = n >= min_positives
    n_val = np.where(eligible, np.maximum(1, np.rint(fractions[1] * n)), 0).astype(np.int64)
    n_test = np.where(eligible, np.maximum(1, np.rint(fractions[2] * n)), 0).astype(np.int64)
    return n - n_val - n_test, n_val, n_test


def split_users(
    liked_indptr: np.ndarray,
    seed: int,
    cold_share: float = 0.05,
    min_positives: int = 5,
    fractions: tuple[float, float, float] = (0.7, 0.2, 0.1),
) -> UserSplits:
    """Assign each liked pair to train/val/test.

    liked_indptr : (n_users + 1,) int64 CSR pointers of the liked pairs.
    A share ``cold_share`` of the users with at least one positive (exactly
    ``round(cold_share · n)``, seeded) is cold: all positives test. The others shuffle
    their positives (seeded) and split them by :func:`split_sizes`.
    """
    if not 0.0 <= cold_share < 1.0:
        raise ValueError("cold_share must be in [0, 1)")
    if abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError("fractions must sum to 1")
    n_users = liked_indptr.size - 1
    counts = np.diff(liked_indptr)
    with_positives = np.flatnonzero(counts > 0)
    cold = np.zeros(n_users, dtype=bool)
    n_cold = int(round(cold_share * with_positives.size))
    if n_cold:
        cold[_rng(seed, _STREAM_COLD).choice(with_positives, size=n_cold, replace=False)] = True
    users = _row_ids(liked_indptr)
    # a random rank within each user's positives
    keys = _rng(seed, _STREAM_SPLIT).random(users.size)
    order = np.lexsort((keys, users))
    rank = np.empty(users.size, dtype=np.int64)
    rank[order] = np.arange(users.size) - liked_indptr[users[order]]
    n_train, n_val, _ = split_sizes(counts, fractions, min_positives)
    split = np.where(rank < n_train[users], TRAIN, np.where(rank < (n_train + n_val)[users], VAL, TEST)).astype(np.int8)
    split[cold[users]] = TEST
    return UserSplits(split=split, cold=cold)


def check_no_split_overlap(users: np.ndarray, playlists: np.ndarray, split: np.ndarray) -> tuple[bool, int]:
    """Each (user, playlist) pair carries exactly one split: returns (ok, duplicated pairs)."""
    keys = users.astype(np.int64) * (int(playlists.max(initial=0)) + 1) + playlists
    unique = np.unique(keys).size
    return unique == keys.size, int(keys.size - unique)


# --------------------------------------------------------------------------------------
# ownership
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ownership:
    """owner : int32 (n_playlists,), the owning user or -1; owned_counts : int32 per user."""

    owner: np.ndarray
    owned_counts: np.ndarray
    used_sequential_greedy: bool

    @property
    def unowned(self) -> int:
        return int((self.owner < 0).sum())


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0 = equal, → 1 = concentrated)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    if x.size == 0 or x.sum() == 0:
        return 0.0
    n = x.size
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


def assign_ownership(
    users: np.ndarray,
    playlists: np.ndarray,
    scores: np.ndarray,
    split: np.ndarray,
    s: np.ndarray,
    n_playlists: int,
    cap: int = 100,
) -> Ownership:
    """Greedy ownership over train positives, highest priority ``score / sqrt(s)`` first.

    Candidates are the (user, playlist) train positives: a user owns playlists they like,
    so an owned playlist is never a val/test positive of its owner, and every negative
    (never liked) is never owned. Each playlist gets at most one owner, each user at most
    ``cap`` playlists. Ties: lower user id, then lower playlist id.

    When no user would exceed the cap, greedy equals "each playlist to its best candidate",
    computed with one sort; otherwise the exact sequential greedy runs over the sorted pairs.
    """
    n_users = s.size
    train = split == TRAIN
    u, j = users[train].astype(np.int64), playlists[train].astype(np.int64)
    priority = scores[train] / np.sqrt(s[u])
    order = np.lexsort((j, u, -priority))
    u, j = u[order], j[order]
    owner = np.full(n_playlists, -1, dtype=np.int32)
    # first occurrence of each playlist in priority order = its best candidate
    _, first = np.unique(j, return_index=True)
    owner[j[first]] = u[first]
    counts = np.bincount(owner[owner >= 0], minlength=n_users)
    sequential = bool(counts.max(initial=0) > cap)
    if sequential:
        owner[:] = -1
        counts = np.zeros(n_users, dtype=np.int64)
        for user, playlist in zip(u.tolist(), j.tolist()):
            if owner[playlist] < 0 and counts[user] < cap:
                owner[playlist] = user
                counts[user] += 1
    return Ownership(owner=owner, owned_counts=counts.astype(np.int32), used_sequential_greedy=sequential)


def ownership_reference(users, playlists, scores, split, s, n_playlists, cap=100) -> np.ndarray:
    """Slow reference: the plain sequential greedy."""
    pairs = [
        (-(scores[i] / np.sqrt(s[users[i]])), int(users[i]), int(playlists[i]))
        for i in range(users.size) if split[i] == TRAIN
    ]
    pairs.sort()
    owner = np.full(n_playlists, -1, dtype=np.int32)
    counts = np.zeros(s.size, dtype=np.int64)
    for _, user, playlist in pairs:
        if owner[playlist] < 0 and counts[user] < cap:
            owner[playlist] = user
            counts[user] += 1
    return owner


# --------------------------------------------------------------------------------------
# negatives
# --------------------------------------------------------------------------------------


def _pair_keys(users: np.ndarray, playlists: np.ndarray, n_playlists: int) -> np.ndarray:
    return users.astype(np.int64) * n_playlists + playlists.astype(np.int64)


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if sorted_keys.size == 0:
        return np.zeros(keys.shape, dtype=bool)
    pos = np.searchsorted(sorted_keys, keys)
    pos[pos == sorted_keys.size] = 0
    return sorted_keys[pos] == keys


def _easy(rng: np.random.Generator, users: np.ndarray, n_playlists: int, excluded: np.ndarray) -> np.ndarray:
    """One uniform playlist per entry of ``users`` that is not in ``excluded`` (sorted pair
    keys): rejection sampling, redrawing only the rejected entries."""
    out = rng.integers(0, n_playlists, size=users.size)
    bad = _contains(excluded, _pair_keys(users, out, n_playlists))
    for _ in range(1000):
        if not bad.any():
            return out
        idx = np.flatnonzero(bad)
        out[idx] = rng.integers(0, n_playlists, size=idx.size)
        bad[idx] = _contains(excluded, _pair_keys(users[idx], out[idx], n_playlists))
    raise RuntimeError("easy-negative sampling did not converge (a user likes almost every playlist)")


def _hard(rng: np.random.Generator, users: np.ndarray, hard_indptr: np.ndarray, hard_playlists: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """One uniform draw from each user's hard pool; returns (playlists, has_pool mask)."""
    lo = hard_indptr[users]
    size = hard_indptr[users + 1] - lo
    has = size > 0
    pick = lo + np.floor(rng.random(users.size) * np.maximum(size, 1)).astype(np.int64)
    out = np.where(has, hard_playlists[np.minimum(pick, max(hard_playlists.size - 1, 0))] if hard_playlists.size else -1, -1)
    return out.astype(np.int64), has


def _excluded_keys(liked_indptr: np.ndarray, liked_playlists: np.ndarray, owner: np.ndarray,
                   n_playlists: int) -> np.ndarray:
    """Sorted keys of every liked or owned (user, playlist) pair (duplicates are harmless
    for the membership test; a sort is much cheaper than numpy's hash-based union)."""
    owned = np.flatnonzero(owner >= 0)
    return np.sort(np.concatenate([
        _pair_keys(_row_ids(liked_indptr), liked_playlists, n_playlists),
        _pair_keys(owner[owned], owned, n_playlists),
    ]))


def liked_keys(liked_indptr: np.ndarray, liked_playlists: np.ndarray, n_playlists: int) -> np.ndarray:
    """Sorted int64 keys ``user · n_playlists + playlist`` of every liked pair."""
    return np.sort(_pair_keys(_row_ids(liked_indptr), liked_playlists, n_playlists))


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
) -> tuple[np.ndarray, int]:
    """Training triplets (user, positive, negative) as int64 (N, 3).

    Per train positive: ``n_hard`` negatives uniform from the user's hard pool and
    ``n_easy`` uniform over playlists the user neither likes (any split) nor owns. A user
    with an empty hard pool gets easy negatives instead (the count is returned).
    """
    rng = _rng(seed, _STREAM_TRIPLETS)
    users_all = _row_ids(liked_indptr)
    train = split == TRAIN
    users = users_all[train]
    positives = liked_playlists[train].astype(np.int64)
    excluded = _excluded_keys(liked_indptr, liked_playlists, owner, n_playlists)
    rep_users = np.repeat(users, n_hard + n_easy)
    rep_pos = np.repeat(positives, n_hard + n_easy)
    negatives = np.empty(rep_users.size, dtype=np.int64)
    slot = np.tile(np.arange(n_hard + n_easy), users.size)
    hard_slot = slot < n_hard
    hard_draw, has_pool = _hard(rng, rep_users[hard_slot], hard_indptr, hard_playlists)
    negatives[hard_slot] = hard_draw
    # hard pools never contain liked playlists; owned ones are liked, so excluded too
    need_easy = ~hard_slot
    fallback = np.zeros(rep_users.size, dtype=bool)
    fallback[np.flatnonzero(hard_slot)[~has_pool]] = True
    need_easy |= fallback
    negatives[need_easy] = _easy(rng, rep_users[need_easy], n_playlists, excluded)
    return np.stack([rep_users, rep_pos, negatives], axis=1), int(fallback.sum())


def _repeats(values: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """Boolean (b, k): cells whose value already occurs earlier in the row, where fixed cells
    count as earlier than redrawable ones (so a fixed cell is never flagged)."""
    # one stable single-key sort per row: value first, fixed cells before redrawable ones
    key = values.astype(np.int64) * 2 + (~fixed)
    order = np.argsort(key, axis=1, kind="stable")
    sorted_values = np.take_along_axis(values, order, axis=1)
    repeat_sorted = np.zeros(values.shape, dtype=bool)
    repeat_sorted[:, 1:] = sorted_values[:, 1:] == sorted_values[:, :-1]
    repeat = np.zeros(values.shape, dtype=bool)
    np.put_along_axis(repeat, order, repeat_sorted, axis=1)
    return repeat & ~fixed


def _redraw_duplicates(values: np.ndarray, redraw, redrawable: np.ndarray | None = None,
                       max_rounds: int = 10_000) -> np.ndarray:
    """Make each row of ``values`` (b, k) distinct by redrawing the later duplicates only.

    redraw(rows, cols) -> new values for those cells; ``redrawable`` (b, k) marks the cells
    that may change (others are fixed and win over redrawable duplicates). After the first
    pass only the rows that still hold a repeat are examined again.
    """
    values = values.copy()
    fixed = np.zeros(values.shape, dtype=bool) if redrawable is None else ~redrawable
    rows = np.arange(values.shape[0])
    for _ in range(max_rounds):
        repeat = _repeats(values[rows], fixed[rows])
        bad_rows = repeat.any(axis=1)
        if not bad_rows.any():
            return values
        rows, repeat = rows[bad_rows], repeat[bad_rows]
        r, c = np.nonzero(repeat)
        values[rows[r], c] = redraw(rows[r], c)
    raise RuntimeError("could not draw distinct values: the pool is too small")


@dataclass(frozen=True)
class EvalBatch:
    """users (B,), positives (B,), negatives (B, n_negatives) int64; ``cold`` flags rows of
    cold users; negatives are distinct within a row."""

    users: np.ndarray
    positives: np.ndarray
    negatives: np.ndarray
    cold: np.ndarray


def sample_eval_batch(
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
    """1 positive + ``n_negatives`` negatives (half hard, half easy) per positive of split
    ``which`` (VAL or TEST). Hard negatives are drawn without replacement from the pool
    (all of it when smaller); the remainder is easy, distinct, never liked or owned."""
    rng = _rng(seed, _STREAM_EVAL + 100 * which)
    users_all = _row_ids(liked_indptr)
    rows = split == which
    users = users_all[rows]
    positives = liked_playlists[rows].astype(np.int64)
    excluded = _excluded_keys(liked_indptr, liked_playlists, owner, n_playlists)
    b = users.size
    want_hard = n_negatives // 2
    negatives = np.full((b, n_negatives), -1, dtype=np.int64)
    # hard: distinct offsets into each user's pool; the whole pool when it is small
    pool_lo = hard_indptr[users]
    pool_size = hard_indptr[users + 1] - pool_lo
    small = pool_size <= want_hard
    offsets = np.broadcast_to(np.arange(want_hard), (b, want_hard)).copy()
    big = np.flatnonzero(~small)
    if big.size:
        sizes = pool_size[big][:, None]
        offsets[big] = np.floor(rng.random((big.size, want_hard)) * sizes).astype(np.int64)
        offsets[big] = _redraw_duplicates(
            offsets[big], lambda r, c: np.floor(rng.random(r.size) * sizes[r, 0]).astype(np.int64)
        )
    valid = np.arange(want_hard)[None, :] < np.minimum(pool_size, want_hard)[:, None]
    if hard_playlists.size:
        hard = hard_playlists[np.where(valid, pool_lo[:, None] + offsets, 0)]
        negatives[:, :want_hard] = np.where(valid, hard, -1)
    # easy: the remaining slots, uniform over playlists neither liked nor owned, distinct per row
    missing = negatives < 0
    r, c = np.nonzero(missing)
    negatives[r, c] = _easy(rng, users[r], n_playlists, excluded)
    negatives = _redraw_duplicates(
        negatives, lambda r, c: _easy(rng, users[r], n_playlists, excluded), redrawable=missing
    )
    return EvalBatch(users=users, positives=positives, negatives=negatives, cold=cold_users[users])


# --------------------------------------------------------------------------------------
# validators (used by asset checks; return (ok, offending count))
# --------------------------------------------------------------------------------------


def check_triplets_valid(triplets: np.ndarray, liked_indptr: np.ndarray, liked_playlists: np.ndarray,
                         split: np.ndarray, owner: np.ndarray, n_playlists: int) -> tuple[bool, int]:
    """Every positive is a train positive of its user; every negative is neither liked nor owned."""
    users = _row_ids(liked_indptr)
    train_keys = np.sort(_pair_keys(users[split == TRAIN], liked_playlists[split == TRAIN], n_playlists))
    all_liked = liked_keys(liked_indptr, liked_playlists, n_playlists)
    bad_pos = ~_contains(train_keys, _pair_keys(triplets[:, 0], triplets[:, 1], n_playlists))
    neg = triplets[:, 2]
    in_range = (neg >= 0) & (neg < n_playlists)
    bad_neg = ~in_range | _contains(all_liked, _pair_keys(triplets[:, 0], np.clip(neg, 0, n_playlists - 1), n_playlists))
    bad_neg |= owner[np.clip(neg, 0, n_playlists - 1)] == triplets[:, 0]
    bad = int((bad_pos | bad_neg).sum())
    return bad == 0, bad


def check_eval_batch_valid(batch: EvalBatch, liked_indptr: np.ndarray, liked_playlists: np.ndarray,
                           split: np.ndarray, which: int, owner: np.ndarray, n_playlists: int) -> tuple[bool, int]:
    """Positives are ``which``-split positives, never train and never owned by the user;
    negatives are in range, distinct, never liked in any split, never owned by the user."""
    users = _row_ids(liked_indptr)
    split_keys = np.sort(_pair_keys(users[split == which], liked_playlists[split == which], n_playlists))
    all_liked = liked_keys(liked_indptr, liked_playlists, n_playlists)
    bad = ~_contains(split_keys, _pair_keys(batch.users, batch.positives, n_playlists))
    bad |= owner[batch.positives] == batch.users
    neg = batch.negatives
    in_range = (neg >= 0) & (neg < n_playlists)
    clipped = np.clip(neg, 0, n_playlists - 1)
    liked_neg = _contains(all_liked, _pair_keys(np.repeat(batch.users, neg.shape[1]), clipped.ravel(), n_playlists)).reshape(neg.shape)
    owned_neg = owner[clipped] == batch.users[:, None]
    sorted_neg = np.sort(neg, axis=1)
    dup = (sorted_neg[:, 1:] == sorted_neg[:, :-1]).any(axis=1)
    bad |= (~in_range | liked_neg | owned_neg).any(axis=1) | dup
    count = int(bad.sum())
    return count == 0, count
