"""A process that test_concurrency.py runs several of at once against one DuckDB file.

    python -m spotify_assets_tests.concurrent_loader write DB START --slice PATH [--repeats N] [--lock-timeout S] [--progress FILE]
    python -m spotify_assets_tests.concurrent_loader read DB START --stop STOP_FILE [--progress FILE]

Every process waits until the START file exists (so they all begin together), then goes
through :class:`DuckDBWarehouse.connect`, whose retry is what is under test. A writer loads
its slice ``repeats`` times, one connection per load, and exits 0; a lock it cannot get
within ``--lock-timeout`` makes it exit 3 ("failed cleanly"). A reader opens the file
read-only over and over until STOP exists and prints, as JSON, every per-slice row count
it saw. With ``--progress`` the reader counts its observations in FILE and a writer waits,
after each load, until the reader has made one more (so reads interleave with the loads
instead of starving behind them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import duckdb

from spotify_assets.atomic import atomic_write
from spotify_assets.ingest import load_mpd_slice
from spotify_assets.resources import DuckDBWarehouse


def _wait_for(path: Path, timeout: float = 300.0) -> None:
    print("waiting", flush=True)  # imports are done: the test may start everyone
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)


def write(args) -> int:
    warehouse = DuckDBWarehouse(database=str(args.db), lock_timeout_seconds=args.lock_timeout, threads=1)
    _wait_for(args.start)
    for _ in range(args.repeats):
        try:
            with warehouse.connect() as con:
                result = load_mpd_slice(con, args.slice)
        except duckdb.Error as exc:
            print(json.dumps({"failed": str(exc).splitlines()[0]}), flush=True)
            return 3
        print(json.dumps({"loaded": result.rows, "at": time.time()}), flush=True)
        if args.progress is not None:  # let the reader in: wait until it has seen one more state
            seen = _count(args.progress)
            deadline = time.monotonic() + 60
            while _count(args.progress) <= seen and time.monotonic() < deadline:
                time.sleep(0.01)
    return 0


def _count(path: Path) -> int:
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return 0


def read(args) -> int:
    warehouse = DuckDBWarehouse(database=str(args.db), lock_timeout_seconds=args.lock_timeout, threads=1)
    _wait_for(args.start)
    seen: list[dict] = []
    while not args.stop.exists():
        with warehouse.connect(read_only=True) as con:
            tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
            if {"mpd_playlists", "mpd_playlist_tracks"} <= tables:
                playlists = dict(con.execute("SELECT slice, count(*) FROM mpd_playlists GROUP BY slice").fetchall())
                tracks = dict(con.execute("SELECT slice, count(*) FROM mpd_playlist_tracks GROUP BY slice").fetchall())
                seen.append({"playlists": playlists, "tracks": tracks, "at": time.time()})
            else:
                seen.append({"playlists": {}, "tracks": {}, "at": time.time()})
        if args.progress is not None:
            with atomic_write(args.progress) as tmp:
                tmp.write_text(str(len(seen)))
    print(json.dumps({"observations": seen}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["write", "read"])
    parser.add_argument("db", type=Path)
    parser.add_argument("start", type=Path)
    parser.add_argument("--slice", type=Path)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--lock-timeout", type=float, default=120.0)
    parser.add_argument("--progress", type=Path, help="file with the reader's observation count")
    parser.add_argument("--stop", type=Path)
    args = parser.parse_args(argv)
    return write(args) if args.role == "write" else read(args)


if __name__ == "__main__":
    sys.exit(main())
