"""Retrain when enough new feedback has arrived."""

import os

import dagster as dg

from spotify_assets.automation import describe_runs, folded_feedback_id, runs_in_flight
from spotify_assets.resources import FeedbackStore


@dg.sensor(
    job_name="feedback_retrain_job",
    minimum_interval_seconds=int(os.environ.get("SPOTIFY_ASSETS_SENSOR_INTERVAL_SECONDS", "30")),
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def feedback_retrain_sensor(context: dg.SensorEvaluationContext, feedback: FeedbackStore) -> dg.SensorResult:
    """Requests ``feedback_retrain_job`` once ``retrain_threshold`` feedback rows from users the
    model knows arrived since the last request. Rows from users it does not know (a new user's
    first likes) are kept, but they cannot become training positives until the user is in the
    user dictionary, so they do not trigger a retrain on their own; they are read with the
    others at the next run. The cursor is the largest feedback id already handed to a run, and
    the run key repeats it, so a tick evaluated twice cannot launch two runs for the same rows.
    Rows that an automated chain already folded into ``feedback_positives`` count as handled,
    and nothing is requested while another run is in flight (it may fold them in)."""
    busy = runs_in_flight(context.instance)
    if busy:
        return dg.SensorResult(skip_reason=f"waiting for {describe_runs(busy)} to finish")
    handled = max(int(context.cursor) if context.cursor else 0, folded_feedback_id(context.instance))
    new_rows, newest = feedback.log().stats(after_id=handled, known_only=True)
    if new_rows < feedback.retrain_threshold:
        return dg.SensorResult(skip_reason=f"{new_rows} new feedback rows from known users "
                                           f"(< {feedback.retrain_threshold} to retrain)")
    context.log.info(f"{new_rows} new feedback rows from known users (ids {handled + 1}..{newest}): requesting a retrain")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"feedback-up-to-{newest}",
                                    tags={"spotify_assets/feedback_up_to": str(newest)})],
        cursor=str(newest),
    )
