"""Raw datasets into DuckDB: MPD slices (one dynamic partition each), ENTP listens, MSD songs."""


import time
from pathlib import Path

import dagster as dg

from spotify_assets.defs.ingest import checks as ingest_checks
from spotify_assets.defs.ingest.partitions import mpd_slices
from spotify_assets.ingest import (
    InputFormatError,
    LoadResult,
    default_mpd_workers,
    load_entp_triplets,
    load_mpd_slices,
    load_msd_songs,
    stale_slices,
)
from spotify_assets.defs.metadata import markdown_table, table_metadata
from spotify_assets.resources import DUCKDB_OP_TAGS, DUCKDB_POOL, DuckDBWarehouse, RawInputs

INGEST = "ingest"


def _load_metadata(result: LoadResult) -> dict[str, dg.MetadataValue]:
    return {
        "file": dg.MetadataValue.path(result.path),
        "input_bytes": dg.MetadataValue.int(result.input_bytes),
        "seconds": dg.MetadataValue.float(round(result.seconds, 3)),
        "mb_per_second": dg.MetadataValue.float(round(result.mb_per_s, 1)),
        **{key: dg.MetadataValue.text(str(value)) for key, value in result.notes.items()},
    }


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "mpd_playlists",
            description="One row per MPD playlist (pid, name, collaborative, counts), partitioned by slice file.",
            group_name=INGEST,
            kinds={"duckdb", "json"},
        ),
        dg.AssetSpec(
            "mpd_playlist_tracks",
            description="One row per (playlist, position) with track/artist/album URIs and names, partitioned by slice file.",
            group_name=INGEST,
            kinds={"duckdb", "json"},
        ),
    ],
    check_specs=ingest_checks.MPD_CHECKS,
    partitions_def=mpd_slices,
    # A range of slices (e.g. every slice, from the CLI) runs in one step; each slice is
    # still its own transaction.
    backfill_policy=dg.BackfillPolicy.single_run(),
    op_tags=DUCKDB_OP_TAGS,
    pool=DUCKDB_POOL,
)
def mpd_slice_tables(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, raw_inputs: RawInputs):
    """Load MPD slice files, replacing each slice's rows atomically.

    Worker processes (``mpd_load_threads``, 0 = one per core) parse and validate slices
    in parallel; this step writes them, one transaction per slice (see
    :func:`spotify_assets.ingest.load_mpd_slices`).

    A malformed slice fails with an error naming the file and record; the other slices of
    the run are still loaded, and the failed slice's previous rows stay untouched. The run
    refuses to start while the warehouse holds rows of a slice whose file is gone: those
    would flow on downstream (``python -m spotify_assets.mpd_partitions`` drops them).
    """
    keys = context.partition_keys
    mpd_dir = Path(raw_inputs.mpd_dir)
    workers = raw_inputs.mpd_load_threads or default_mpd_workers()
    finished = [0]

    def progress(index: int, outcome) -> None:
        finished[0] += 1
        key = keys[index]
        if isinstance(outcome, InputFormatError):
            context.log.error(f"slice {key} rejected: {outcome}")
        else:
            context.log.info(
                f"[{finished[0]}/{len(keys)}] {key}: {outcome.rows['mpd_playlists']:,} playlists, "
                f"{outcome.rows['mpd_playlist_tracks']:,} tracks, read {outcome.notes['read_ms']} ms "
                f"({outcome.notes['parser']}), written {outcome.notes['write_ms']} ms"
            )

    started = time.perf_counter()
    with warehouse.connect() as con:
        stale = stale_slices(con, mpd_dir)
        if stale:
            listed = ", ".join(f"{name} ({n:,} playlists)" for name, n in stale.items())
            raise dg.Failure(
                description=f"The warehouse holds rows of {len(stale)} slice(s) whose file is no longer in {mpd_dir}: "
                f"{listed}. They would flow on downstream. Put the files back, or drop their partitions and rows "
                "with `python -m spotify_assets.mpd_partitions` (it deletes the rows of every slice whose file is "
                "gone, in one transaction), then run again.",
                metadata={"stale_slices": dg.MetadataValue.json(stale)},
            )
        loaded, rejected = load_mpd_slices(con, [(mpd_dir / key, key) for key in keys], workers=workers,
                                           max_bytes=raw_inputs.max_slice_bytes,
                                           allow_external_symlinks=raw_inputs.allow_external_symlinks,
                                           on_done=progress)
        failures = [str(exc) for exc in rejected]
        wall_seconds = time.perf_counter() - started
        tables = {name: table_metadata(con, name) for name in ("mpd_playlists", "mpd_playlist_tracks")}
        check_results = ingest_checks.mpd_check_results(con)

    per_slice = markdown_table(
        [
            {
                "slice": r.notes["slice"],
                "playlists": r.rows["mpd_playlists"],
                "tracks": r.rows["mpd_playlist_tracks"],
                "bytes": r.input_bytes,
                "seconds": round(r.seconds, 3),
                "sha256": str(r.notes["sha256"])[:16],
            }
            for r in loaded
        ]
    )
    if failures:
        # Record what did load, then fail the step so the bad slices are visible and retried.
        for result in loaded:
            for name in ("mpd_playlists", "mpd_playlist_tracks"):
                context.log_event(
                    dg.AssetMaterialization(
                        asset_key=name,
                        partition=result.notes["slice"],
                        metadata={"rows_in_slice": result.rows[name], **_load_metadata(result)},
                    )
                )
        raise dg.Failure(
            description=f"{len(failures)} of {len(keys)} MPD slices were rejected:\n" + "\n".join(failures),
            metadata={"rejected": dg.MetadataValue.md("\n".join(f"- {f}" for f in failures))},
        )
    total_bytes = sum(r.input_bytes for r in loaded)
    for name in ("mpd_playlists", "mpd_playlist_tracks"):
        metadata = {
            **tables[name],
            "rows_loaded_this_run": dg.MetadataValue.int(sum(r.rows[name] for r in loaded)),
            "slices_loaded": dg.MetadataValue.int(len(loaded)),
            "input_bytes": dg.MetadataValue.int(total_bytes),
            "seconds": dg.MetadataValue.float(round(wall_seconds, 3)),
            "load_workers": dg.MetadataValue.int(workers),
            "mb_per_second": dg.MetadataValue.float(round(total_bytes / 1e6 / max(wall_seconds, 1e-9), 1)),
            "per_slice": dg.MetadataValue.md(per_slice),
        }
        if len(loaded) == 1:
            metadata["file"] = dg.MetadataValue.path(loaded[0].path)
        yield dg.MaterializeResult(
            asset_key=name,
            metadata=metadata,
            check_results=[r for r in check_results if r.asset_key == dg.AssetKey(name)],
        )


@dg.asset(
    group_name=INGEST,
    kinds={"duckdb", "tsv"},
    check_specs=[ingest_checks.ENTP_VALID, ingest_checks.ENTP_NO_DUPLICATE_PAIRS],
    op_tags=DUCKDB_OP_TAGS,
    pool=DUCKDB_POOL,
)
def entp_listens(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, raw_inputs: RawInputs) -> dg.MaterializeResult:
    """Echo Nest Taste Profile listening triplets (user_id, song_id, play_count), replaced atomically."""
    path = Path(raw_inputs.entp_triplets)
    with warehouse.connect() as con:
        result = load_entp_triplets(con, path, allow_external_symlinks=raw_inputs.allow_external_symlinks)
        metadata = table_metadata(con, "entp_listens")
        check_results = ingest_checks.entp_check_results(con)
        stats = con.execute(
            "SELECT count(DISTINCT user_id), count(DISTINCT song_id), median(play_count) FROM entp_listens"
        ).fetchall()[0]
    context.log.info(f"{path.name}: {result.rows['entp_listens']:,} triplets in {result.seconds:.2f}s")
    return dg.MaterializeResult(
        metadata={
            **metadata,
            **_load_metadata(result),
            "distinct_users": dg.MetadataValue.int(int(stats[0])),
            "distinct_songs": dg.MetadataValue.int(int(stats[1])),
            "median_play_count": dg.MetadataValue.float(float(stats[2] or 0)),
        },
        check_results=check_results,
    )


@dg.asset(
    group_name=INGEST,
    kinds={"duckdb", "csv"},
    check_specs=[ingest_checks.MSD_SONG_IDS_UNIQUE],
    op_tags=DUCKDB_OP_TAGS,
    pool=DUCKDB_POOL,
)
def msd_songs(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, raw_inputs: RawInputs) -> dg.MaterializeResult:
    """Million Song Dataset metadata: one row per song id (title, artist, release, year, track id,
    and whether the MSD lists the song as mismatched)."""
    with warehouse.connect() as con:
        result = load_msd_songs(
            con,
            unique_tracks=raw_inputs.msd_file("unique_tracks.txt"),
            song_data=raw_inputs.msd_file("song_data.csv"),
            sid_mismatches=raw_inputs.msd_file("sid_mismatches.txt", "mismatches.txt"),
            allow_external_symlinks=raw_inputs.allow_external_symlinks,
        )
        metadata = table_metadata(con, "msd_songs")
        check_results = ingest_checks.msd_check_results(con)
    context.log.info(f"msd_songs: {result.rows['msd_songs']:,} songs in {result.seconds:.2f}s; {result.notes}")
    return dg.MaterializeResult(metadata={**metadata, **_load_metadata(result)}, check_results=check_results)
