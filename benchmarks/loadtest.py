"""``python -m benchmarks loadtest``: requests/s and latency of the running service, per serving path.

Over a materialized pipeline (``make run``: the committed sample), for each serving path

* a vector model (the better of BPR/ALS on validation) searched through its **Annoy** index,
* the same bundle scored **exactly** (one matrix-vector product per user),
* the **song ranker** (always exact: ``SongRanker.score_all`` over every playlist),

the bundle is built by the pipeline's own ``serving_model`` and ``playlist_index`` assets into a
scratch artifacts folder (the models and matrices are linked from the data folder, nothing there
is written), the service is started on a free 127.0.0.1 port (``--search annoy|exact``), and the
project's load generator (:func:`spotify_assets.serving.loadtest.run_load`) drives the API
(``POST /api/playlist/recommend``, one user per request) and the page (``GET /?user_id=``) with
N keep-alive clients. Each (path, target) is measured ``repeats`` times; the table reports the
median requests/s, p50 and p95 and every repeat's requests/s. The load generator runs on the
same machine as the service, and the machine's load average before and after is recorded:
numbers from a busy machine say so.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import REPO_ROOT, _git, _machine
from spotify_assets.contract import BUNDLE_DIR, BUNDLE_INFO, BUNDLE_USERS

PATHS = (("vector", "annoy"), ("vector", "exact"), ("song_ranker", "exact"))
TARGETS = ("api", "page")


def _linked_copy(source: Path, target: Path, skip: tuple[str, ...]) -> None:
    """``source`` tree as hard links under ``target`` (copies across file systems), minus ``skip``
    top-level folders. The pipeline replaces files by renaming, so writes under ``target`` never
    reach ``source``."""
    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    for child in source.iterdir():
        if child.name in skip:
            continue
        if child.is_dir():
            shutil.copytree(child, target / child.name, copy_function=link)
        else:
            link(str(child), str(target / child.name))


def _best_vector_model(database: Path) -> str:
    import duckdb

    with duckdb.connect(str(database), read_only=True) as con:
        row = con.execute("SELECT model FROM model_leaderboard WHERE split = 'val' AND segment = 'all' AND model IN "
                          "('bpr', 'als') ORDER BY \"recall@10\" DESC NULLS LAST, model LIMIT 1").fetchone()
    if row is None:
        raise RuntimeError(f"{database} has no model_leaderboard: run `make run` first")
    return row[0]


def _build_bundle(data_dir: Path, artifacts: Path, model: str) -> dict:
    """``serving_model`` (model=...) and ``playlist_index`` into ``artifacts``; returns the bundle's .json."""
    import dagster as dg

    from spotify_assets.defs.resources import build_resources
    from spotify_assets.defs.serve.assets import playlist_index, serving_model
    from spotify_assets.resources import ArtifactStore

    resources = build_resources(data_dir)
    resources["artifacts"] = ArtifactStore(root=str(artifacts))
    result = dg.materialize([serving_model, playlist_index], resources=resources,
                            run_config={"ops": {"serving_model": {"config": {"model": model}}}})
    if not result.success:
        raise RuntimeError(f"building the {model} bundle failed")
    return json.loads(BUNDLE_INFO.under(artifacts).read_text())


def _serve(artifacts: Path, search: str, port: int, log: Path) -> subprocess.Popen:
    from spotify_assets_tests.servers import _start, wait_http

    env = {**os.environ, "SPOTIFY_ASSETS_ARTIFACTS": str(artifacts), "SPOTIFY_ASSETS_LOG_LEVEL": "warning"}
    process = _start([sys.executable, "-m", "spotify_assets.serving", "serve", "--port", str(port), "--search", search,
                      "--feedback-db", str(artifacts.parent / "feedback.sqlite"), "--max-connections", "1000"],
                     env, log)
    wait_http(f"http://127.0.0.1:{port}/healthz", 180, process, log)
    return process


def run_loadtest(data_dir: Path, results: Path, concurrency: int = 4, seconds: float = 10.0, repeats: int = 3,
                 name: str = "sample", log=print) -> Path:
    """Measure every path in :data:`PATHS` x :data:`TARGETS`; write ``results/loadtest_<name>.{md,json}``."""
    import pyarrow.parquet as pq

    from spotify_assets.serving.loadtest import run_load
    from spotify_assets_tests.servers import _stop, free_port

    data_dir = Path(data_dir).resolve()
    database = data_dir / "warehouse" / "spotify.duckdb"
    vector_model = _best_vector_model(database)
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="loadtest-") as scratch:
        built: dict[str, Path] = {}
        for kind, search in PATHS:
            model = vector_model if kind == "vector" else "song_ranker"
            if model not in built:
                artifacts = Path(scratch) / model / "artifacts"
                artifacts.mkdir(parents=True)
                _linked_copy(data_dir / "artifacts", artifacts, skip=BUNDLE_DIR)
                log(f"[loadtest] building the {model} bundle")
                _build_bundle(data_dir, artifacts, model)
                built[model] = artifacts
            artifacts = built[model]
            users = pq.read_table(BUNDLE_USERS.under(artifacts)).column("user_id").to_pylist()
            port = free_port()
            process = _serve(artifacts, search, port, Path(scratch) / f"{model}-{search}.log")
            try:
                for target in TARGETS:
                    # a short warm-up: first requests load the page's tables and fill caches
                    run_load(f"http://127.0.0.1:{port}", users, concurrency=1, seconds=1.0, seed=99, target=target)
                    reports = [run_load(f"http://127.0.0.1:{port}", users, concurrency=concurrency, seconds=seconds,
                                        seed=r, target=target) for r in range(repeats)]
                    errors = sum(r.errors for r in reports)
                    row = {"model": model, "path": search, "target": target, "concurrency": concurrency,
                           "requests_per_second": round(statistics.median(r.requests_per_second for r in reports), 1),
                           "p50_ms": round(statistics.median(r.p50_ms for r in reports), 2),
                           "p95_ms": round(statistics.median(r.p95_ms for r in reports), 2),
                           "repeats_rps": [round(r.requests_per_second, 1) for r in reports],
                           "requests": sum(r.requests for r in reports), "errors": errors}
                    log(f"[loadtest] {row}")
                    rows.append(row)
            finally:
                _stop(process)
    load_after = os.getloadavg()
    shown_dir = data_dir.relative_to(REPO_ROOT) if data_dir.is_relative_to(REPO_ROOT) else data_dir
    meta = {"data_dir": str(shown_dir), "vector_model": vector_model, "concurrency": concurrency, "seconds": seconds,
            "repeats": repeats, "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after], "machine": _machine(), "git": _git(),
            "measured_at": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    results.mkdir(parents=True, exist_ok=True)
    (results / f"loadtest_{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    header = "| model | search path | target | requests/s (median) | p50 ms | p95 ms | requests/s per repeat | errors |"
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['path']} | {'API recommend (1 user)' if r['target'] == 'api' else 'page /?user_id='} "
              f"| {r['requests_per_second']:,.1f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} "
              f"| {', '.join(f'{x:,.1f}' for x in r['repeats_rps'])} | {r['errors']} |" for r in rows]
    machine = meta["machine"]
    md = results / f"loadtest_{name}.md"
    md.write_text(
        f"# Service load test, {name}\n\n"
        f"Produced by `python -m benchmarks loadtest --data-dir {shown_dir} "
        f"--concurrency {concurrency} --seconds {seconds:g} --repeats {repeats}` on {machine['processor']} "
        f"({machine['cpus']} CPUs), commit {meta['git']['commit'][:10]}, {meta['measured_at']} UTC. "
        f"Load average (1, 5, 15 min) before: {', '.join(map(str, meta['load_average_before']))}; after: "
        f"{', '.join(map(str, meta['load_average_after']))}. The {concurrency} closed-loop keep-alive clients run on the "
        "same machine as the service (uvicorn, one process, 2 scoring threads); each cell is the median of the "
        f"repeats, each repeat {seconds:g} s. Every request logs an impression in the service's SQLite log.\n\n"
        + "\n".join(lines) + "\n")
    log(f"[loadtest] wrote {md}")
    return md
