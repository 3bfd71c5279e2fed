"""Nightly retrain of every model on the latest splits."""

import dagster as dg

from spotify_assets.defs.jobs import train_job

nightly_retrain = dg.ScheduleDefinition(
    name="nightly_retrain",
    job=train_job,
    cron_schedule="0 3 * * *",  # 03:00 every day
    execution_timezone="UTC",
    description="Retrain BPR (with its sweep), KNN, ALS and popularity at 03:00 UTC and rebuild the leaderboard.",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
