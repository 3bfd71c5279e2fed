"""Scale-out: the label and split stages on a local Dask cluster equal the in-process run.

The label shards of ``liked_playlists`` are independent steps, so they can run on any
distributed engine. Two limits of Dagster's Dask executor (dagster-dask 0.29) shape how
they are fanned out here:

* it plans every step before the run starts and never resolves dynamic outputs: with the
  project's ``DynamicOut`` fan-out it runs the planner, silently skips the mapped shard
  steps and still reports success;
* a fan-in input (a list of upstream outputs) is assembled from the run's event log, which
  the executor writes only as results come back to the driver, so a merge step that starts
  right after its shards may see an empty list (observed here: ``liked_playlists`` merged
  from zero shards).

So on Dask the shards are fanned out statically, one aliased ``label_shard`` step per user
range (cut exactly like ``plan_label_shards``), and joined by a merge op with one named
input per shard that calls the project's ``merge_label_shards``. The test materializes the
prepared inputs once, runs exploration -> liked_playlists -> user_splits ->
playlist_ownership -> bpr_triplets / eval_batches twice from identical copies (in process
with the project's dynamic graph; on ``LocalCluster(n_workers=2, threads_per_worker=1)``
through ``dagster_dask.dask_executor``) and compares every artifact byte for byte.
Artifacts live in a local folder that the workers reach through the shared file system.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import dagster as dg
import pytest
from dagster_dask import dask_executor

from spotify_assets.defs.ingest.assets import entp_listens, mpd_slice_tables, msd_songs
from spotify_assets.defs.ingest.partitions import mpd_slices
from spotify_assets.defs.label.assets import (
    LABEL,
    LabelConfig,
    exploration_coefficients_artifact,
    label_shard,
    liked_playlists,
    merge_label_shards,
)
from spotify_assets.defs.prepare.assets import interaction_matrices, song_catalog
from spotify_assets.defs.resources import build_resources
from spotify_assets.defs.split.assets import bpr_triplets, eval_batches, playlist_ownership, user_splits
from spotify_assets.defs.sql.assets import sql_model_assets
from spotify_assets.ingest import list_mpd_slices
from spotify_assets.labeling import block_ranges
from spotify_assets.matrices import load_csr
from spotify_assets.resources import ArtifactStore

pytestmark = pytest.mark.slow

UPSTREAM = [mpd_slice_tables, entp_listens, msd_songs, *sql_model_assets, song_catalog, interaction_matrices]
SPLIT_ASSETS = [user_splits, playlist_ownership, bpr_triplets, eval_batches]
SHARDS, BLOCK_SIZE = 3, 17
COMPARED = ["label/exploration.npz", "label/labels.npz", "split/user_splits.npz", "split/ownership.npz",
            "split/bpr_triplets.npz", "split/eval_batches.npz"]
LABEL_CONFIG = LabelConfig(shards=SHARDS, block_size=BLOCK_SIZE)


def _shard_dict(start: int, stop: int) -> dict:
    """What ``plan_label_shards`` hands each shard step (same keys, same values)."""
    return {"start": start, "stop": stop, "block_size": LABEL_CONFIG.block_size,
            "liked_share": LABEL_CONFIG.liked_share, "hard_share": LABEL_CONFIG.hard_share,
            "device": LABEL_CONFIG.device, "max_hard_candidates": LABEL_CONFIG.max_hard_candidates,
            "ownership_k": LABEL_CONFIG.ownership_k, "seed": 0}


def static_liked_playlists(data_dir: Path) -> dg.AssetsDefinition:
    """``liked_playlists`` with a static fan-out over the user ranges of ``data_dir``'s
    user-song matrix, cut exactly as ``plan_label_shards`` cuts them."""
    n_users = load_csr(data_dir / "artifacts" / "prepare" / "user_song.npz").shape[0]
    ranges = block_ranges(n_users, max(1, -(-n_users // SHARDS)))
    assert len(ranges) == SHARDS, "the merge op below has one input per shard"

    @dg.op(ins={"start_after": dg.In(dg.Nothing)},
           out={f"shard_{i}": dg.Out(dict, io_manager_key="json_io_manager") for i in range(len(ranges))})
    def plan_static_label_shards():
        return tuple(_shard_dict(start, stop) for start, stop in ranges)

    @dg.op(ins={f"shard_{i}": dg.In(dict) for i in range(SHARDS)},
           out=dg.Out(dict, io_manager_key="json_io_manager"))
    def merge_static_label_shards(artifacts: ArtifactStore, shard_0: dict, shard_1: dict, shard_2: dict):
        """One named input per shard (no fan-in, see the module docstring), then the
        project's ``merge_label_shards`` on the list."""
        yield from merge_label_shards(dg.build_op_context(), shards=[shard_0, shard_1, shard_2], artifacts=artifacts)

    @dg.graph_asset(name="liked_playlists", group_name=LABEL, kinds={"scipy", "numpy"},
                    ins={"exploration_coefficients": dg.AssetIn(dagster_type=dg.Nothing),
                         "playlist_song_matrix": dg.AssetIn(dagster_type=dg.Nothing),
                         "user_song_matrix": dg.AssetIn(dagster_type=dg.Nothing)})
    def _liked(exploration_coefficients, playlist_song_matrix, user_song_matrix):
        shards = plan_static_label_shards(start_after=[exploration_coefficients, playlist_song_matrix,
                                                       user_song_matrix])
        labelled = {f"shard_{i}": label_shard.alias(f"label_shard_{i}")(shard) for i, shard in enumerate(shards)}
        return merge_static_label_shards(**labelled)

    return _liked


def label_split_job(data_dir: str, executor: str) -> dg.JobDefinition:
    """The label + split job over ``data_dir`` (module level, so Dask workers can rebuild it
    from ``build_reconstructable_job``). ``executor``: 'dask' (static shards) or
    'in_process' (the project's dynamic ``liked_playlists``)."""
    data = Path(data_dir)
    labeler = static_liked_playlists(data) if executor == "dask" else liked_playlists
    selected = [exploration_coefficients_artifact, labeler, *SPLIT_ASSETS]
    job = dg.define_asset_job("label_split", selection=dg.AssetSelection.assets(*selected),
                              executor_def=dask_executor if executor == "dask" else dg.in_process_executor)
    defs = dg.Definitions(assets=[*UPSTREAM, *selected], jobs=[job], resources=build_resources(data))
    return defs.resolve_job_def("label_split")


def _run_config(executor: str, scheduler: str | None = None) -> dict:
    config: dict = {}
    if executor == "in_process":
        config["ops"] = {"liked_playlists": {"ops": {"plan_label_shards": {
            "config": {"shards": SHARDS, "block_size": BLOCK_SIZE}}}}}
    else:
        config["execution"] = {"config": {"cluster": {"existing": {"address": scheduler}}}}
    return config


def _digests(data_dir: Path) -> dict[str, str]:
    root = data_dir / "artifacts"
    names = COMPARED + sorted(str(p.relative_to(root)) for p in (root / "label" / "shards").glob("*.npz"))
    return {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in names}


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
    shutil.copytree(prepared, on_dask)

    with dg.instance_for_test() as instance:
        baseline = label_split_job(str(local), "in_process").execute_in_process(
            run_config=_run_config("in_process"), instance=instance)
    assert baseline.success

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None, processes=True) as cluster, \
            Client(cluster) as client, dg.instance_for_test() as instance:
        recon = dg.build_reconstructable_job(__name__, "label_split_job", reconstructable_args=(str(on_dask), "dask"))
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
    assert {"liked_playlists.merge_static_label_shards", "user_splits", "playlist_ownership", "bpr_triplets",
            "eval_batches"} <= steps
    assert materialized == {"exploration_coefficients", "liked_playlists", "user_splits", "playlist_ownership",
                            "bpr_triplets", "eval_batches"}
    assert pids and pids <= worker_pids and os.getpid() not in pids

    expected, actual = _digests(local), _digests(on_dask)
    assert len([n for n in expected if n.startswith("label/shards/")]) == SHARDS
    assert actual == expected
