"""End to end from the command line, as the README runs it: register slices, execute the job."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from spotify_assets.contract import TRACK_INDEX
from spotify_assets.ingest import list_mpd_slices
from spotify_assets.resources import PROJECT_ROOT

BIN = Path(sys.executable).parent


def _env(data_dir: Path, dagster_home: Path) -> dict[str, str]:
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text((PROJECT_ROOT / "deploy" / "dagster.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTIFY_ASSETS_")}
    env.update({"DAGSTER_HOME": str(dagster_home), "SPOTIFY_ASSETS_DATA_DIR": str(data_dir)})
    return env


def _execute(job: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    tags = subprocess.run(
        [sys.executable, "-m", "spotify_assets.mpd_partitions"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    return subprocess.run(
        [str(BIN / "dagster"), "job", "execute", "-m", "spotify_assets.definitions", "-j", job, "--tags", tags],
        env=env, capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT,
    )


@pytest.fixture()
def sample_data_dir(tmp_path: Path) -> Path:
    """A private copy of the committed sample inputs (what `make run` reads)."""
    data = tmp_path / "sample"
    for name in ("mpd", "entp", "msd"):
        shutil.copytree(PROJECT_ROOT / "data" / "raw" / name, data / "raw" / name)
    return data


def _leaderboard(data_dir: Path) -> list[tuple]:
    """The leaderboard's rows without train_seconds, the one column a re-run may change."""
    with duckdb.connect(str(data_dir / "warehouse" / "spotify.duckdb"), read_only=True) as con:
        return con.execute(
            "SELECT * EXCLUDE (train_seconds) FROM model_leaderboard ORDER BY model, split, segment"
        ).fetchall()


def _counts(data_dir: Path) -> dict[str, int]:
    with duckdb.connect(str(data_dir / "warehouse" / "spotify.duckdb"), read_only=True) as con:
        return {
            t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
            for t in ("mpd_playlists", "mpd_playlist_tracks", "entp_listens", "msd_songs", "track_dictionary")
        }


@pytest.mark.slow
def test_full_pipeline_on_the_sample_from_the_cli_is_idempotent(sample_data_dir: Path, tmp_path: Path) -> None:
    env = _env(sample_data_dir, tmp_path / "dagster_home")
    first = _execute("full_pipeline", env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "RUN_SUCCESS" in first.stdout + first.stderr
    counts = _counts(sample_data_dir)
    assert counts["mpd_playlists"] == 5000 and counts["entp_listens"] > 0 and counts["track_dictionary"] > 0
    board = _leaderboard(sample_data_dir)
    assert {row[0] for row in board} == {"random", "popularity", "als", "knn", "bpr", "song_ranker", "oracle"}
    second = _execute("full_pipeline", env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert _counts(sample_data_dir) == counts
    assert _leaderboard(sample_data_dir) == board  # same seed, same metrics


@pytest.mark.slow
def test_bad_slice_fails_the_run_naming_the_file_and_keeps_old_rows(data_dir: Path, tmp_path: Path) -> None:
    env = _env(data_dir, tmp_path / "dagster_home")
    assert _execute("ingest_job", env).returncode == 0
    before = _counts(data_dir)
    victim = list_mpd_slices(data_dir / "raw" / "mpd")[-1]
    text = victim.read_text()
    victim.write_text(text[: len(text) // 3])
    failed = _execute("ingest_job", env)
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert victim.name in output and "malformed JSON" in output
    assert _counts(data_dir) == before


def test_mpd_partitions_cli_prints_range_tags(data_dir: Path, tmp_path: Path) -> None:
    env = _env(data_dir, tmp_path / "dagster_home")
    out = subprocess.run(
        [sys.executable, "-m", "spotify_assets.mpd_partitions"], env=env, capture_output=True, text=True, check=True
    )
    names = [p.name for p in list_mpd_slices(data_dir / "raw" / "mpd")]
    assert json.loads(out.stdout) == {
        "dagster/asset_partition_range_start": names[0],
        "dagster/asset_partition_range_end": names[-1],
    }
    empty = subprocess.run(
        [sys.executable, "-m", "spotify_assets.mpd_partitions", "--mpd-dir", str(tmp_path)],
        env=env, capture_output=True, text=True,
    )
    assert empty.returncode == 2 and "no mpd.slice" in empty.stderr


def test_definitions_validate(tmp_path: Path, data_dir: Path) -> None:
    env = _env(data_dir, tmp_path / "dagster_home")
    result = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-m", "spotify_assets.definitions"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.slow
def test_jobs_and_single_asset_materialize_from_the_cli(data_dir: Path, tmp_path: Path) -> None:
    """ingest_job then prepare_job (prepare -> label -> split) from the CLI, and
    `dagster asset materialize --select` on one asset."""
    env = _env(data_dir, tmp_path / "dagster_home")
    ingest = _execute("ingest_job", env)
    assert ingest.returncode == 0, ingest.stdout[-3000:] + ingest.stderr[-3000:]
    prepare = subprocess.run(
        [str(BIN / "dagster"), "job", "execute", "-m", "spotify_assets.definitions", "-j", "prepare_job"],
        env=env, capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT,
    )
    assert prepare.returncode == 0, prepare.stdout[-3000:] + prepare.stderr[-3000:]
    for artifact in ("label/labels.npz", "split/training_interactions.npz", "split/eval_batches.npz"):
        assert (data_dir / "artifacts" / artifact).exists(), artifact
    # train_job (small settings, track models included) and serve_job on top of the prepared splits
    config = tmp_path / "train.yaml"
    config.write_text(json.dumps({"ops": {
        "bpr_sweep": {"config": {"dims": [8], "lrs": [0.1], "max_epochs": 4, "val_every": 2}},
        "song_ranker": {"config": {"max_epochs": 2}},
        "als_model": {"config": {"factors": [8], "alphas": [10.0], "iterations": 3}},
        # tiny has 500 playlists: embed tracks seen 3+ times
        "track_embeddings": {"config": {"min_count": 3, "compare_ppmi_svd": False, "epochs": 3}},
    }}))
    for job, extra in (("train_job", ["-c", str(config)]), ("serve_job", [])):
        run = subprocess.run(
            [str(BIN / "dagster"), "job", "execute", "-m", "spotify_assets.definitions", "-j", job, *extra],
            env=env, capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT,
        )
        assert run.returncode == 0, job + run.stdout[-3000:] + run.stderr[-3000:]
    with duckdb.connect(str(data_dir / "warehouse" / "spotify.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(DISTINCT model) FROM model_leaderboard").fetchall()[0][0] == 7
        n_users, n_rows = con.execute("SELECT count(DISTINCT uid), count(*) FROM recommendations").fetchall()[0]
    assert n_rows == 5 * n_users > 0
    assert TRACK_INDEX.under(data_dir / "artifacts").exists()
    single = subprocess.run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "spotify_assets.definitions", "--select", "msd_songs"],
        env=env, capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT,
    )
    assert single.returncode == 0, single.stdout[-3000:] + single.stderr[-3000:]
    assert "msd_songs" in single.stdout + single.stderr and "RUN_SUCCESS" in single.stdout + single.stderr


def test_invalid_config_fails_before_any_step_runs(data_dir: Path, tmp_path: Path) -> None:
    env = _env(data_dir, tmp_path / "dagster_home")
    config = tmp_path / "bad.yaml"
    config.write_text(json.dumps({"ops": {
        "bpr_model": {"config": {"dim": -1, "optimizer": "adamw"}},
        "liked_playlists": {"ops": {"plan_label_shards": {"config": {"shards": 0}}}},
    }}))
    result = subprocess.run(
        [str(BIN / "dagster"), "job", "execute", "-m", "spotify_assets.definitions", "-j", "full_pipeline",
         "-c", str(config)], env=env, capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Invalid run config, nothing was run" in output
    for needle in ("bpr_model.config.dim", "optimizer must be 'sgd' or 'sparse_adam'",
                   "plan_label_shards.config.shards"):
        assert needle in output, needle
    assert "STEP_START" not in output
    assert not (data_dir / "warehouse").exists() and not (data_dir / "artifacts").exists()
