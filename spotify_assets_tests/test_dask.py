"""Scale-out: the label and split stages on a local Dask cluster, with their artifacts on an
fsspec URL, equal the in-process run byte for byte.

The label shards of ``liked_playlists`` are independent steps, so they can run on any
distributed engine. Dagster's Dask executor cannot run the project's ``DynamicOut`` fan-out
(it skips the mapped steps and reports success), so the Dask deployment
(``deploy/dask/definitions_dask.py``) uses the project's ``static_liked_playlists(n)``: the
same shard step and merge, fanned out to a fixed number of steps with the users cut
exactly as the dynamic plan cuts them. The test materializes the prepared inputs once, runs
exploration -> liked_playlists -> user_splits -> playlist_ownership -> training_interactions /
eval_batches twice from identical copies:

* in process, with the project's dynamic graph and a local artifact folder;
* on ``LocalCluster(n_workers=2, threads_per_worker=1)`` through
  ``dagster_dask.dask_executor``, with the artifacts and the ops' JSON hand-offs at a
  ``file://`` URL through fsspec (``memory://`` is per process, so Dask worker processes
  could not share it; an ``s3://`` URL works the same way with ``s3fs`` installed);

and compares every artifact, the shard files included, byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import dagster as dg
import fsspec
import pytest
from dagster_dask import dask_executor

from spotify_assets.defs.ingest.assets import entp_listens, mpd_slice_tables, msd_songs
from spotify_assets.defs.ingest.partitions import mpd_slices
from spotify_assets.defs.label.assets import exploration_coefficients_artifact, liked_playlists, static_liked_playlists
from spotify_assets.defs.prepare.assets import interaction_matrices, song_catalog
from spotify_assets.defs.resources import build_resources
from spotify_assets.defs.split.assets import eval_batches, playlist_ownership, training_interactions, user_splits
from spotify_assets.defs.sql.assets import sql_model_assets
from spotify_assets.ingest import list_mpd_slices
from spotify_assets.resources import ArtifactStore, JsonIOManager

pytestmark = pytest.mark.slow

UPSTREAM = [mpd_slice_tables, entp_listens, msd_songs, *sql_model_assets, song_catalog, interaction_matrices]
SPLIT_ASSETS = [user_splits, playlist_ownership, training_interactions, eval_batches]
SHARDS, BLOCK_SIZE = 3, 17
COMPARED = ["label/exploration.npz", "label/labels.npz", "split/user_splits.npz", "split/ownership.npz",
            "split/training_interactions.npz", "split/eval_batches.npz"]


def label_split_job(data_dir: str, executor: str, store: str = "") -> dg.JobDefinition:
    """The label + split job over ``data_dir`` (module level, so Dask workers can rebuild it
    from ``build_reconstructable_job``). ``executor``: 'dask' (the static fan-out, artifacts
    at the fsspec URL ``store``) or 'in_process' (the project's dynamic ``liked_playlists``,
    artifacts in ``data_dir``)."""
    data = Path(data_dir)
    labeler = static_liked_playlists(SHARDS) if executor == "dask" else liked_playlists
    selected = [exploration_coefficients_artifact, labeler, *SPLIT_ASSETS]
    resources = build_resources(data)
    if store:
        resources["artifacts"] = ArtifactStore(root=store, cache_dir=str(data / "artifact_cache"))
        resources["json_io_manager"] = JsonIOManager(root=f"{store}/_op_outputs")
    job = dg.define_asset_job("label_split", selection=dg.AssetSelection.assets(*selected),
                              executor_def=dask_executor if executor == "dask" else dg.in_process_executor)
    defs = dg.Definitions(assets=[*UPSTREAM, *selected], jobs=[job], resources=resources)
    return defs.resolve_job_def("label_split")


def _run_config(executor: str, scheduler: str | None = None) -> dict:
    plan = "plan_static_label_shards" if executor == "dask" else "plan_label_shards"
    config: dict = {"ops": {"liked_playlists": {"ops": {plan: {"config": {"shards": SHARDS,
                                                                           "block_size": BLOCK_SIZE}}}}}}
    if executor == "dask":
        config["execution"] = {"config": {"cluster": {"existing": {"address": scheduler}}}}
    return config


def _digests(root: str) -> dict[str, str]:
    """sha256 of every compared artifact and every label shard under ``root`` (folder or URL)."""
    fs, base = fsspec.core.url_to_fs(root)
    shards = sorted(key[len(base.rstrip("/")) + 1:] for key in fs.glob(f"{base.rstrip('/')}/label/shards/*.npz"))
    return {name: hashlib.sha256(fs.cat_file(f"{base.rstrip('/')}/{name}")).hexdigest() for name in COMPARED + shards}


@pytest.fixture(scope="module")
def prepared(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny`` data ingested, matched and turned into matrices (the label stage's inputs)."""
    data_dir = tmp_path_factory.mktemp("dask") / "prepared"
    shutil.copytree(tiny_raw, data_dir / "raw")
    keys = [p.name for p in list_mpd_slices(data_dir / "raw" / "mpd")]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(mpd_slices.name, keys)
        result = dg.materialize(UPSTREAM, resources=build_resources(data_dir), instance=instance,
                                tags={"dagster/asset_partition_range_start": keys[0],
                                      "dagster/asset_partition_range_end": keys[-1]})
    assert result.success
    return data_dir


def test_label_and_split_on_dask_equal_the_in_process_run(prepared: Path, tmp_path: Path) -> None:
    from dask.distributed import Client, LocalCluster

    local, on_dask = tmp_path / "in_process", tmp_path / "dask"
    shutil.copytree(prepared, local)
    shutil.copytree(prepared, on_dask, ignore=shutil.ignore_patterns("artifacts"))
    # the Dask run's inputs exist only in the store: the prepared matrices are uploaded there
    store = (tmp_path / "store").as_uri()
    fs, base = fsspec.core.url_to_fs(store)
    fs.put(str(prepared / "artifacts" / "prepare"), f"{base}/prepare", recursive=True)

    with dg.instance_for_test() as instance:
        baseline = label_split_job(str(local), "in_process").execute_in_process(
            run_config=_run_config("in_process"), instance=instance)
    assert baseline.success

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None, processes=True) as cluster, \
            Client(cluster) as client, dg.instance_for_test() as instance:
        recon = dg.build_reconstructable_job(__name__, "label_split_job",
                                             reconstructable_args=(str(on_dask), "dask", store))
        with dg.execute_job(recon, instance=instance, run_config=_run_config("dask", cluster.scheduler_address)) \
                as result:
            assert result.success
            steps = {e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_SUCCESS}
            materialized = {e.asset_key.to_user_string() for e in result.all_events
                            if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION}
            pids = {e.pid for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START}
        worker_pids = set(client.run(lambda: os.getpid()).values())

    # every step ran, all of them on the cluster's worker processes, none in this one
    assert {f"liked_playlists.label_shard_{i}" for i in range(SHARDS)} <= steps
    assert {"liked_playlists.merge_static_label_shards", "user_splits", "playlist_ownership", "training_interactions",
            "eval_batches"} <= steps
    assert materialized == {"exploration_coefficients", "liked_playlists", "user_splits", "playlist_ownership",
                            "training_interactions", "eval_batches"}
    assert pids and pids <= worker_pids and os.getpid() not in pids

    # outputs and the ops' hand-offs went to the store, not to the run's data folder
    assert not (on_dask / "artifacts").exists()
    assert fs.glob(f"{base}/_op_outputs/*.json")
    expected, actual = _digests(str(local / "artifacts")), _digests(store)
    assert len([n for n in expected if n.startswith("label/shards/")]) == SHARDS
    assert actual == expected


def test_static_fan_out_cuts_users_like_the_dynamic_plan() -> None:
    """More shard slots than users: surplus slots are empty ranges the shard step skips."""
    from spotify_assets.defs.label.assets import LabelConfig, shard_plans

    config = LabelConfig(shards=4, block_size=8)
    assert [(p["start"], p["stop"]) for p in shard_plans(10, config, 0)] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert [(p["start"], p["stop"]) for p in shard_plans(9, config, 0)] == [(0, 3), (3, 6), (6, 9)]
    assert [(p["start"], p["stop"]) for p in shard_plans(2, config, 0, shards=3)] == [(0, 1), (1, 2)]
    ops = {node.name for node in static_liked_playlists(3).node_def.node_defs}
    assert ops == {"plan_static_label_shards", "label_shard", "merge_static_label_shards"}
    with pytest.raises(ValueError):
        static_liked_playlists(0)
