"""Playlists as ragged arrays read from the warehouse marts, with their split, names and the
tracks' MPD features: what every track model and the continuation evaluation read. No
Dagster imports (the assets and the benchmarks share it)."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np

from spotify_assets.tracks.continuation import SPLIT_NAMES, TRAIN, ContinuationQueries, continuation_queries


def sequences(group: np.ndarray) -> np.ndarray:
    """int64 (n_seq + 1,) ``indptr`` of consecutive runs of equal ``group`` values.

    group : (n,) sorted (or at least grouped) sequence keys, e.g. the pid column of rows
        ordered by (pid, pos).
    """
    group = np.asarray(group)
    if group.size == 0:
        return np.zeros(1, np.int64)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    return np.r_[starts, group.size].astype(np.int64)


@dataclass(frozen=True)
class TrackFeatures:
    """What the MPD says about each track (indexed by dense track id).

    artist, album : int64 (n_tracks,) dense ids (-1 = unknown).
    duration_ms : int64 (n_tracks,) (<= 0 = unknown).
    """

    artist: np.ndarray
    album: np.ndarray
    duration_ms: np.ndarray

    @property
    def n_tracks(self) -> int:
        return int(self.artist.size)


__all__ = ["PlaylistData", "TrackFeatures", "load_playlists", "sequences"]


class PlaylistData:
    """Playlist-track rows ordered by (pid, pos) as ragged sequences.

    indptr int64 (P + 1,); pids int64 (P,); tracks, artists int64 (nnz,); split int8 (P,)
    (TRAIN/VAL/TEST, all TRAIN when no split was read); names list[str] (P,) playlist names
    ("" when not read); n_tracks: size of track_dictionary; features: per-track artist,
    album and duration (None when not read).
    """

    def __init__(self, indptr: np.ndarray, pids: np.ndarray, tracks: np.ndarray, artists: np.ndarray, n_tracks: int,
                 split: np.ndarray | None = None, names: list[str] | None = None,
                 features: TrackFeatures | None = None):
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.pids = np.asarray(pids, dtype=np.int64)
        self.tracks = np.asarray(tracks, dtype=np.int64)
        self.artists = np.asarray(artists, dtype=np.int64)
        self.n_tracks = int(n_tracks)
        self.split = np.zeros(self.pids.size, np.int8) if split is None else np.asarray(split, dtype=np.int8)
        self.names = names if names is not None else [""] * self.pids.size
        self.features = features

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def part(self, split: int) -> tuple[np.ndarray, np.ndarray]:
        """(indptr, tracks) of the playlists in ``split``."""
        chosen = self.split == split
        rows = np.repeat(chosen, self.lengths)
        return np.r_[0, np.cumsum(self.lengths[chosen])].astype(np.int64), self.tracks[rows]

    def part_names(self, split: int) -> list[str]:
        """Names of the playlists in ``split``, in the order of :meth:`part`."""
        return [self.names[i] for i in np.flatnonzero(self.split == split).tolist()]

    def track_artist(self) -> np.ndarray:
        """int64 (n_tracks,) artist id of each track (-1 for tracks in no playlist)."""
        out = np.full(self.n_tracks, -1, np.int64)
        out[self.tracks] = self.artists
        return out

    def queries(self, split: int, limit: int, seed: int, n_seed: int = 5) -> ContinuationQueries:
        """Continuation queries (first ``n_seed`` tracks given) of ``split``, at most
        ``limit`` (seeded sample; 0 = all)."""
        queries = continuation_queries(self.indptr, self.tracks, n_seed=n_seed)
        rows = np.flatnonzero(self.split[queries.seq] == split)
        if 0 < limit < rows.size:
            rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC0A7, split]))
            rows = np.sort(rng.choice(rows, size=limit, replace=False))
        return queries.subset(rows)

    def train_counts(self) -> np.ndarray:
        """int64 (n_tracks,) occurrences of each track in the TRAIN playlists."""
        return np.bincount(self.part(TRAIN)[1], minlength=self.n_tracks)


def _split_codes(pids: np.ndarray, split_pids: np.ndarray, split_names: np.ndarray) -> np.ndarray:
    """int8 split code of every pid from a (pid, split name) table sorted by pid."""
    at = np.minimum(np.searchsorted(split_pids, pids), max(split_pids.size - 1, 0))
    if split_pids.size == 0 or (split_pids[at] != pids).any():
        raise ValueError("track_playlist_splits lacks playlists of playlist_track_ids: "
                         "rematerialize next_track_examples")
    sorted_names = np.array(sorted(SPLIT_NAMES))
    code_of_sorted = np.array([SPLIT_NAMES.index(n) for n in sorted_names], np.int8)
    return code_of_sorted[np.searchsorted(sorted_names, split_names.astype(str))][at]


def load_playlists(con: duckdb.DuckDBPyConnection, with_split: bool = True, with_names: bool = False,
                   with_features: bool = False) -> PlaylistData:
    """Read ``playlist_track_ids`` (and ``track_playlist_splits``, ``stg_playlists`` names,
    per-track album and duration from ``playlist_track_ids`` / ``stg_playlist_tracks``)."""
    rows = con.execute("SELECT pid, track_id, artist_id FROM playlist_track_ids ORDER BY pid, pos").fetchnumpy()
    n_tracks = int(con.execute("SELECT count(*) FROM track_dictionary").fetchall()[0][0])
    pid = np.asarray(rows["pid"], dtype=np.int64)
    indptr = sequences(pid)
    pids = pid[indptr[:-1]]
    split = None
    if with_split:
        s = con.execute("SELECT pid, split FROM track_playlist_splits ORDER BY pid").fetchnumpy()
        split = _split_codes(pids, np.asarray(s["pid"], dtype=np.int64), np.asarray(s["split"]))
    names = None
    if with_names:
        n = con.execute("SELECT pid, name FROM stg_playlists ORDER BY pid").fetchnumpy()
        name_pids = np.asarray(n["pid"], dtype=np.int64)
        at = np.minimum(np.searchsorted(name_pids, pids), max(name_pids.size - 1, 0))
        found = name_pids.size > 0 and bool((name_pids[at] == pids).all())
        if not found:
            raise ValueError("stg_playlists lacks playlists of playlist_track_ids: rebuild the marts")
        all_names = np.asarray(n["name"], dtype=object)
        names = [str(x) if x is not None else "" for x in all_names[at].tolist()]
    features = None
    if with_features:
        f = con.execute(
            """SELECT d.track_id, min(p.album_id) AS album_id, min(p.artist_id) AS artist_id,
                      coalesce(median(s.duration_ms), 0)::BIGINT AS duration_ms
               FROM track_dictionary d
               JOIN playlist_track_ids p USING (track_id)
               JOIN stg_playlist_tracks s ON s.pid = p.pid AND s.pos = p.pos
               GROUP BY d.track_id""").fetchnumpy()
        ids = np.asarray(f["track_id"], dtype=np.int64)
        artist, album, duration = (np.full(n_tracks, -1, np.int64) for _ in range(3))
        artist[ids] = np.asarray(f["artist_id"], dtype=np.int64)
        album[ids] = np.asarray(f["album_id"], dtype=np.int64)
        duration[ids] = np.asarray(f["duration_ms"], dtype=np.int64)
        features = TrackFeatures(artist, album, duration)
    return PlaylistData(indptr, pids, rows["track_id"], rows["artist_id"], n_tracks, split, names, features)
