"""Sensors of the online loop: refresh the online metrics when the service logs something new,
and request a retrain when the serving model's engagement degrades."""

import json
import os

import dagster as dg

from spotify_assets.online.decisions import ArmCounts, degradation_verdict
from spotify_assets.resources import ArtifactStore, FeedbackStore
from spotify_assets.serving.rollout import CHAMPION, read_rollout

INTERVAL_SECONDS = int(os.environ.get("SPOTIFY_ASSETS_SENSOR_INTERVAL_SECONDS", "30"))


@dg.sensor(job_name="online_job", minimum_interval_seconds=INTERVAL_SECONDS,
           default_status=dg.DefaultSensorStatus.RUNNING)
def online_metrics_sensor(context: dg.SensorEvaluationContext, feedback: FeedbackStore) -> dg.SensorResult:
    """Launches ``online_job`` (``online_metrics`` then ``canary_decision``) when the service's log
    grew: new impressions, feedback or refusals since the last run. The cursor and the run key
    are the tables' largest ids, so one state of the log launches one run."""
    marks = feedback.log().high_water_marks()
    cursor = json.dumps(marks, sort_keys=True)
    if not any(marks.values()):
        return dg.SensorResult(skip_reason="the service has logged nothing yet")
    if cursor == context.cursor:
        return dg.SensorResult(skip_reason=f"nothing new in the service's log ({marks})")
    key = "-".join(f"{t}{n}" for t, n in sorted(marks.items()))
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"online-{key}")], cursor=cursor)


class DegradationSettings:
    """Read from the environment (a sensor has no run config)."""

    fraction = float(os.environ.get("SPOTIFY_ASSETS_DEGRADATION_FRACTION", "0.8"))
    window = int(os.environ.get("SPOTIFY_ASSETS_DEGRADATION_WINDOW", "200"))


@dg.sensor(job_name="feedback_retrain_job", minimum_interval_seconds=INTERVAL_SECONDS,
           default_status=dg.DefaultSensorStatus.RUNNING)
def engagement_degradation_sensor(context: dg.SensorEvaluationContext, feedback: FeedbackStore,
                                  artifacts: ArtifactStore) -> dg.SensorResult:
    """Requests ``feedback_retrain_job`` when the champion's like-rate over its latest ``window``
    impressions (``SPOTIFY_ASSETS_DEGRADATION_WINDOW``, default 200) falls below ``fraction``
    (``SPOTIFY_ASSETS_DEGRADATION_FRACTION``, default 0.8) of its level at promotion: the rate
    the canary measured, or for a champion deployed without a canary, the rate of its first
    ``window`` impressions (then at least 2 x ``window`` are needed, so the two do not overlap).
    Fires once per champion version (the cursor holds the last version it fired for); the
    count-based ``feedback_retrain_sensor`` works beside it."""
    rollout = read_rollout(artifacts.local_root())
    if rollout is None:
        return dg.SensorResult(skip_reason="nothing deployed (no serve/rollout.json)")
    champion = rollout.champion
    if context.cursor == champion.version:
        return dg.SensorResult(skip_reason=f"a retrain was already requested for {champion.version}")
    log = feedback.log()
    window = DegradationSettings.window
    baseline = champion.like_rate_at_promotion
    if baseline is None:
        total, _ = log.like_counts(champion.version, CHAMPION)
        if total >= 2 * window:
            baseline = ArmCounts(*log.like_counts(champion.version, CHAMPION, first=window)).rate
    recent = ArmCounts(*log.like_counts(champion.version, CHAMPION, last=window))
    verdict = degradation_verdict(baseline, recent, DegradationSettings.fraction, window)
    if not verdict.degraded:
        return dg.SensorResult(skip_reason=f"{champion.version}: {verdict.reason}")
    context.log.info(f"{champion.version}: {verdict.reason}: requesting a retrain")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"degraded-{champion.version}",
                                    tags={"spotify_assets/degraded_version": champion.version,
                                          "spotify_assets/like_rate": f"{recent.rate:.4f}"})],
        cursor=champion.version)
