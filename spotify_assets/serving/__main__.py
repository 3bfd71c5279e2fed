"""Command line: ``python -m spotify_assets.serving recommend USER_ID...`` and ``... serve``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from spotify_assets.resources import default_data_dir


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m spotify_assets.serving",
        description="Recommend playlists from the materialized serving bundle, or run the HTTP service. "
                    "Materialize it first with `make run` (or the serve_job).")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="data folder holding artifacts/ (default: $SPOTIFY_ASSETS_DATA_DIR or <project>/data)")
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("recommend", help="print top-k playlists for user ids as JSON",
                         description="Top-k playlists per user id. Unknown ids get the popularity list, "
                                     "flagged cold_start=true, known=false.")
    rec.add_argument("user_ids", nargs="+", metavar="USER_ID", help="Taste Profile user id(s)")
    rec.add_argument("-k", type=int, default=5, help="playlists per user (default 5)")
    serve = sub.add_parser("serve", help="run the HTTP API (FastAPI + uvicorn)",
                           description="POST /api/playlist/recommend, POST /api/feedback, GET /healthz, "
                                       "OpenAPI at /openapi.json and /docs.")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: local only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--feedback-db", type=Path, default=None,
                       help="feedback SQLite file (default: <data-dir>/serving/feedback.sqlite)")
    serve.add_argument("--max-body-bytes", type=int, default=None, help="request body limit (default 64 KiB)")
    load = sub.add_parser("loadtest", help="measure requests/s of a running service's recommend endpoint",
                          description="Closed-loop load: N keep-alive clients POST /api/playlist/recommend back "
                                      "to back with known user ids (seeded draw) and report requests/s and latency.")
    load.add_argument("--url", default="http://127.0.0.1:8000", help="service base URL")
    load.add_argument("--concurrency", type=int, default=4, help="parallel clients (default 4)")
    load.add_argument("--seconds", type=float, default=10.0, help="duration (default 10)")
    load.add_argument("--users-per-request", type=int, default=1, help="user ids per request (default 1)")
    load.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    data_dir = (args.data_dir or default_data_dir()).resolve()
    artifacts = data_dir / "artifacts"
    if args.command == "recommend":
        from spotify_assets.serving import recommend

        if args.k < 1:
            print("error: -k must be >= 1", file=sys.stderr)
            return 2
        try:
            result = recommend(args.user_ids, k=args.k, artifacts_dir=artifacts)
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0
    if args.command == "loadtest":
        import pyarrow.parquet as pq

        from spotify_assets.serving.loadtest import run_load
        from spotify_assets.serving.recommender import USERS

        users = pq.read_table(artifacts.joinpath(*USERS)).column("user_id").to_pylist()
        report = run_load(args.url, users, concurrency=args.concurrency, seconds=args.seconds,
                          users_per_request=args.users_per_request, seed=args.seed)
        print(json.dumps(report.as_dict(), indent=2))
        return 0 if report.errors == 0 else 1
    import uvicorn

    from spotify_assets.serving.api import MAX_BODY_BYTES, create_app
    from spotify_assets.feedback import default_feedback_path

    feedback = args.feedback_db or default_feedback_path(data_dir)
    try:
        app = create_app(artifacts, feedback, max_body_bytes=args.max_body_bytes or MAX_BODY_BYTES)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    uvicorn.run(app, host=args.host, port=args.port, log_level=os.environ.get("SPOTIFY_ASSETS_LOG_LEVEL", "info"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
