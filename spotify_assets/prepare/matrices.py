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


#: rows per record batch when fetching (row, col) pairs: bounds the transient copy at ~64 MB
FETCH_ROWS = 1 << 22


def fetch_pairs(con: duckdb.DuckDBPyConnection, query: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` (row, col) pairs ``query`` returns (two integer columns), fetched in record
    batches of :data:`FETCH_ROWS` into preallocated int32 (n,) arrays: memory holds the two
    arrays and one batch, never the whole result as Python objects or wide integers."""
    rows, cols = np.empty(n, dtype=np.int32), np.empty(n, dtype=np.int32)
    at = 0
    for batch in con.sql(query).to_arrow_reader(FETCH_ROWS):
        k = batch.num_rows
        if at + k > n:
            raise RuntimeError(f"the pair query returned more than the {n:,} rows counted")
        rows[at:at + k] = batch.column(0).to_numpy()
        cols[at:at + k] = batch.column(1).to_numpy()
        at += k
    if at != n:
        raise RuntimeError(f"the pair query returned {at:,} rows, {n:,} counted")
    return rows, cols


def sorted_pairs_csr(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """A CSR of ones from distinct (row, col) pairs already sorted by (row, col): int32 (nnz,)
    arrays, no duplicates. Returns a canonical float32 CSR (sorted indices, no duplicates)
    without a COO copy and sort."""
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    matrix = sp.csr_matrix((np.ones(rows.size, dtype=np.float32), cols, indptr), shape=shape)
    matrix.has_sorted_indices = True
    matrix.has_canonical_format = True
    return matrix


def load_interactions(con: duckdb.DuckDBPyConnection, downscale: float = 1.0, seed: int = 0) -> Interactions:
    """Read listens and playlist tracks through the song keys and build both matrices.

    Reads ``stg_listens``, ``msd_song_keys`` (mismatched songs excluded), ``stg_playlist_tracks``
    and ``mpd_track_keys``. Users, playlists and songs get their dense ids in SQL (rank of the
    sorted user id / pid / song key among those with a matched song), so what leaves DuckDB is
    int32 (row, col) pairs in record batches (:func:`fetch_pairs`) plus one id per row: at full
    scale (48M listens, 66M playlist tracks) that is ~1 GB of arrays instead of tens of millions
    of Python strings.
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
    # column, row and pair tables; ids are 0-based ranks in sorted order (np.unique's order:
    # VARCHAR sorts by UTF-8 bytes, which is code-point order)
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _matched AS
        SELECT song_key_id, (row_number() OVER (ORDER BY song_key_id) - 1)::INTEGER AS col
        FROM (SELECT song_key_id FROM _user_keys INTERSECT SELECT song_key_id FROM _playlist_keys)
        """
    )
    for side, key in (("user", "user_id"), ("playlist", "pid")):
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _{side}_pairs AS
            SELECT k.{key}, m.col FROM _{side}_keys k JOIN _matched m USING (song_key_id)
            """
        )
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _{side}_rows AS
            SELECT {key}, (row_number() OVER (ORDER BY {key}) - 1)::INTEGER AS row
            FROM (SELECT DISTINCT {key} FROM _{side}_pairs)
            """
        )
    song_key_ids = con.execute("SELECT song_key_id FROM _matched ORDER BY col").fetchnumpy()["song_key_id"]
    song_key_ids = np.asarray(song_key_ids, dtype=np.int32)
    user_ids = np.asarray(con.execute("SELECT user_id FROM _user_rows ORDER BY row").fetchnumpy()["user_id"],
                          dtype=object)
    pids = np.asarray(con.execute("SELECT pid FROM _playlist_rows ORDER BY row").fetchnumpy()["pid"], dtype=np.int64)
    matrices = {}
    for side, key, n_rows in (("user", "user_id", len(user_ids)), ("playlist", "pid", len(pids))):
        n = con.execute(f"SELECT count(*) FROM _{side}_pairs").fetchall()[0][0]
        rows, cols = fetch_pairs(
            con, f"SELECT r.row, p.col FROM _{side}_pairs p JOIN _{side}_rows r USING ({key}) ORDER BY r.row, p.col", n)
        matrices[side] = sorted_pairs_csr(rows, cols, (n_rows, len(song_key_ids)))
        del rows, cols
    n_all_users = con.execute("SELECT count(DISTINCT user_id) FROM stg_listens").fetchall()[0][0]
    n_all_playlists = con.execute("SELECT count(*) FROM stg_playlists").fetchall()[0][0]
    for table in ("_user_keys", "_playlist_keys", "_matched", "_user_pairs", "_user_rows", "_playlist_pairs",
                  "_playlist_rows"):
        con.execute(f"DROP TABLE IF EXISTS {table}")

    user_song, playlist_song = matrices["user"], matrices["playlist"]
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
