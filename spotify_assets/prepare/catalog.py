"""Song matching between the MSD/ENTP and MPD sides (no Dagster imports).

Every MSD song and every MPD track gets a plain and a canonical song key
(docs/architecture.md#song-keys). One dense ``song_key_id`` is assigned per canonical key
over the union of both sides, ordered by key, so ids do not depend on input order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from spotify_assets.prepare.songkeys import canonical_song_key, plain_song_key


@dataclass(frozen=True)
class SongCatalog:
    """Keys for both sides plus the catalog of canonical keys.

    msd : table(song_id, plain_key, canonical_key, song_key_id int32, mismatched bool)
    mpd : table(track_id int32, track_uri, plain_key, canonical_key, song_key_id int32)
    catalog : table(song_key_id int32, canonical_key, n_msd_songs int32, n_mpd_tracks int32,
              n_plain_variants int32)
    """

    msd: pa.Table
    mpd: pa.Table
    catalog: pa.Table


def _keys(titles: Sequence[str | None], artists: Sequence[str | None]) -> tuple[list[str], list[str]]:
    plain = [plain_song_key(t or "", a or "") for t, a in zip(titles, artists, strict=True)]
    canonical = [canonical_song_key(t or "", a or "") for t, a in zip(titles, artists, strict=True)]
    return plain, canonical


def build_song_catalog(
    song_ids: Sequence[str],
    song_titles: Sequence[str | None],
    song_artists: Sequence[str | None],
    song_mismatched: Sequence[bool],
    track_ids: np.ndarray,
    track_uris: Sequence[str],
    track_titles: Sequence[str | None],
    track_artists: Sequence[str | None],
) -> SongCatalog:
    """Key both sides and assign one dense id per canonical key (sorted by key)."""
    msd_plain, msd_canonical = _keys(song_titles, song_artists)
    mpd_plain, mpd_canonical = _keys(track_titles, track_artists)
    all_canonical = np.asarray(msd_canonical + mpd_canonical, dtype=object)
    unique_keys, inverse = np.unique(all_canonical, return_inverse=True)
    inverse = inverse.astype(np.int32)
    msd_ids, mpd_ids = inverse[: len(msd_canonical)], inverse[len(msd_canonical) :]
    n_keys = len(unique_keys)
    n_msd = np.bincount(msd_ids, minlength=n_keys).astype(np.int32)
    n_mpd = np.bincount(mpd_ids, minlength=n_keys).astype(np.int32)
    # distinct plain spellings merged into each canonical key
    plain_pairs = np.unique(
        np.stack([inverse.astype(np.int64), np.unique(np.asarray(msd_plain + mpd_plain, dtype=object), return_inverse=True)[1]]),
        axis=1,
    )
    n_variants = np.bincount(plain_pairs[0], minlength=n_keys).astype(np.int32)
    msd = pa.table(
        {
            "song_id": pa.array(list(song_ids), pa.string()),
            "plain_key": pa.array(msd_plain, pa.string()),
            "canonical_key": pa.array(msd_canonical, pa.string()),
            "song_key_id": pa.array(msd_ids, pa.int32()),
            "mismatched": pa.array(list(song_mismatched), pa.bool_()),
        }
    )
    mpd = pa.table(
        {
            "track_id": pa.array(np.asarray(track_ids, dtype=np.int32), pa.int32()),
            "track_uri": pa.array(list(track_uris), pa.string()),
            "plain_key": pa.array(mpd_plain, pa.string()),
            "canonical_key": pa.array(mpd_canonical, pa.string()),
            "song_key_id": pa.array(mpd_ids, pa.int32()),
        }
    )
    catalog = pa.table(
        {
            "song_key_id": pa.array(np.arange(n_keys, dtype=np.int32), pa.int32()),
            "canonical_key": pa.array(unique_keys.tolist(), pa.string()),
            "n_msd_songs": pa.array(n_msd, pa.int32()),
            "n_mpd_tracks": pa.array(n_mpd, pa.int32()),
            "n_plain_variants": pa.array(n_variants, pa.int32()),
        }
    )
    return SongCatalog(msd=msd, mpd=mpd, catalog=catalog)
