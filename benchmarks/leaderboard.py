"""``python -m benchmarks leaderboard``: the model leaderboard at a given scale, through Dagster.

Generates (or reuses) the scale's data, runs ``leaderboard_job`` from the command line
exactly as a user would (``dagster job execute``, its own ``DAGSTER_HOME`` and data folder
under the cache), then writes the warehouse's ``model_leaderboard`` table as
``results/leaderboard_<scale>.md`` and ``.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import REPO_ROOT, RunSettings, _git, _machine, ensure_data
from spotify_assets.evaluate.leaderboard import COLUMNS, markdown_leaderboard



def _env(data_dir: Path, raw: Path, dagster_home: Path) -> dict[str, str]:
    # A fresh instance per measurement: a run killed earlier (^C, a reboot) would otherwise
    # still hold the DuckDB pool's slot, and this run would wait for it forever.
    shutil.rmtree(dagster_home, ignore_errors=True)
    dagster_home.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text((REPO_ROOT / "deploy" / "dagster.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTIFY_ASSETS_")}
    entp = raw / "entp" / "train_triplets.txt"
    env.update({"DAGSTER_HOME": str(dagster_home), "SPOTIFY_ASSETS_DATA_DIR": str(data_dir),
                "SPOTIFY_ASSETS_MPD_DIR": str(raw / "mpd"), "SPOTIFY_ASSETS_MSD_DIR": str(raw / "msd"),
                "SPOTIFY_ASSETS_ENTP_TRIPLETS": str(entp if entp.exists() else entp.with_name(entp.name + ".gz"))})
    return env


def read_leaderboard(database: Path) -> list[dict]:
    import duckdb

    with duckdb.connect(str(database), read_only=True) as con:
        cursor = con.execute('SELECT * FROM "model_leaderboard"')
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def run_leaderboard(scale: str, seed: int, cache: Path, results: Path, config: Path | None, log=print) -> Path:
    """Run ``leaderboard_job`` at ``scale`` and write ``results/leaderboard_<scale>.{md,json}``;
    returns the markdown path. Raises ``RuntimeError`` (with the run's tail) when the run fails."""
    settings = RunSettings(scale=scale, seed=seed, stages=(), cache=cache, results=results)
    raw, stats = ensure_data(settings, lambda message: log(f"[leaderboard] {message}"))
    data_dir = cache / scale / "pipeline"
    env = _env(data_dir, raw, cache / scale / "dagster_home")
    tags = subprocess.run([sys.executable, "-m", "spotify_assets.mpd_partitions"], env=env, capture_output=True,
                          text=True, check=True, cwd=REPO_ROOT).stdout.strip()
    default = REPO_ROOT / "benchmarks" / f"leaderboard_{scale}.yaml"  # sweep sizes that fit the scale
    config = config if config is not None else (default if default.exists() else None)
    command = [str(Path(sys.executable).parent / "dagster"), "job", "execute", "-m", "spotify_assets.definitions",
               "-j", "leaderboard_job", "--tags", tags, *(["-c", str(config)] if config else [])]
    log(f"[leaderboard] {' '.join(command)}")
    started = time.perf_counter()
    run = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    (cache / scale / "leaderboard_run.log").write_text(run.stdout + run.stderr)
    if run.returncode != 0:
        raise RuntimeError(f"leaderboard_job failed after {seconds:.0f}s:\n{(run.stdout + run.stderr)[-4000:]}")
    rows = read_leaderboard(data_dir / "warehouse" / "spotify.duckdb")
    results.mkdir(parents=True, exist_ok=True)
    meta = {"scale": scale, "seed": seed, "data": stats, "run_seconds": round(seconds, 1),
            "config": str(config.relative_to(REPO_ROOT)) if config else None, "machine": _machine(), "git": _git(),
            "measured_at": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    (results / f"leaderboard_{scale}.json").write_text(json.dumps({"meta": meta, "columns": COLUMNS, "rows": rows},
                                                                  indent=1, default=str))
    md = results / f"leaderboard_{scale}.md"
    md.write_text(
        f"# Model leaderboard, {scale} scale\n\n"
        f"Produced by `python -m benchmarks leaderboard --scale {scale}` (seed {seed}): `leaderboard_job` through "
        f"`dagster job execute` in {seconds / 60:.1f} min on {meta['machine']['processor']} "
        f"({meta['machine']['cpus']} CPUs); data: {stats.get('users', '?'):,} users x "
        f"{stats.get('playlists', '?'):,} playlists; run config `{meta['config']}`; commit {meta['git']['commit'][:10]}.\n\n"
        "Full ranking of every playlist except the user's training interactions (and, for test, the "
        "validation answers); cells are Recall@10 / NDCG@10 per segment (users in brackets). Every choice "
        "(sweeps, early stopping, serving model) used the validation table; the test table is reported only.\n\n"
        f"## Test\n\n{markdown_leaderboard(rows, 'test')}\n\n## Validation\n\n{markdown_leaderboard(rows, 'val')}\n")
    log(f"[leaderboard] wrote {md} ({seconds:.0f}s)")
    return md
