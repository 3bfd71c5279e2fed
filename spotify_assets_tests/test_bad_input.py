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
    # the same playlists under another slice name (whose range covers them): pids clash
    path = _write(tmp_path, "mpd.slice.0-999.json", _slice_text(tiny_raw))
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
    assert str(path) in str(err.value) and err.value.where == "line 2"
    _unchanged(con, loaded)


def test_non_positive_play_count_names_the_line(con, loaded, tmp_path) -> None:
    path = _write(tmp_path, "train_triplets.txt", "u1\tSOAAA\t3\nu1\tSOBBB\t0\n")
    with pytest.raises(InputFormatError) as err:
        load_entp_triplets(con, path)
    assert err.value.where == "line 2"
    _unchanged(con, loaded)


def test_wrong_number_of_columns(con, loaded, tmp_path) -> None:
    path = _write(tmp_path, "train_triplets.txt", "u1\tSOAAA\t3\nu1\tSOBBB\n")
    with pytest.raises(InputFormatError) as err:
        load_entp_triplets(con, path)
    assert err.value.where == "line 2" and "expected 3 tab-separated fields, found 2" in err.value.problem
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


# --------------------------------------------------------------------------------------
# issue 16: what a hostile user or a careless operator can hand the loaders
# --------------------------------------------------------------------------------------


def test_pid_outside_the_file_name_range_is_rejected(tiny_raw, con, loaded, tmp_path) -> None:
    """A slice named mpd.slice.0-249.json may hold only pids 0..249."""
    document = json.loads(_slice_text(tiny_raw))
    document["playlists"][7]["pid"] = 123456789
    path = _write(tmp_path, "mpd.slice.0-249.json", json.dumps(document))
    with pytest.raises(InputFormatError) as err:
        load_mpd_slice(con, path)
    assert str(path) in str(err.value)
    assert err.value.where == "playlists[7] (pid 123456789)"
    assert "outside the range 0-249" in err.value.problem
    _unchanged(con, loaded)


def test_slice_name_with_an_inverted_range_is_rejected(tiny_raw, con, loaded, tmp_path) -> None:
    path = _write(tmp_path, "mpd.slice.249-0.json", _slice_text(tiny_raw))
    with pytest.raises(InputFormatError, match="file name: the range 249-0 is empty"):
        load_mpd_slice(con, path)
    _unchanged(con, loaded)


def test_empty_slice_fails_instead_of_erasing_its_partition(tiny_raw, con, loaded, tmp_path) -> None:
    first = list_mpd_slices(tiny_raw / "mpd")[0]
    path = _write(tmp_path, first.name, json.dumps({"info": {}, "playlists": []}))
    with pytest.raises(InputFormatError) as err:
        load_mpd_slice(con, path)
    assert err.value.where == "playlists" and "no playlists" in err.value.problem
    _unchanged(con, loaded)


def _padded_gzip_slice(tiny_raw: Path, tmp_path: Path, padding: int, text: str | None = None) -> Path:
    """A gzip slice whose JSON is followed by ``padding`` spaces: tiny on disk, large unpacked."""
    import gzip

    first = list_mpd_slices(tiny_raw / "mpd")[0]
    body = (text if text is not None else _slice_text(tiny_raw)) + " " * padding
    path = tmp_path / (first.name + ".gz")
    path.write_bytes(gzip.compress(body.encode("utf-8")))
    return path


def test_decompressed_size_is_bounded(tiny_raw, con, loaded, tmp_path) -> None:
    """A gzip bomb: 30 MB of whitespace packs into a few KB; the limit applies unpacked too."""
    path = _padded_gzip_slice(tiny_raw, tmp_path, padding=30_000_000)
    assert path.stat().st_size < 10_000_000
    with pytest.raises(InputFormatError) as err:
        load_mpd_slice(con, path, max_bytes=10_000_000)
    assert err.value.where == "gzip" and "decompresses to more than 10,000,000 bytes" in err.value.problem
    _unchanged(con, loaded)
    # under the limit the same file loads
    assert load_mpd_slice(con, path, max_bytes=100_000_000).rows["mpd_playlists"] > 0


def test_error_diagnosis_reads_a_bounded_prefix(tiny_raw, con, loaded, tmp_path, monkeypatch) -> None:
    """The record-level diagnosis parses the slice in Python; above its cap it does not read
    the whole stream into memory and reports DuckDB's verdict instead."""
    import spotify_assets.ingest as ingest

    text = _slice_text(tiny_raw)
    truncated = text[: len(text) // 2]
    path = _padded_gzip_slice(tiny_raw, tmp_path, padding=0, text=truncated)
    monkeypatch.setattr(ingest, "DIAGNOSIS_MAX_BYTES", 10_000)
    reads: list[int] = []
    real_open = ingest.gzip.open

    class CountingReader:
        def __init__(self, handle):
            self.handle = handle

        def read(self, size=-1):
            reads.append(size)
            return self.handle.read(size)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    monkeypatch.setattr(ingest.gzip, "open", lambda p, mode="rb", *a, **k: CountingReader(real_open(p, mode, *a, **k)))
    with pytest.raises(InputFormatError) as err:
        load_mpd_slice(con, path)
    assert str(path) in str(err.value)
    assert "too large to name the record" in err.value.problem
    # every read asked for a bounded number of bytes, never the whole stream (size -1)
    assert reads and all(0 < size <= 1024 * 1024 for size in reads)
    _unchanged(con, loaded)


def test_symlink_out_of_the_data_folder_is_refused(tiny_raw, con, loaded, tmp_path) -> None:
    outside = tmp_path / "elsewhere" / "mpd.slice.0-249.json"
    outside.parent.mkdir()
    outside.write_text(_slice_text(tiny_raw))
    folder = tmp_path / "mpd"
    folder.mkdir()
    link = folder / "mpd.slice.0-249.json"
    link.symlink_to(outside)
    with pytest.raises(InputFormatError) as err:
        load_mpd_slice(con, link)
    assert err.value.where == "file" and "symlink" in err.value.problem and str(outside) in err.value.problem
    assert "allow_external_symlinks" in err.value.problem
    _unchanged(con, loaded)
    # a link that stays inside the folder is fine, and the opt-in follows links out
    inside = folder / "real.json"
    inside.write_text(_slice_text(tiny_raw))
    link.unlink()
    link.symlink_to(inside)
    assert load_mpd_slice(con, link).rows["mpd_playlists"] > 0
    link.unlink()
    link.symlink_to(outside)
    assert load_mpd_slice(con, link, allow_external_symlinks=True).rows["mpd_playlists"] > 0


def test_symlinked_triplets_out_of_their_folder_are_refused(con, loaded, tmp_path) -> None:
    outside = _write(tmp_path, "other_triplets.txt", "u1\tSOAAA\t3\n")
    folder = tmp_path / "entp"
    folder.mkdir()
    (folder / "train_triplets.txt").symlink_to(outside)
    with pytest.raises(InputFormatError, match="symlink"):
        load_entp_triplets(con, folder / "train_triplets.txt")
    _unchanged(con, loaded)


@pytest.mark.parametrize(
    ("content", "line", "problem"),
    [
        # Windows line endings from line 2 on in a file that started with Unix ones
        ("u1\tSOAAA\t3\nu2\tSOBBB\t4\r\nu3\tSOCCC\t5\r\n", 2, "line ending"),
        # a stray carriage return inside an id
        ("u1\tSOAAA\t3\nu2\tSO\rBBB\t4\nu3\tSOCCC\t5\n", 2, "carriage return"),
        # and inside the play count
        ("u1\tSOAAA\t3\nu2\tSOBBB\t4\r\r\nu3\tSOCCC\t5\n", 2, "carriage return"),
        # a Unix line in a Windows file, far from the start
        ("".join(f"u{i}\tSOAAA\t1\r\n" for i in range(3000)) + "ux\tSOB\t1\nuy\tSOC\t2\r\n", 3001, "line ending"),
    ],
)
def test_stray_carriage_returns_name_the_line(con, loaded, tmp_path, content, line, problem) -> None:
    path = _write(tmp_path, "train_triplets.txt", content)
    with pytest.raises(InputFormatError) as err:
        load_entp_triplets(con, path)
    assert str(path) in str(err.value)
    assert err.value.where == f"line {line}" and problem in err.value.problem
    _unchanged(con, loaded)


@pytest.mark.parametrize(
    ("content", "line"),
    [
        ("u1\tSOAAA\t3\nu1\tSOBBB\tabc\n", 2),
        ("u1\tSOAAA\t3\nu1\tSOBBB\n", 2),
        ("u1\tSOAAA\t3\n\tSOBBB\t1\n", 2),
        ("u1\tSOAAA\t3\nu1\tSO\xff\t1\n".encode("latin-1").decode("utf-8", "surrogateescape"), 2),
        ("u1\tSOAAA\t3\nu1\tSOBBB\t1\textra\n", 2),
    ],
)
def test_every_malformed_triplet_row_names_its_line(con, loaded, tmp_path, content, line) -> None:
    path = _write(tmp_path, "train_triplets.txt", content.encode("utf-8", "surrogateescape"))
    with pytest.raises(InputFormatError) as err:
        load_entp_triplets(con, path)
    assert err.value.where == f"line {line}", err.value
    _unchanged(con, loaded)


def test_windows_1252_text_is_decoded_and_c1_controls_never_stored(con, tmp_path) -> None:
    """`Don’t` written in Windows-1252 (0x92) must not become U+0092, a C1 control."""
    unique_tracks = _write(
        tmp_path, "unique_tracks.txt",
        "TR1<SEP>SO1<SEP>Beyoncé<SEP>Déjà Vu\n".encode("utf-8")
        + "TR2<SEP>SO2<SEP>Motörhead<SEP>Don’t Stop – “Live”\n".encode("cp1252")
        # UTF-8 that carries the C1 code points a Latin-1 decoder once produced
        + "TR3<SEP>SO3<SEP>A<SEP>Won\u0092t\u0085\n".encode("utf-8")
        # 0x81 is undefined in Windows-1252
        + b"TR4<SEP>SO4<SEP>B<SEP>x\x81y\n",
    )
    song_data = _write(
        tmp_path, "song_data.csv",
        "song_id,title,release,artist_name,year\n".encode()
        + "SO5,I’m Here,Rel – 1,Artist,2001\n".encode("cp1252")
        + "SO6,Can\u0092t,R,A,2002\n".encode("utf-8"),
    )
    load_msd_songs(con, unique_tracks=unique_tracks, song_data=song_data)
    titles = dict(con.execute("SELECT song_id, title FROM msd_songs").fetchall())
    assert titles == {"SO1": "Déjà Vu", "SO2": "Don’t Stop – “Live”", "SO3": "Won’t…", "SO4": "x\ufffdy",
                      "SO5": "I’m Here", "SO6": "Can’t"}
    assert con.execute("SELECT release, artist_name FROM msd_songs WHERE song_id = 'SO5'").fetchall() == [("Rel – 1", "Artist")]
    c1 = con.execute(
        "SELECT count(*) FROM msd_songs WHERE regexp_matches(concat(title, artist_name, coalesce(release, '')), '[\\x{80}-\\x{9f}]')"
    ).fetchall()[0][0]
    assert c1 == 0
