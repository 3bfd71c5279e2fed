"""The Dask deployment variant (deploy/dask): it validates with the Dagster CLI, keeps every
asset, job, schedule and sensor of the local definitions, runs every job on the Dask
executor and fans ``liked_playlists`` out to a fixed number of shard steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from spotify_assets.resources import PROJECT_ROOT
from spotify_assets_tests.variants import assert_validates, load_variant

DEFINITIONS = PROJECT_ROOT / "deploy" / "dask" / "definitions_dask.py"


@pytest.fixture(scope="module")
def dask_module():
    return load_variant(DEFINITIONS)


@pytest.mark.slow  # a fresh interpreter loads the whole code location
def test_dagster_definitions_validate_accepts_the_dask_variant(tmp_path: Path) -> None:
    assert_validates(DEFINITIONS, tmp_path, SPOTIFY_ASSETS_DASK_LABEL_SHARDS="5")


def test_same_graph_every_job_on_dask_with_static_label_shards(dask_module) -> None:
    from spotify_assets.definitions import defs as local

    defs = dask_module.defs
    assert set(defs.resolve_all_asset_keys()) == set(local.resolve_all_asset_keys())
    assert {j.name for j in defs.jobs} == {j.name for j in local.jobs}
    for name in {j.name for j in defs.jobs}:
        assert defs.resolve_job_def(name).executor_def.name == "dask_step_executor", name
    assert {s.name for s in defs.sensors} == {s.name for s in local.sensors}
    assert {s.name for s in defs.schedules} == {s.name for s in local.schedules}

    pipeline = defs.resolve_job_def("full_pipeline")
    names = [node.name for node in pipeline.graph.node_named("liked_playlists").definition.nodes]
    assert sorted(names) == sorted(["plan_static_label_shards", "merge_static_label_shards",
                                    *(f"label_shard_{i}" for i in range(dask_module.LABEL_SHARDS))])
    # the local location keeps the dynamic fan-out
    local_labeler = local.resolve_job_def("full_pipeline").graph.node_named("liked_playlists").definition
    assert "plan_label_shards" in [node.name for node in local_labeler.nodes]


def test_executor_targets_the_configured_scheduler(dask_module, monkeypatch) -> None:
    monkeypatch.setenv("SPOTIFY_ASSETS_DASK_SCHEDULER", "tcp://10.0.0.5:8786")
    assert dask_module.cluster_config() == {"existing": {"address": "tcp://10.0.0.5:8786"}}
    monkeypatch.delenv("SPOTIFY_ASSETS_DASK_SCHEDULER")
    local = dask_module.cluster_config()["local"]
    assert local["threads_per_worker"] == 1 and local["dashboard_address"] is None
    assert dask_module._executor().name == "dask_step_executor"
