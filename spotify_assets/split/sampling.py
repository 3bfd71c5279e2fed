"""Negative sampling of the original recipe (triplets) and of the evaluation batches."""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np
from spotify_assets.split.common import _BLOCK_PAIRS, _block_rng, _check_csr, _indptr, _row_ids, _user_blocks
from spotify_assets.split.users import TEST, TRAIN, VAL, _STREAM_EVAL, _STREAM_TRIPLETS


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



