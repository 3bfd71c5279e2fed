"""The fused, blocked labeler: overlap -> score -> liked playlists (DESIGN §3).

For a block of users it computes the overlap block ``M = U_block · Pᵀ`` (sparse), scores
only its non-zeros, and selects per user, in one vectorized pass, the liked playlists
(top ``max(1, ceil(liked_share · n))`` by score, ties to the lower playlist index) and the
hard-negative candidates (the top ``hard_share`` of the remaining scored playlists). It
keeps nothing else: memory is bounded by the block, never by users × playlists.

Score, where m(u, j) > 0::

    ((1 - e_u) · ln(1 + m) + e_u) / (sqrt(s_u) · sqrt(p_j))
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

LIKED_SHARE = 0.015
HARD_SHARE = 0.2
BETA_A, BETA_B = 1.3, 3.3


def exploration_coefficients(n_users: int, seed: int) -> np.ndarray:
    """e(u) ~ Beta(1.3, 3.3), drawn once for all users in user-id order.

    Returns float64 (n_users,). Drawn from ``numpy.random.default_rng(seed)`` so results do
    not depend on how users are later blocked.
    """
    if n_users < 0:
        raise ValueError("n_users must be non-negative")
    return np.random.default_rng(seed).beta(BETA_A, BETA_B, size=n_users)


def liked_counts(n_scored: np.ndarray, liked_share: float = LIKED_SHARE) -> np.ndarray:
    """``max(1, ceil(liked_share · n))`` where n > 0, else 0 (int64, same shape).

    The product is rounded to 12 decimals before the ceiling so that e.g. 0.015 · 200 = 3.0
    exactly, not 3.0000000000000004 -> 4.
    """
    n = np.asarray(n_scored, dtype=np.int64)
    k = np.ceil(np.round(liked_share * n, 12)).astype(np.int64)
    return np.where(n > 0, np.maximum(1, k), 0)


def hard_counts(n_scored: np.ndarray, n_liked: np.ndarray, hard_share: float = HARD_SHARE) -> np.ndarray:
    """Hard-negative pool size per user: ``ceil(hard_share · (n - k))`` (int64)."""
    rest = np.asarray(n_scored, dtype=np.int64) - np.asarray(n_liked, dtype=np.int64)
    return np.ceil(np.round(hard_share * rest, 12)).astype(np.int64)


@dataclass(frozen=True)
class LabelBlock:
    """Labels of users ``[start, stop)``; playlist ids are matrix row indices (int32).

    n_scored : (b,) int32, playlists with m > 0 per user.
    liked_indptr : (b + 1,) int64 CSR pointers into liked_playlists / liked_scores; each
        user's liked playlists are ordered by score desc, then playlist id.
    liked_playlists : int32; liked_scores : float64.
    hard_indptr : (b + 1,) int64; hard_playlists : int32, each user's hard-negative pool in
        score order.
    scored_pairs : total m > 0 pairs scored in the block.
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


def _validate(user_song: sp.csr_matrix, playlist_song: sp.csr_matrix, e: np.ndarray) -> None:
    if not sp.issparse(user_song) or not sp.issparse(playlist_song):
        raise TypeError("user_song and playlist_song must be scipy sparse matrices")
    if user_song.shape[1] != playlist_song.shape[1]:
        raise ValueError(
            f"song dimensions differ: user_song has {user_song.shape[1]}, playlist_song {playlist_song.shape[1]}"
        )
    if e.shape != (user_song.shape[0],):
        raise ValueError(f"e must have shape ({user_song.shape[0]},), got {e.shape}")
    if np.any((e < 0) | (e > 1)) or not np.all(np.isfinite(e)):
        raise ValueError("exploration coefficients must lie in [0, 1]")


def score_pairs(m: np.ndarray, e: np.ndarray, s: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The DESIGN §3 score for pairs with overlap ``m`` > 0 (all arrays broadcast; float64)."""
    return ((1.0 - e) * np.log1p(m) + e) / (np.sqrt(s) * np.sqrt(p))


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
) -> LabelBlock:
    """Label users ``[start, stop)``.

    Parameters
    ----------
    user_song : (n_users, n_songs) binary CSR.
    playlist_song_t : (n_songs, n_playlists) CSR, the transposed playlist-song matrix
        (computed once by the caller).
    s, p : float64 song counts per user (n_users,) and per playlist (n_playlists,).
    e : float64 (n_users,) exploration coefficients.
    """
    block = user_song[start:stop]
    overlap = (block @ playlist_song_t).tocsr()  # (b, n_playlists), data = m(u, j)
    overlap.sort_indices()  # playlist ids ascending within each row: the tie-break order
    counts = np.diff(overlap.indptr)
    b = stop - start
    rows = np.repeat(np.arange(b, dtype=np.int64), counts)
    cols = overlap.indices
    scores = score_pairs(overlap.data.astype(np.float64), e[start:stop][rows], s[start:stop][rows], p[cols])
    # Per-row descending score; lexsort is stable, so equal scores keep ascending playlist id.
    order = np.lexsort((-scores, rows))
    rank = np.arange(order.size, dtype=np.int64) - np.repeat(overlap.indptr[:-1].astype(np.int64), counts)
    n_liked = liked_counts(counts, liked_share)
    n_hard = hard_counts(counts, n_liked, hard_share)
    row_of_sorted = rows  # rows are already grouped, and the sort is within rows
    liked_mask = rank < n_liked[row_of_sorted]
    hard_mask = (~liked_mask) & (rank < (n_liked + n_hard)[row_of_sorted])
    liked_idx = order[liked_mask]
    hard_idx = order[hard_mask]
    liked_indptr = np.zeros(b + 1, dtype=np.int64)
    np.cumsum(n_liked, out=liked_indptr[1:])
    hard_indptr = np.zeros(b + 1, dtype=np.int64)
    np.cumsum(n_hard, out=hard_indptr[1:])
    return LabelBlock(
        start=start,
        stop=stop,
        n_scored=counts.astype(np.int32),
        liked_indptr=liked_indptr,
        liked_playlists=cols[liked_idx].astype(np.int32),
        liked_scores=scores[liked_idx],
        hard_indptr=hard_indptr,
        hard_playlists=cols[hard_idx].astype(np.int32),
        scored_pairs=int(scores.size),
    )


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
    the dense user block; scores are float64 (as on the CPU) so both paths select the same
    playlists; a stable descending sort per row keeps ties in ascending playlist id.
    """

    def __init__(self, user_song: sp.csr_matrix, playlist_song: sp.csr_matrix, s: np.ndarray, p: np.ndarray,
                 e: np.ndarray, device: str):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        coo = playlist_song.tocoo()
        self.playlists = torch.sparse_coo_tensor(
            np.vstack([coo.row, coo.col]), coo.data.astype(np.float32), playlist_song.shape, device=self.device
        ).coalesce()
        self.user_song = user_song
        self.s = torch.as_tensor(s, device=self.device)
        self.p = torch.as_tensor(p, device=self.device)
        self.e = torch.as_tensor(e, device=self.device)

    def block(self, start: int, stop: int, liked_share: float, hard_share: float) -> LabelBlock:
        torch = self.torch
        users = torch.as_tensor(self.user_song[start:stop].toarray(), dtype=torch.float32, device=self.device)
        overlap = torch.sparse.mm(self.playlists, users.T).T.to(torch.float64)  # (b, n_playlists)
        scored = overlap > 0
        e = self.e[start:stop, None]
        scores = ((1 - e) * torch.log1p(overlap) + e) / (torch.sqrt(self.s[start:stop, None]) * torch.sqrt(self.p[None, :]))
        scores = torch.where(scored, scores, torch.full_like(scores, -torch.inf))
        n = scored.sum(dim=1).cpu().numpy()
        n_liked = liked_counts(n, liked_share)
        n_hard = hard_counts(n, n_liked, hard_share)
        width = int((n_liked + n_hard).max(initial=0))
        b = stop - start
        liked_indptr = np.zeros(b + 1, dtype=np.int64)
        np.cumsum(n_liked, out=liked_indptr[1:])
        hard_indptr = np.zeros(b + 1, dtype=np.int64)
        np.cumsum(n_hard, out=hard_indptr[1:])
        if width == 0:
            empty = np.zeros(0, dtype=np.int32)
            return LabelBlock(start, stop, n.astype(np.int32), liked_indptr, empty, np.zeros(0), hard_indptr, empty,
                              int(n.sum()))
        sorted_scores, order = torch.sort(scores, dim=1, descending=True, stable=True)
        head_ids = order[:, :width].cpu().numpy()
        head_scores = sorted_scores[:, :width].cpu().numpy()
        rank = np.arange(width)[None, :]
        liked_mask = rank < n_liked[:, None]
        hard_mask = (~liked_mask) & (rank < (n_liked + n_hard)[:, None])
        return LabelBlock(
            start=start, stop=stop, n_scored=n.astype(np.int32),
            liked_indptr=liked_indptr, liked_playlists=head_ids[liked_mask].astype(np.int32),
            liked_scores=head_scores[liked_mask],
            hard_indptr=hard_indptr, hard_playlists=head_ids[hard_mask].astype(np.int32),
            scored_pairs=int(n.sum()),
        )


@dataclass(frozen=True)
class Labels:
    """Labels for all users, concatenated from blocks (same fields as :class:`LabelBlock`)."""

    n_scored: np.ndarray
    liked_indptr: np.ndarray
    liked_playlists: np.ndarray
    liked_scores: np.ndarray
    hard_indptr: np.ndarray
    hard_playlists: np.ndarray
    scored_pairs: int
    seconds: float

    @property
    def n_users(self) -> int:
        return int(self.n_scored.size)

    def liked_users(self) -> np.ndarray:
        """User id of every liked pair (int32, aligned with liked_playlists)."""
        return np.repeat(np.arange(self.n_users, dtype=np.int32), np.diff(self.liked_indptr))

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "n_scored": self.n_scored,
            "liked_indptr": self.liked_indptr,
            "liked_playlists": self.liked_playlists,
            "liked_scores": self.liked_scores,
            "hard_indptr": self.hard_indptr,
            "hard_playlists": self.hard_playlists,
        }


def concat_blocks(blocks: list[LabelBlock], seconds: float = 0.0) -> Labels:
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

    return Labels(
        n_scored=np.concatenate([blk.n_scored for blk in blocks]) if blocks else np.zeros(0, np.int32),
        liked_indptr=indptr([blk.liked_indptr for blk in blocks]),
        liked_playlists=np.concatenate([blk.liked_playlists for blk in blocks]) if blocks else np.zeros(0, np.int32),
        liked_scores=np.concatenate([blk.liked_scores for blk in blocks]) if blocks else np.zeros(0),
        hard_indptr=indptr([blk.hard_indptr for blk in blocks]),
        hard_playlists=np.concatenate([blk.hard_playlists for blk in blocks]) if blocks else np.zeros(0, np.int32),
        scored_pairs=sum(blk.scored_pairs for blk in blocks),
        seconds=seconds,
    )


def block_ranges(n_users: int, block_size: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of at most ``block_size`` users covering ``0..n_users``."""
    if block_size < 1:
        raise ValueError("block_size must be >= 1")
    return [(start, min(start + block_size, n_users)) for start in range(0, n_users, block_size)]


def label_users(
    user_song: sp.csr_matrix,
    playlist_song: sp.csr_matrix,
    e: np.ndarray,
    block_size: int = 512,
    liked_share: float = LIKED_SHARE,
    hard_share: float = HARD_SHARE,
    progress: Callable[[int, int, int], None] | None = None,
    device: str = "scipy",
) -> Labels:
    """Label every user, block by block; the result does not depend on ``block_size``.

    progress : optional callback ``(users_done, n_users, scored_pairs_so_far)``.
    device : 'scipy' (CPU sparse kernel), 'cuda' / 'cpu' (torch kernels), or 'auto'.
    """
    user_song = sp.csr_matrix(user_song)
    playlist_song = sp.csr_matrix(playlist_song)
    e = np.asarray(e, dtype=np.float64)
    _validate(user_song, playlist_song, e)
    started = time.perf_counter()
    s = np.diff(user_song.indptr).astype(np.float64)
    p = np.diff(playlist_song.indptr).astype(np.float64)
    device = resolve_device(device)
    playlist_song_t = playlist_song.T.tocsr()
    torch_labeler = None if device == "scipy" else TorchLabeler(user_song, playlist_song, s, p, e, device)
    blocks = []
    scored = 0
    for start, stop in block_ranges(user_song.shape[0], block_size):
        if torch_labeler is not None:
            blk = torch_labeler.block(start, stop, liked_share, hard_share)
        else:
            blk = label_block(user_song, playlist_song_t, s, p, e, start, stop, liked_share, hard_share)
        blocks.append(blk)
        scored += blk.scored_pairs
        if progress is not None:
            progress(stop, user_song.shape[0], scored)
    return concat_blocks(blocks, seconds=time.perf_counter() - started)


def dense_reference(
    user_song: np.ndarray | sp.spmatrix,
    playlist_song: np.ndarray | sp.spmatrix,
    e: np.ndarray,
    liked_share: float = LIKED_SHARE,
    hard_share: float = HARD_SHARE,
) -> tuple[list[list[int]], list[list[int]], np.ndarray]:
    """Slow reference: per-user Python selection on the dense score matrix.

    Returns (liked playlists per user in order, hard pool per user in order, dense scores
    with NaN where m = 0).
    """
    u = np.asarray(user_song.toarray() if sp.issparse(user_song) else user_song, dtype=np.float64)
    pl = np.asarray(playlist_song.toarray() if sp.issparse(playlist_song) else playlist_song, dtype=np.float64)
    m = u @ pl.T
    s = u.sum(axis=1)
    p = pl.sum(axis=1)
    liked, hard = [], []
    scores = np.full(m.shape, np.nan)
    for user in range(m.shape[0]):
        candidates = [
            (-float(score_pairs(np.float64(m[user, j]), e[user], s[user], p[j])), j)
            for j in range(m.shape[1])
            if m[user, j] > 0
        ]
        for neg_score, j in candidates:
            scores[user, j] = -neg_score
        candidates.sort()
        n = len(candidates)
        k = max(1, math.ceil(round(liked_share * n, 12))) if n else 0
        h = math.ceil(round(hard_share * (n - k), 12))
        liked.append([j for _, j in candidates[:k]])
        hard.append([j for _, j in candidates[k : k + h]])
    return liked, hard, scores
