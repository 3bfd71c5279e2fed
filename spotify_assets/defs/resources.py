"""Binds the resources every group uses; paths come from the environment.

``SPOTIFY_ASSETS_DATA_DIR`` (default ``<project>/data``) holds ``raw/`` inputs, the
``warehouse/`` DuckDB file and ``artifacts/``. To use the real datasets, point
``SPOTIFY_ASSETS_MPD_DIR``, ``SPOTIFY_ASSETS_ENTP_TRIPLETS`` and ``SPOTIFY_ASSETS_MSD_DIR``
at them (see README). ``SPOTIFY_ASSETS_DUCKDB_MEMORY_LIMIT`` (e.g. ``8GB``) caps DuckDB's memory in every step.
``SPOTIFY_ASSETS_ARTIFACTS`` moves the artifacts (and the ops'
JSON hand-offs) to a folder or an fsspec URL such as ``s3://bucket/spotify_assets``
(cached locally under ``SPOTIFY_ASSETS_ARTIFACT_CACHE``), so steps of one run can execute
on different machines.
"""

import os
from pathlib import Path

import dagster as dg

from spotify_assets.resources import (
    ArtifactStore,
    DuckDBWarehouse,
    ExperimentTracker,
    FeedbackStore,
    JsonIOManager,
    PipelineSettings,
    RawInputs,
    default_data_dir,
)
from spotify_assets.defs.jobs import pipeline_executor
from spotify_assets.feedback import default_feedback_path
from spotify_assets.paths import artifacts_root


def _entp_default(raw: Path) -> str:
    plain = raw / "entp" / "train_triplets.txt"
    gz = plain.with_name(plain.name + ".gz")
    return str(gz if gz.exists() and not plain.exists() else plain)


def build_resources(data_dir: Path | None = None) -> dict[str, dg.ConfigurableResource]:
    """The project's resources rooted at ``data_dir`` (environment overrides apply)."""
    data = Path(data_dir) if data_dir is not None else default_data_dir()
    raw = data / "raw"
    artifacts = artifacts_root(data)
    return {
        "warehouse": DuckDBWarehouse(
            database=os.environ.get("SPOTIFY_ASSETS_DUCKDB", str(data / "warehouse" / "spotify.duckdb")),
            # DuckDB's own default is 80% of RAM: too much when a DuckDB step runs beside a
            # multi-GB label shard at full scale (deploy/full_scale.yaml sets 8GB this way).
            memory_limit=os.environ.get("SPOTIFY_ASSETS_DUCKDB_MEMORY_LIMIT") or None,
        ),
        "raw_inputs": RawInputs(
            mpd_dir=os.environ.get("SPOTIFY_ASSETS_MPD_DIR", str(raw / "mpd")),
            entp_triplets=os.environ.get("SPOTIFY_ASSETS_ENTP_TRIPLETS", _entp_default(raw)),
            msd_dir=os.environ.get("SPOTIFY_ASSETS_MSD_DIR", str(raw / "msd")),
            allow_external_symlinks=os.environ.get("SPOTIFY_ASSETS_ALLOW_EXTERNAL_SYMLINKS", "0") == "1",
        ),
        "artifacts": ArtifactStore(root=artifacts, cache_dir=os.environ.get("SPOTIFY_ASSETS_ARTIFACT_CACHE")),
        "settings": PipelineSettings(),
        "json_io_manager": JsonIOManager(root=f"{artifacts.rstrip('/')}/_op_outputs"),
        "feedback": FeedbackStore(
            path=str(default_feedback_path(data)),
            retrain_threshold=int(os.environ.get("SPOTIFY_ASSETS_RETRAIN_THRESHOLD", "25")),
        ),
        "tracker": ExperimentTracker(dir=str(data / "wandb"), mode=os.environ.get("SPOTIFY_ASSETS_WANDB_MODE", "offline")),
    }


@dg.definitions
def resources() -> dg.Definitions:
    # UI materializations outside a job get the jobs' executor too: DuckDB writers one at a
    # time, and config values checked before the first step.
    return dg.Definitions(resources=build_resources(), executor=pipeline_executor)
