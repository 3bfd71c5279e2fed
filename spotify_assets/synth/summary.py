"""What a run reports: :class:`SynthSummary` and the statistics measured on the data written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from spotify_assets.synth.params import SynthParams


@dataclass
class SynthSummary:
    """What :func:`generate` wrote and the statistics it measured.

    ``stats`` is also written to ``truth/summary.json`` (without timings, so the file is
    byte-identical for the same seed); ``paths`` maps a dataset name to the files written.
    """

    out_dir: Path
    scale: str
    seed: int
    params: SynthParams
    stats: dict[str, object]
    paths: dict[str, list[Path]]
    seconds: float = 0.0

    @property
    def n_users(self) -> int:
        return int(self.stats["users"])  # type: ignore[arg-type]

    @property
    def n_playlists(self) -> int:
        return int(self.stats["playlists"])  # type: ignore[arg-type]

    @property
    def n_listens(self) -> int:
        return int(self.stats["listens"])  # type: ignore[arg-type]

    @property
    def n_track_rows(self) -> int:
        return int(self.stats["track_rows"])  # type: ignore[arg-type]

    @property
    def overlap_share(self) -> float:
        return float(self.stats["overlap_share"])  # type: ignore[arg-type]


def _describe(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"min": 0, "median": 0.0, "mean": 0.0, "max": 0}
    return {"min": int(values.min()), "median": float(np.median(values)),
            "mean": round(float(values.mean()), 3), "max": int(values.max())}


def _overlap_share(u_owner: np.ndarray, u_song: np.ndarray, n_u: int, p_owner: np.ndarray,
                   p_song: np.ndarray, n_p: int, n_songs: int) -> tuple[float, float]:
    """Share of (user, playlist) pairs sharing at least one song, and mean shared songs."""
    U = sp.csr_matrix((np.ones(u_owner.shape[0], np.float32), (u_owner, u_song)), shape=(n_u, n_songs))
    P = sp.csr_matrix((np.ones(p_owner.shape[0], np.float32), (p_owner, p_song)), shape=(n_p, n_songs))
    U.data[:] = 1.0
    P.sum_duplicates()
    P.data[:] = 1.0  # a song counts once per playlist even under two URIs
    C = (U @ P.T).tocsr()
    pairs = float(n_u) * float(n_p)
    return C.nnz / pairs, float(C.sum()) / pairs
