"""User-song and playlist-song interaction matrices (no Dagster imports).

Matrices are binary CSR: a song counts once per user and once per playlist
(docs/architecture.md#matrices). Columns are the *matched* songs: canonical song keys
present on both the ENTP/MSD side and the MPD side. Users and playlists without any matched
song are dropped (and counted).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class Interactions:
    """Dense-id interaction data.

    user_ids : (n_users,) object array of ENTP user ids, sorted; row i of ``user_song``.
    pids : (n_playlists,) int64 MPD pids, sorted; row j of ``playlist_song``.
    song_key_ids : (n_songs,) int32 song_key_id of each matrix column, sorted.
    user_song : (n_users, n_songs) CSR float32 of ones, sorted indices, no duplicates.
    playlist_song : (n_playlists, n_songs) CSR float32 of ones.
    dropped_users, dropped_playlists : how many had no matched song.
    downscaled_users : how many users the downscale option removed.
    """

    user_ids: np.ndarray
    pids: np.ndarray
    song_key_ids: np.ndarray
    user_song: sp.csr_matrix
    playlist_song: sp.csr_matrix
    dropped_users: int
    dropped_playlists: int
    downscaled_users: int


def binary_csr(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """A CSR of ones at (rows, cols) with duplicates collapsed (binary, not counts).

    rows, cols : int arrays of equal length; shape : (n_rows, n_cols). Returns float32
    CSR with canonical format (sorted indices, no duplicates).
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    if rows.shape != cols.shape:
        raise ValueError(f"rows and cols differ in shape: {rows.shape} vs {cols.shape}")
    if rows.size and (rows.min() < 0 or rows.max() >= shape[0] or cols.min() < 0 or cols.max() >= shape[1]):
        raise ValueError("an index is out of the matrix shape")
    matrix = sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols)), shape=shape)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    matrix.sort_indices()
    return matrix


def downscale_mask(n: int, share: float, seed: int) -> np.ndarray:
    """Boolean (n,) mask keeping round(share * n) items chosen uniformly with ``seed``."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"downscale share must be in (0, 1], got {share}")
    if share == 1.0:
        return np.ones(n, dtype=bool)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xD0575CA1E]))
    keep = np.zeros(n, dtype=bool)
    keep[rng.choice(n, size=max(1, round(share * n)), replace=False)] = True
    return keep


def load_interactions(con: duckdb.DuckDBPyConnection, downscale: float = 1.0, seed: int = 0) -> Interactions:
    """Read listens and playlist tracks through the song keys and build both matrices.

    Reads ``stg_listens``, ``msd_song_keys`` (mismatched songs excluded), ``stg_playlist_tracks``
    and ``mpd_track_keys``.
    """
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _user_keys AS
        SELECT DISTINCT l.user_id, k.song_key_id
        FROM stg_listens l JOIN msd_song_keys k USING (song_id)
        WHERE NOT k.mismatched
        """
    )
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _playlist_keys AS
        SELECT DISTINCT t.pid, k.song_key_id
        FROM stg_playlist_tracks t JOIN mpd_track_keys k USING (track_uri)
        """
    )
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _matched AS
        SELECT song_key_id FROM _user_keys INTERSECT SELECT song_key_id FROM _playlist_keys
        """
    )
    song_key_ids = np.sort(con.execute("SELECT song_key_id FROM _matched").fetchnumpy()["song_key_id"].astype(np.int32))
    n_all_users = con.execute("SELECT count(DISTINCT user_id) FROM stg_listens").fetchall()[0][0]
    n_all_playlists = con.execute("SELECT count(*) FROM stg_playlists").fetchall()[0][0]
    users = con.execute(
        """
        SELECT u.user_id, u.song_key_id FROM _user_keys u SEMI JOIN _matched USING (song_key_id)
        ORDER BY u.user_id, u.song_key_id
        """
    ).fetchnumpy()
    playlists = con.execute(
        """
        SELECT p.pid, p.song_key_id FROM _playlist_keys p SEMI JOIN _matched USING (song_key_id)
        ORDER BY p.pid, p.song_key_id
        """
    ).fetchnumpy()
    for table in ("_user_keys", "_playlist_keys", "_matched"):
        con.execute(f"DROP TABLE IF EXISTS {table}")

    user_ids, user_rows = np.unique(np.asarray(users["user_id"], dtype=object), return_inverse=True)
    pids, playlist_rows = np.unique(np.asarray(playlists["pid"], dtype=np.int64), return_inverse=True)
    user_cols = np.searchsorted(song_key_ids, users["song_key_id"])
    playlist_cols = np.searchsorted(song_key_ids, playlists["song_key_id"])
    user_song = binary_csr(user_rows, user_cols, (len(user_ids), len(song_key_ids)))
    playlist_song = binary_csr(playlist_rows, playlist_cols, (len(pids), len(song_key_ids)))

    keep = downscale_mask(len(user_ids), downscale, seed)
    downscaled = int((~keep).sum())
    if downscaled:
        user_ids, user_song = user_ids[keep], user_song[keep]
    return Interactions(
        user_ids=user_ids,
        pids=pids,
        song_key_ids=song_key_ids,
        user_song=user_song,
        playlist_song=playlist_song,
        dropped_users=int(n_all_users - len(keep)),
        dropped_playlists=int(n_all_playlists - len(pids)),
        downscaled_users=downscaled,
    )


def save_csr(path: Path, matrix: sp.csr_matrix) -> None:
    """Write ``matrix`` as an uncompressed .npz (``scipy.sparse.save_npz``) to ``path``."""
    with open(path, "wb") as handle:
        sp.save_npz(handle, matrix, compressed=False)


def load_csr(path: Path) -> sp.csr_matrix:
    """Read a CSR written by :func:`save_csr` (no pickle involved)."""
    matrix = sp.load_npz(path)
    return matrix.tocsr()
