"""Data-quality checks on the raw tables, run in the same step as the load (one DuckDB
connection, no extra process). Blocking: the SQL models downstream trust them."""

import dagster as dg
import duckdb

from spotify_assets import checks

# A slice loads into both MPD tables at once, so both tables carry both checks: a slice that
# fails either stops everything downstream of either table (automation waits for every
# blocking check of an asset's parents; with the checks on one table only, the other one's
# children were rebuilt from the bad slice).
MPD_PIDS_UNIQUE, MPD_TRACKS_PIDS_UNIQUE = (
    dg.AssetCheckSpec(
        "pids_unique", asset=asset, blocking=True,
        description="Every pid appears once across all loaded slices (MPD pids are globally unique).",
    )
    for asset in ("mpd_playlists", "mpd_playlist_tracks")
)
MPD_PLAYLISTS_CONSISTENT, MPD_TRACKS_CONSISTENT = (
    dg.AssetCheckSpec(
        "tracks_consistent", asset=asset, blocking=True,
        description="Each playlist's track rows match its num_tracks with unique positions; no orphan track rows.",
    )
    for asset in ("mpd_playlists", "mpd_playlist_tracks")
)
MPD_CHECKS = [MPD_PIDS_UNIQUE, MPD_PLAYLISTS_CONSISTENT, MPD_TRACKS_PIDS_UNIQUE, MPD_TRACKS_CONSISTENT]
ENTP_VALID = dg.AssetCheckSpec(
    "ids_and_counts_valid", asset="entp_listens", blocking=True,
    description="Ids are present and play counts positive.",
)
ENTP_NO_DUPLICATE_PAIRS = dg.AssetCheckSpec(
    "no_duplicate_pairs", asset="entp_listens",
    description="Warns when a (user, song) pair appears twice; staging sums such counts.",
)
MSD_SONG_IDS_UNIQUE = dg.AssetCheckSpec(
    "song_ids_unique", asset="msd_songs", blocking=True, description="One row per MSD song id."
)


def _result(spec: dg.AssetCheckSpec, verdict: checks.Verdict,
            severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=spec.asset_key,
        check_name=spec.name,
        passed=verdict.passed,
        severity=severity,
        description=verdict.description,
        metadata=dict(verdict.details),
    )


def mpd_check_results(con: duckdb.DuckDBPyConnection) -> list[dg.AssetCheckResult]:
    tracks = checks.no_rows(
        con,
        """
        SELECT count(*) FROM (
            SELECT p.pid FROM mpd_playlists p
            LEFT JOIN (SELECT pid, count(*) AS n, count(DISTINCT pos) AS n_pos
                       FROM mpd_playlist_tracks GROUP BY pid) t USING (pid)
            WHERE coalesce(t.n, 0) <> p.num_tracks OR coalesce(t.n_pos, 0) <> coalesce(t.n, 0)
            UNION ALL
            SELECT t.pid FROM mpd_playlist_tracks t ANTI JOIN mpd_playlists p USING (pid)
        )
        """,
        "playlists whose track rows disagree with num_tracks, or orphan track rows",
    )
    pids = checks.unique_key(con, "mpd_playlists", ["pid"])
    return [_result(spec, pids if spec.name == "pids_unique" else tracks) for spec in MPD_CHECKS]


def entp_check_results(con: duckdb.DuckDBPyConnection) -> list[dg.AssetCheckResult]:
    valid = checks.no_rows(
        con,
        "SELECT count(*) FROM entp_listens WHERE user_id IS NULL OR song_id IS NULL OR play_count <= 0",
        "triplets with a missing id or a non-positive count",
    )
    return [
        _result(ENTP_VALID, valid),
        _result(ENTP_NO_DUPLICATE_PAIRS, checks.unique_key(con, "entp_listens", ["user_id", "song_id"]),
                dg.AssetCheckSeverity.WARN),
    ]


def msd_check_results(con: duckdb.DuckDBPyConnection) -> list[dg.AssetCheckResult]:
    return [_result(MSD_SONG_IDS_UNIQUE, checks.unique_key(con, "msd_songs", ["song_id"]))]
