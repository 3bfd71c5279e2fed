"""The Kubernetes deployment variant (deploy/k8s): it validates with the Dagster CLI, keeps
every asset, job, schedule and sensor of the local definitions, runs every job on the
k8s_job_executor, and asks for a GPU for the PyTorch training steps only."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from spotify_assets.resources import PROJECT_ROOT
from spotify_assets_tests.variants import assert_validates, load_variant

K8S_DIR = PROJECT_ROOT / "deploy" / "k8s"
DEFINITIONS = K8S_DIR / "definitions_k8s.py"


@pytest.fixture(scope="module")
def k8s_module():
    return load_variant(DEFINITIONS)


@pytest.mark.slow  # a fresh interpreter loads the whole code location (~25-40 s on 2 shared cores)
def test_dagster_definitions_validate_accepts_the_k8s_variant(tmp_path: Path) -> None:
    assert_validates(DEFINITIONS, tmp_path)


def test_same_graph_every_job_on_the_k8s_executor(k8s_module) -> None:
    from spotify_assets.definitions import defs as local

    defs = k8s_module.defs
    assert set(defs.resolve_all_asset_keys()) == set(local.resolve_all_asset_keys())
    assert {j.name for j in defs.jobs} == {j.name for j in local.jobs}
    for name in {j.name for j in defs.jobs}:
        assert defs.resolve_job_def(name).executor_def.name == "k8s_step_executor", name
        # the step hooks that log each step's peak RSS for the run report come along
        assert {h.name for h in defs.resolve_job_def(name).hook_defs} == {
            h.name for h in local.resolve_job_def(name).hook_defs} != set(), name
    assert {s.name for s in defs.schedules} == {s.name for s in local.schedules}
    assert {s.name for s in defs.sensors} == {s.name for s in local.sensors}
    for schedule in defs.schedules:
        if schedule.has_job:
            assert defs.resolve_schedule_def(schedule.name).job.executor_def.name == "k8s_step_executor"


def test_gpu_only_for_the_pytorch_training_steps(k8s_module) -> None:
    from dagster_k8s.job import UserDefinedDagsterK8sConfig

    ops = {node.name for node in k8s_module.defs.resolve_job_def("full_pipeline").all_node_defs}
    assert set(k8s_module.STEP_K8S_CONFIG) <= ops, set(k8s_module.STEP_K8S_CONFIG) - ops  # no stale op names
    assert {"bpr_model", "bpr_sweep"} <= k8s_module.GPU_OPS
    for op_name, config in k8s_module.STEP_K8S_CONFIG.items():
        parsed = UserDefinedDagsterK8sConfig.from_dict(config)  # the dagster-k8s/config schema
        limits = parsed.container_config["resources"]["limits"]
        if op_name in k8s_module.GPU_OPS:
            assert limits["nvidia.com/gpu"] == parsed.container_config["resources"]["requests"]["nvidia.com/gpu"] == "1"
            assert parsed.pod_spec_config["tolerations"][0]["key"] == "nvidia.com/gpu"
        else:
            assert "nvidia.com/gpu" not in limits, op_name
    for cpu_op in ("label_shard", "user_neighbors", "als_model"):
        assert cpu_op not in k8s_module.GPU_OPS


def test_helm_values_point_at_the_variant_and_share_one_volume() -> None:
    values = yaml.safe_load((K8S_DIR / "values.yaml").read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert "/app/deploy/k8s/definitions_k8s.py" in deployment["dagsterApiGrpcArgs"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in [*deployment["volumes"], *launcher["volumes"]]}
    assert claims == {"spotify-assets-data"}
    assert {"name": "SPOTIFY_ASSETS_DATA_DIR", "value": "/data"} in deployment["env"]
    assert "SPOTIFY_ASSETS_DATA_DIR=/data" in launcher["envVars"]
