"""Issue 18 item 4: MPD slices read in worker processes (orjson + vectorised checks) load
exactly what DuckDB's reader loaded, refuse exactly what it refused, and a refused slice
in a parallel load leaves every other slice's rows alone."""

from __future__ import annotations

import copy
import gzip
import json
import logging
import shutil
from pathlib import Path

import duckdb
import pytest

from spotify_assets.ingest import (
    InputFormatError,
    default_mpd_workers,
    list_mpd_slices,
    load_mpd_slices,
    read_mpd_slice,
)

TABLES = {
    "mpd_playlists": "*",
    "mpd_playlist_tracks": "*",
    "mpd_slice_files": "slice, bytes, mtime_ns, sha256",  # loaded_at is the load's clock
}


def _rows_in_storage_order(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    """Every row of the MPD tables in rowid (insertion) order: byte-for-byte content."""
    return {t: con.execute(f"SELECT {cols} FROM {t} ORDER BY rowid").fetchall() for t, cols in TABLES.items()}


def _copy_slices(tiny_raw: Path, folder: Path, *, gz: bool = False) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for path in list_mpd_slices(tiny_raw / "mpd"):
        if gz:
            target = folder / (path.name + ".gz")
            target.write_bytes(gzip.compress(path.read_bytes()))
        else:
            target = Path(shutil.copy(path, folder))
        copies.append(target)
    return copies


@pytest.mark.parametrize("gz", [False, True], ids=["json", "json.gz"])
def test_parallel_load_equals_duckdb_reader_byte_for_byte(tiny_raw: Path, tmp_path: Path, gz: bool) -> None:
    """`tiny` data: worker processes + orjson give the very rows, in the very order, that
    the pre-issue-18 loader (DuckDB's reader, one slice at a time) wrote."""
    slices = [(p, p.name) for p in _copy_slices(tiny_raw, tmp_path / "mpd", gz=gz)]
    assert len(slices) >= 2
    before = duckdb.connect(str(tmp_path / "duckdb_reader.duckdb"))
    after = duckdb.connect(str(tmp_path / "parallel.duckdb"))
    try:
        loaded_before, failed = load_mpd_slices(before, slices, workers=1, parser="duckdb")
        assert failed == [] and {r.notes["parser"] for r in loaded_before} == {"duckdb"}
        loaded_after, failed = load_mpd_slices(after, slices, workers=2)
        assert failed == [] and {r.notes["parser"] for r in loaded_after} == {"orjson"}
        assert [r.rows for r in loaded_after] == [r.rows for r in loaded_before]
        expected = _rows_in_storage_order(before)
        assert all(expected.values())
        assert _rows_in_storage_order(after) == expected
        for table in TABLES:  # same column types too
            assert after.execute(f"DESCRIBE {table}").fetchall() == before.execute(f"DESCRIBE {table}").fetchall()
    finally:
        before.close()
        after.close()
    for path, _ in slices:  # and slice by slice, the Arrow tables themselves
        fast, reference = read_mpd_slice(path), read_mpd_slice(path, parser="duckdb")
        assert fast.parser == "orjson" and reference.parser == "duckdb"
        assert fast.playlists.equals(reference.playlists) and fast.tracks.equals(reference.tracks)
        assert fast.fingerprint == reference.fingerprint


def _slice_text(first_pid: int = 0) -> dict:
    track = {"pos": 0, "artist_name": "A: the band", "track_uri": "spotify:track:0", "artist_uri": "spotify:artist:0",
             "track_name": "Song", "album_uri": "spotify:album:0", "duration_ms": 1000, "album_name": "Al"}
    return {
        "info": {"slice": "0-9", "version": "v1", "nested": [{"a:b": "c:d"}, None, 1.5]},
        "playlists": [
            {"name": "one", "collaborative": "false", "pid": first_pid, "modified_at": 1, "num_tracks": 1,
             "num_albums": 1, "num_followers": 1, "tracks": [track], "num_edits": 1, "duration_ms": 1000,
             "num_artists": 1},
            {"name": "two: empty", "collaborative": "true", "pid": first_pid + 1, "modified_at": 2, "num_tracks": 0,
             "num_albums": 0, "num_followers": 0, "tracks": [], "num_edits": 0, "duration_ms": 0, "num_artists": 0,
             "description": "x"},
        ],
    }


def _variants() -> dict[str, bytes]:
    """Documents the fast path must leave to DuckDB's reader (or agree with it on)."""
    base = _slice_text()
    plain = json.dumps(base, indent=2).encode()
    out = {"valid": plain, "valid_compact": json.dumps(base, separators=(",", ":")).encode()}
    out["duplicate_playlist_key"] = plain.replace(b'"pid": 0,', b'"pid": 0, "pid": 5,')
    out["duplicate_track_key"] = plain.replace(b'"pos": 0,', b'"pos": 0, "pos": 0,')
    out["duplicate_top_key"] = plain.replace(b'"info":', b'"playlists": [], "info":', 1)
    out["duplicate_info_key"] = plain.replace(b'"version": "v1"', b'"version": "v1", "version": "v2"')
    out["escaped_duplicate_key"] = plain.replace(b'"pid": 0,', b'"\\u0070id": 0, "pid": 0,')
    out["escaped_colon_hides_duplicate"] = plain.replace(
        b'"name": "one"', b'"name": "one\\u003a", "name": "one"').replace(b'"A: the band"', b'"A the band"')
    out["escaped_colon_in_a_string"] = plain.replace(b'"name": "one"', b'"name": "one\\u003A"')
    out["byte_order_mark"] = b"\xef\xbb\xbf" + plain
    out["nan_in_info"] = plain.replace(b'"v1"', b"NaN")
    out["float_count"] = plain.replace(b'"num_albums": 1,', b'"num_albums": 1.0,')
    out["float_pos"] = plain.replace(b'"pos": 0,', b'"pos": 0.5,')
    out["bool_count"] = plain.replace(b'"num_edits": 1,', b'"num_edits": true,')
    out["bool_collaborative"] = plain.replace(b'"collaborative": "true"', b'"collaborative": true')
    out["mixed_collaborative"] = plain.replace(b'"collaborative": "false"', b'"collaborative": false')
    out["string_count"] = plain.replace(b'"num_followers": 1,', b'"num_followers": "1",')
    out["huge_int"] = plain.replace(b'"modified_at": 1,', b'"modified_at": 9223372036854775808,')
    out["int64_max"] = plain.replace(b'"modified_at": 1,', b'"modified_at": 9223372036854775807,')
    out["int32_over"] = plain.replace(b'"num_followers": 1,', b'"num_followers": 2147483648,')
    out["negative"] = plain.replace(b'"duration_ms": 1000,', b'"duration_ms": -1000,', 1)
    out["null_optional"] = plain.replace(b'"num_albums": 1,', b'"num_albums": null,')
    out["null_required"] = plain.replace(b'"name": "one"', b'"name": null')
    out["unknown_key"] = plain.replace(b'"num_edits": 1,', b'"num_edits": 1, "extra": 1,')
    out["upper_case_key"] = plain.replace(b'"pid": 0,', b'"PID": 0,')
    out["unknown_top_key"] = plain.replace(b'"info":', b'"other": 1, "info":', 1)
    out["no_info"] = json.dumps({"playlists": base["playlists"]}).encode()
    out["num_tracks_wrong"] = plain.replace(b'"num_tracks": 1,', b'"num_tracks": 2,')
    out["duplicate_pid"] = plain.replace(b'"pid": 1,', b'"pid": 0,')
    out["pid_outside_range"] = plain.replace(b'"pid": 1,', b'"pid": 10,')
    out["bad_uri"] = plain.replace(b'"spotify:track:0"', b'"spotify:album:0"')
    out["track_not_object"] = plain.replace(b'"tracks": []', b'"tracks": [1]')
    out["tracks_not_list"] = plain.replace(b'"tracks": []', b'"tracks": {}')
    out["empty_slice"] = json.dumps({"info": {}, "playlists": []}).encode()
    out["top_level_list"] = b"[" + plain + b"]"
    out["two_documents"] = plain + b"\n" + plain
    out["trailing_comma"] = plain.replace(b'"description": "x"', b'"description": "x",')
    out["truncated"] = plain[:-3]
    out["nul_in_string"] = plain.replace(b'"Song"', b'"So\\u0000ng"')
    out["surrogate_pair"] = plain.replace(b'"Song"', b'"So\\ud83d\\ude00ng"')
    out["lone_surrogate"] = plain.replace(b'"Song"', b'"So\\ud83dng"')
    out["invalid_utf8"] = plain.replace(b'"Song"', b'"So\xffng"')
    out["unicode"] = json.dumps(base, ensure_ascii=False).replace("Song", "Sông ♫").encode()
    out["ascii_escapes"] = json.dumps(copy.deepcopy(base) | {"playlists": [
        base["playlists"][0] | {"name": "été ♫ \"q\" \\ \t"}]}, ensure_ascii=True).encode()
    return out


@pytest.mark.parametrize("name", sorted(_variants()))
def test_fast_path_agrees_with_duckdb_reader(tmp_path: Path, name: str) -> None:
    """Each tricky document: the default reader loads the same tables as DuckDB's reader,
    or refuses with the same message (file and record)."""
    raw = _variants()[name]
    path = tmp_path / "mpd.slice.0-9.json"
    path.write_bytes(raw)

    def outcome(parser: str):
        try:
            parsed = read_mpd_slice(path, parser=parser)
        except InputFormatError as exc:
            assert str(path) in str(exc) and exc.where
            return ("refused", str(exc))
        return ("loaded", parsed.playlists.to_pylist(), parsed.tracks.to_pylist())

    got, expected = outcome("auto"), outcome("duckdb")
    assert got == expected
    if name in ("valid", "valid_compact", "no_info", "unicode", "ascii_escapes", "surrogate_pair",
                "null_optional", "int64_max", "nul_in_string"):
        assert got[0] == "loaded" and read_mpd_slice(path).parser == "orjson", got
    if name in ("bool_collaborative", "mixed_collaborative", "byte_order_mark", "nan_in_info", "unknown_key"):
        assert got[0] == "loaded", got
    if got[0] == "loaded" and (name.startswith(("duplicate_", "escaped_")) or name == "byte_order_mark"):
        # orjson keeps the last of duplicate keys and refuses a BOM: DuckDB's reader decided
        assert read_mpd_slice(path).parser == "duckdb"


def test_a_refused_slice_in_a_parallel_load_leaves_the_others(tiny_raw: Path, tmp_path: Path, caplog) -> None:
    """Worker processes: the bad slice's error names the file and the record (pickled back
    whole), its earlier rows stay as they were, and the slices after it still load."""
    folder = tmp_path / "mpd"
    paths = _copy_slices(tiny_raw, folder)
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    try:
        loaded, failed = load_mpd_slices(con, [(p, p.name) for p in paths], workers=2)
        assert failed == [] and len(loaded) == len(paths)
        good = _rows_in_storage_order(con)
        bad = paths[0]
        document = json.loads(bad.read_text())
        document["playlists"][3]["tracks"][1]["pos"] = "seven"
        bad.write_text(json.dumps(document, indent=2))
        seen: list[int] = []
        with caplog.at_level(logging.INFO, logger="spotify_assets.ingest"):
            loaded, failed = load_mpd_slices(con, [(p, p.name) for p in paths], workers=2,
                                             on_done=lambda i, _: seen.append(i))
        assert seen == list(range(len(paths)))  # progress in input order
        assert [r.notes["slice"] for r in loaded] == [p.name for p in paths[1:]]
        assert len(failed) == 1
        error = failed[0]
        assert isinstance(error, InputFormatError) and error.path == str(bad)
        pid = document["playlists"][3]["pid"]
        assert error.where == f"playlists[3] (pid {pid}).tracks[1]"
        assert "field 'pos' must be a non-negative integer, got 'seven'" in error.problem
        assert _rows_in_storage_order(con)["mpd_playlists"] and sorted(
            _rows_in_storage_order(con)["mpd_playlists"]) == sorted(good["mpd_playlists"])
        assert sum("refused" in r.message for r in caplog.records) == 1
        assert sum("MB/s so far" in r.message for r in caplog.records) == len(paths) - 1
    finally:
        con.close()


def test_worker_count_defaults_to_one_per_core() -> None:
    import os

    assert default_mpd_workers() == len(os.sched_getaffinity(0))


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            if f"\nPPid:\t{pid}\n" in status:
                found.append(int(entry.name))
    return found


def test_killing_the_writer_mid_load_ends_its_readers(tiny_raw: Path, tmp_path: Path) -> None:
    """SIGKILL of the loading process: no reader process outlives it (a reader holds both
    ends of its task pipe, so without a watchdog it would wait forever), and the warehouse
    holds whole slices only."""
    import os
    import signal
    import subprocess
    import sys
    import time

    source = list_mpd_slices(tiny_raw / "mpd")[0]
    folder = tmp_path / "mpd"
    folder.mkdir()
    first, last = (int(x) for x in source.name.split(".")[2].split("-"))
    for k in range(40):  # one slice under 40 names: the first loads, the rest clash on pids
        shutil.copy(source, folder / f"mpd.slice.{first}-{last + k}.json")
    database = tmp_path / "warehouse.duckdb"
    script = (
        "import duckdb, sys\n"
        "from pathlib import Path\n"
        "from spotify_assets.ingest import list_mpd_slices, load_mpd_slices\n"
        f"con = duckdb.connect({str(database)!r})\n"
        f"slices = [(p, p.name) for p in list_mpd_slices(Path({str(folder)!r}))]\n"
        "load_mpd_slices(con, slices, workers=2, on_done=lambda i, o: print('done', i, flush=True))\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[1])
    try:
        assert child.stdout.readline().startswith("done 0")  # readers are up and one slice is in
        readers = [pid for pid in _children(child.pid)]
        assert len(readers) >= 2
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in readers):
            time.sleep(0.2)
        alive = [pid for pid in readers if Path(f"/proc/{pid}").exists()
                 and "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()]
        assert alive == [], f"reader processes outlived their writer: {alive}"
    finally:
        if child.poll() is None:
            child.kill()
    con = duckdb.connect(str(database))
    try:
        per_slice = con.execute(
            "SELECT f.slice, count(p.pid) FROM mpd_slice_files f LEFT JOIN mpd_playlists p USING (slice) GROUP BY 1"
        ).fetchall()
        assert len(per_slice) == 1 and per_slice[0][1] == 250  # the one whose pids got in first, whole
    finally:
        con.close()


@pytest.mark.parametrize("gz", [False, True], ids=["json", "json.gz"])
def test_a_slice_over_the_fast_path_limit_goes_to_duckdb(tiny_raw: Path, tmp_path: Path, monkeypatch,
                                                         gz: bool) -> None:
    """Parsed into Python objects a slice takes ~10x its size: above the limit DuckDB's
    reader loads it (the same tables)."""
    import spotify_assets.ingest as ingest

    path = _copy_slices(tiny_raw, tmp_path / "mpd", gz=gz)[0]
    fast = read_mpd_slice(path)
    assert fast.parser == "orjson"
    monkeypatch.setattr(ingest, "_FAST_PATH_MAX_BYTES", 1000)
    big = read_mpd_slice(path)
    assert big.parser == "duckdb"
    assert big.playlists.equals(fast.playlists) and big.tracks.equals(fast.tracks)


def test_duckdb_reader_inside_a_reader_process(tmp_path: Path) -> None:
    """Slices only DuckDB's reader accepts (a byte-order mark, an unknown key) load through
    the worker processes too (where pandas is marked absent) with the same rows as in-process."""
    variants = _variants()
    folder = tmp_path / "mpd"
    folder.mkdir()
    (folder / "mpd.slice.0-9.json").write_bytes(variants["byte_order_mark"])
    (folder / "mpd.slice.10-19.json").write_bytes(
        variants["unknown_key"].replace(b'"pid": 0,', b'"pid": 10,').replace(b'"pid": 1,', b'"pid": 11,'))
    slices = [(p, p.name) for p in list_mpd_slices(folder)]
    in_workers, in_process = duckdb.connect(), duckdb.connect()
    try:
        loaded, failed = load_mpd_slices(in_workers, slices, workers=2)
        assert failed == [] and [r.notes["parser"] for r in loaded] == ["duckdb", "duckdb"]
        load_mpd_slices(in_process, slices, workers=1, parser="duckdb")
        assert _rows_in_storage_order(in_workers) == _rows_in_storage_order(in_process)
    finally:
        in_workers.close()
        in_process.close()
