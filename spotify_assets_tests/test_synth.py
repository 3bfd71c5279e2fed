"""Tests of the deterministic dataset generator (``spotify_assets.synth``) at ``tiny`` scale.

The statistics are recomputed from the files themselves (plus ``truth/``), not taken from
the generator's own summary, so a bug in the summary cannot hide a bug in the data.

Bounds for the ``tiny`` scale (200 users, 500 playlists) and why:

* songs per user: target median 27 / mean 48 (lognormal, sigma ≈ 1.07). With 200 users
  the sample median has a 2-sigma range of about 22-33 and the mean (heavy tail, sd ≈ 70)
  about 38-58; the asserted 15-45 / 30-70 leave room for other seeds.
* playlist length: 5-250 always; target mean ≈ 66 (sd ≈ 50, 500 playlists: se ≈ 2.3),
  asserted 55-78.
* user-playlist overlap (share of pairs sharing a song through the truth map): the
  generator targets a few percent; asserted 0.5 %-10 %, i.e. sparse but not empty.
* matched share: exactly ``round(0.40 * n_songs)`` songs have an MPD counterpart.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from spotify_assets import synth
from spotify_assets.synth.ids import msd_ids, spotify_uris, user_ids
from spotify_assets.synth.text import GENRES

TRACK_URI = re.compile(r"^spotify:track:[0-9A-Za-z]{22}$")
ARTIST_URI = re.compile(r"^spotify:artist:[0-9A-Za-z]{22}$")
ALBUM_URI = re.compile(r"^spotify:album:[0-9A-Za-z]{22}$")
SONG_ID = re.compile(r"^SO[0-9A-Z]{16}$")
MSD_TRACK_ID = re.compile(r"^TR[0-9A-Z]{16}$")
USER_ID = re.compile(r"^[0-9a-f]{40}$")
SLICE_NAME = re.compile(r"^mpd\.slice\.(\d+)-(\d+)\.json$")
MISMATCH = re.compile(r"^ERROR: <(SO[0-9A-Z]{16}) (TR[0-9A-Z]{16})> .+  -  .+  !=  .+  -  .+$")

PLAYLIST_KEYS = ["name", "collaborative", "pid", "modified_at", "num_tracks", "num_albums",
                 "num_followers", "tracks", "num_edits", "duration_ms", "num_artists"]
TRACK_KEYS = ["pos", "artist_name", "track_uri", "artist_uri", "track_name", "album_uri",
              "duration_ms", "album_name"]


# --------------------------------------------------------------------------------------
# fixtures: one tiny dataset, parsed once
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> synth.SynthSummary:
    return synth.generate(tmp_path_factory.mktemp("tiny"), scale="tiny", seed=0)


def _slices(folder: Path) -> list[Path]:
    return sorted((folder / "mpd").glob("mpd.slice.*.json*"),
                  key=lambda p: int(p.name.split(".")[2].split("-")[0]))


@pytest.fixture(scope="module")
def mpd(tiny: synth.SynthSummary) -> list[tuple[Path, dict]]:
    return [(p, json.loads(p.read_bytes())) for p in _slices(tiny.out_dir)]


@pytest.fixture(scope="module")
def playlists(mpd: list[tuple[Path, dict]]) -> list[dict]:
    return [pl for _, doc in mpd for pl in doc["playlists"]]


@pytest.fixture(scope="module")
def triplets(tiny: synth.SynthSummary) -> list[tuple[str, str, int]]:
    rows = []
    for line in (tiny.out_dir / "entp" / "train_triplets.txt").read_text("utf-8").splitlines():
        user, song, count = line.split("\t")
        rows.append((user, song, int(count)))
    return rows


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.fixture(scope="module")
def song_track_map(tiny: synth.SynthSummary) -> list[dict[str, str]]:
    return _read_tsv(tiny.out_dir / "truth" / "song_track_map.tsv")


# --------------------------------------------------------------------------------------
# layout and formats
# --------------------------------------------------------------------------------------


def test_files_written(tiny: synth.SynthSummary) -> None:
    out = tiny.out_dir
    assert [p.name for p in _slices(out)] == ["mpd.slice.0-249.json", "mpd.slice.250-499.json"]
    for rel in ("entp/train_triplets.txt", "msd/unique_tracks.txt", "msd/song_data.csv",
                "msd/sid_mismatches.txt", "truth/song_track_map.tsv", "truth/duplicate_tracks.tsv",
                "truth/track_genre.tsv", "truth/user_genre.tsv", "truth/playlist_genre.tsv",
                "truth/song_genre.tsv", "truth/genres.tsv", "truth/summary.json"):
        assert (out / rel).is_file(), rel
    assert not list(out.rglob("*.tmp")), "temporary files left behind"
    assert sorted(tiny.paths) == ["entp", "mpd", "msd", "truth"]
    summary = json.loads((out / "truth" / "summary.json").read_text())
    assert summary["playlists"] == 500 and summary["users"] == 200 and summary["slices"] == 2


def test_mpd_layout_and_types(mpd: list[tuple[Path, dict]]) -> None:
    for path, doc in mpd:
        assert list(doc) == ["info", "playlists"]
        start, end = map(int, SLICE_NAME.match(path.name).groups())
        assert doc["info"]["slice"] == f"{start}-{end}"
        assert doc["info"]["version"] == "v1"
        assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$", doc["info"]["generated_on"])
        assert [pl["pid"] for pl in doc["playlists"]] == list(range(start, end + 1))
        for pl in doc["playlists"]:
            keys = list(pl)
            assert keys[: len(PLAYLIST_KEYS)] == PLAYLIST_KEYS
            assert keys[len(PLAYLIST_KEYS):] in ([], ["description"])
            assert pl["collaborative"] in ("true", "false")  # a string, as in the real MPD
            assert isinstance(pl["name"], str) and pl["name"].strip()
            for key in ("pid", "modified_at", "num_tracks", "num_albums", "num_followers",
                        "num_edits", "duration_ms", "num_artists"):
                assert type(pl[key]) is int, key
            assert pl["modified_at"] % 86_400 == 0
            tracks = pl["tracks"]
            assert pl["num_tracks"] == len(tracks)
            assert [t["pos"] for t in tracks] == list(range(len(tracks)))
            assert pl["num_albums"] == len({t["album_uri"] for t in tracks})
            assert pl["num_artists"] == len({t["artist_uri"] for t in tracks})
            assert pl["duration_ms"] == sum(t["duration_ms"] for t in tracks)
            assert len({t["track_uri"] for t in tracks}) == len(tracks)
            for t in tracks:
                assert list(t) == TRACK_KEYS
                assert TRACK_URI.match(t["track_uri"]) and ARTIST_URI.match(t["artist_uri"])
                assert ALBUM_URI.match(t["album_uri"])
                assert type(t["duration_ms"]) is int and t["duration_ms"] > 0
                assert t["track_name"] and t["artist_name"] and t["album_name"]


def test_pids_unique_and_contiguous(playlists: list[dict]) -> None:
    assert [pl["pid"] for pl in playlists] == list(range(500))


def test_catalogue_consistent_across_playlists(playlists: list[dict]) -> None:
    """A track URI always carries the same names, artist and album; an artist URI one name."""
    by_track: dict[str, tuple] = {}
    by_artist: dict[str, str] = {}
    for pl in playlists:
        for t in pl["tracks"]:
            desc = (t["track_name"], t["artist_uri"], t["album_uri"], t["album_name"], t["duration_ms"])
            assert by_track.setdefault(t["track_uri"], desc) == desc
            assert by_artist.setdefault(t["artist_uri"], t["artist_name"]) == t["artist_name"]


def test_playlist_lengths(playlists: list[dict]) -> None:
    lengths = [pl["num_tracks"] for pl in playlists]
    assert min(lengths) >= 5 and max(lengths) <= 250
    assert 55 <= statistics.mean(lengths) <= 78
    assert 35 <= statistics.median(lengths) <= 65


def test_entp_rows(tiny: synth.SynthSummary, triplets: list[tuple[str, str, int]]) -> None:
    raw = (tiny.out_dir / "entp" / "train_triplets.txt").read_bytes()
    assert raw.endswith(b"\n") and b"\r" not in raw
    for user, song, count in triplets:
        assert USER_ID.match(user) and SONG_ID.match(song)
        assert count >= 1
    # grouped by user, one row per (user, song)
    order = [u for u, _, _ in triplets]
    blocks = [u for i, u in enumerate(order) if i == 0 or order[i - 1] != u]
    assert len(blocks) == len(set(blocks)) == 200
    assert len({(u, s) for u, s, _ in triplets}) == len(triplets)
    counts = [c for _, _, c in triplets]
    assert sum(1 for c in counts if c <= 5) / len(counts) >= 0.85  # mostly 1-5
    assert max(counts) > 20  # but heavy-tailed


def test_songs_per_user(triplets: list[tuple[str, str, int]]) -> None:
    per_user = Counter(u for u, _, _ in triplets)
    values = list(per_user.values())
    assert min(values) >= 1
    assert 15 <= statistics.median(values) <= 45
    assert 30 <= statistics.mean(values) <= 70
    assert statistics.mean(values) > statistics.median(values)  # right-skewed


def test_msd_files(tiny: synth.SynthSummary, triplets: list[tuple[str, str, int]]) -> None:
    msd = tiny.out_dir / "msd"
    lines = (msd / "unique_tracks.txt").read_text("utf-8").splitlines()
    songs_ut = set()
    for line in lines:
        track_id, song_id, artist, title = line.split("<SEP>")
        assert MSD_TRACK_ID.match(track_id) and SONG_ID.match(song_id) and artist and title
        songs_ut.add(song_id)
    with (msd / "song_data.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["song_id", "title", "release", "artist_name", "year"]
    songs_csv = {r[0] for r in rows[1:]}
    assert all(len(r) == 5 and r[4].isdigit() for r in rows[1:])
    assert len(songs_csv) == len(rows) - 1 == len(songs_ut)
    assert songs_csv == songs_ut
    assert {s for _, s, _ in triplets} <= songs_csv
    titles = [r[1] for r in rows[1:]]
    assert any("," in t for t in titles) and any('"' in t for t in titles)
    assert any(not t.isascii() for t in titles)
    text = (msd / "song_data.csv").read_text("utf-8")
    assert '""' in text and "\r\n" not in text  # quoted quotes; LF by default
    mismatches = (msd / "sid_mismatches.txt").read_text("utf-8").splitlines()
    assert len(mismatches) >= 3
    for line in mismatches:
        m = MISMATCH.match(line)
        assert m and m.group(1) in songs_csv


def test_latin1_and_crlf_options(tmp_path: Path) -> None:
    summary = synth.generate(tmp_path, scale="tiny", seed=1, users=20, playlists=40,
                             latin1_lines=5, crlf=True)
    raw = (tmp_path / "msd" / "unique_tracks.txt").read_bytes().splitlines()
    bad = [line for line in raw if not _is_utf8(line)]
    assert len(bad) == 5
    assert all("<SEP>" in line.decode("latin-1") and not line.isascii() for line in bad)
    csv_raw = (tmp_path / "msd" / "song_data.csv").read_bytes()
    assert csv_raw.count(b"\r\n") == csv_raw.count(b"\n") == summary.stats["catalogue"]["songs"] + 1


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# --------------------------------------------------------------------------------------
# statistics that downstream stages rely on
# --------------------------------------------------------------------------------------


def test_match_share_and_overlap(tiny: synth.SynthSummary, playlists: list[dict],
                                 triplets: list[tuple[str, str, int]],
                                 song_track_map: list[dict[str, str]]) -> None:
    n_songs = tiny.stats["catalogue"]["songs"]
    matched_songs = {r["song_id"] for r in song_track_map}
    assert len(matched_songs) == round(0.40 * n_songs)
    track_song = {r["track_uri"]: r["song_id"] for r in song_track_map}
    user_songs: dict[str, set[str]] = defaultdict(set)
    for user, song, _ in triplets:
        user_songs[user].add(song)
    # song -> playlists containing it (through any of its track URIs)
    song_pls: dict[str, set[int]] = defaultdict(set)
    for pl in playlists:
        for t in pl["tracks"]:
            song = track_song.get(t["track_uri"])
            if song is not None:
                song_pls[song].add(pl["pid"])
    pairs = sum(len(set().union(*(song_pls.get(s, set()) for s in songs)))
                for songs in user_songs.values())
    share = pairs / (len(user_songs) * len(playlists))
    assert 0.005 <= share <= 0.10, share
    assert share == pytest.approx(tiny.stats["overlap_share"], abs=1e-5)  # exact at tiny
    # every user and most playlists touch the matched catalogue at all
    assert sum(1 for pl in playlists if any(t["track_uri"] in track_song for t in pl["tracks"])) > 0.5 * 500


def test_popularity_is_heavy_tailed(playlists: list[dict]) -> None:
    freq = Counter(t["track_uri"] for pl in playlists for t in pl["tracks"])
    top = freq.most_common(1)[0][1] / len(playlists)
    assert 0.01 <= top <= 0.15  # ~4.6 % at full scale
    singletons = sum(1 for c in freq.values() if c == 1)
    assert singletons > 0.4 * len(freq)  # a long tail of rarely used tracks


def test_genre_clusters(tiny: synth.SynthSummary, playlists: list[dict],
                        triplets: list[tuple[str, str, int]]) -> None:
    truth = tiny.out_dir / "truth"
    labels = {int(r["genre"]): r["label"] for r in _read_tsv(truth / "genres.tsv")}
    assert len(labels) == tiny.params.n_genres
    track_genre = {r["track_uri"]: int(r["genre"]) for r in _read_tsv(truth / "track_genre.tsv")}
    song_genre = {r["song_id"]: int(r["genre"]) for r in _read_tsv(truth / "song_genre.tsv")}
    pl_genres = {int(r["pid"]): {int(r["genre"]), int(r["second_genre"])}
                 for r in _read_tsv(truth / "playlist_genre.tsv")}
    user_genres = {r["user_id"]: {int(r["genre"]), int(r["second_genre"])}
                   for r in _read_tsv(truth / "user_genre.tsv")}
    in_genre = [statistics.mean(track_genre[t["track_uri"]] in pl_genres[pl["pid"]] for t in pl["tracks"])
                for pl in playlists]
    assert 0.75 <= statistics.mean(in_genre) <= 0.97
    by_user: dict[str, list[bool]] = defaultdict(list)
    for user, song, _ in triplets:
        by_user[user].append(song_genre[song] in user_genres[user])
    assert 0.75 <= statistics.mean(statistics.mean(v) for v in by_user.values()) <= 0.97
    # names hint the genre: most names are one of the primary genre's names, up to case
    # and decoration (the rest are generic names such as "my playlist")
    primary = {int(r["pid"]): int(r["genre"]) for r in _read_tsv(truth / "playlist_genre.tsv")}
    hinted = sum(_names_genre(pl["name"], GENRES[primary[pl["pid"]]][1]) for pl in playlists)
    assert 0.8 <= hinted / len(playlists) <= 0.97


def _names_genre(name: str, genre_names: tuple[str, ...]) -> bool:
    lowered = name.lower()
    return any(lowered.removesuffix(decor.lower()) in genre_names
               for decor in ("", " 🔥", " ☀️", " 🎶", "!!", " 2017", " 2016", " mix", "  "))


# --------------------------------------------------------------------------------------
# spelling variants and duplicate URIs (checked against the files, not only the truth)
# --------------------------------------------------------------------------------------


def _collapse(text: str) -> str:
    return " ".join(text.split())


def test_spelling_variants(tiny: synth.SynthSummary, playlists: list[dict],
                           song_track_map: list[dict[str, str]]) -> None:
    labels = Counter(r["title_variant"] for r in song_track_map)
    assert set(labels) == set(synth.VARIANT_NAMES)
    assert 0.25 <= 1 - labels["exact"] / sum(labels.values()) <= 0.75
    assert Counter(r["artist_variant"] for r in song_track_map).keys() >= {"exact", "case", "accents"}
    msd = {}
    for line in (tiny.out_dir / "msd" / "unique_tracks.txt").read_text("utf-8").splitlines():
        _, song_id, artist, title = line.split("<SEP>")
        msd[song_id] = (artist, title)
    seen = {t["track_uri"]: (t["artist_name"], t["track_name"]) for pl in playlists for t in pl["tracks"]}
    checked = Counter()
    for r in song_track_map:
        if r["track_uri"] not in seen:
            continue
        mpd_artist, mpd_title = seen[r["track_uri"]]
        msd_artist, msd_title = msd[r["song_id"]]
        kind = r["title_variant"]
        checked[kind] += 1
        if kind == "exact":
            assert mpd_title == msd_title
        elif kind == "radio_edit":
            assert mpd_title == msd_title + " - Radio Edit"
        elif kind == "feat":
            assert mpd_title.startswith(msd_title + " (feat. ") and mpd_title.endswith(")")
        elif kind == "feat_msd":
            assert msd_title.startswith(mpd_title + " (feat. ")
        elif kind == "remaster":
            assert re.fullmatch(re.escape(msd_title) + r" - Remastered( \d{4})?", mpd_title)
        elif kind == "live":
            assert mpd_title == msd_title + " - Live"
        elif kind == "case":
            assert mpd_title != msd_title and mpd_title.casefold() == msd_title.casefold()
        elif kind == "accents":
            assert mpd_title != msd_title and synth.strip_accents(mpd_title) == synth.strip_accents(msd_title)
        elif kind == "spaces":
            assert mpd_title != msd_title and _collapse(mpd_title) == _collapse(msd_title)
        if r["artist_variant"] == "exact":
            assert mpd_artist == msd_artist
        else:
            assert mpd_artist != msd_artist
    assert sum(checked.values()) > 100 and len(checked) >= 6


def test_duplicate_uris(tiny: synth.SynthSummary, playlists: list[dict],
                        song_track_map: list[dict[str, str]]) -> None:
    groups: dict[str, list[str]] = defaultdict(list)
    for r in _read_tsv(tiny.out_dir / "truth" / "duplicate_tracks.tsv"):
        groups[r["group"]].append(r["track_uri"])
    assert len(groups) > 100 and all(len(g) >= 2 for g in groups.values())
    song_of = {r["track_uri"]: r["song_id"] for r in song_track_map}
    matched_groups = [g for g in groups.values() if g[0] in song_of]
    assert matched_groups
    for g in matched_groups:  # every URI of a matched group maps to the same song
        assert {song_of[u] for u in g} == {song_of[g[0]]}
    assert any(r["duplicate_uri"] == "1" for r in song_track_map)
    used = {t["track_uri"] for pl in playlists for t in pl["tracks"]}
    assert sum(1 for g in groups.values() if len(set(g) & used) >= 2) >= 1


# --------------------------------------------------------------------------------------
# determinism, chunking, gzip, CLI
# --------------------------------------------------------------------------------------


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(tiny: synth.SynthSummary, tmp_path: Path) -> None:
    again = synth.generate(tmp_path / "again", scale="tiny", seed=0)
    assert _tree_bytes(again.out_dir) == _tree_bytes(tiny.out_dir)


def test_different_seed_different_bytes(tiny: synth.SynthSummary, tmp_path: Path) -> None:
    other = synth.generate(tmp_path / "other", scale="tiny", seed=1)
    a, b = _tree_bytes(tiny.out_dir), _tree_bytes(other.out_dir)
    assert a.keys() == b.keys()
    for rel in ("mpd/mpd.slice.0-249.json", "entp/train_triplets.txt", "msd/unique_tracks.txt"):
        assert a[rel] != b[rel], rel


def test_output_independent_of_slice_size(tmp_path: Path) -> None:
    """Playlists come from fixed-size RNG blocks, so the file split does not change them."""
    a = synth.generate(tmp_path / "a", scale="tiny", seed=3, users=10, playlists=400, slice_size=400)
    b = synth.generate(tmp_path / "b", scale="tiny", seed=3, users=10, playlists=400, slice_size=150)
    assert [p.name for p in _slices(b.out_dir)] == [
        "mpd.slice.0-149.json", "mpd.slice.150-299.json", "mpd.slice.300-399.json"]
    pa = [pl for p in _slices(a.out_dir) for pl in json.loads(p.read_bytes())["playlists"]]
    pb = [pl for p in _slices(b.out_dir) for pl in json.loads(p.read_bytes())["playlists"]]
    assert pa == pb


def test_gzip_output(tmp_path: Path) -> None:
    plain = synth.generate(tmp_path / "plain", scale="tiny", seed=2, users=30, playlists=300, slice_size=100)
    # gzip into a folder holding the plain files: those are replaced, not left beside
    target = tmp_path / "gz"
    synth.generate(target, scale="tiny", seed=2, users=30, playlists=300, slice_size=100)
    packed = synth.generate(target, scale="tiny", seed=2, users=30, playlists=300, slice_size=100, gzip=True)
    names = sorted(p.name for p in (target / "mpd").iterdir())
    assert names == ["mpd.slice.0-99.json.gz", "mpd.slice.100-199.json.gz", "mpd.slice.200-299.json.gz"]
    assert sorted(p.name for p in (target / "entp").iterdir()) == ["train_triplets.txt.gz"]
    for gz_path in packed.paths["mpd"] + packed.paths["entp"]:
        raw = gz_path.read_bytes()
        assert raw[:2] == b"\x1f\x8b"
        plain_path = plain.out_dir / gz_path.relative_to(target).with_suffix("")
        assert gzip.decompress(raw) == plain_path.read_bytes()
    again = synth.generate(tmp_path / "gz2", scale="tiny", seed=2, users=30, playlists=300,
                           slice_size=100, gzip=True)
    assert (again.out_dir / "entp/train_triplets.txt.gz").read_bytes() == \
        (target / "entp/train_triplets.txt.gz").read_bytes()  # gzip header has no mtime/name


def test_parameters_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown scale"):
        synth.params_for("huge")
    with pytest.raises(ValueError, match="unknown synth parameter"):
        synth.generate(tmp_path, scale="tiny", userz=3)
    with pytest.raises(ValueError, match="match_share"):
        synth.params_for("tiny", match_share=1.5)
    assert synth.params_for("full").playlists == 1_000_000


def test_ids_are_unique_by_construction() -> None:
    import numpy as np

    idx = np.arange(200_000)
    assert len(set(spotify_uris("track", idx, 0))) == idx.size
    assert len(set(msd_ids("SO", idx, 0))) == idx.size
    assert len(set(user_ids(idx, 0))) == idx.size


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert synth.main(["--scale", "tiny", "--seed", "4", "--out", str(tmp_path), "--users", "15",
                       "--playlists", "30", "--gzip", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["users"] == 15 and report["playlists"] == 30
    assert (tmp_path / "mpd" / "mpd.slice.0-29.json.gz").is_file()
    help_text = subprocess.run([sys.executable, "-m", "spotify_assets.synth", "--help"],
                               capture_output=True, text=True, check=True).stdout
    for flag in ("--scale", "--seed", "--out", "--gzip", "--users", "--playlists", "--latin1-lines", "--crlf"):
        assert flag in help_text
