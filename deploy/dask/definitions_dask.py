"""spotify_assets on a Dask cluster: the same assets, checks, jobs, schedules, sensors and
resources as ``spotify_assets.definitions``, with every job on ``dagster_dask.dask_executor``
(each step a Dask task on the cluster's workers).

One graph change: ``liked_playlists`` is the project's ``static_liked_playlists(n)``. The
Dask executor plans every step up front and cannot run the dynamic shard fan-out (it skips
mapped steps and still reports success), so the label shards are ``n`` fixed steps
(``SPOTIFY_ASSETS_DASK_LABEL_SHARDS``, default 8), cut exactly like the dynamic plan.

Configuration (environment of the code server and of every worker)
    ``SPOTIFY_ASSETS_DASK_SCHEDULER``   scheduler address (``tcp://host:8786``); unset: the
                                        executor starts a ``LocalCluster`` per run
    ``SPOTIFY_ASSETS_ARTIFACTS``        artifacts and op hand-offs at an fsspec URL that every
                                        worker reaches (``s3://bucket/spotify_assets`` with
                                        ``s3fs`` installed, or ``file:///shared/...``)
    ``SPOTIFY_ASSETS_DUCKDB``           the warehouse file, on storage the DuckDB steps reach

The Dask executor has no tag concurrency limits, so DuckDB-writing steps may start
together; ``DuckDBWarehouse.connect`` retries a locked file, and pinning those steps to one
worker (Dask resources) is the stricter option. Validate with
``dagster definitions validate -f deploy/dask/definitions_dask.py``.
"""

from __future__ import annotations

import os

import dagster as dg
from dagster_dask import dask_executor

import spotify_assets.definitions as local_location
from spotify_assets.defs.label.assets import static_liked_playlists
from spotify_assets.defs.deployment import with_executor

LIKED = dg.AssetKey("liked_playlists")
LABEL_SHARDS = int(os.environ.get("SPOTIFY_ASSETS_DASK_LABEL_SHARDS", "8"))


def cluster_config() -> dict:
    """The executor's ``cluster`` config: the scheduler at ``SPOTIFY_ASSETS_DASK_SCHEDULER``, else
    a LocalCluster with one single-threaded worker per core (no dashboard port)."""
    address = os.environ.get("SPOTIFY_ASSETS_DASK_SCHEDULER")
    if address:
        return {"existing": {"address": address}}
    return {"local": {"n_workers": os.cpu_count() or 1, "threads_per_worker": 1, "dashboard_address": None}}


def _executor() -> dg.ExecutorDefinition:
    return dask_executor.configured({"cluster": cluster_config()}, name="dask_step_executor")


def build_dask_definitions(base: dg.Definitions | None = None, label_shards: int = LABEL_SHARDS) -> dg.Definitions:
    """``base`` (default: ``spotify_assets.definitions.defs``) with ``liked_playlists`` fanned
    out statically to ``label_shards`` steps and every job on the Dask executor."""
    base = base if base is not None else local_location.defs
    assets = [a for a in base.assets or [] if not (isinstance(a, dg.AssetsDefinition) and LIKED in a.keys)]
    if len(assets) != len(base.assets or []) - 1:
        raise ValueError("expected exactly one liked_playlists asset in the base definitions")
    assets.append(static_liked_playlists(label_shards))
    return with_executor(base, _executor(), assets=assets)


defs = build_dask_definitions()
