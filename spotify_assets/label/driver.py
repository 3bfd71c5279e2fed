"""Label every user block by block (CPU or torch), ownership seeding first."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
import numpy as np
import scipy.sparse as sp
from spotify_assets.label.scores import HARD_SHARE, LIKED_SHARE
from spotify_assets.label.ownership import OwnershipCandidates
from spotify_assets.label.kernel import BlockLabeler, LabelBlock, OwnershipSeed, _binary_csr
from spotify_assets.label.torch_kernel import TorchLabeler, resolve_device
from spotify_assets.label.labels import Labels, concat_blocks


DEFAULT_OWNERSHIP_K = 48


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


