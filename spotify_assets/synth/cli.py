"""The command line: ``python -m spotify_assets.synth --scale sample --seed 0 --out data/raw --gzip``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from spotify_assets.synth.generator import generate
from spotify_assets.synth.params import SCALES


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``python -m spotify_assets.synth``)."""
    parser = argparse.ArgumentParser(
        prog="python -m spotify_assets.synth",
        description=(
            "Write deterministic stand-ins for the Spotify Million Playlist Dataset (mpd/), "
            "the Echo Nest Taste Profile triplets (entp/) and Million Song Dataset metadata "
            "(msd/) in their published formats, plus ground truth (truth/) for tests. The "
            "same seed and options always give byte-identical files."),
        epilog=("scales: " + "; ".join(f"{k}: {v.users:,} users x {v.playlists:,} playlists"
                                       for k, v in SCALES.items())
                + ". Example: python -m spotify_assets.synth --scale sample --seed 0 --out data/raw --gzip"),
    )
    parser.add_argument("--scale", choices=sorted(SCALES, key=list(SCALES).index), default="tiny",
                        help="size preset (default: tiny)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (gets mpd/, entp/, msd/, truth/)")
    parser.add_argument("--gzip", action="store_true", help="gzip the MPD slices and the triplets")
    parser.add_argument("--users", type=int, help="override the number of ENTP users")
    parser.add_argument("--playlists", type=int, help="override the number of MPD playlists")
    parser.add_argument("--slice-size", type=int, help="playlists per slice file (default 1000; 250 at tiny, 500 at sample)")
    parser.add_argument("--match-share", type=float, help="share of ENTP songs with an MPD counterpart (default 0.40)")
    parser.add_argument("--latin1-lines", type=int, default=None,
                        help="write this many non-ASCII lines of msd/unique_tracks.txt Latin-1 encoded")
    parser.add_argument("--crlf", action="store_true", help="write msd/song_data.csv with CRLF line endings")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    overrides = {"users": args.users, "playlists": args.playlists, "slice_size": args.slice_size,
                 "match_share": args.match_share, "latin1_lines": args.latin1_lines,
                 "crlf": True if args.crlf else None}
    try:
        summary = generate(args.out, scale=args.scale, seed=args.seed, gzip=args.gzip,
                           progress=not args.quiet, **overrides)
    except ValueError as exc:
        parser.error(str(exc))
    keys = ("users", "playlists", "slices", "listens", "track_rows", "unique_tracks", "unique_artists",
            "songs_per_user", "playlist_length", "top_track_playlist_share", "matched_song_share",
            "variant_share_of_matched_songs", "overlap_share")
    report = {k: summary.stats[k] for k in keys}
    report["seconds"] = round(summary.seconds, 2)
    report["out"] = str(summary.out_dir)
    print(json.dumps(report, indent=2))
    return 0
