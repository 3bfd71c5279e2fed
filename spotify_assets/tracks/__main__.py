"""Command line: ``python -m spotify_assets.tracks similar "Get Lucky" [--k 10] [--data-dir DIR]`` and
``python -m spotify_assets.tracks continue --name "road trip" [--track URI ...] [--k 10]``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import duckdb

from spotify_assets.defs.metadata import markdown_table
from spotify_assets.paths import default_data_dir, local_artifacts_dir
from spotify_assets.contract import TRACK_INDEX
from spotify_assets.tracks.similar import find_tracks, load_embeddings, similar_table


def _similar(args: argparse.Namespace) -> int:
    data = Path(args.data_dir)
    database = Path(args.database) if args.database else data / "warehouse" / "spotify.duckdb"
    artifacts = local_artifacts_dir(data)
    if not database.exists():
        print(f"no warehouse at {database}: run the pipeline first (make run)", file=sys.stderr)
        return 2
    try:
        embeddings = load_embeddings(artifacts)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    with duckdb.connect(str(database), read_only=True) as con:
        matches = find_tracks(con, args.track, limit=args.candidates)
        embedded = [m for m in matches if embeddings.rows([m[0]])[0] >= 0]
        if not embedded:
            reason = "no track name contains it" if not matches else "its matches are too rare to have an embedding"
            print(f"{args.track!r}: {reason}", file=sys.stderr)
            for tid, name, artist, n in matches:
                print(f"  {name} — {artist} ({n} playlists, not embedded)", file=sys.stderr)
            return 1
        track_id, name, artist, n = embedded[0]
        rows, method = similar_table(con, embeddings, track_id, k=args.k,
                                     index_path=TRACK_INDEX.under(artifacts))
    print(f"Tracks nearest to {name} — {artist} (track_id {track_id}, {n} playlists), {method} cosine:\n")
    print(markdown_table(rows))
    others = [m for m in embedded[1:]]
    if others:
        print("\nOther matches: " + "; ".join(f"{m[1]} — {m[2]} (track_id {m[0]})" for m in others))
    return 0


def _continue(args: argparse.Namespace) -> int:
    from spotify_assets.tracks.api import continue_playlist
    from spotify_assets.contract import TWO_TOWER
    from spotify_assets.tracks.two_tower import load_two_tower

    if not (args.name or "").strip() and not args.track:
        print("give --name, --track, or both", file=sys.stderr)
        return 2
    path = TWO_TOWER.under(local_artifacts_dir(args.data_dir))
    if not path.exists():
        print(f"no two-tower model at {path}: run the pipeline first (make run)", file=sys.stderr)
        return 2
    try:
        body = continue_playlist(load_two_tower(path), args.name or "", list(args.track), args.k)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(body, indent=2, ensure_ascii=False))
        return 0
    if body["ignored_tracks"]:
        print(f"ignored {len(body['ignored_tracks'])} unknown track(s): {', '.join(body['ignored_tracks'])}",
              file=sys.stderr)
    given = [f"name {args.name!r}" if body["name_used"] else "no usable name",
             f"{len(body['tracks_used'])} known track(s)"]
    print(f"Tracks to continue the playlist ({', '.join(given)}), two-tower model:\n")
    print(markdown_table([{"rank": i, "track": t["track_name"], "artist": t["artist_name"], "score": t["score"],
                           "uri": t["track_uri"]} for i, t in enumerate(body["tracks"], start=1)]))
    return 0


def _data_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", default=str(default_data_dir()),
        help="data folder with warehouse/ and artifacts/ (default $SPOTIFY_ASSETS_DATA_DIR or <project>/data: "
        "%(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m spotify_assets.tracks",
        description="Track-level models built by the 'tracks' asset group (item2vec embeddings).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    similar = sub.add_parser(
        "similar",
        help="the tracks nearest to a track by embedding cosine",
        description="Find the most popular embedded track whose name matches TRACK (exact, case-insensitive, "
        "first; else containing it) and print its nearest tracks by cosine, through the serving Annoy "
        "index (artifacts/serve/track_index.ann) when it exists, else exactly.",
    )
    similar.add_argument("track", help='track name or part of it, e.g. "Get Lucky"')
    similar.add_argument("--k", type=int, default=10, help="number of similar tracks (default 10)")
    _data_dir_argument(similar)
    similar.add_argument(
        "--database", default=os.environ.get("SPOTIFY_ASSETS_DUCKDB"),
        help="DuckDB file (default $SPOTIFY_ASSETS_DUCKDB or DATA_DIR/warehouse/spotify.duckdb)",
    )
    similar.add_argument("--candidates", type=int, default=5, help="name matches considered (default 5)")
    similar.set_defaults(func=_similar)
    cont = sub.add_parser(
        "continue",
        help="tracks to continue a playlist from its name and/or tracks (two-tower model)",
        description="Rank tracks to add to a playlist with the two-tower model (artifacts/tracks/two_tower.pt, "
        "written by the two_tower_model asset): from its name alone, its tracks alone, or both. Track URIs "
        "the model does not know are ignored and reported; the playlist's own tracks are never suggested. "
        "The same answer as POST /api/playlist/continue.",
        epilog='example: python -m spotify_assets.tracks continue --name "road trip" '
               "--track spotify:track:6rqhFgbbKwnb9MLmUQDhG6 --k 20",
    )
    cont.add_argument("--name", default="", help='the playlist name, e.g. "road trip"')
    cont.add_argument("--track", action="append", default=[], metavar="URI",
                      help="a track URI already in the playlist (repeatable)")
    cont.add_argument("--k", type=int, default=10, help="tracks to suggest (default 10, at most 500)")
    cont.add_argument("--json", action="store_true", help="print the endpoint's JSON body instead of a table")
    _data_dir_argument(cont)
    cont.set_defaults(func=_continue)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "k", 1) < 1:
        build_parser().error("--k must be >= 1")
    if args.command == "continue" and args.k > 500:
        build_parser().error("--k must be <= 500")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
