"""Song catalog and interaction matrices: pure functions and the asset chain on `tiny` data."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pytest
import scipy.sparse as sp

from spotify_assets.prepare.catalog import build_song_catalog
from spotify_assets.defs.ingest.assets import entp_listens, mpd_slice_tables, msd_songs
from spotify_assets.defs.ingest.partitions import mpd_slices
from spotify_assets.defs.prepare.assets import interaction_matrices, song_catalog
from spotify_assets.defs.resources import build_resources
from spotify_assets.defs.sql.assets import sql_model_assets
from spotify_assets.ingest import list_mpd_slices
from spotify_assets.prepare import matrices
from spotify_assets.prepare.matrices import downscale_mask, load_csr


def binary_csr(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """The reference matrix builder: a CSR of ones at (rows, cols) with duplicates collapsed
    (binary, not counts), through scipy's COO conversion.

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


def test_binary_csr_collapses_duplicates_to_ones() -> None:
    matrix = binary_csr(np.array([0, 0, 1, 1, 1]), np.array([2, 2, 0, 1, 0]), (3, 4))
    assert matrix.dtype == np.float32 and matrix.has_canonical_format
    np.testing.assert_array_equal(matrix.toarray(), [[0, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
    with pytest.raises(ValueError, match="out of the matrix shape"):
        binary_csr(np.array([3]), np.array([0]), (3, 4))


def test_downscale_is_seeded_and_sized() -> None:
    a, b, c = downscale_mask(1000, 0.3, 7), downscale_mask(1000, 0.3, 7), downscale_mask(1000, 0.3, 8)
    assert a.sum() == 300 and np.array_equal(a, b) and not np.array_equal(a, c)
    assert downscale_mask(10, 1.0, 0).all()
    with pytest.raises(ValueError):
        downscale_mask(10, 0.0, 0)


def test_song_catalog_assigns_one_id_per_canonical_key() -> None:
    result = build_song_catalog(
        ["SO1", "SO2", "SO3"], ["Get Lucky", "Other", "Get Lucky (Remix)"], ["Daft Punk"] * 3, [False, False, True],
        np.array([0, 1]), ["spotify:track:a", "spotify:track:b"], ["Get Lucky - Radio Edit", "Unmatched"], ["Daft Punk", "Y"],
    )
    msd = result.msd.to_pydict()
    mpd = result.mpd.to_pydict()
    catalog = result.catalog.to_pydict()
    # the radio edit merges with the plain title, the remix does not
    assert mpd["song_key_id"][0] == msd["song_key_id"][0]
    assert msd["song_key_id"][2] != msd["song_key_id"][0]
    assert sorted(catalog["canonical_key"]) == catalog["canonical_key"]
    assert catalog["song_key_id"] == list(range(len(catalog["canonical_key"])))
    merged = catalog["song_key_id"].index(msd["song_key_id"][0])
    assert (catalog["n_msd_songs"][merged], catalog["n_mpd_tracks"][merged], catalog["n_plain_variants"][merged]) == (1, 1, 2)


@pytest.fixture()
def prepared(data_dir: Path):
    resources = build_resources(data_dir)
    keys = [p.name for p in list_mpd_slices(data_dir / "raw" / "mpd")]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(mpd_slices.name, keys)
        result = dg.materialize(
            [mpd_slice_tables, entp_listens, msd_songs, *sql_model_assets, song_catalog, interaction_matrices],
            resources=resources,
            instance=instance,
            tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
        )
        assert result.success
        yield data_dir, result


def test_matrices_match_a_direct_join(prepared) -> None:
    data_dir, result = prepared
    user_song = load_csr(data_dir / "artifacts" / "prepare" / "user_song.npz")
    playlist_song = load_csr(data_dir / "artifacts" / "prepare" / "playlist_song.npz")
    counts = np.load(data_dir / "artifacts" / "prepare" / "song_counts.npz")
    with duckdb.connect(str(data_dir / "warehouse" / "spotify.duckdb"), read_only=True) as con:
        n_users = con.execute("SELECT count(*) FROM user_dictionary").fetchall()[0][0]
        n_playlists = con.execute("SELECT count(*) FROM playlist_dictionary").fetchall()[0][0]
        # brute force: distinct (user, canonical key) pairs whose key also occurs in a playlist
        expected_user_pairs = con.execute(
            """
            SELECT count(*) FROM (
                SELECT DISTINCT l.user_id, k.song_key_id FROM stg_listens l JOIN msd_song_keys k USING (song_id)
                WHERE NOT k.mismatched AND k.song_key_id IN (
                    SELECT m.song_key_id FROM mpd_track_keys m JOIN stg_playlist_tracks t USING (track_uri))
            )
            """
        ).fetchall()[0][0]
        uid, user_id = con.execute("SELECT uid, user_id FROM user_dictionary ORDER BY uid LIMIT 1 OFFSET 3").fetchall()[0]
        user_keys = {r[0] for r in con.execute(
            """
            SELECT DISTINCT k.song_key_id FROM stg_listens l JOIN msd_song_keys k USING (song_id)
            WHERE l.user_id = ? AND NOT k.mismatched
              AND k.song_key_id IN (SELECT song_key_id FROM mpd_track_keys)
            """, [user_id]).fetchall()}
    assert user_song.shape == (n_users, playlist_song.shape[1])
    assert playlist_song.shape[0] == n_playlists
    assert user_song.nnz == expected_user_pairs
    assert set(np.unique(user_song.data)) == {1.0}
    np.testing.assert_array_equal(counts["s"], np.diff(user_song.indptr))
    np.testing.assert_array_equal(counts["p"], np.diff(playlist_song.indptr))
    assert (counts["s"] > 0).all() and (counts["p"] > 0).all()
    assert len(user_keys) == counts["s"][uid] > 0
    catalog_md = {m.asset_key.to_user_string(): m.materialization.metadata for m in result.get_asset_materialization_events()}
    assert catalog_md["song_catalog"]["entp_songs_matched_canonical"].value >= catalog_md["song_catalog"]["entp_songs_matched_plain"].value


def _reference_interactions(con: duckdb.DuckDBPyConnection) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix, sp.csr_matrix]:
    """The matrices the plain way: every matched (id, song key) pair fetched as Python
    values, ids by np.unique, then binary_csr."""
    matched = {r[0] for r in con.execute(
        """SELECT k.song_key_id FROM stg_listens l JOIN msd_song_keys k USING (song_id) WHERE NOT k.mismatched
           INTERSECT SELECT k.song_key_id FROM stg_playlist_tracks t JOIN mpd_track_keys k USING (track_uri)""").fetchall()}
    users = [r for r in con.execute(
        """SELECT l.user_id, k.song_key_id FROM stg_listens l JOIN msd_song_keys k USING (song_id)
           WHERE NOT k.mismatched""").fetchall() if r[1] in matched]
    playlists = [r for r in con.execute(
        "SELECT t.pid, k.song_key_id FROM stg_playlist_tracks t JOIN mpd_track_keys k USING (track_uri)").fetchall()
        if r[1] in matched]
    songs = np.array(sorted(matched))
    user_ids, user_rows = np.unique(np.array([u for u, _ in users], dtype=object), return_inverse=True)
    pids, playlist_rows = np.unique(np.array([p for p, _ in playlists], dtype=np.int64), return_inverse=True)
    shape = lambda n: (n, songs.size)  # noqa: E731
    return (user_ids, pids,
            binary_csr(user_rows, np.searchsorted(songs, [s for _, s in users]), shape(user_ids.size)),
            binary_csr(playlist_rows, np.searchsorted(songs, [s for _, s in playlists]), shape(pids.size)))


def test_chunked_fetch_builds_the_same_matrices_as_the_plain_way(prepared, monkeypatch, tmp_path: Path) -> None:
    """Dense ids ranked in SQL and (row, col) pairs fetched in small record batches give the
    same dictionaries and byte-identical matrix files as fetching everything and np.unique."""
    data_dir, _ = prepared
    monkeypatch.setattr(matrices, "FETCH_ROWS", 97)  # many batches, one of them partial
    with duckdb.connect(str(data_dir / "warehouse" / "spotify.duckdb"), read_only=True) as con:
        data = matrices.load_interactions(con)
        user_ids, pids, user_song, playlist_song = _reference_interactions(con)
    assert data.user_song.nnz > 97 * 3
    np.testing.assert_array_equal(data.user_ids, user_ids)
    np.testing.assert_array_equal(data.pids, pids)
    for name, ours, reference in (("user", data.user_song, user_song), ("playlist", data.playlist_song, playlist_song)):
        matrices.save_csr(tmp_path / f"{name}_ours.npz", ours)
        matrices.save_csr(tmp_path / f"{name}_reference.npz", reference)
        assert (tmp_path / f"{name}_ours.npz").read_bytes() == (tmp_path / f"{name}_reference.npz").read_bytes(), name
    # and the asset wrote exactly these
    stored = load_csr(data_dir / "artifacts" / "prepare" / "user_song.npz")
    assert (stored != data.user_song).nnz == 0
