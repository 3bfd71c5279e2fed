"""The code location: asset graph, jobs, sensor behaviour, and an in-process materialization."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from spotify_assets.defs.ingest.assets import entp_listens, mpd_slice_tables, msd_songs
from spotify_assets.defs.ingest.partitions import mpd_slices
from spotify_assets.defs.sql.assets import sql_model_assets
from spotify_assets.defs.ingest.sensors import mpd_slice_sensor
from spotify_assets.defs.resources import build_resources
from spotify_assets.defs.runconfig import config_errors
from spotify_assets.definitions import defs as project_defs
from spotify_assets.ingest import list_mpd_slices
from spotify_assets.resources import PROJECT_ROOT

INGEST_KEYS = {"mpd_playlists", "mpd_playlist_tracks", "entp_listens", "msd_songs"}


def test_definitions_load_with_groups_jobs_and_sensor() -> None:
    defs = project_defs
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert INGEST_KEYS | {"stg_playlists", "track_dictionary", "artist_dictionary", "album_dictionary"} <= keys
    groups = {graph.get(dg.AssetKey(k)).group_name for k in INGEST_KEYS}
    assert groups == {"ingest"}
    for job in ("full_pipeline", "ingest_job", "prepare_job", "train_job"):
        assert defs.resolve_job_def(job) is not None
    assert defs.resolve_sensor_def("mpd_slice_sensor") is not None
    groups_of = {graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert {"ingest", "staging", "marts", "prepare", "label", "split", "train", "evaluate"} <= groups_of
    # everything derived rebuilds by itself once its inputs pass their blocking checks
    derived = [k for k in graph.get_all_asset_keys() if graph.get(k).group_name != "ingest"]
    assert all(graph.get(k).automation_condition is not None for k in derived)
    # every asset has a human description, an owner and at least one kind
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description, f"{key} has no description"
        assert node.owners and all(o.startswith("team:") for o in node.owners), f"{key} has no owner"
        assert node.kinds, f"{key} has no kind"
    assert graph.get(dg.AssetKey("bpr_model")).kinds >= {"pytorch"}
    assert graph.get(dg.AssetKey("playlist_index")).kinds >= {"annoy"}
    assert graph.get(dg.AssetKey("mpd_playlists")).kinds >= {"duckdb"}
    # and every check says what it checks
    for check_key in graph.asset_check_keys:
        spec = graph.get_check_spec(check_key)
        assert spec.description, f"{check_key} has no description"
    for job in ("serve_job", "feedback_retrain_job"):
        assert defs.resolve_job_def(job) is not None
    assert defs.resolve_sensor_def("feedback_retrain_sensor") is not None


def test_sensor_adds_partitions_once_and_picks_up_new_slices(tiny_raw: Path, tmp_path: Path) -> None:
    mpd_dir = tmp_path / "raw" / "mpd"
    shutil.copytree(tiny_raw / "mpd", mpd_dir)
    files = [p.name for p in list_mpd_slices(mpd_dir)]
    resources = build_resources(tmp_path)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources=resources)
        result = mpd_slice_sensor(context)
        assert sorted(r.partition_key for r in result.run_requests) == sorted(files)
        assert result.dynamic_partitions_requests[0].partition_keys == files
        cursor = result.cursor
        instance.add_dynamic_partitions(mpd_slices.name, files)

        # same files: nothing to do
        again = mpd_slice_sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources))
        assert not again.run_requests

        # a new slice file: exactly one new partition and one run
        document = json.loads(list_mpd_slices(mpd_dir)[0].read_text())
        new_name = "mpd.slice.100000-100249.json"
        (mpd_dir / new_name).write_text(json.dumps(document))
        third = mpd_slice_sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources))
        assert [r.partition_key for r in third.run_requests] == [new_name]
        assert third.dynamic_partitions_requests[0].partition_keys == [new_name]


def test_materialize_ingest_and_sql_in_process(data_dir: Path) -> None:
    resources = build_resources(data_dir)
    keys = [p.name for p in list_mpd_slices(data_dir / "raw" / "mpd")]
    assets = [mpd_slice_tables, entp_listens, msd_songs, *sql_model_assets]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(mpd_slices.name, keys)
        result = dg.materialize(
            assets,
            resources=resources,
            instance=instance,
            tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
        )
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert checks and all(c.passed for c in checks)
        mat = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}
        md = mat["mpd_playlists"].materialization.metadata
        assert md["dagster/row_count"].value > 0 and md["slices_loaded"].value == len(keys)
    with duckdb.connect(str(data_dir / "warehouse" / "spotify.duckdb"), read_only=True) as con:
        n_playlists = con.execute("SELECT count(*) FROM stg_playlists").fetchall()[0][0]
    assert n_playlists == md["dagster/row_count"].value


def test_nightly_retrain_schedule_targets_train_job() -> None:
    defs = project_defs
    schedule = defs.resolve_schedule_def("nightly_retrain")
    assert schedule.cron_schedule == "0 3 * * *" and schedule.job_name == "train_job"
    train_assets = defs.resolve_job_def("train_job").asset_layer.executable_asset_keys
    assert {dg.AssetKey("bpr_model"), dg.AssetKey("model_leaderboard")} <= set(train_assets)
    with dg.instance_for_test() as instance:
        requests = list(schedule.evaluate_tick(dg.build_schedule_context(instance=instance)).run_requests or [])
    assert len(requests) == 1


COMMITTED_RUN_CONFIGS = {  # committed run config file -> the job it is for
    "deploy/full_scale.yaml": "full_pipeline",
    "deploy/run_logging.yaml": "full_pipeline",
    "benchmarks/leaderboard_bench.yaml": "leaderboard_job",
}


@pytest.mark.parametrize(("path", "job"), sorted(COMMITTED_RUN_CONFIGS.items()))
def test_committed_run_configs_validate_against_their_jobs(path: str, job: str) -> None:
    """Every committed run config passes Dagster's schema check (names, types) and the pipeline
    executor's value check (ge=1, allowed names) that otherwise fires only when a run starts."""
    run_config = yaml.safe_load((PROJECT_ROOT / path).read_text())
    job_def = project_defs.resolve_job_def(job)
    dg.validate_run_config(job_def, run_config)  # raises DagsterInvalidConfigError
    assert config_errors(job_def.graph, run_config) == []


def test_full_scale_config_downscales_users_like_the_original_system() -> None:
    run_config = yaml.safe_load((PROJECT_ROOT / "deploy" / "full_scale.yaml").read_text())
    resolved = dg.validate_run_config(project_defs.resolve_job_def("full_pipeline"), run_config)
    assert resolved["resources"]["settings"]["config"]["downscale"] == 0.1
    sweep = resolved["ops"]["bpr_sweep"]["config"]
    assert len(sweep["dims"]) * len(sweep["lrs"]) * len(sweep["regs"]) * len(sweep["init_stds"]) == 1
    als = resolved["ops"]["als_model"]["config"]
    assert len(als["factors"]) * len(als["alphas"]) == 1
    assert resolved["ops"]["model_leaderboard"]["config"]["full_ranking_users"] > 0  # a seeded sample, not everyone


def test_definitions_load_without_torch_and_step_processes_preload_it() -> None:
    """Every CLI command, code server and daemon imports the definitions: torch and Lightning
    (~3.4 s of a 4.7 s import) stay out of them, and the executor's forkserver preloads the
    torch models so that the steps that train do not import them one by one."""
    import subprocess
    import sys

    from spotify_assets.defs.jobs import STEP_PRELOAD_MODULES

    probe = ("import sys, spotify_assets.definitions; "
             "print(sorted(m for m in ('torch', 'pytorch_lightning', 'lightning_fabric') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=PROJECT_ROOT)
    assert out.stdout.strip() == "[]", out.stdout
    assert {"spotify_assets.definitions", "spotify_assets.train.bpr", "spotify_assets.tracks.two_tower",
            "dagster._core.storage.sqlite_storage"} <= set(STEP_PRELOAD_MODULES)
    # each one imports (a typo would fail the forkserver, and with it every step)
    subprocess.run([sys.executable, "-c", "import " + ", ".join(STEP_PRELOAD_MODULES)], check=True, cwd=PROJECT_ROOT)
