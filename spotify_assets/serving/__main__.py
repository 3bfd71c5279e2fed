"""Command line: ``python -m spotify_assets.serving recommend USER_ID...`` and ``... serve``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from spotify_assets.paths import default_data_dir, local_artifacts_dir
from spotify_assets.serving.recommender import SEARCH_MODES
from spotify_assets.serving.settings import LOOPBACK_HOSTS, ServerSettings, ServiceSettings


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def _default_allowed_hosts() -> list[str]:
    configured = os.environ.get("SPOTIFY_ASSETS_ALLOWED_HOSTS", "")
    return [h.strip() for h in configured.split(",") if h.strip()] or list(LOOPBACK_HOSTS)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m spotify_assets.serving",
        description="Recommend playlists from the materialized serving bundle, or run the HTTP service. "
                    "Materialize it first with `make run` (or the serve_job).")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="data folder (default: $SPOTIFY_ASSETS_DATA_DIR or <project>/data); the bundle is read "
                             "from $SPOTIFY_ASSETS_ARTIFACTS when set, else <data-dir>/artifacts, as in the pipeline")
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("recommend", help="print top-k playlists for user ids as JSON",
                         description="Top-k playlists per user id. Unknown ids get the popularity list, "
                                     "flagged cold_start=true, known=false.")
    rec.add_argument("user_ids", nargs="+", metavar="USER_ID", help="Taste Profile user id(s)")
    rec.add_argument("-k", type=int, default=5, help="playlists per user (default 5)")
    serve = sub.add_parser("serve", help="run the HTTP service: the page, the API, metrics (FastAPI + uvicorn)",
                           description="GET / (the page: pick a user, see five playlists, like one), "
                                       "POST /api/playlist/recommend, POST /api/feedback, GET /healthz, GET /metrics "
                                       "(Prometheus), OpenAPI at /openapi.json and /docs (served locally, no "
                                       "network). Serves the champion (and, during a canary, the candidate) named "
                                       "in serve/rollout.json, else the bundle in serve/.")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: local only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--feedback-db", type=Path, default=None,
                       help="feedback SQLite file (default: $SPOTIFY_ASSETS_FEEDBACK_DB or "
                            "<data-dir>/serving/feedback.sqlite)")
    serve.add_argument("--allowed-host", action="append", default=None, metavar="NAME",
                       help="a Host name the service answers (repeat for several; any port). Others get 400, "
                            "which stops DNS-rebinding pages from reaching a local service. Default: "
                            "$SPOTIFY_ASSETS_ALLOWED_HOSTS (comma-separated) or 127.0.0.1, localhost, ::1")
    limits = ServiceSettings()
    server = ServerSettings()
    serve.add_argument("--header-timeout", type=_positive(float), default=server.header_timeout_seconds,
                       metavar="SECONDS", help="time from connecting (or from the previous response) to the end of "
                                               "a request's headers; then 408 and close (default %(default)s)")
    serve.add_argument("--body-timeout", type=_positive(float), default=limits.body_timeout_seconds,
                       metavar="SECONDS", help="time to receive a request body; then 408 and close (default %(default)s)")
    serve.add_argument("--keep-alive-timeout", type=_positive(float), default=server.keep_alive_timeout_seconds,
                       metavar="SECONDS", help="idle time between requests on one connection (default %(default)s)")
    serve.add_argument("--max-connections", type=_positive(int), default=server.max_connections,
                       help="open connections before new requests get 503 (default %(default)s)")
    serve.add_argument("--max-body-bytes", type=_positive(int), default=limits.max_body_bytes,
                       help="request body limit, chunked or not; over it 413 (default %(default)s)")
    serve.add_argument("--max-playlists-per-request", type=_positive(int), default=limits.max_playlists_per_request,
                       help="cap on len(user_ids) x k in one recommend request; over it 422 (default %(default)s)")
    serve.add_argument("--scoring-threads", type=_positive(int), default=limits.scoring_threads,
                       help="recommend requests scored at once, off the event loop (default %(default)s)")
    serve.add_argument("--search", choices=SEARCH_MODES, default=limits.search,
                       help="vector bundles (BPR/ALS): 'auto' uses the Annoy index when it was measured faster than "
                            "exact scoring at its tuned recall; 'annoy' or 'exact' force one path (song-ranker "
                            "bundles are always scored exactly; default %(default)s)")
    load = sub.add_parser("loadtest", help="measure requests/s of a running service's recommend endpoint or page",
                          description="Closed-loop load: N keep-alive clients POST /api/playlist/recommend (or GET "
                                      "the page /?user_id=...) back to back with known user ids (seeded draw) and "
                                      "report requests/s and latency.")
    load.add_argument("--target", choices=("api", "page"), default="api", help="what to load (default api)")
    load.add_argument("--url", default="http://127.0.0.1:8000", help="service base URL")
    load.add_argument("--concurrency", type=int, default=4, help="parallel clients (default 4)")
    load.add_argument("--seconds", type=float, default=10.0, help="duration (default 10)")
    load.add_argument("--users-per-request", type=int, default=1, help="user ids per request (default 1)")
    load.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    data_dir = (args.data_dir or default_data_dir()).resolve()
    try:
        artifacts = local_artifacts_dir(data_dir)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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

        from spotify_assets.contract import BUNDLE_USERS
        from spotify_assets.serving.loadtest import run_load

        users = pq.read_table(BUNDLE_USERS.under(artifacts)).column("user_id").to_pylist()
        report = run_load(args.url, users, concurrency=args.concurrency, seconds=args.seconds,
                          users_per_request=args.users_per_request, seed=args.seed, target=args.target)
        print(json.dumps(report.as_dict(), indent=2))
        return 0 if report.errors == 0 else 1
    from spotify_assets.feedback import default_feedback_path
    from spotify_assets.serving.api import create_app
    from spotify_assets.serving.server import run_server

    allowed = tuple(args.allowed_host or _default_allowed_hosts())
    settings = ServiceSettings(max_body_bytes=args.max_body_bytes, body_timeout_seconds=args.body_timeout,
                               allowed_hosts=allowed, max_playlists_per_request=args.max_playlists_per_request,
                               scoring_threads=args.scoring_threads, search=args.search)
    try:
        app = create_app(artifacts, args.feedback_db or default_feedback_path(data_dir), settings)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.host not in (*allowed, *LOOPBACK_HOSTS):
        print(f"note: listening on {args.host}, but only requests with Host {', '.join(allowed)} are answered; "
              "add --allowed-host NAME for each name clients use", file=sys.stderr)
    run_server(app, ServerSettings(
        host=args.host, port=args.port, header_timeout_seconds=args.header_timeout,
        keep_alive_timeout_seconds=args.keep_alive_timeout, max_connections=args.max_connections,
        log_level=os.environ.get("SPOTIFY_ASSETS_LOG_LEVEL", "info")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
