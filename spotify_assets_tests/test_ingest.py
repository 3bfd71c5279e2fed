"""Loading the generated `tiny` data: row counts match the files, reloads are idempotent."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from spotify_assets.ingest import (
    InputFormatError,
    SliceFingerprint,
    decode_lines_robustly,
    list_mpd_slices,
    load_entp_triplets,
    load_mpd_slice,
    load_mpd_slices,
    load_msd_songs,
    slice_fingerprints,
)
from spotify_assets_tests.conftest import snapshot


def _read_slice(path: Path) -> dict:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return json.load(handle)


def test_mpd_slices_load_with_exact_counts(tiny_raw: Path, con) -> None:
    slices = list_mpd_slices(tiny_raw / "mpd")
    assert len(slices) >= 2, "tiny data should have several slices to exercise partitions"
    expected_playlists = expected_tracks = 0
    for path in slices:
        document = _read_slice(path)
        result = load_mpd_slice(con, path)
        n_playlists = len(document["playlists"])
        n_tracks = sum(len(p["tracks"]) for p in document["playlists"])
        assert result.rows == {"mpd_playlists": n_playlists, "mpd_playlist_tracks": n_tracks}
        expected_playlists += n_playlists
        expected_tracks += n_tracks
    assert con.execute("SELECT count(*) FROM mpd_playlists").fetchall()[0][0] == expected_playlists
    assert con.execute("SELECT count(*) FROM mpd_playlist_tracks").fetchall()[0][0] == expected_tracks
    # collaborative arrives as the string "true"/"false" and is stored as a boolean
    first = _read_slice(slices[0])["playlists"][0]
    stored = con.execute(
        "SELECT name, collaborative, num_tracks FROM mpd_playlists WHERE pid = ?", [first["pid"]]
    ).fetchall()[0]
    assert stored == (first["name"], first["collaborative"] == "true", first["num_tracks"])
    track = first["tracks"][-1]
    assert con.execute(
        "SELECT track_uri, track_name, artist_name, album_uri FROM mpd_playlist_tracks WHERE pid = ? AND pos = ?",
        [first["pid"], track["pos"]],
    ).fetchall()[0] == (track["track_uri"], track["track_name"], track["artist_name"], track["album_uri"])


def test_reloading_a_slice_replaces_exactly_its_rows(tiny_raw: Path, con) -> None:
    first, second = list_mpd_slices(tiny_raw / "mpd")[:2]
    load_mpd_slice(con, first)
    load_mpd_slice(con, second)
    before = snapshot(con, "mpd_playlist_tracks")
    load_mpd_slice(con, second)
    load_mpd_slice(con, first)
    assert snapshot(con, "mpd_playlist_tracks") == before


def test_gzipped_slice_loads_identically(tiny_raw: Path, con, tmp_path: Path) -> None:
    path = list_mpd_slices(tiny_raw / "mpd")[0]
    load_mpd_slice(con, path, "s")
    plain = snapshot(con, "mpd_playlist_tracks")
    gz_path = tmp_path / (path.name + ".gz")
    with open(path, "rb") as src, gzip.open(gz_path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    load_mpd_slice(con, gz_path, "s")
    assert snapshot(con, "mpd_playlist_tracks") == plain


def test_entp_and_msd_load(tiny_raw: Path, con) -> None:
    triplets = next((tiny_raw / "entp").glob("train_triplets.txt*"))
    opener = gzip.open if triplets.suffix == ".gz" else open
    with opener(triplets, "rt") as handle:
        lines = [line.rstrip("\n").split("\t") for line in handle]
    result = load_entp_triplets(con, triplets)
    assert result.rows["entp_listens"] == len(lines)
    total = con.execute("SELECT sum(play_count) FROM entp_listens").fetchall()[0][0]
    assert total == sum(int(f[2]) for f in lines)

    msd = tiny_raw / "msd"
    result = load_msd_songs(
        con,
        unique_tracks=msd / "unique_tracks.txt",
        song_data=msd / "song_data.csv",
        sid_mismatches=msd / "sid_mismatches.txt" if (msd / "sid_mismatches.txt").exists() else None,
    )
    song_ids = {line.split("<SEP>")[1] for line in (msd / "unique_tracks.txt").read_text("utf-8", "replace").splitlines() if line}
    assert result.rows["msd_songs"] >= len(song_ids)
    assert con.execute("SELECT count(DISTINCT song_id) = count(*) FROM msd_songs").fetchall()[0][0]


def test_non_utf8_lines_are_decoded_as_windows_1252_and_counted() -> None:
    raw = ("TR1<SEP>SO1<SEP>Beyoncé<SEP>Déjà Vu\n".encode("utf-8") + "TR2<SEP>SO2<SEP>Motörhead<SEP>Ace\n".encode("latin-1")
           + "TR3<SEP>SO3<SEP>X<SEP>Don’t\n".encode("cp1252") + b"TR4<SEP>SO4<SEP>Y<SEP>\x81\n")
    decoded = decode_lines_robustly(raw)
    assert decoded.lines == ["TR1<SEP>SO1<SEP>Beyoncé<SEP>Déjà Vu", "TR2<SEP>SO2<SEP>Motörhead<SEP>Ace",
                             "TR3<SEP>SO3<SEP>X<SEP>Don’t", "TR4<SEP>SO4<SEP>Y<SEP>\ufffd"]
    assert (decoded.cp1252_lines, decoded.replaced_lines) == (3, 1)


@pytest.mark.parametrize("crlf", [False, True])
def test_song_data_csv_quoted_fields_and_line_endings(tmp_path: Path, con, crlf: bool) -> None:
    newline = "\r\n" if crlf else "\n"
    text = newline.join(
        [
            "song_id,title,release,artist_name,year",
            'SOAAAAAAAAAAAAAAAA,"Hello, ""World""",Album,Artist,2001',
            "SOBBBBBBBBBBBBBBBB,Plain,Rel,Other,0",
        ]
    ) + newline
    (tmp_path / "song_data.csv").write_bytes(text.encode())
    load_msd_songs(con, unique_tracks=None, song_data=tmp_path / "song_data.csv")
    rows = con.execute("SELECT song_id, title, year FROM msd_songs ORDER BY song_id").fetchall()
    assert rows == [("SOAAAAAAAAAAAAAAAA", 'Hello, "World"', 2001), ("SOBBBBBBBBBBBBBBBB", "Plain", None)]


def test_parallel_slice_loading_equals_sequential_and_never_admits_a_pid_twice(tiny_raw: Path, con, tmp_path: Path) -> None:
    import duckdb

    slices = list_mpd_slices(tiny_raw / "mpd")
    for path in slices:
        load_mpd_slice(con, path)
    sequential = {t: snapshot(con, t) for t in ("mpd_playlists", "mpd_playlist_tracks")}
    parallel_db = duckdb.connect(str(tmp_path / "parallel.duckdb"))
    try:
        order: list[int] = []
        loaded, failed = load_mpd_slices(parallel_db, [(p, p.name) for p in slices], workers=3,
                                         on_done=lambda i, outcome: order.append(i))
        assert failed == [] and sorted(order) == list(range(len(slices)))
        assert [r.notes["slice"] for r in loaded] == [p.name for p in slices]  # input order
        for table, rows in sequential.items():
            assert snapshot(parallel_db, table) == rows
        # the same file under three other slice names, loaded at once into a fresh database:
        # exactly one copy gets in, the others are rejected naming the clash
        fresh = duckdb.connect(str(tmp_path / "clash.duckdb"))
        copies = []
        # (ranges that cover the copied pids: a pid outside its file name's range is refused)
        for end in (999, 1999, 2999):
            copy = tmp_path / f"mpd.slice.0-{end}.json"
            shutil.copyfile(slices[0], copy) if slices[0].suffix == ".json" else copy.write_bytes(
                gzip.decompress(slices[0].read_bytes()))
            copies.append((copy, copy.name))
        loaded, failed = load_mpd_slices(fresh, copies, workers=3)
        assert len(loaded) == 1 and len(failed) == 2
        assert all("already loaded from slice" in str(exc) for exc in failed)
        n_pids, n_distinct = fresh.execute("SELECT count(*), count(DISTINCT pid) FROM mpd_playlists").fetchall()[0]
        assert n_pids == n_distinct == loaded[0].rows["mpd_playlists"]
        fresh.close()
    finally:
        parallel_db.close()


def _gzip_copy(path: Path, folder: Path) -> Path:
    packed = folder / (path.name + ".gz")
    with open(path, "rb") as src, gzip.open(packed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return packed


def test_renaming_a_slice_between_gz_and_plain_replaces_its_rows(tiny_raw: Path, con, tmp_path: Path) -> None:
    """Regression: after x.json.gz -> x.json the reload failed forever with "pid 0: already
    loaded from slice 'x.json.gz'". The two names hold the same slice (same pid range)."""
    first, second = list_mpd_slices(tiny_raw / "mpd")[:2]
    folder = tmp_path / "mpd"
    folder.mkdir()
    load_mpd_slice(con, shutil.copy(second, folder))
    packed = _gzip_copy(first, folder)
    load_mpd_slice(con, packed)
    expected = snapshot(con, "mpd_playlist_tracks")
    plain = packed.rename(folder / first.name)
    result = load_mpd_slice(con, plain)
    assert result.notes["replaced_slice"] == packed.name
    slices = {row[0] for row in con.execute("SELECT DISTINCT slice FROM mpd_playlists").fetchall()}
    assert slices == {first.name, second.name}
    # same rows, now filed under the new name
    renamed = [(first.name if row[0] == packed.name else row[0], *row[1:]) for row in expected]
    assert snapshot(con, "mpd_playlist_tracks") == sorted(renamed)


def test_both_gz_and_plain_copies_of_a_slice_are_refused(tiny_raw: Path, con, tmp_path: Path) -> None:
    first = list_mpd_slices(tiny_raw / "mpd")[0]
    folder = tmp_path / "mpd"
    folder.mkdir()
    plain = shutil.copy(first, folder)
    load_mpd_slice(con, plain)
    before = snapshot(con, "mpd_playlists")
    packed = _gzip_copy(first, folder)
    with pytest.raises(InputFormatError) as err:
        load_mpd_slice(con, packed)
    assert first.name in err.value.problem and "keep one" in err.value.problem
    assert snapshot(con, "mpd_playlists") == before


def test_each_loaded_slice_records_its_file_fingerprint(tiny_raw: Path, con) -> None:
    import hashlib

    path = list_mpd_slices(tiny_raw / "mpd")[0]
    result = load_mpd_slice(con, path)
    stat = path.stat()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert result.notes["sha256"] == digest
    assert con.execute("SELECT slice, bytes, mtime_ns, sha256 FROM mpd_slice_files").fetchall() == [
        (path.name, stat.st_size, stat.st_mtime_ns, digest)]
    assert slice_fingerprints(con) == {path.name: SliceFingerprint(stat.st_size, stat.st_mtime_ns, digest)}
