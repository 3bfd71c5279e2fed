"""Sensor-driven runs as an operator sees them, with ``dagster-daemon run`` on tiny data (issue 21):
from a materialized pipeline, starting the daemon requests nothing; two new slice
files are each loaded once and then one automated chain rebuilds everything downstream through
``model_leaderboard`` and ``recommendations`` with every blocking check passing; a slice that
fails its checks stops there, visibly.

Own DAGSTER_HOME, data folder and sensor interval (2 s); the daemon is always stopped. Each
wait is bounded; the phase timings are printed (``-s``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from spotify_assets.definitions import defs as project_defs
from spotify_assets.defs.resources import build_resources
from spotify_assets.ingest import list_mpd_slices
from spotify_assets.mpd_partitions import range_tags, sync_partitions
from spotify_assets.resources import PROJECT_ROOT
from spotify_assets.synth import generate
from spotify_assets_tests.servers import BIN, _start, _stop

pytestmark = pytest.mark.slow

INTERVAL_SECONDS = 2
AUTOMATION_TAG = "dagster/from_automation_condition"
CHAIN_END = {dg.AssetKey("model_leaderboard"), dg.AssetKey("recommendations")}


def _automation_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return [r for r in instance.get_runs() if r.tags.get(AUTOMATION_TAG) == "true"]


def _slice_runs(instance: dg.DagsterInstance, name: str) -> list[dg.DagsterRun]:
    return [r for r in instance.get_runs() if r.tags.get("dagster/partition") == name]


def _ticks(log: Path, sensor: str) -> int:
    return log.read_text(errors="replace").count(f"Checking for new runs for sensor: {sensor}")


def _wait(what: str, condition, timeout: float, log: Path, poll: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"{what}: not within {timeout:.0f}s; daemon log:\n{log.read_text(errors='replace')[-4000:]}")


def _finished(runs: list[dg.DagsterRun]) -> bool:
    return bool(runs) and all(r.is_finished for r in runs)


def _slice(source: Path, first_pid: int, n: int, path: Path) -> Path:
    """A slice file of ``n`` playlists of ``source`` renumbered from ``first_pid``."""
    document = json.loads(source.read_text())
    playlists = document["playlists"][:n]
    for offset, playlist in enumerate(playlists):
        playlist["pid"] = first_pid + offset
    path.write_text(json.dumps({"info": document["info"], "playlists": playlists}, indent=2))
    return path


def test_daemon_loads_new_slices_once_and_rebuilds_downstream_in_one_chain(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started = time.monotonic()
    timings: dict[str, float] = {}
    data = tmp_path / "data"
    generate(data / "raw", scale="tiny", seed=0)
    mpd_dir = data / "raw" / "mpd"
    # two new slices of 10 playlists each (copies of existing ones under new pids): a small
    # change, so the rebuilt models still pass their blocking checks (BPR beats popularity)
    held = tmp_path / "held"
    held.mkdir()
    source = list_mpd_slices(mpd_dir)[0]
    new_slices = [_slice(source, first, 10, held / f"mpd.slice.{first}-{first + 249}.json").name
                  for first in (500, 750)]
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTIFY_ASSETS_")}
    env.update({"DAGSTER_HOME": str(home), "SPOTIFY_ASSETS_DATA_DIR": str(data),
                "SPOTIFY_ASSETS_SENSOR_INTERVAL_SECONDS": str(INTERVAL_SECONDS)})

    # 1. what `make run` leaves: every slice registered and every asset materialized (here in
    #    process, ~4x faster than the CLI's multiprocess run; test_cli.py runs the CLI path)
    for key in [k for k in os.environ if k.startswith("SPOTIFY_ASSETS_")]:
        monkeypatch.delenv(key)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        keys = sync_partitions(instance, mpd_dir)
        built = project_defs.resolve_job_def("full_pipeline").execute_in_process(
            instance=instance, resources=build_resources(data), tags=range_tags(keys), raise_on_error=False)
        assert built.success
    timings["materialize"] = time.monotonic() - started

    log = tmp_path / "daemon.log"
    daemon = _start([str(BIN / "dagster-daemon"), "run", "-m", "spotify_assets.definitions"], env, log)
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            before = {r.run_id for r in instance.get_runs()}
            # 2. the daemon starts on a materialized pipeline: both sensors tick, nothing is requested
            phase = time.monotonic()
            _wait("three ticks of each sensor",
                  lambda: min(_ticks(log, "mpd_slice_sensor"), _ticks(log, "automation_sensor")) >= 3, 180, log)
            assert {r.run_id for r in instance.get_runs()} == before, "starting the daemon requested runs"
            timings["start_no_runs"] = time.monotonic() - phase

            # 3. two new slices at once: each loaded once, then one chain through the leaderboard
            #    and the recommendations, never two chains in flight
            phase = time.monotonic()
            for name in new_slices:
                os.replace(held / name, mpd_dir / name)
            for name in new_slices:
                _wait(f"a finished load of {name}", lambda n=name: _finished(_slice_runs(instance, n)), 300, log)
            loads = {name: _slice_runs(instance, name) for name in new_slices}
            assert all(len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS for runs in loads.values()), loads
            max_in_flight = 0

            def chain_done():
                nonlocal max_in_flight
                runs = _automation_runs(instance)
                max_in_flight = max(max_in_flight, sum(not r.is_finished for r in runs))
                return _finished(runs) and any(CHAIN_END <= set(r.asset_selection or ()) for r in runs)

            _wait("an automated chain through model_leaderboard and recommendations", chain_done, 600, log, poll=0.5)
            chain_ticks = _ticks(log, "automation_sensor")
            _wait("three more automation ticks", lambda: _ticks(log, "automation_sensor") >= chain_ticks + 3, 120, log)
            chains = _automation_runs(instance)
            assert max_in_flight == 1
            assert len(chains) == 1, [(r.run_id, sorted(k.to_user_string() for k in r.asset_selection or ())) for r in chains]
            chain = chains[0]
            failures = [(e.step_key, e.dagster_event.event_specific_data.error.to_string()[-1500:])
                        for e in instance.all_logs(chain.run_id)
                        if e.dagster_event is not None and e.dagster_event.event_type_value == "STEP_FAILURE"]
            assert chain.status == dg.DagsterRunStatus.SUCCESS, failures
            checks = [e.dagster_event.event_specific_data for e in instance.all_logs(chain.run_id)
                      if e.dagster_event is not None and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"]
            assert checks and all(c.passed for c in checks if c.severity == dg.AssetCheckSeverity.ERROR)
            assert {r.run_id for r in instance.get_runs()} - before == {chain.run_id} | {
                runs[0].run_id for runs in loads.values()}
            timings["two_slices_to_recommendations"] = time.monotonic() - phase

            # 4. a slice that fails its checks (two tracks at one position): loaded, its blocking
            #    check fails the run, and no chain follows
            phase = time.monotonic()
            bad = _slice(source, 1000, 10, tmp_path / "mpd.slice.1000-1249.json")
            document = json.loads(bad.read_text())
            document["playlists"][3]["tracks"][1]["pos"] = document["playlists"][3]["tracks"][0]["pos"]
            bad.write_text(json.dumps(document, indent=2))
            os.replace(bad, mpd_dir / bad.name)
            _wait("the bad slice's load to finish", lambda: _finished(_slice_runs(instance, bad.name)), 300, log)
            (failed,) = _slice_runs(instance, bad.name)
            assert failed.status == dg.DagsterRunStatus.FAILURE
            evaluations = [e.dagster_event.event_specific_data for e in instance.all_logs(failed.run_id)
                           if e.dagster_event is not None and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"]
            assert {(c.asset_key.to_user_string(), c.check_name) for c in evaluations if not c.passed} == {
                ("mpd_playlists", "tracks_consistent"), ("mpd_playlist_tracks", "tracks_consistent")}
            ticks = _ticks(log, "automation_sensor")
            _wait("three more automation ticks", lambda: _ticks(log, "automation_sensor") >= ticks + 3, 120, log)
            assert _automation_runs(instance) == chains, "a chain started from a slice that failed its checks"
            timings["bad_slice_stops"] = time.monotonic() - phase
    finally:
        _stop(daemon)
    with duckdb.connect(str(data / "warehouse" / "spotify.duckdb"), read_only=True) as con:
        staged = con.execute("SELECT count(*) FROM stg_playlists").fetchall()[0][0]
        in_warehouse = con.execute("SELECT count(*) FROM mpd_playlists").fetchall()[0][0]
    # downstream reflects both new slices (500 + 20 playlists) but not the bad one (10 more in the raw table)
    assert (staged, in_warehouse) == (520, 530)
    timings["total"] = time.monotonic() - started
    print("daemon test timings (s):", {k: round(v, 1) for k, v in timings.items()})
