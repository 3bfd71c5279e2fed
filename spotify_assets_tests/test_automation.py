"""Sensor- and schedule-driven runs (issue 21): the slice sensor requests only content the
warehouse lacks, automation is on by default and starts one chain at a time, and the nightly
and feedback retrains do not duplicate what automation rebuilt."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.events import EngineEventData
from dagster._core.utils import make_new_run_id

from spotify_assets.automation import folded_feedback_id, runs_in_flight
from spotify_assets.defs.ingest.partitions import mpd_slices
from spotify_assets.defs.ingest.sensors import mpd_slice_sensor
from spotify_assets.defs.resources import build_resources
from spotify_assets.definitions import defs as project_defs
from spotify_assets.ingest import list_mpd_slices, load_mpd_slices

GRAPH = project_defs.resolve_asset_graph()
MPD = {dg.AssetKey("mpd_playlists"), dg.AssetKey("mpd_playlist_tracks")}
INGEST = MPD | {dg.AssetKey("entp_listens"), dg.AssetKey("msd_songs")}
DERIVED = {k for k in GRAPH.get_all_asset_keys() if k not in INGEST}


def _run_in_flight(instance: dg.DagsterInstance, job: str = "train_job", **tags: str) -> dg.DagsterRun:
    run = dg.DagsterRun(job_name=job, run_id=make_new_run_id(), status=dg.DagsterRunStatus.STARTED, tags=tags)
    instance.add_run(run)
    return run


def _finish(instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    instance.report_run_canceled(run)
    assert run.run_id not in {r.run_id for r in runs_in_flight(instance)}


# --------------------------------------------------------------------------------------
# the slice sensor
# --------------------------------------------------------------------------------------


@pytest.fixture()
def loaded_folder(tiny_raw: Path, tmp_path: Path):
    """The tiny slices in a data folder whose warehouse already holds them; and resources."""
    mpd_dir = tmp_path / "raw" / "mpd"
    shutil.copytree(tiny_raw / "mpd", mpd_dir)
    resources = build_resources(tmp_path)
    database = Path(resources["warehouse"].database)
    database.parent.mkdir(parents=True)
    with duckdb.connect(str(database)) as con:
        loaded, failed = load_mpd_slices(con, [(p, p.name) for p in list_mpd_slices(mpd_dir)])
    assert len(loaded) == 2 and not failed
    return mpd_dir, resources


def _tick(instance, resources, cursor=None) -> dg.SensorResult:
    return mpd_slice_sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources))


def test_a_fresh_instance_in_front_of_a_loaded_warehouse_requests_nothing(loaded_folder) -> None:
    """Regression: the sensor's empty cursor requested a load of every slice `make run` had
    just loaded (10 runs on the sample, 1,000 on the real MPD) each time the daemon started
    on a fresh DAGSTER_HOME or a reset cursor."""
    mpd_dir, resources = loaded_folder
    files = [p.name for p in list_mpd_slices(mpd_dir)]
    with dg.instance_for_test() as instance:
        first = _tick(instance, resources)
        assert not first.run_requests
        assert "0 slices to load, 2 already held" in first.skip_reason.skip_message
        assert first.dynamic_partitions_requests[0].partition_keys == files  # registered, not loaded
        instance.add_dynamic_partitions(mpd_slices.name, files)

        # touched (or copied) without a change of content: still held
        os.utime(mpd_dir / files[0], ns=(1, 1))
        touched = _tick(instance, resources, cursor=first.cursor)
        assert not touched.run_requests and json.loads(touched.cursor)[files[0]][1] == 1

        # new content under an old name, and a new file: exactly those two, also after a reset
        document = json.loads((mpd_dir / files[0]).read_text())
        document["playlists"][0]["name"] = "renamed on disk"
        (mpd_dir / files[0]).write_text(json.dumps(document))
        new_name = "mpd.slice.100000-100249.json"
        (mpd_dir / new_name).write_text((mpd_dir / files[1]).read_text())
        for cursor in (touched.cursor, None):
            changed = _tick(instance, resources, cursor=cursor)
            assert sorted(r.partition_key for r in changed.run_requests) == sorted([files[0], new_name])
            assert all(r.run_key.startswith(f"{r.partition_key}@") for r in changed.run_requests)
        assert changed.dynamic_partitions_requests[0].partition_keys == [new_name]
        # once decided, the next tick costs a stat per file and requests nothing
        assert not _tick(instance, resources, cursor=changed.cursor).run_requests


def test_new_slices_wait_while_a_pipeline_run_is_in_flight(loaded_folder) -> None:
    mpd_dir, resources = loaded_folder
    (mpd_dir / "mpd.slice.100000-100249.json").write_text(list_mpd_slices(mpd_dir)[1].read_text())
    with dg.instance_for_test() as instance:
        # another slice load does not hold new slices back
        load = _run_in_flight(instance, "__ASSET_JOB", **{"dagster/sensor_name": "mpd_slice_sensor"})
        assert len(_tick(instance, resources).run_requests) == 1
        chain = _run_in_flight(instance, "__ASSET_JOB", **{"dagster/from_automation_condition": "true"})
        waiting = _tick(instance, resources)
        assert not waiting.run_requests and waiting.cursor is None
        assert chain.run_id[:8] in waiting.skip_reason.skip_message
        _finish(instance, chain)
        _finish(instance, load)
        assert [r.partition_key for r in _tick(instance, resources).run_requests] == ["mpd.slice.100000-100249.json"]


# --------------------------------------------------------------------------------------
# the automation sensor's conditions (evaluated in process, as the daemon would)
# --------------------------------------------------------------------------------------

SLICES = ["mpd.slice.0-249.json", "mpd.slice.250-499.json"]


def _report(instance: dg.DagsterInstance, keys, partitions=None) -> None:
    """Materializations (and passing checks) reported without a run, parents first."""
    for key in [k for k in GRAPH.toposorted_asset_keys if k in set(keys)]:
        parts = partitions if GRAPH.get(key).partitions_def is not None else [None]
        for part in parts or SLICES:
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=part))
        for check in [c for c in GRAPH.asset_check_keys if c.asset_key == key]:
            instance.report_runless_asset_event(dg.AssetCheckEvaluation(asset_key=key, check_name=check.name, passed=True))


def _requested(instance, cursor):
    result = dg.evaluate_automation_conditions(defs=project_defs, instance=instance, cursor=cursor)
    return {k for k in DERIVED if result.get_num_requested(k)}, result.cursor


def test_automation_sensor_is_on_by_default_and_targets_every_derived_asset() -> None:
    """Regression: the implicit default_automation_condition_sensor was STOPPED, so eager
    conditions never fired under the daemon."""
    sensor = project_defs.resolve_sensor_def("automation_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    automated = {k for k in GRAPH.get_all_asset_keys() if GRAPH.get(k).automation_condition is not None}
    assert automated == DERIVED
    assert sensor.asset_selection.resolve(GRAPH) >= automated


def test_automation_on_a_fresh_instance_requests_nothing() -> None:
    """A fresh DAGSTER_HOME in front of an existing warehouse knows no materialization: the
    assets are missing, not newly missing, so automation starts no full recompute (the slice
    sensor requests nothing either, see above); a run by hand rebuilds what is wanted."""
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(mpd_slices.name, SLICES)
        requested, cursor = _requested(instance, None)
        assert requested == set()
        assert _requested(instance, cursor)[0] == set()


@pytest.mark.slow  # ten evaluations of every automation condition (~40 s on an idle 2-core machine)
def test_one_chain_after_a_burst_and_none_while_a_run_is_in_flight() -> None:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(mpd_slices.name, SLICES)
        _report(instance, GRAPH.get_all_asset_keys())
        # the daemon starts on a materialized pipeline: nothing to do
        requested, cursor = _requested(instance, None)
        assert requested == set()
        requested, cursor = _requested(instance, cursor)
        assert requested == set()

        # a burst of two new slices: while the second is still loading, nothing downstream
        new = ["mpd.slice.500-749.json", "mpd.slice.750-999.json"]
        instance.add_dynamic_partitions(mpd_slices.name, new)
        second_load = _run_in_flight(instance, "__ASSET_JOB", **{"dagster/sensor_name": "mpd_slice_sensor"})
        _report(instance, MPD, partitions=new[:1])
        requested, cursor = _requested(instance, cursor)
        assert requested == set()
        _report(instance, MPD, partitions=new[1:])
        _finish(instance, second_load)
        # both loaded: one chain, every derived asset downstream of the slices in one request
        # (plus msd_song_keys, which is built in one step with mpd_track_keys); nothing that
        # only reads ENTP or MSD
        requested, cursor = _requested(instance, cursor)
        expected = requested
        assert {k for k in DERIVED if MPD & _ancestors(k)} | {dg.AssetKey("msd_song_keys")} == expected
        assert {dg.AssetKey("model_leaderboard"), dg.AssetKey("recommendations")} <= expected

        # the chain runs (minutes: the sensor ticks meanwhile). A slice loaded before its staging
        # steps read the tables is in the chain, so nothing follows it ...
        chain = _run_in_flight(instance, "__ASSET_JOB", **{"dagster/from_automation_condition": "true"})
        requested, cursor = _requested(instance, cursor)
        assert requested == set()
        _report(instance, MPD, partitions=new[:1])
        _report(instance, expected)
        _finish(instance, chain)
        requested, cursor = _requested(instance, cursor)
        assert requested == set()

        # ... one loaded after them is not: no second chain while the first is in flight, and
        # one follow-up chain once it finished (the slice sensor holds new slices back while a
        # chain is in flight; a slice loaded by hand can still land mid-chain)
        requested, cursor = _requested(instance, cursor)
        chain = _run_in_flight(instance, "__ASSET_JOB", **{"dagster/from_automation_condition": "true"})
        _report(instance, expected)
        requested, cursor = _requested(instance, cursor)
        assert requested == set()
        _report(instance, MPD, partitions=new[1:])
        requested, cursor = _requested(instance, cursor)
        assert requested == set()
        _finish(instance, chain)
        requested, cursor = _requested(instance, cursor)
        assert requested == expected


def _ancestors(key: dg.AssetKey) -> set[dg.AssetKey]:
    seen: set[dg.AssetKey] = set()
    todo = list(GRAPH.get(key).parent_keys)
    while todo:
        parent = todo.pop()
        if parent not in seen:
            seen.add(parent)
            todo.extend(GRAPH.get(parent).parent_keys)
    return seen


# --------------------------------------------------------------------------------------
# the nightly retrain and the feedback retrain beside automation
# --------------------------------------------------------------------------------------


def _nightly(instance: dg.DagsterInstance):
    schedule = project_defs.resolve_schedule_def("nightly_retrain")
    context = dg.build_schedule_context(instance=instance, repository_def=project_defs.get_repository_def())
    return schedule.evaluate_tick(context)


def test_nightly_retrain_skips_models_automation_already_rebuilt() -> None:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(mpd_slices.name, SLICES)
        assert len(_nightly(instance).run_requests) == 1  # nothing trained yet
        _report(instance, GRAPH.get_all_asset_keys())
        tick = _nightly(instance)
        assert not tick.run_requests and "newer than their inputs" in tick.skip_message
        # new training data that automation has not (yet) trained on: the nightly run goes ahead
        _report(instance, [dg.AssetKey("training_interactions")])
        assert len(_nightly(instance).run_requests) == 1
        # while a chain (or any run) is in flight it leaves the work to that run
        chain = _run_in_flight(instance, "__ASSET_JOB", **{"dagster/from_automation_condition": "true"})
        tick = _nightly(instance)
        assert not tick.run_requests and chain.run_id[:8] in tick.skip_message


def test_feedback_retrain_skips_rows_a_chain_already_folded_in(tmp_path: Path) -> None:
    from spotify_assets.resources import FeedbackStore
    from spotify_assets.feedback import FeedbackLog

    store = FeedbackStore(path=str(tmp_path / "feedback.sqlite"), retrain_threshold=3)
    log = FeedbackLog(store.path)
    for pid in range(4):
        log.add("someone", pid, [pid, pid + 100], known_user=True)
    sensor = project_defs.resolve_sensor_def("feedback_retrain_sensor")

    def tick(instance, cursor=None):
        return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor, resources={"feedback": store}))

    with dg.instance_for_test() as instance:
        # an automated chain rebuilt feedback_positives (and the models) with rows 1..4
        instance.report_runless_asset_event(dg.AssetMaterialization(
            "feedback_positives", metadata={"up_to_feedback_id": 4}))
        assert folded_feedback_id(instance) == 4
        first = tick(instance)
        assert not first.run_requests and "0 new feedback rows" in first.skip_message
        for pid in range(4, 7):
            log.add("someone", pid, [pid, pid + 100], known_user=True)
        chain = _run_in_flight(instance, "__ASSET_JOB", **{"dagster/from_automation_condition": "true"})
        waiting = tick(instance)
        assert not waiting.run_requests and chain.run_id[:8] in waiting.skip_message
        _finish(instance, chain)
        ready = tick(instance)
        assert [r.run_key for r in ready.run_requests] == ["feedback-up-to-7"]


def test_a_slice_that_fails_its_checks_stops_the_chain_at_both_tables(tiny_raw: Path, tmp_path: Path) -> None:
    """Regression (found by the daemon test): a slice with two tracks at one position failed
    tracks_consistent on mpd_playlist_tracks only, so automation still rebuilt stg_playlists and
    the serving assets from mpd_playlists. A slice's two tables pass or fail their checks together."""
    from spotify_assets.defs.ingest.assets import mpd_slice_tables

    shutil.copytree(tiny_raw, tmp_path / "raw")
    path = tmp_path / "raw" / "mpd" / SLICES[0]
    document = json.loads(path.read_text())
    document["playlists"][3]["tracks"][1]["pos"] = document["playlists"][3]["tracks"][0]["pos"]
    path.write_text(json.dumps(document))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(mpd_slices.name, SLICES)
        _report(instance, GRAPH.get_all_asset_keys())
        _, cursor = _requested(instance, None)
        result = dg.materialize([mpd_slice_tables], resources=build_resources(tmp_path), instance=instance,
                                partition_key=SLICES[0], raise_on_error=False)
        assert not result.success  # the blocking check fails the load, visibly
        failed = {(c.asset_key.to_user_string(), c.check_name) for c in result.get_asset_check_evaluations() if not c.passed}
        assert failed == {("mpd_playlists", "tracks_consistent"), ("mpd_playlist_tracks", "tracks_consistent")}
        requested, _ = _requested(instance, cursor)
        assert requested == set()


def test_a_run_whose_executor_died_is_failed_and_frees_the_pool_slot() -> None:
    """A ``dagster job execute`` killed with SIGKILL leaves its run STARTED and its slot of the
    one-slot DuckDB pool claimed; the next run would wait forever. fail_orphaned_runs (called
    by the CLI ``make run`` starts with) fails it and frees the slot, and leaves a run whose
    executor is alive alone."""
    import subprocess
    import sys

    from spotify_assets.automation import EXECUTOR_PID_MESSAGE, fail_orphaned_runs

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()

    def started_run(instance, pid: int) -> dg.DagsterRun:
        run = _run_in_flight(instance, "full_pipeline")
        instance.report_engine_event(f"{EXECUTOR_PID_MESSAGE} (pid: {pid})", run,
                                     EngineEventData(metadata={"pid": dg.MetadataValue.text(str(pid))}))
        return run

    with dg.instance_for_test() as instance:
        orphan = started_run(instance, dead.pid)
        alive = started_run(instance, os.getpid())
        storage = instance.event_log_storage
        storage.set_concurrency_slots("duckdb_warehouse", 1)  # deploy/dagster.yaml's one slot
        assert storage.claim_concurrency_slot("duckdb_warehouse", orphan.run_id, "entp_listens").is_claimed
        blocked = storage.claim_concurrency_slot("duckdb_warehouse", "next-run", "entp_listens")
        assert not blocked.is_claimed
        assert [run.run_id for run in fail_orphaned_runs(instance)] == [orphan.run_id]
        assert instance.get_run_by_id(orphan.run_id).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.STARTED
        assert storage.claim_concurrency_slot("duckdb_warehouse", "next-run", "entp_listens").is_claimed
        assert fail_orphaned_runs(instance) == []
