"""The automation policy shared by every derived asset, and the rules that keep the sensor-
and schedule-driven runs from overlapping.

Under the daemon three things launch runs on their own: ``mpd_slice_sensor`` (a load per new
slice file), the automation sensor (the derived assets, through ``EAGER_WHEN_CHECKS_PASS``)
and ``nightly_retrain`` / ``feedback_retrain_sensor`` (retraining). They take turns:

* the automation sensor starts a chain of derived assets only when no run at all is in
  flight, so a burst of slices waits until every load has finished and then produces one
  chain, and at most one chain is ever in flight;
* the slice sensor requests loads only while no run other than a slice load is in flight,
  so a chain never sees a slice arrive half-way through;
* the nightly retrain and the feedback retrain skip while another pipeline run is in flight,
  and skip work that automation already did (see :func:`models_up_to_date` and
  :func:`folded_feedback_id`).
"""

from __future__ import annotations

import os

import dagster as dg

SLICE_SENSOR_NAME = "mpd_slice_sensor"
SENSOR_NAME_TAG = "dagster/sensor_name"
# queued or running: everything that has not finished (a suspended run is not going anywhere)
IN_FLIGHT_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def runs_in_flight(instance: dg.DagsterInstance, *, except_slice_loads: bool = False) -> list[dg.DagsterRun]:
    """Runs that are queued or running; ``except_slice_loads`` leaves out the loads that
    ``mpd_slice_sensor`` launched."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT_STATUSES))
    if except_slice_loads:
        runs = [run for run in runs if run.tags.get(SENSOR_NAME_TAG) != SLICE_SENSOR_NAME]
    return list(runs)


EXECUTOR_PID_MESSAGE = "Executing steps using multiprocess executor: parent process"


def _executor_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid of the run's multiprocess executor, from its engine event (None: not recorded)."""
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        message = record.user_message or (record.dagster_event.message if record.dagster_event else "") or ""
        if message.startswith(EXECUTOR_PID_MESSAGE):
            pid = record.dagster_event.engine_event_data.metadata.get("pid")
            if pid is not None:
                return int(pid.value)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def fail_orphaned_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """Marks failed the runs this instance still records as started whose executor process
    is gone from this machine (a ``dagster job execute`` killed by SIGKILL, a reboot), and
    frees the concurrency slots they held.

    Without this a killed run keeps the ``duckdb_warehouse`` pool's single slot: the next run
    waits for it forever ("Step still blocked by limit for pool"), and automation, which starts
    nothing while a run is in flight, stops. Only runs whose executor recorded its pid are
    judged, so runs of other launchers (a k8s pod) are left alone. Returns the runs failed."""
    failed = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        pid = _executor_pid(instance, run.run_id)
        if pid is None or _alive(pid):
            continue
        instance.report_run_failed(run, message=f"its executor process {pid} is gone (killed or the machine "
                                                "restarted); marked failed so its pool slots are released")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        failed.append(run)
    return failed


def describe_runs(runs: list[dg.DagsterRun], limit: int = 3) -> str:
    """``job (run id prefix), ...`` for skip reasons and logs."""
    shown = ", ".join(f"{run.job_name} ({run.run_id[:8]})" for run in runs[:limit])
    return shown + (f" and {len(runs) - limit} more" if len(runs) > limit else "")


class NoRunInFlight(dg.AutomationCondition):
    """True when no run is queued or running. Gating every automated asset with it makes the
    automation sensor start a chain only on a quiet pipeline: slice loads finish first (a burst
    of N slices becomes one chain, not N), and a chain in flight is never joined by a second."""

    @property
    def name(self) -> str:
        return "no_run_in_flight"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        busy = runs_in_flight(context.asset_graph_view.instance)
        return dg.AutomationResult(context, context.get_empty_subset() if busy else context.candidate_subset)


# Rebuild when an upstream asset changes, but only from upstream data whose blocking checks
# passed: a bad slice or a leaking split never flows on to models and recommendations.
EAGER_WHEN_CHECKS_PASS = (
    dg.AutomationCondition.eager()
    & dg.AutomationCondition.all_deps_blocking_checks_passed()
    & NoRunInFlight()
)


def models_up_to_date(instance: dg.DagsterInstance, asset_graph, keys: list[dg.AssetKey]) -> bool:
    """True when every asset in ``keys`` has been materialized after the latest materialization
    of each of its parents: retraining would reproduce the same models (every draw is seeded)."""
    parents = {key: set(asset_graph.get(key).parent_keys) for key in keys}
    wanted = set(keys).union(*parents.values())
    latest = instance.get_latest_materialization_events(list(wanted))
    stamp = {key: (event.timestamp if event is not None else None) for key, event in latest.items()}
    for key in keys:
        if stamp.get(key) is None:
            return False
        if any(stamp.get(parent) is not None and stamp[parent] > stamp[key] for parent in parents[key]):
            return False
    return True


def folded_feedback_id(instance: dg.DagsterInstance) -> int:
    """The largest feedback id already folded into training: ``up_to_feedback_id`` of the
    latest ``feedback_positives`` materialization, whichever run made it (0 if none)."""
    event = instance.get_latest_materialization_event(dg.AssetKey("feedback_positives"))
    if event is None or event.asset_materialization is None:
        return 0
    value = event.asset_materialization.metadata.get("up_to_feedback_id")
    return int(value.value) if value is not None else 0
