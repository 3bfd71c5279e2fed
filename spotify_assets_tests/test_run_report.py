"""``python -m benchmarks.run_report``: a run's events become per-step seconds, rows and peak RSS."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest

from benchmarks.run_report import StepRecord, RunEventTally, build_report, concurrent_peak, main, write_report
from benchmarks.sample_memory import main as sample_memory_main, read_peak
from spotify_assets.definitions import defs as project_defs
from spotify_assets.defs.resources import build_resources
from spotify_assets.mpd_partitions import range_tags, sync_partitions
from spotify_assets.step_memory import parse_peak_rss_message, peak_rss_message


def _step(key: str, started: float, finished: float, mb: float | None) -> StepRecord:
    return StepRecord(step_key=key, started=started, finished=finished, outcome="success", peak_rss_mb=mb)


def test_peak_rss_message_round_trips_and_ignores_other_lines() -> None:
    assert parse_peak_rss_message(peak_rss_message(1234.56, "success")) == 1234.6
    assert parse_peak_rss_message(peak_rss_message(80.0, "failure")) == 80.0
    assert parse_peak_rss_message("artist_dictionary: 10,804 rows in 2.08s") is None
    assert parse_peak_rss_message("") is None


def test_concurrent_peak_sums_overlapping_steps_only() -> None:
    steps = [_step("a", 0, 10, 100.0), _step("b", 5, 20, 300.0), _step("c", 10, 30, 50.0),
             _step("d", 20, 25, 500.0), _step("no_peak", 0, 30, None)]
    peak = concurrent_peak(steps)
    # a+b = 400 at t=5, b+c = 350 at t=10 (a ended), c+d = 550 at t=20 (b ended as d started)
    assert peak.mb == 550.0 and peak.at == 20 and peak.step_keys == ("c", "d")
    back_to_back = concurrent_peak([_step("x", 0, 5, 200.0), _step("y", 5, 9, 300.0)])
    assert back_to_back.mb == 300.0 and back_to_back.step_keys == ("y",)
    assert concurrent_peak([]).mb == 0.0


def _entry(step: str | None, at: float, kind: dg.DagsterEventType | None = None, message: str = ""):
    """An event log entry as much as the report reads of one."""
    event = SimpleNamespace(event_type=kind) if kind is not None else None
    return SimpleNamespace(dagster_event=event, step_key=step, timestamp=at, user_message=message)


def test_tally_names_failed_unfinished_and_never_started_steps() -> None:
    kind = dg.DagsterEventType
    tally = RunEventTally()
    for entry in [
        _entry(None, 0.0, kind.RUN_START),
        *(_entry(step, 0.0, kind.ASSET_MATERIALIZATION_PLANNED) for step in ("train", "serve", "index")),
        _entry("train", 1.0, kind.STEP_START), _entry("index", 1.5, kind.STEP_START),
        _entry("train", 4.0, message=peak_rss_message(2048.0, "failure")),
        _entry("train", 4.0, kind.STEP_FAILURE),
        _entry("serve", 4.1, message="Dependencies for step serve failed: ['train']. Not executing."),
        _entry(None, 5.0, kind.RUN_FAILURE),
    ]:
        tally.add(entry)
    steps = {step.step_key: step for step in tally.steps()}
    assert (steps["train"].outcome, steps["train"].seconds, steps["train"].peak_rss_mb) == ("failure", 3.0, 2048.0)
    assert (steps["index"].outcome, steps["index"].seconds) == ("did not finish", None)
    assert (steps["serve"].outcome, steps["serve"].started, steps["serve"].peak_rss_mb) == ("not run", None, None)
    assert [step.step_key for step in tally.steps()] == ["train", "index", "serve"]
    assert (tally.run_started, tally.run_finished) == (0.0, 5.0)


@pytest.fixture(scope="module")
def ingest_run(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory):
    """``ingest_job`` (ingest + the SQL models, with the jobs' step hooks) run in process on
    `tiny` data; yields the instance that holds its events and the run's id."""
    import shutil

    root = tmp_path_factory.mktemp("run_report")
    data = root / "data"
    shutil.copytree(tiny_raw, data / "raw")
    with dg.instance_for_test() as instance:
        keys = sync_partitions(instance, data / "raw" / "mpd")
        result = project_defs.resolve_job_def("ingest_job").execute_in_process(
            instance=instance, resources=build_resources(data), tags=range_tags(keys))
        assert result.success
        yield instance, result.run_id


def test_report_of_a_real_run_has_seconds_rows_and_peak_rss(ingest_run, tmp_path: Path) -> None:
    instance, run_id = ingest_run
    report = build_report(instance, run_id, note="tiny data, in process")
    assert report["run"]["job"] == "ingest_job" and report["run"]["status"] == "SUCCESS"
    steps = {step["step_key"]: step for step in report["steps"]}
    assert {"mpd_slice_tables", "track_dictionary"} <= set(steps)
    assert all(step["seconds"] > 0 and step["outcome"] == "success" for step in steps.values())
    assert all(step["peak_rss_mb"] > 10 for step in steps.values())  # an interpreter with numpy loaded
    assert steps["mpd_slice_tables"]["rows"]["mpd_playlists"] > 0
    assert steps["track_dictionary"]["rows"]["track_dictionary"] > 0
    assert report["data"]["rows"]["mpd_playlists"] == steps["mpd_slice_tables"]["rows"]["mpd_playlists"]
    assert report["data"]["downscale"] == 1.0
    totals = report["totals"]
    assert totals["wall_seconds"] > 0 and totals["steps"] == len(steps)
    assert totals["largest_step_peak_rss_mb"] == max(step["peak_rss_mb"] for step in steps.values())
    # the in-process executor runs one step at a time: the concurrent estimate is one step's peak
    assert totals["concurrent_peak_rss_mb_upper_bound"] == totals["largest_step_peak_rss_mb"]

    markdown, json_path = write_report(report, tmp_path / "ingest_job.md")
    text = markdown.read_text()
    assert "upper-bound estimate" in text and "`track_dictionary`" in text and "tiny data, in process" in text
    assert json.loads(json_path.read_text())["totals"] == totals


def test_cli_reports_the_latest_run_of_a_job(ingest_run, tmp_path: Path, monkeypatch, capsys) -> None:
    instance, run_id = ingest_run
    monkeypatch.setattr("benchmarks.run_report.open_instance", lambda home: _borrowed(instance))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert main(["--latest", "ingest_job", "--out", str(tmp_path / "report.md")]) == 0
    assert run_id in capsys.readouterr().out
    assert json.loads((tmp_path / "report.json").read_text())["run"]["run_id"] == run_id
    assert main(["--latest", "no_such_job", "--out", str(tmp_path / "other.md")]) == 2


def test_sampled_memory_counts_the_children_and_lands_in_the_report(ingest_run, tmp_path: Path, monkeypatch,
                                                                    capsys) -> None:
    """The sampler sees a child process's memory (not just the command's own process), and
    run_report's --memory-log puts that peak in the totals."""
    import sys

    log = tmp_path / "memory.log"
    # the command holds ~40 MB; its child touches 300 MB: only a tree-wide sum sees the child
    child = ("import time; block = bytearray(300 << 20); block[::4096] = b'x' * len(block[::4096]); "
             "time.sleep(1.5)")
    code = sample_memory_main(["--out", str(log), "--interval", "0.2", "--", sys.executable, "-c",
                               f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"])
    assert code == 0
    peak = read_peak(log)
    assert peak is not None and peak.peak_mb > 300 and peak.interval == 0.2
    assert sample_memory_main(["--out", str(tmp_path / "x.log"), "--", sys.executable, "-c", "raise SystemExit(3)"]) == 3

    instance, run_id = ingest_run
    monkeypatch.setattr("benchmarks.run_report.open_instance", lambda home: _borrowed(instance))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert main(["--run-id", run_id, "--memory-log", str(log), "--out", str(tmp_path / "r.md")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["sampled_memory"]["peak_mb"] == peak.peak_mb
    assert "peak summed PSS of all the run's processes" in (tmp_path / "r.md").read_text()
    unfinished = tmp_path / "unfinished.log"
    unfinished.write_text("# elapsed_s pss_mb\n2 100\n")
    assert main(["--run-id", run_id, "--memory-log", str(unfinished), "--out", str(tmp_path / "u.md")]) == 2
    assert "did not finish" in capsys.readouterr().err


class _borrowed:
    """A context manager handing out an instance someone else closes."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance

    def __enter__(self) -> dg.DagsterInstance:
        return self.instance

    def __exit__(self, *exc: object) -> None:
        return None
