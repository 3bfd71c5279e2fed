"""Jobs people run from the UI, schedules, sensors and ``dagster job execute``."""

import dagster as dg

from spotify_assets.resources import DUCKDB_OP_TAGS
from spotify_assets.defs.runconfig import validating_multiprocess_executor
from spotify_assets.step_memory import peak_rss_mb, peak_rss_message

# DuckDB allows one writing process per database file. Steps that open the warehouse are
# tagged (DUCKDB_OP_TAGS) and run one at a time; everything else runs in parallel.
_duckdb_tag_key, _duckdb_tag_value = next(iter(DUCKDB_OP_TAGS.items()))
#: What every step process needs before its first line of asset code. Besides the definitions,
#: the instance's storage classes: each step builds a DagsterInstance from its ref, and the
#: first import of the SQL storages (SQLAlchemy, Alembic) cost ~0.85 s in every forked step
#: (a profile of ingest_job on tiny: 12 steps, 10 s of it). And the torch models, which the
#: definitions do not import (every CLI command, code server and daemon loads those, and
#: torch + Lightning are ~3.4 s of it): the steps that train or score get them from here.
#: Importing is all that happens here; no connection is opened before the fork.
STEP_PRELOAD_MODULES = [
    "spotify_assets.definitions",
    "spotify_assets.train.bpr",
    "spotify_assets.train.song_ranker",
    "spotify_assets.tracks.item2vec",
    "spotify_assets.tracks.two_tower",
    "dagster._core.storage.sqlite_storage",
    "dagster._core.storage.local_compute_log_manager",
    "dagster._core.instance.factory",
    "dagster._core.storage.defs_state.blob_storage_state_storage",
]
# Dagster's multiprocess executor, plus a check of every op's config values before the first step.
pipeline_executor = validating_multiprocess_executor.configured(
    {
        # forkserver with preloaded modules: each step forks a warm interpreter instead of
        # re-importing Dagster, numpy and torch (~2.5 s per step with spawn).
        "start_method": {"forkserver": {"preload_modules": STEP_PRELOAD_MODULES}},
        "tag_concurrency_limits": [
            {"key": _duckdb_tag_key, "value": _duckdb_tag_value, "limit": 1},
        ]
    },
    name="pipeline_executor",
)


@dg.success_hook(name="log_peak_rss_on_success")
def log_peak_rss_on_success(context: dg.HookContext) -> None:
    """Log the step process's peak RSS after a step succeeded (read back by benchmarks.run_report)."""
    context.log.info(peak_rss_message(peak_rss_mb(), "success"))


@dg.failure_hook(name="log_peak_rss_on_failure")
def log_peak_rss_on_failure(context: dg.HookContext) -> None:
    """Log the step process's peak RSS after a step raised (a step killed by the OOM killer logs nothing)."""
    context.log.info(peak_rss_message(peak_rss_mb(), "failure"))


#: Attached to every job: each step's peak memory ends up in the run's event log.
STEP_MEMORY_HOOKS = {log_peak_rss_on_success, log_peak_rss_on_failure}


def pipeline_job(name: str, selection: dg.AssetSelection, description: str) -> "dg.UnresolvedAssetJobDefinition":
    """An asset job on the pipeline's executor (DuckDB steps one at a time) with the step memory hooks."""
    return dg.define_asset_job(name, selection=selection, description=description,
                               executor_def=pipeline_executor, hooks=STEP_MEMORY_HOOKS)


full_pipeline = pipeline_job(
    "full_pipeline",
    selection=dg.AssetSelection.all(),
    description="Every asset: ingest every registered MPD slice, ENTP and MSD, then all downstream models.",
)

ingest_job = pipeline_job(
    "ingest_job",
    selection=dg.AssetSelection.groups("ingest", "staging", "marts"),
    description="Load the raw files into DuckDB and rebuild the staging and mart SQL models.",
)

prepare_job = pipeline_job(
    "prepare_job",
    selection=dg.AssetSelection.groups("prepare", "label", "split"),
    description="Match songs, rebuild the matrices, label liked playlists, split users, assign ownership, "
    "gather the training interactions and sample the evaluation batches.",
)

train_job = pipeline_job(
    "train_job",
    selection=dg.AssetSelection.groups("train", "evaluate", "tracks"),
    description="Retrain BPR, KNN, ALS and popularity on the current splits and rebuild the leaderboard; "
    "retrain the track models (item2vec, similar tracks, duplicates, continuation evaluation).",
)

serve_job = pipeline_job(
    "serve_job",
    selection=dg.AssetSelection.groups("serve"),
    description="Pick the serving model from the leaderboard, build the Annoy indexes (playlists, users, tracks; "
    "recall measured) and write every user's top-5 recommendations.",
)

feedback_retrain_job = pipeline_job(
    "feedback_retrain_job",
    # feedback does not touch the track models, so their index is left as it is
    selection=(dg.AssetSelection.assets("feedback_positives", "training_interactions")
               | dg.AssetSelection.groups("train", "evaluate", "serve")) - dg.AssetSelection.assets("track_index"),
    description="Fold new feedback into the training positives, retrain every model, rebuild the leaderboard, "
    "the indexes and the recommendations (what feedback_retrain_sensor launches).",
)

leaderboard_job = pipeline_job(
    "leaderboard_job",
    selection=dg.AssetSelection.assets("model_leaderboard").upstream().required_multi_asset_neighbors(),
    description="Everything the leaderboard needs and nothing after it: ingest, prepare, label, split, every "
    "model, the leaderboard (what `python -m benchmarks leaderboard` runs at bench scale).",
)


# -- the online loop -------------------------------------------------------------------

online_job = pipeline_job(
    "online_job",
    selection=dg.AssetSelection.assets("online_metrics", "canary_decision"),
    description="Refresh the online metrics from the service's log and take the canary decision "
    "(what online_metrics_sensor launches when the service logged something new).",
)


@dg.job(
    name="simulate_users",
    description="Simulated users call the running service (127.0.0.1 only) for their top 5 and like a "
    "recommended playlist when it is one of their held-out positives (simulate_users_schedule, off by default).",
    executor_def=pipeline_executor,
    hooks=STEP_MEMORY_HOOKS,
)
def simulate_users() -> None:
    from spotify_assets.defs.online.assets import simulate_users_op

    simulate_users_op()
