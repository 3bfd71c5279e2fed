"""Concurrency (issue 10): processes loading different MPD slice partitions into one DuckDB
file at once, plus a read-only reader, serialize through DuckDBWarehouse's lock retry or
fail cleanly; the tables are never corrupted (row counts checked after, and every state a
reader saw holds each slice whole or not at all)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from spotify_assets.ingest import ensure_mpd_tables, list_mpd_slices, load_mpd_slice
from spotify_assets.resources import PROJECT_ROOT
from spotify_assets_tests.conftest import snapshot

TIMEOUT = 300


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "spotify_assets_tests.concurrent_loader", *args], cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def _stop_all(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        for stream in (process.stdout, process.stderr):
            stream.close()


def _wait_ready(process: subprocess.Popen) -> None:
    line = process.stdout.readline()
    assert line.strip() == "waiting", f"{line!r} {process.stderr.read()[-2000:] if process.poll() is not None else ''}"


def _finish(process: subprocess.Popen) -> tuple[int, list[dict]]:
    out, err = process.communicate(timeout=TIMEOUT)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return process.returncode, lines + ([{"stderr": err[-2000:]}] if process.returncode not in (0, 3) else [])


@pytest.fixture()
def warehouse(tiny_raw: Path, tmp_path: Path):
    """An empty warehouse file (tables created), the slices, and a clean load's rows."""
    slices = list_mpd_slices(tiny_raw / "mpd")[:2]
    db = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(db)) as con:
        ensure_mpd_tables(con)
    with duckdb.connect() as clean:
        counts = {}
        for path in slices:
            result = load_mpd_slice(clean, path)
            counts[path.name] = (result.rows["mpd_playlists"], result.rows["mpd_playlist_tracks"])
        expected = {t: snapshot(clean, t) for t in ("mpd_playlists", "mpd_playlist_tracks")}
    return db, slices, counts, expected


def _assert_final(db: Path, expected: dict) -> None:
    with duckdb.connect(str(db), read_only=True) as con:
        for table, rows in expected.items():
            assert snapshot(con, table) == rows, f"{table} differs from a clean load (duplicates or missing rows)"


def test_two_writers_and_a_reader_serialize(warehouse, tmp_path: Path) -> None:
    db, slices, counts, expected = warehouse
    start, stop, progress = tmp_path / "start", tmp_path / "stop", tmp_path / "reader_progress"
    processes = []
    try:
        writers = [_start("write", str(db), str(start), "--slice", str(path), "--repeats", "4", "--progress", str(progress))
                   for path in slices]
        reader = _start("read", str(db), str(start), "--stop", str(stop), "--progress", str(progress))
        processes = [*writers, reader]
        for process in processes:
            _wait_ready(process)
        start.touch()
        results = [_finish(w) for w in writers]
        stop.touch()
        reader_rc, reader_out = _finish(reader)
    finally:
        _stop_all(processes)
    for rc, lines in results:
        assert rc == 0, lines  # 120 s of lock retry is ample for three tiny loads each
        assert len(lines) == 4 and all("loaded" in line for line in lines)
    assert reader_rc == 0, reader_out
    observations = reader_out[0]["observations"]
    writers_done = max(line["at"] for _, lines in results for line in lines)
    during = [seen for seen in observations if seen["at"] < writers_done]
    assert during, "the reader never got in while the writers were loading"
    for seen in observations:  # every committed state holds each slice whole or not at all
        for name, (n_playlists, n_tracks) in counts.items():
            assert (seen["playlists"].get(name, 0), seen["tracks"].get(name, 0)) in ((0, 0), (n_playlists, n_tracks)), seen
    print(f"\n3 processes (2 writers x 4 loads, 1 reader); reader saw {len(observations)} states, "
          f"{len(during)} while writers were loading")
    _assert_final(db, expected)


def test_writer_blocked_past_its_lock_timeout_fails_cleanly_and_a_patient_one_waits(warehouse, tmp_path: Path) -> None:
    """While another process holds the file, a writer with a short lock timeout exits with a
    lock error (nothing written); one with a long timeout retries and loads once the lock
    is released."""
    db, slices, counts, expected = warehouse
    start = tmp_path / "start"
    holder = duckdb.connect(str(db))  # this process holds the write lock
    processes = []
    try:
        load_mpd_slice(holder, slices[0])
        impatient = _start("write", str(db), str(start), "--slice", str(slices[1]), "--lock-timeout", "1")
        patient = _start("write", str(db), str(start), "--slice", str(slices[1]), "--lock-timeout", "120")
        processes = [impatient, patient]
        for process in processes:
            _wait_ready(process)
        start.touch()
        rc, lines = _finish(impatient)
        assert rc == 3 and "lock" in lines[0]["failed"].lower(), lines
        assert patient.poll() is None, "the patient writer did not wait for the lock"
        holder.close()
        rc, lines = _finish(patient)
        assert rc == 0 and [line["loaded"] for line in lines] == [
            {"mpd_playlists": counts[slices[1].name][0], "mpd_playlist_tracks": counts[slices[1].name][1]}]
    finally:
        holder.close()
        _stop_all(processes)
    _assert_final(db, expected)
