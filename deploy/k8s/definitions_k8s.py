"""spotify_assets on Kubernetes: the same assets, checks, jobs, schedules, sensors and
resources as ``spotify_assets.definitions``, with every job running each step in its own
Kubernetes Job (``dagster_k8s.k8s_job_executor``).

Per-step resources
    The executor's ``per_step_k8s_config`` gives each op (step) its container requests and
    limits, in the same ``dagster-k8s/config`` form an op tag takes (see ``STEP_K8S_CONFIG``):
    the PyTorch training steps (every op materializing an asset of kind ``pytorch``: BPR
    model and sweep, track embeddings) get ``nvidia.com/gpu: 1`` plus a GPU toleration and
    train with ``accelerator="auto"`` (so the same code also runs on CPU nodes); the label
    shards, KNN, ALS and the samplers get more CPU and memory; everything else the default
    below. Ops that set their own ``dagster-k8s/config`` op tag keep it (the
    executor merges the tag first, then this table). The table is keyed by op name, so a
    step is covered without editing the project's asset decorators.

DuckDB and artifacts
    The warehouse file and the artifacts live on one ReadWriteMany volume mounted at
    ``SPOTIFY_ASSETS_DATA_DIR`` in every run and step pod (``values.yaml``); steps tagged
    with ``spotify_assets.resources.DUCKDB_OP_TAGS`` run one at a time per run (DuckDB
    allows one writer), exactly as with the local multiprocess executor.

Load it with ``dagster definitions validate -f deploy/k8s/definitions_k8s.py`` or point a
code location at it (``dagsterApiGrpcArgs: ["-f", "deploy/k8s/definitions_k8s.py"]``).
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg
from dagster_k8s import k8s_job_executor

import spotify_assets.definitions as local_location
from spotify_assets.defs.deployment import with_executor
from spotify_assets.resources import DUCKDB_OP_TAGS

_DUCKDB_KEY, _DUCKDB_VALUE = next(iter(DUCKDB_OP_TAGS.items()))


def _resources(cpu: str, memory: str, gpus: int = 0, memory_limit: str | None = None) -> dict:
    """A ``dagster-k8s/config`` dict requesting ``cpu``/``memory`` (and ``gpus`` GPUs,
    which Kubernetes requires as equal requests and limits, plus a toleration of the
    usual ``nvidia.com/gpu`` taint)."""
    requests = {"cpu": cpu, "memory": memory}
    limits = {"memory": memory_limit or memory}
    config: dict = {"container_config": {"resources": {"requests": requests, "limits": limits}},
                    # finished step Jobs are deleted after an hour
                    "job_spec_config": {"ttl_seconds_after_finished": 3600}}
    if gpus:
        requests["nvidia.com/gpu"] = str(gpus)
        limits["nvidia.com/gpu"] = str(gpus)
        config["pod_spec_config"] = {
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        }
    return config


#: Every step not listed in STEP_K8S_CONFIG.
DEFAULT_STEP_K8S_CONFIG = _resources("1", "2Gi", memory_limit="4Gi")

#: Op name -> dagster-k8s/config for the CPU-heavy steps (bench-scale peaks, rounded up).
CPU_STEP_K8S_CONFIG: Mapping[str, dict] = {
    "label_shard": _resources("2", "4Gi", memory_limit="8Gi"),
    "user_neighbors": _resources("4", "16Gi", memory_limit="24Gi"),
    "als_model": _resources("4", "8Gi", memory_limit="12Gi"),
    "interaction_matrices": _resources("2", "8Gi", memory_limit="12Gi"),
    "eval_batches": _resources("2", "8Gi", memory_limit="12Gi"),
    "training_interactions": _resources("2", "8Gi", memory_limit="12Gi"),
}
#: What a PyTorch training step gets: one GPU.
GPU_STEP_K8S_CONFIG = _resources("4", "16Gi", gpus=1, memory_limit="24Gi")


def pytorch_ops(base: dg.Definitions) -> frozenset[str]:
    """Names of the ops that materialize an asset of kind ``pytorch`` (the training assets:
    BPR model and sweep, track embeddings, ...). Found from the asset specs, so a new
    training asset gets a GPU without a change here."""
    names = set()
    for assets_def in base.resolve_asset_graph().assets_defs:
        if assets_def.is_executable and isinstance(assets_def.node_def, dg.OpDefinition) \
                and any("pytorch" in spec.kinds for spec in assets_def.specs):
            names.add(assets_def.node_def.name)
    return frozenset(names)


#: Ops that train with PyTorch Lightning (``accelerator="auto"``): the GPU steps.
GPU_OPS = pytorch_ops(local_location.defs)
#: Op name -> dagster-k8s/config of every step that does not take the default.
STEP_K8S_CONFIG: Mapping[str, dict] = {**CPU_STEP_K8S_CONFIG, **{name: GPU_STEP_K8S_CONFIG for name in GPU_OPS}}

k8s_executor = k8s_job_executor.configured(
    {
        "step_k8s_config": DEFAULT_STEP_K8S_CONFIG,
        "per_step_k8s_config": dict(STEP_K8S_CONFIG),
        # DuckDB: one writer at a time, as in defs/jobs.py
        "tag_concurrency_limits": [{"key": _DUCKDB_KEY, "value": _DUCKDB_VALUE, "limit": 1}],
        # the label shards fan out: at most this many step pods per run
        "max_concurrent": 16,
        "enable_owner_references": True,
    },
    name="k8s_step_executor",
)


def build_k8s_definitions(base: dg.Definitions | None = None) -> dg.Definitions:
    """``base`` (default: ``spotify_assets.definitions.defs``) with every job moved to the
    Kubernetes executor and the schedules and sensors pointed at the moved jobs."""
    return with_executor(base if base is not None else local_location.defs, k8s_executor)


defs = build_k8s_definitions()
