"""Song matching and the sparse interaction matrices the label stage reads."""

import time

import dagster as dg
import numpy as np
import pyarrow as pa

from spotify_assets.automation import EAGER_WHEN_CHECKS_PASS
from spotify_assets.contract import PLAYLIST_SONG, SONG_COUNTS, USER_SONG, deps
from spotify_assets.prepare.catalog import build_song_catalog
from spotify_assets.prepare.matrices import load_interactions, save_csr
from spotify_assets.defs.metadata import markdown_table, peak_rss_mb, replace_tables, table_metadata
from spotify_assets.resources import (
    DUCKDB_OP_TAGS,
    DUCKDB_POOL,
    ArtifactStore,
    DuckDBWarehouse,
    PipelineSettings,
)

PREPARE = "prepare"


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "song_catalog",
            group_name=PREPARE, automation_condition=EAGER_WHEN_CHECKS_PASS,
            kinds={"duckdb", "python"},
            deps=["stg_songs", "track_dictionary"],
            description="One dense song_key_id per canonical song key (title@@artist, version suffixes dropped), "
            "over MSD songs and MPD tracks.",
        ),
        dg.AssetSpec(
            "msd_song_keys", group_name=PREPARE, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"duckdb"}, deps=["stg_songs"],
            description="MSD song id -> plain key, canonical key, song_key_id, mismatched flag.",
        ),
        dg.AssetSpec(
            "mpd_track_keys", group_name=PREPARE, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"duckdb"}, deps=["track_dictionary"],
            description="MPD track -> plain key, canonical key, song_key_id.",
        ),
    ],
    op_tags=DUCKDB_OP_TAGS,
    pool=DUCKDB_POOL,
)
def song_catalog(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse):
    """Key every MSD song and MPD track, and report how many more match with the canonical key."""
    started = time.perf_counter()
    with warehouse.connect() as con:
        songs = con.execute("SELECT song_id, title, artist_name, mismatched FROM stg_songs ORDER BY song_id").fetchnumpy()
        tracks = con.execute(
            "SELECT track_id, track_uri, track_name, artist_name FROM track_dictionary ORDER BY track_id"
        ).fetchnumpy()
        result = build_song_catalog(
            songs["song_id"].tolist(), songs["title"].tolist(), songs["artist_name"].tolist(),
            songs["mismatched"].tolist(),
            tracks["track_id"], tracks["track_uri"].tolist(), tracks["track_name"].tolist(),
            tracks["artist_name"].tolist(),
        )
        replace_tables(con, {"msd_song_keys": result.msd, "mpd_track_keys": result.mpd, "song_catalog": result.catalog})
        # How matching fares, counted over the songs people actually listened to.
        match = con.execute(
            """
            WITH listened AS (SELECT DISTINCT song_id FROM stg_listens),
                 s AS (SELECT k.* FROM msd_song_keys k SEMI JOIN listened USING (song_id) WHERE NOT k.mismatched)
            SELECT
                (SELECT count(*) FROM listened),
                (SELECT count(*) FROM s WHERE plain_key IN (SELECT plain_key FROM mpd_track_keys)),
                (SELECT count(*) FROM s WHERE canonical_key IN (SELECT canonical_key FROM mpd_track_keys)),
                (SELECT count(*) FROM mpd_track_keys WHERE plain_key IN (SELECT plain_key FROM msd_song_keys WHERE NOT mismatched)),
                (SELECT count(*) FROM mpd_track_keys WHERE canonical_key IN (SELECT canonical_key FROM msd_song_keys WHERE NOT mismatched)),
                (SELECT count(*) FROM mpd_track_keys),
                (SELECT count(*) FROM msd_song_keys k SEMI JOIN listened USING (song_id) WHERE k.mismatched)
            """
        ).fetchall()[0]
        examples = con.execute(
            """
            SELECT canonical_key, string_agg(DISTINCT plain_key, ' | ') AS variants
            FROM (SELECT canonical_key, plain_key FROM msd_song_keys UNION ALL SELECT canonical_key, plain_key FROM mpd_track_keys)
            GROUP BY canonical_key HAVING count(DISTINCT plain_key) > 1
            ORDER BY count(DISTINCT plain_key) DESC, canonical_key LIMIT 8
            """
        ).fetchall()
        metas = {name: table_metadata(con, name) for name in ("song_catalog", "msd_song_keys", "mpd_track_keys")}
    listened, entp_plain, entp_canonical, mpd_plain, mpd_canonical, n_tracks, mismatched = (int(v) for v in match)
    report = markdown_table(
        [
            {"side": "ENTP songs listened", "total": listened, "matched (plain key)": entp_plain,
             "matched (canonical key)": entp_canonical, "gained by canonical": entp_canonical - entp_plain},
            {"side": "MPD tracks", "total": n_tracks, "matched (plain key)": mpd_plain,
             "matched (canonical key)": mpd_canonical, "gained by canonical": mpd_canonical - mpd_plain},
        ]
    )
    context.log.info(
        f"ENTP songs matched: {entp_plain:,} plain -> {entp_canonical:,} canonical of {listened:,}; "
        f"MPD tracks: {mpd_plain:,} -> {mpd_canonical:,} of {n_tracks:,}"
    )
    yield dg.MaterializeResult(
        asset_key="song_catalog",
        metadata={
            **metas["song_catalog"],
            "matching": dg.MetadataValue.md(report),
            "entp_songs_matched_plain": entp_plain,
            "entp_songs_matched_canonical": entp_canonical,
            "mpd_tracks_matched_plain": mpd_plain,
            "mpd_tracks_matched_canonical": mpd_canonical,
            "mismatched_songs_excluded": mismatched,
            "merged_variants_examples": dg.MetadataValue.md(
                markdown_table([{"canonical key": k, "spellings merged": v} for k, v in examples])
            ),
            "seconds": round(time.perf_counter() - started, 3),
            "peak_rss_mb": peak_rss_mb(),
        },
    )
    yield dg.MaterializeResult(asset_key="msd_song_keys", metadata=metas["msd_song_keys"])
    yield dg.MaterializeResult(asset_key="mpd_track_keys", metadata=metas["mpd_track_keys"])


#: the multi-asset's file outputs, by asset key
MATRIX_FILES = {artifact.asset: artifact for artifact in (USER_SONG, PLAYLIST_SONG, SONG_COUNTS)}


@dg.multi_asset(
    specs=[
        dg.AssetSpec("user_dictionary", group_name=PREPARE, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"duckdb"}, deps=["msd_song_keys", "mpd_track_keys", "stg_listens"],
                     description="ENTP user id -> dense uid (row of user_song_matrix); users with no matched song dropped."),
        dg.AssetSpec("playlist_dictionary", group_name=PREPARE, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"duckdb"}, deps=["mpd_track_keys", "stg_playlist_tracks", "stg_playlists"],
                     description="MPD pid -> dense playlist index (row of playlist_song_matrix); playlists with no matched song dropped."),
        dg.AssetSpec("user_song_matrix", group_name=PREPARE, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"scipy"}, deps=["user_dictionary"],
                     description="Binary CSR (n_users x n_songs) of matched songs per user, float32 ones, .npz."),
        dg.AssetSpec("playlist_song_matrix", group_name=PREPARE, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"scipy"}, deps=["playlist_dictionary"],
                     description="Binary CSR (n_playlists x n_songs) of matched songs per playlist, float32 ones, .npz."),
        dg.AssetSpec("song_counts", group_name=PREPARE, automation_condition=EAGER_WHEN_CHECKS_PASS, kinds={"numpy"}, deps=deps(USER_SONG, PLAYLIST_SONG),
                     description="s(u) songs per user and p(j) songs per playlist (int32 arrays, .npz)."),
    ],
    op_tags=DUCKDB_OP_TAGS,
    pool=DUCKDB_POOL,
)
def interaction_matrices(
    context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, artifacts: ArtifactStore, settings: PipelineSettings
):
    """Dictionaries and binary matrices over matched songs, with the seeded downscale applied."""
    started = time.perf_counter()
    with warehouse.connect() as con:
        data = load_interactions(con, downscale=settings.downscale, seed=settings.seed)
        user_table = pa.table({"uid": pa.array(np.arange(len(data.user_ids), dtype=np.int32)),
                               "user_id": pa.array(data.user_ids.tolist(), pa.string())})
        playlist_table = pa.table({"playlist_idx": pa.array(np.arange(len(data.pids), dtype=np.int32)),
                                   "pid": pa.array(data.pids, pa.int64())})
        replace_tables(con, {"user_dictionary": user_table, "playlist_dictionary": playlist_table})
        metas = {n: table_metadata(con, n) for n in ("user_dictionary", "playlist_dictionary")}
    s = np.diff(data.user_song.indptr).astype(np.int32)
    p = np.diff(data.playlist_song.indptr).astype(np.int32)
    with artifacts.writing(USER_SONG) as tmp:
        save_csr(tmp, data.user_song)
    with artifacts.writing(PLAYLIST_SONG) as tmp:
        save_csr(tmp, data.playlist_song)
    artifacts.write(SONG_COUNTS, s=s, p=p)
    seconds = time.perf_counter() - started
    n_users, n_songs = data.user_song.shape
    n_playlists = data.playlist_song.shape[0]
    context.log.info(f"{n_users:,} users x {n_playlists:,} playlists over {n_songs:,} matched songs in {seconds:.2f}s")
    yield dg.MaterializeResult(asset_key="user_dictionary", metadata={
        **metas["user_dictionary"], "dropped_without_matched_song": data.dropped_users,
        "dropped_by_downscale": data.downscaled_users, "downscale": settings.downscale})
    yield dg.MaterializeResult(asset_key="playlist_dictionary", metadata={
        **metas["playlist_dictionary"], "dropped_without_matched_song": data.dropped_playlists})
    for key, matrix in (("user_song_matrix", data.user_song), ("playlist_song_matrix", data.playlist_song)):
        counts = np.diff(matrix.indptr)
        yield dg.MaterializeResult(asset_key=key, metadata={
            "path": dg.MetadataValue.path(str(artifacts.file(MATRIX_FILES[key]))),
            "shape": f"{matrix.shape[0]:,} x {matrix.shape[1]:,}",
            "nnz": int(matrix.nnz),
            "density": float(matrix.nnz / max(1, matrix.shape[0] * matrix.shape[1])),
            "songs_per_row_median": float(np.median(counts)) if counts.size else 0.0,
            "songs_per_row_mean": float(counts.mean()) if counts.size else 0.0,
            "seconds": round(seconds, 3),
            "peak_rss_mb": peak_rss_mb(),
        })
    yield dg.MaterializeResult(asset_key="song_counts", metadata={
        "path": dg.MetadataValue.path(str(artifacts.file(SONG_COUNTS))),
        "users": int(s.size), "playlists": int(p.size),
        "s_median": float(np.median(s)) if s.size else 0.0, "p_median": float(np.median(p)) if p.size else 0.0,
    })
