"""Nightly retrain of every model on the latest splits."""

import dagster as dg

from spotify_assets.automation import describe_runs, models_up_to_date, runs_in_flight
from spotify_assets.defs.jobs import train_job


@dg.schedule(
    name="nightly_retrain",
    job=train_job,
    cron_schedule="0 3 * * *",  # 03:00 every day
    execution_timezone="UTC",
    description="Retrain every model of train_job (BPR with its sweep, KNN, ALS, popularity, the song ranker) at "
    "03:00 UTC and rebuild the leaderboard, "
    "unless a run is in flight or every model is already newer than its inputs (automation rebuilt them).",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def nightly_retrain(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """Requests ``train_job`` at 03:00, or skips with the reason: while any run is in flight (a
    slice load is followed by an automated chain that retrains; a chain or a feedback retrain
    is already training), and when every asset of the job is newer than all of its inputs,
    which is the case after automation or a feedback retrain rebuilt them (training is seeded:
    the same inputs give the same models)."""
    busy = runs_in_flight(context.instance)
    if busy:
        return dg.SkipReason(f"{describe_runs(busy)} in flight; the models follow from it")
    repository = _repository(context)
    keys = sorted(repository.get_job(train_job.name).asset_layer.executable_asset_keys)
    if models_up_to_date(context.instance, repository.asset_graph, keys):
        return dg.SkipReason(f"all {len(keys)} assets of {train_job.name} are newer than their inputs; nothing to retrain")
    return dg.RunRequest(run_key=None, tags={"spotify_assets/trigger": "nightly_retrain"})


def _repository(context: dg.ScheduleEvaluationContext) -> dg.RepositoryDefinition:
    try:
        return context.repository_def
    except dg.DagsterInvariantViolationError:  # a context built by hand carries none
        from spotify_assets.definitions import defs

        return defs.get_repository_def()
