"""With dagster-daemon running, a slice dropped into the watched folder gets loaded."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from spotify_assets.ingest import list_mpd_slices
from spotify_assets.resources import PROJECT_ROOT
from spotify_assets_tests.servers import BIN, _start, _stop

pytestmark = pytest.mark.slow


def _runs_for(instance: dg.DagsterInstance, partition: str) -> list[dg.DagsterRun]:
    return [r for r in instance.get_runs() if r.tags.get("dagster/partition") == partition]


def _wait_success(instance: dg.DagsterInstance, partition: str, timeout: float, log: Path) -> dg.DagsterRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = _runs_for(instance, partition)
        for run in runs:
            if run.status == dg.DagsterRunStatus.SUCCESS:
                return run
            if run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
                raise AssertionError(f"run {run.run_id} for {partition} ended {run.status}")
        time.sleep(1.0)
    raise TimeoutError(f"no successful run for {partition} within {timeout}s; daemon log:\n{log.read_text()[-3000:]}")


def test_new_slice_file_is_loaded_by_the_sensor(data_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTIFY_ASSETS_")}
    env.update({"DAGSTER_HOME": str(home), "SPOTIFY_ASSETS_DATA_DIR": str(data_dir),
                "SPOTIFY_ASSETS_SENSOR_INTERVAL_SECONDS": "2"})
    mpd_dir = data_dir / "raw" / "mpd"
    existing = list_mpd_slices(mpd_dir)
    # hold one slice back, to drop it in while the daemon runs
    held_back = existing[-1]
    parked = tmp_path / held_back.name
    shutil.move(held_back, parked)

    log = tmp_path / "daemon.log"
    daemon = _start([str(BIN / "dagster-daemon"), "run", "-m", "spotify_assets.definitions"], env, log)
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            for path in existing[:-1]:
                _wait_success(instance, path.name, timeout=240, log=log)
            shutil.move(parked, held_back)
            run = _wait_success(instance, held_back.name, timeout=240, log=log)
            assert len(_runs_for(instance, held_back.name)) == 1, "the sensor requested the new slice twice"
            assert held_back.name in instance.get_dynamic_partitions("mpd_slices")
    finally:
        _stop(daemon)
    with duckdb.connect(str(data_dir / "warehouse" / "spotify.duckdb"), read_only=True) as con:
        slices = {row[0] for row in con.execute("SELECT DISTINCT slice FROM mpd_playlists").fetchall()}
    assert slices == {p.name for p in existing}
    assert run.tags.get("dagster/sensor_name") == "mpd_slice_sensor"
