"""Simulated users every 10 minutes (off by default: it needs a running service)."""

import dagster as dg

from spotify_assets.defs.jobs import simulate_users

SIMULATION_MINUTES = 10


@dg.schedule(
    name="simulate_users_schedule",
    job=simulate_users,
    cron_schedule=f"*/{SIMULATION_MINUTES} * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Every 10 minutes, simulated users call the service on 127.0.0.1:8000 (start it with `make serve`); "
                "each tick draws another seeded set of users. Turn it on in the UI under Automation.",
)
def simulate_users_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    tick = int(context.scheduled_execution_time.timestamp()) // (60 * SIMULATION_MINUTES)
    return dg.RunRequest(run_key=f"simulate-{tick}",
                         run_config={"ops": {"simulate_users_op": {"config": {"draw": tick}}}})
