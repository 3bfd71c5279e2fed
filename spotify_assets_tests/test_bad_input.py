"""Bad input fails with an error naming the file and record, and loses nothing already loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spotify_assets.ingest import (
    InputFormatError,
    list_mpd_slices,
    load_entp_triplets,
    load_mpd_slice,
    load_msd_songs,
)
from spotify_assets_tests.conftest import snapshot


@pytest.fixture()
def loaded(tiny_raw: Path, con):
    """A warehouse with the first tiny slice and the triplets loaded; returns their snapshots."""
    first = list_mpd_slices(tiny_raw / "mpd")[0]
    load_mpd_slice(con, first)
    load_entp_triplets(con, next((tiny_raw / "entp").glob("train_triplets.txt*")))
    return {t: snapshot(con, t) for t in ("mpd_playlists", "mpd_playlist_tracks", "entp_listens")}


def _unchanged(con, before: dict) -> None:
    for table, rows in before.items():
        assert snapshot(con, table) == rows, f"{table} changed after a rejected load"


def _slice_text(tiny_raw: Path) -> str:
    return list_mpd_slices(tiny_raw / "mpd")[0].read_text(encoding="utf-8")


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def test_truncated_slice_names_file_and_line(tiny_raw, con, loaded, tmp_path) -> None:
    text = _slice_text(tiny_raw)
    path = _write(tmp_path, "mpd.slice.0-249.json", text[: len(text) // 2])
    with pytest.raises(InputFormatError) as err:
        load_mpd_slice(con, path)
    assert str(path) in str(err.value)
    assert "line" in err.value.where and "malformed JSON" in err.value.problem
    # the slice that was loaded under this name before is untouched
    _unchanged(con, loaded)


def test_playlists_not_a_list(tiny_raw, con, loaded, tmp_path) -> None:
    path = _write(tmp_path, "mpd.slice.9000-9999.json", json.dumps({"info": {}, "playlists": {"pid": 1}}))
    with pytest.raises(InputFormatError, match="playlists: expected a list"):
        load_mpd_slice(con, path)
    _unchanged(con, loaded)


def test_wrong_field_type_names_the_record(tiny_raw, con, loaded, tmp_path) -> None:
    document = json.loads(_slice_text(tiny_raw))
    document["playlists"][3]["tracks"][1]["duration_ms"] = "three minutes"
    first = list_mpd_slices(tiny_raw / "mpd")[0]
    path = _write(tmp_path, first.name, json.dumps(document, indent=4))
    with pytest.raises(InputFormatError) as err:
        load_mpd_slice(con, path)
    pid = document["playlists"][3]["pid"]
    assert err.value.where == f"playlists[3] (pid {pid}).tracks[1]"
    assert "duration_ms" in err.value.problem
    _unchanged(con, loaded)


def test_string_collaborative_must_be_true_or_false(tiny_raw, con, loaded, tmp_path) -> None:
    document = json.loads(_slice_text(tiny_raw))
    document["playlists"][0]["collaborative"] = "maybe"
    path = _write(tmp_path, "mpd.slice.0-249.json", json.dumps(document))
    with pytest.raises(InputFormatError, match="collaborative"):
        load_mpd_slice(con, path)
    _unchanged(con, loaded)


def test_duplicate_pid_across_slices_is_rejected(tiny_raw, con, loaded, tmp_path) -> None:
    # the same playlists under another slice name: pids clash with the loaded slice
    path = _write(tmp_path, "mpd.slice.5000-5249.json", _slice_text(tiny_raw))
    with pytest.raises(InputFormatError, match="already loaded from slice"):
        load_mpd_slice(con, path)
    _unchanged(con, loaded)


@pytest.mark.parametrize("name", ["mpd.slice.0-249.json", "train_triplets.txt"])
def test_empty_file(con, loaded, tmp_path, name) -> None:
    path = _write(tmp_path, name, b"")
    loader = load_mpd_slice if name.startswith("mpd") else load_entp_triplets
    with pytest.raises(InputFormatError, match="is empty"):
        loader(con, path)
    _unchanged(con, loaded)


def test_non_integer_play_count_names_the_line(con, loaded, tmp_path) -> None:
    path = _write(tmp_path, "train_triplets.txt", "u1\tSOAAA\t3\nu1\tSOBBB\tabc\nu2\tSOCCC\t1\n")
    with pytest.raises(InputFormatError) as err:
        load_entp_triplets(con, path)
    assert str(path) in str(err.value) and "Line: 2" in str(err.value)
    _unchanged(con, loaded)


def test_non_positive_play_count_names_the_line(con, loaded, tmp_path) -> None:
    path = _write(tmp_path, "train_triplets.txt", "u1\tSOAAA\t3\nu1\tSOBBB\t0\n")
    with pytest.raises(InputFormatError) as err:
        load_entp_triplets(con, path)
    assert err.value.where == "line 2"
    _unchanged(con, loaded)


def test_wrong_number_of_columns(con, loaded, tmp_path) -> None:
    path = _write(tmp_path, "train_triplets.txt", "u1\tSOAAA\t3\nu1\tSOBBB\n")
    with pytest.raises(InputFormatError, match="Expected Number of Columns: 3 Found: 2"):
        load_entp_triplets(con, path)
    _unchanged(con, loaded)


def test_wrong_file_format_for_triplets(tiny_raw, con, loaded, tmp_path) -> None:
    # a JSON slice handed to the triplet loader
    path = _write(tmp_path, "train_triplets.txt", _slice_text(tiny_raw))
    with pytest.raises(InputFormatError, match=str(path)):
        load_entp_triplets(con, path)
    _unchanged(con, loaded)


def test_song_data_with_wrong_columns(con, tmp_path) -> None:
    path = _write(tmp_path, "song_data.csv", "song_id,name,year\nSOAAA,x,2001\n")
    with pytest.raises(InputFormatError) as err:
        load_msd_songs(con, unique_tracks=None, song_data=path)
    assert str(path) in str(err.value)


def test_unique_tracks_with_wrong_separator(con, tmp_path) -> None:
    path = _write(tmp_path, "unique_tracks.txt", "TR1<SEP>SO1<SEP>A<SEP>T\nTR2,SO2,B,U\n")
    with pytest.raises(InputFormatError) as err:
        load_msd_songs(con, unique_tracks=path, song_data=None)
    assert err.value.where == "line 2"


def test_oversized_slice(tiny_raw, con, tmp_path) -> None:
    path = list_mpd_slices(tiny_raw / "mpd")[0]
    with pytest.raises(InputFormatError, match="over the configured limit"):
        load_mpd_slice(con, path, max_bytes=1000)
