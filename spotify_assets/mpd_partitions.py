"""Register every MPD slice file as a partition; print the run tags that cover them all.

The slice sensor does this automatically when the daemon runs. From the command line,
``dagster job execute`` needs the partitions registered and a partition range:

    dagster job execute -m spotify_assets.definitions -j full_pipeline \\
        --tags "$(python -m spotify_assets.mpd_partitions)"
"""

from __future__ import annotations

import argparse
import os
import json
import sys
from pathlib import Path

import dagster as dg

from spotify_assets.defs.ingest.partitions import mpd_slices
from spotify_assets.ingest import list_mpd_slices
from spotify_assets.resources import default_data_dir


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


def range_tags(keys: list[str]) -> dict[str, str]:
    """Tags that make one run cover every registered slice (single-run backfill)."""
    if not keys:
        return {}
    return {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spotify_assets.mpd_partitions",
        description="Register MPD slice files as dynamic partitions in $DAGSTER_HOME and print "
        "the JSON run tags (partition range) that make `dagster job execute` load all of them.",
    )
    parser.add_argument(
        "--mpd-dir",
        type=Path,
        default=None,
        help="folder of mpd.slice.*.json[.gz] (default: $SPOTIFY_ASSETS_MPD_DIR or <data>/raw/mpd)",
    )
    parser.add_argument("--keep-missing", action="store_true", help="do not drop partitions whose file is gone")
    args = parser.parse_args(argv)


    mpd_dir = args.mpd_dir or Path(os.environ.get("SPOTIFY_ASSETS_MPD_DIR", default_data_dir() / "raw" / "mpd"))
    if not list_mpd_slices(mpd_dir):
        print(f"error: no mpd.slice.*.json[.gz] files in {mpd_dir}", file=sys.stderr)
        return 2
    with dg.DagsterInstance.get() as instance:
        keys = sync_partitions(instance, mpd_dir, prune=not args.keep_missing)
    print(f"{len(keys)} MPD slice partitions registered ({keys[0]} .. {keys[-1]})", file=sys.stderr)
    print(json.dumps(range_tags(keys)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
