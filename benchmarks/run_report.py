"""``python -m benchmarks.run_report``: what one Dagster run cost, step by step, from its own events.

Reads a finished (or failed) run's event log from a Dagster instance and writes a markdown
report and a JSON file beside it: per step the wall seconds (step start to step success or
failure), the rows its assets reported and the step process's peak RSS; per run the wall time,
the largest step peak and an upper-bound estimate of the memory in use at once. See ``--help``.

Only :func:`read_run` talks to Dagster; everything after it works on plain dataclasses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from spotify_assets.atomic import atomic_write
from spotify_assets.step_memory import parse_peak_rss_message

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMA = "spotify_assets.run_report/1"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "full_pipeline.md"
#: Materialization metadata keys that count an asset's rows, most specific first.
ROW_COUNT_KEYS = ("dagster/row_count", "rows", "n_rows", "row_count")

DESCRIPTION = """\
Turn one Dagster run's event log into a report of seconds, rows and peak memory per step.

  python -m benchmarks.run_report --latest full_pipeline --out benchmarks/results/full_pipeline.md
  python -m benchmarks.run_report --run-id 80d1b54d-... --dagster-home .dagster_home \\
      --config deploy/full_scale.yaml --out benchmarks/results/full_pipeline.md
"""

EPILOG = """\
where the numbers come from
  seconds      STEP_START to STEP_SUCCESS (or STEP_FAILURE) of each step, from the event log
  rows         the step's asset materializations' row-count metadata
               (first of: dagster/row_count, rows, n_rows, row_count)
  peak RSS     the line every job's step hook logs: the step process's ru_maxrss
               (spotify_assets.step_memory); the asset's peak_rss_mb metadata when the hook's
               line is missing (a run of a job without the hook)
  concurrent   the largest sum of step peaks over steps whose intervals overlap: an upper
               bound, since each step is charged its peak for its whole interval and pages
               shared with the executor's forkserver are counted once per step

outputs
  OUT (markdown) and OUT with .json (schema spotify_assets.run_report/1), written atomically.
  The instance is $DAGSTER_HOME's unless --dagster-home is given; the machine and git commit
  are those of the checkout writing the report (run it on the machine that ran the job).
"""


def _elapsed(started: float | None, finished: float | None) -> float | None:
    """``finished - started`` in seconds, or None when either end is unknown."""
    return None if started is None or finished is None else finished - started


@dataclass(frozen=True)
class StepRecord:
    """One step of a run as its events describe it (times are Unix seconds)."""

    step_key: str
    started: float | None
    finished: float | None
    outcome: str
    peak_rss_mb: float | None
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def seconds(self) -> float | None:
        """Wall seconds from the step's start to its success or failure."""
        return _elapsed(self.started, self.finished)


@dataclass(frozen=True)
class RunRecord:
    """A run's identity and outcome plus its steps in start order."""

    run_id: str
    job_name: str
    status: str
    started: float | None
    finished: float | None
    run_config: dict
    tags: dict[str, str]
    steps: list[StepRecord]

    @property
    def wall_seconds(self) -> float | None:
        return _elapsed(self.started, self.finished)


@dataclass(frozen=True)
class ConcurrentPeak:
    """The moment the summed peaks of the steps running together were largest."""

    mb: float
    at: float | None
    step_keys: tuple[str, ...]


# --------------------------------------------------------------------------------------
# reading the run (the only Dagster code)
# --------------------------------------------------------------------------------------


def open_instance(dagster_home: Path | None):
    """The Dagster instance of ``dagster_home``, else of ``$DAGSTER_HOME``."""
    import dagster as dg

    if dagster_home is not None:
        return dg.DagsterInstance.from_config(str(dagster_home))
    return dg.DagsterInstance.get()


def latest_run_id(instance, job_name: str) -> str:
    """The newest run of ``job_name`` on ``instance`` (whatever its status)."""
    import dagster as dg

    runs = instance.get_runs(filters=dg.RunsFilter(job_name=job_name), limit=1)
    if not runs:
        raise LookupError(f"no run of job {job_name!r} on this instance")
    return runs[0].run_id


def _metadata_value(value: object) -> object:
    """A metadata entry's plain value (an int for ``dg.MetadataValue.int`` and the like)."""
    return getattr(value, "value", value)


def asset_rows(metadata: dict) -> int | None:
    """The row count a materialization reports, from the first of :data:`ROW_COUNT_KEYS` present."""
    for key in ROW_COUNT_KEYS:
        if key in metadata:
            value = _metadata_value(metadata[key])
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return int(value)
    return None


@dataclass
class RunEventTally:
    """What :func:`read_run` gathers from a run's event log entries, one entry at a time."""

    started: dict[str, float] = field(default_factory=dict)
    finished: dict[str, tuple[float, str]] = field(default_factory=dict)
    hook_peaks: dict[str, float] = field(default_factory=dict)
    metadata_peaks: dict[str, float] = field(default_factory=dict)
    rows: dict[str, dict[str, int]] = field(default_factory=dict)
    planned: set[str] = field(default_factory=set)
    run_started: float | None = None
    run_finished: float | None = None

    def add(self, entry) -> None:
        """Take one ``EventLogEntry`` into account."""
        from dagster import DagsterEventType as Kind

        event, step, at = entry.dagster_event, entry.step_key, entry.timestamp
        if event is None:  # a log line: the step hook's peak RSS, or anything else
            mb = parse_peak_rss_message(entry.user_message)
            if mb is not None and step:
                self.hook_peaks[step] = mb
            return
        kind = event.event_type
        if kind == Kind.RUN_START:
            self.run_started = at
        elif kind in (Kind.RUN_SUCCESS, Kind.RUN_FAILURE, Kind.RUN_CANCELED):
            self.run_finished = at
        elif not step:
            return
        elif kind in (Kind.ASSET_MATERIALIZATION_PLANNED, Kind.ASSET_CHECK_EVALUATION_PLANNED):
            self.planned.add(step)
        elif kind == Kind.STEP_START:
            self.started[step] = at
        elif kind in (Kind.STEP_SUCCESS, Kind.STEP_FAILURE, Kind.STEP_SKIPPED):
            self.finished[step] = (at, {Kind.STEP_SUCCESS: "success", Kind.STEP_FAILURE: "failure"}.get(kind, "skipped"))
        elif kind == Kind.ASSET_MATERIALIZATION:
            self._add_materialization(step, event.step_materialization_data.materialization)

    def _add_materialization(self, step: str, materialization) -> None:
        count = asset_rows(materialization.metadata)
        if count is not None:
            self.rows.setdefault(step, {})[materialization.asset_key.to_user_string()] = count
        peak = _metadata_value(materialization.metadata.get("peak_rss_mb"))
        if isinstance(peak, (int, float)):
            self.metadata_peaks[step] = max(float(peak), self.metadata_peaks.get(step, 0.0))

    def outcome(self, step: str) -> str:
        """success, failure, skipped (Dagster skipped it), not run (planned, never started: an upstream
        step failed or the run stopped) or did not finish (started, never ended)."""
        if step in self.finished:
            return self.finished[step][1]
        return "did not finish" if step in self.started else "not run"

    def steps(self) -> list[StepRecord]:
        """Every step that was planned, started or ended, in start order (those never started last)."""
        keys = sorted(set(self.started) | set(self.finished) | self.planned,
                      key=lambda k: (self.started.get(k, float("inf")), k))
        return [StepRecord(step_key=key, started=self.started.get(key),
                           finished=self.finished[key][0] if key in self.started and key in self.finished else None,
                           outcome=self.outcome(key),
                           peak_rss_mb=self.hook_peaks.get(key, self.metadata_peaks.get(key)),
                           rows=self.rows.get(key, {}))
                for key in keys]


def read_run(instance, run_id: str) -> RunRecord:
    """Collect ``run_id``'s steps from ``instance``'s event log: start and end times, outcome,
    the hook's peak RSS line (or the asset metadata's ``peak_rss_mb``) and the assets' rows."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise LookupError(f"no run {run_id} on this instance")
    tally = RunEventTally()
    for entry in instance.all_logs(run_id):
        tally.add(entry)
    return RunRecord(run_id=run.run_id, job_name=run.job_name, status=run.status.value, started=tally.run_started,
                     finished=tally.run_finished, run_config=dict(run.run_config or {}), tags=dict(run.tags or {}),
                     steps=tally.steps())


# --------------------------------------------------------------------------------------
# what the steps add up to (no Dagster)
# --------------------------------------------------------------------------------------


def concurrent_peak(steps: Iterable[StepRecord]) -> ConcurrentPeak:
    """The largest sum of peak RSS over steps running at the same moment: each step holds its
    peak from its start to its end (an upper bound on what was really resident at once)."""
    changes: list[tuple[float, int, float, str]] = []
    for step in steps:
        if step.started is None or step.finished is None or step.peak_rss_mb is None:
            continue
        # at equal times an end (0) is applied before a start (1): back-to-back steps do not overlap
        changes += [(step.started, 1, step.peak_rss_mb, step.step_key), (step.finished, 0, step.peak_rss_mb, step.step_key)]
    best = ConcurrentPeak(mb=0.0, at=None, step_keys=())
    running: dict[str, float] = {}
    for at, is_start, mb, key in sorted(changes):
        if is_start:
            running[key] = mb
            total = sum(running.values())
            if total > best.mb:
                best = ConcurrentPeak(mb=round(total, 1), at=at, step_keys=tuple(sorted(running)))
        else:
            running.pop(key, None)
    return best


def run_totals(run: RunRecord) -> dict:
    """Run-level numbers: wall time, step counts, the largest and smallest step peak and the
    concurrent-peak estimate."""
    measured = [s for s in run.steps if s.peak_rss_mb is not None]
    largest = max(measured, key=lambda s: s.peak_rss_mb, default=None)
    smallest = min(measured, key=lambda s: s.peak_rss_mb, default=None)
    concurrent = concurrent_peak(run.steps)
    return {
        "wall_seconds": round(run.wall_seconds, 1) if run.wall_seconds is not None else None,
        "steps": len(run.steps),
        "steps_failed": sum(s.outcome == "failure" for s in run.steps),
        "steps_not_run": sum(s.outcome in ("skipped", "not run") for s in run.steps),
        "steps_with_peak_rss": len(measured),
        "step_seconds_sum": round(sum(s.seconds or 0.0 for s in run.steps), 1),
        "largest_step_peak_rss_mb": largest.peak_rss_mb if largest else None,
        "largest_step": largest.step_key if largest else None,
        "smallest_step_peak_rss_mb": smallest.peak_rss_mb if smallest else None,
        "concurrent_peak_rss_mb_upper_bound": concurrent.mb if concurrent.at is not None else None,
        "concurrent_peak_steps": list(concurrent.step_keys),
        "concurrent_peak_offset_seconds": (round(concurrent.at - run.started, 1)
                                           if concurrent.at is not None and run.started is not None else None),
    }


#: Assets whose row counts say how big the run's data was, with what they count.
DATA_ASSETS = {
    "mpd_playlists": "MPD playlists",
    "mpd_playlist_tracks": "MPD playlist tracks",
    "entp_listens": "ENTP listens",
    "user_dictionary": "users kept (matched, downscaled)",
    "playlist_dictionary": "playlists kept (matched)",
}


def data_summary(run: RunRecord) -> dict:
    """The run's data size: the rows of :data:`DATA_ASSETS` that its steps reported, and the
    ``settings`` resource's ``downscale`` from the run config (1.0 when not set)."""
    reported = {asset: count for step in run.steps for asset, count in step.rows.items()}
    settings = ((run.run_config.get("resources") or {}).get("settings") or {}).get("config") or {}
    return {"rows": {asset: reported[asset] for asset in DATA_ASSETS if asset in reported},
            "downscale": settings.get("downscale", 1.0)}


def matching_config_file(run_config: dict, candidates: Iterable[Path]) -> Path | None:
    """The first YAML file among ``candidates`` whose content is exactly ``run_config``."""
    import yaml

    for path in candidates:
        try:
            if (yaml.safe_load(path.read_text()) or {}) == run_config:
                return path
        except (OSError, yaml.YAMLError):
            continue
    return None


def describe_config(run_config: dict, given: Path | None) -> dict:
    """Which run config file the run used: ``given`` (checked against the run's config) or a
    committed ``deploy/*.yaml`` / ``benchmarks/*.yaml`` with the same content."""
    import yaml

    if given is not None:
        matches = (yaml.safe_load(given.read_text()) or {}) == run_config
        return {"file": _relative(given), "matches_run": matches}
    found = matching_config_file(run_config, sorted((REPO_ROOT / "deploy").glob("*.yaml"))
                                 + sorted((REPO_ROOT / "benchmarks").glob("*.yaml")))
    return {"file": _relative(found) if found else None, "matches_run": found is not None}


def _relative(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


# --------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp)) if stamp is not None else "?"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m{rest:02d}s" if minutes >= 60 else f"{minutes}m{rest:02d}s"


def _mb(value: float | None) -> str:
    return f"{value:,.0f}" if value is not None else "–"


def _rows_cell(rows: dict[str, int]) -> str:
    return "<br>".join(f"{asset}: {count:,}" for asset, count in sorted(rows.items())) or ""


def report_dict(run: RunRecord, config: dict, machine: dict, git: dict, note: str = "",
                memory: dict | None = None) -> dict:
    """Everything the report says, as JSON-ready data (``note``: free text about the conditions;
    ``memory``: the sampled summed PSS of the run's processes, from ``benchmarks.sample_memory``)."""
    return {
        "schema": SCHEMA,
        "run": {"run_id": run.run_id, "job": run.job_name, "status": run.status, "started": _when(run.started),
                "finished": _when(run.finished), "config": config, "run_config": run.run_config,
                "tags": run.tags},
        "note": note,
        "data": data_summary(run),
        "totals": run_totals(run),
        "sampled_memory": memory,
        "steps": [{**asdict(step), "seconds": round(step.seconds, 2) if step.seconds is not None else None}
                  for step in run.steps],
        "machine": machine,
        "git": git,
        "written_at": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }


def _data_text(data: dict) -> str:
    parts = [f"{count:,} {DATA_ASSETS[asset]}" for asset, count in data["rows"].items()]
    return ", ".join(parts or ["no data-size rows reported"]) + f"; downscale {data['downscale']:g}"


def _sampled_memory_rows(memory: dict | None) -> list[str]:
    if not memory:
        return []
    return [f"| peak summed PSS of all the run's processes, sampled every {memory['interval']:g} s | "
            f"{_mb(memory['peak_mb'])} MB (at {_duration(memory['at_seconds'])}; `{memory['log']}`) |"]


def report_markdown(report: dict) -> str:
    """The markdown page for a :func:`report_dict`."""
    run, totals, machine = report["run"], report["totals"], report["machine"]
    config = report["run"]["config"]
    config_text = (f"`{config['file']}`" + ("" if config["matches_run"] else " (**differs from the run's config**)")
                   if config["file"] else "not a committed file (the run's config is in the JSON)")
    lines = [
        f"# Run report: {run['job']}",
        "",
        f"Run `{run['run_id']}` of `{run['job']}`: **{run['status']}**, {run['started']} to {run['finished']} "
        f"({_duration(totals['wall_seconds'])}). Run config: {config_text}. Written by "
        "`python -m benchmarks.run_report` from the run's event log.",
        "",
        f"Machine: {machine.get('processor', '?')}, {machine.get('cpus', '?')} CPUs "
        f"({machine.get('platform', '?')}); git commit {report['git'].get('commit', '')[:10] or '?'} "
        "(the machine and checkout that wrote this report).",
        "",
        *([report["note"], ""] if report.get("note") else []),
        f"Data: {_data_text(report['data'])}.",
        "",
        "## Totals",
        "",
        "| | |",
        "|---|---:|",
        f"| run wall time | {_duration(totals['wall_seconds'])} |",
        f"| steps (failed, not run) | {totals['steps']} ({totals['steps_failed']}, {totals['steps_not_run']}) |",
        f"| step seconds summed | {_duration(totals['step_seconds_sum'])} |",
        f"| largest step peak RSS | {_mb(totals['largest_step_peak_rss_mb'])} MB (`{totals['largest_step']}`) |",
        f"| smallest step peak RSS | {_mb(totals['smallest_step_peak_rss_mb'])} MB |",
        f"| concurrent peak RSS, upper-bound estimate | {_mb(totals['concurrent_peak_rss_mb_upper_bound'])} MB |",
        *_sampled_memory_rows(report.get("sampled_memory")),
        "",
        "The concurrent peak is an **upper-bound estimate**: the largest sum of step peaks over steps "
        f"whose start-to-end intervals overlap (at {_duration(totals['concurrent_peak_offset_seconds'])} into the "
        f"run: {', '.join(f'`{k}`' for k in totals['concurrent_peak_steps']) or '–'}). Each step is charged its "
        "peak for its whole interval, and every step forked from the executor's forkserver counts the server's "
        "preloaded pages (shared copy-on-write; about the smallest step peak) again.",
        "",
        "## Steps",
        "",
        "Seconds: step start to step success or failure. Peak RSS: the step process's `ru_maxrss`, logged by "
        "the job's step hook (else its assets' `peak_rss_mb` metadata; – when neither). Rows: the row counts its "
        "assets reported. Steps that never started (an upstream step failed) are listed as not run.",
        "",
        "| step | outcome | seconds | peak RSS MB | rows |",
        "|---|---|---:|---:|---|",
    ]
    for step in report["steps"]:
        lines.append(f"| `{step['step_key']}` | {step['outcome']} | {_duration(step['seconds'])} | "
                     f"{_mb(step['peak_rss_mb'])} | {_rows_cell(step['rows'])} |")
    return "\n".join(lines) + "\n"


def write_report(report: dict, out: Path) -> tuple[Path, Path]:
    """Write ``out`` (markdown) and ``out`` with ``.json`` atomically; return both paths."""
    json_path = out.with_suffix(".json")
    with atomic_write(json_path) as tmp:
        tmp.write_text(json.dumps(report, indent=1, default=str) + "\n")
    with atomic_write(out) as tmp:
        tmp.write_text(report_markdown(report))
    return out, json_path


def sampled_memory(log: Path | None) -> dict | None:
    """The peak of a ``benchmarks.sample_memory`` log, as report data (None without a log)."""
    if log is None:
        return None
    from benchmarks.sample_memory import read_peak

    peak = read_peak(log)
    if peak is None:
        raise LookupError(f"{log}: no '# peak' line (the sampled command did not finish)")
    return {"peak_mb": peak.peak_mb, "at_seconds": peak.at_seconds, "wall_seconds": peak.wall_seconds,
            "interval": peak.interval, "log": _relative(log)}


def build_report(instance, run_id: str, config_file: Path | None = None, note: str = "",
                 memory_log: Path | None = None) -> dict:
    """Read ``run_id`` from ``instance`` and return its :func:`report_dict` for this machine and checkout."""
    from benchmarks.harness import _git, _machine

    run = read_run(instance, run_id)
    return report_dict(run, describe_config(run.run_config, config_file), _machine(), _git(), note,
                       sampled_memory(memory_log))


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_report", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--run-id", help="the run to report on")
    which.add_argument("--latest", metavar="JOB", help="report on the newest run of JOB (e.g. full_pipeline)")
    parser.add_argument("--dagster-home", type=Path, default=None, metavar="DIR",
                        help="the instance's folder (default: $DAGSTER_HOME)")
    parser.add_argument("--config", type=Path, default=None, metavar="YAML",
                        help="the run config file the run was launched with; checked against the run's config "
                             "(default: a committed deploy/*.yaml or benchmarks/*.yaml with the same content)")
    parser.add_argument("--note", default="", metavar="TEXT",
                        help="a sentence on the conditions, printed in the report (e.g. other jobs sharing the CPUs)")
    parser.add_argument("--memory-log", type=Path, default=None, metavar="LOG",
                        help="a `python -m benchmarks.sample_memory` log of the run: its peak summed PSS goes in "
                             "the totals")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="MD",
                        help="markdown report; the JSON goes beside it "
                             f"(default: {DEFAULT_OUT.relative_to(REPO_ROOT)} in the repository)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dagster_home is None and not os.environ.get("DAGSTER_HOME"):
        print("set DAGSTER_HOME or pass --dagster-home (the instance that holds the run)", file=sys.stderr)
        return 2
    with open_instance(args.dagster_home) as instance:
        try:
            run_id = args.run_id or latest_run_id(instance, args.latest)
            report = build_report(instance, run_id, args.config, args.note, args.memory_log)
        except LookupError as exc:
            print(exc, file=sys.stderr)
            return 2
    markdown, json_path = write_report(report, args.out)
    totals = report["totals"]
    print(f"{report['run']['job']} run {run_id} ({report['run']['status']}): {totals['steps']} steps, "
          f"{_duration(totals['wall_seconds'])}, largest step peak {_mb(totals['largest_step_peak_rss_mb'])} MB; "
          f"wrote {markdown} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
