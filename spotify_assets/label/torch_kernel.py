"""The same labeling kernel in PyTorch (GPU when present)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from spotify_assets.label.scores import HARD_SHARE, LIKED_SHARE, hard_counts, liked_counts
from spotify_assets.label.kernel import LabelBlock, OwnershipSeed, _cap_hard
from spotify_assets.label.sparse import _indptr


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


