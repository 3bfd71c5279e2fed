"""Register every MPD slice file as a partition; print the run tags that cover them all.

The slice sensor registers new files automatically when the daemon runs. From the command
line, ``dagster job execute`` needs the partitions registered and a partition range:

    dagster job execute -m spotify_assets.definitions -j full_pipeline \\
        --tags "$(python -m spotify_assets.mpd_partitions)"

A slice whose file is gone is dropped: its rows leave the warehouse (one transaction) and
then its partition goes, so the next run rebuilds downstream without it. ``--keep-missing``
keeps both; the ingest step then refuses to run until the file is back or this command
has dropped the slice.
"""

from __future__ import annotations

import argparse
import os
import json
import sys
from pathlib import Path

import dagster as dg

from spotify_assets.automation import fail_orphaned_runs
from spotify_assets.defs.ingest.partitions import mpd_slices
from spotify_assets.defs.resources import build_resources
from spotify_assets.ingest import drop_slices, list_mpd_slices, stale_slices
from spotify_assets.resources import DuckDBWarehouse, default_data_dir


def sync_partitions(instance: dg.DagsterInstance, mpd_dir: Path, prune: bool = True) -> list[str]:
    """Add a partition per slice file (in pid order) and, with ``prune``, drop partitions
    whose file is gone. Returns the registered keys in partition order."""
    files = [p.name for p in list_mpd_slices(mpd_dir)]
    known = instance.get_dynamic_partitions(mpd_slices.name)
    missing = [name for name in files if name not in set(known)]
    if missing:
        instance.add_dynamic_partitions(mpd_slices.name, missing)
    if prune:
        for name in set(known) - set(files):
            instance.delete_dynamic_partition(mpd_slices.name, name)
    return instance.get_dynamic_partitions(mpd_slices.name)


def drop_missing_slices(warehouse: DuckDBWarehouse, mpd_dir: Path) -> dict[str, int]:
    """Delete, in one transaction, the rows of every slice whose file is no longer in
    ``mpd_dir`` (under either spelling, ``.json`` or ``.json.gz``); returns {slice: playlists}."""
    if not Path(warehouse.database).exists():
        return {}
    with warehouse.connect() as con:
        return drop_slices(con, list(stale_slices(con, mpd_dir)))


def range_tags(keys: list[str]) -> dict[str, str]:
    """Tags that make one run cover every registered slice (single-run backfill)."""
    if not keys:
        return {}
    return {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spotify_assets.mpd_partitions",
        description="Register MPD slice files as dynamic partitions in $DAGSTER_HOME and print "
        "the JSON run tags (partition range) that make `dagster job execute` load all of them. "
        "A slice whose file is gone is dropped: its rows are deleted from the warehouse "
        "($SPOTIFY_ASSETS_DUCKDB or <data>/warehouse/spotify.duckdb) in one transaction, then its partition. "
        "Runs left started by a process that is gone (killed, a reboot) are marked failed first, so they "
        "release the warehouse pool slot the next run needs.",
    )
    parser.add_argument(
        "--mpd-dir",
        type=Path,
        default=None,
        help="folder of mpd.slice.*.json[.gz] (default: $SPOTIFY_ASSETS_MPD_DIR or <data>/raw/mpd)",
    )
    parser.add_argument(
        "--keep-missing", action="store_true",
        help="keep the partitions and warehouse rows of slices whose file is gone (by default both are dropped; "
        "the ingest step refuses to run while such rows remain)",
    )
    args = parser.parse_args(argv)

    mpd_dir = args.mpd_dir or Path(os.environ.get("SPOTIFY_ASSETS_MPD_DIR", default_data_dir() / "raw" / "mpd"))
    if not list_mpd_slices(mpd_dir):
        print(f"error: no mpd.slice.*.json[.gz] files in {mpd_dir}", file=sys.stderr)
        return 2
    if not args.keep_missing:
        # rows first: should anything fail after, the partitions are still there to retry with
        dropped = drop_missing_slices(build_resources()["warehouse"], mpd_dir)
        for name, n_playlists in dropped.items():
            print(f"dropped slice {name}: its file is gone; deleted its {n_playlists:,} playlists from the warehouse",
                  file=sys.stderr)
    with dg.DagsterInstance.get() as instance:
        for run in fail_orphaned_runs(instance):
            print(f"run {run.run_id[:8]} of {run.job_name} was left started by a process that is gone: "
                  "marked failed, its pool slots released", file=sys.stderr)
        keys = sync_partitions(instance, mpd_dir, prune=not args.keep_missing)
    print(f"{len(keys)} MPD slice partitions registered ({keys[0]} .. {keys[-1]})", file=sys.stderr)
    print(json.dumps(range_tags(keys)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
