"""Ground truth under ``truth/`` for tests: genres, the song-track map, duplicate URIs.

Not part of the datasets: loaders never read it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spotify_assets.synth.catalogue import Catalogue
from spotify_assets.synth.ids import spotify_uris
from spotify_assets.synth.text import ARTIST_VARIANT_NAMES, VARIANT_NAMES
from spotify_assets.synth.writing import _atomic_file, _tsv, _tsv_rows, _write_bytes


def _write_truth(folder: Path, cat: Catalogue, seed: int, song_ids: list[str]) -> list[Path]:
    """Ground truth for tests (loaders never read it); per-track files are streamed in chunks."""
    written = []
    genres = [(g, cat.genre_labels[g], round(float(cat.genre_weight[g]), 6)) for g in range(len(cat.genre_labels))]
    written.append(_write_bytes(folder / "genres.tsv", _tsv(genres, ("genre", "label", "weight"))))
    matched = np.flatnonzero(cat.track_song >= 0)
    with _atomic_file(folder / "song_track_map.tsv") as out:
        out.write(_tsv((), ("song_id", "track_uri", "title_variant", "artist_variant", "duplicate_uri", "mismatched")))
        for chunk in np.array_split(matched, max(1, matched.shape[0] // 200_000)):
            uris = spotify_uris("track", chunk, seed)
            art_var = cat.artist_variant[cat.rec_artist[cat.track_rec[chunk]]].tolist()
            song = cat.track_song[chunk]
            out.write(_tsv_rows(
                (song_ids[s], u, VARIANT_NAMES[v], ARTIST_VARIANT_NAMES[a], int(d), int(m >= 0))
                for s, u, v, a, d, m in zip(song.tolist(), uris, cat.track_variant[chunk].tolist(), art_var,
                                            cat.track_is_dup[chunk].tolist(), cat.song_mismatch[song].tolist())))
    written.append(folder / "song_track_map.tsv")
    with _atomic_file(folder / "duplicate_tracks.tsv") as out:
        out.write(_tsv((), ("group", "track_uri")))
        if cat.dup_groups:
            members = np.concatenate(cat.dup_groups)
            group = np.repeat(np.arange(len(cat.dup_groups)), [g.shape[0] for g in cat.dup_groups])
            out.write(_tsv_rows(zip(group.tolist(), spotify_uris("track", members, seed))))
    written.append(folder / "duplicate_tracks.tsv")
    with _atomic_file(folder / "track_genre.tsv") as out:
        out.write(_tsv((), ("track_uri", "genre")))
        for chunk in np.array_split(np.arange(cat.n_tracks), max(1, cat.n_tracks // 200_000)):
            out.write(_tsv_rows(zip(spotify_uris("track", chunk, seed), cat.rec_genre[cat.track_rec[chunk]].tolist())))
    written.append(folder / "track_genre.tsv")
    s_genre = cat.rec_genre[cat.song_rec].tolist()
    written.append(_write_bytes(folder / "song_genre.tsv", _tsv(zip(song_ids, s_genre), ("song_id", "genre"))))
    return written
