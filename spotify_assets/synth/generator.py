""":func:`generate`: the driver that streams a whole dataset to disk.

It builds the catalogue, then writes the MPD slices and the ENTP triplets block by block
(with their ground truth), the MSD metadata, the rest of ``truth/`` and
``truth/summary.json``, and measures the statistics on the way.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from spotify_assets.synth.catalogue import build_catalogue
from spotify_assets.synth.ids import msd_ids, user_ids
from spotify_assets.synth.mpd import _generated_on, _render_slice
from spotify_assets.synth.msd import _write_msd
from spotify_assets.synth.params import _S_USERS, PLAYLIST_BLOCK, USER_BLOCK, params_for
from spotify_assets.synth.population import (
    _block_rng,
    _genres,
    _in_genre,
    _play_counts,
    _playlist_block,
    _sample_sets,
    _user_counts,
)
from spotify_assets.synth.summary import SynthSummary, _describe, _overlap_share
from spotify_assets.synth.truth import _write_truth
from spotify_assets.synth.writing import _atomic_file, _remove_stale, _tsv_rows, _write_bytes


def _progress(enabled: bool, message: str) -> None:
    if enabled:
        print(f"[synth] {message}", file=sys.stderr, flush=True)


def _strided(total: int, cap: int) -> int:
    return max(1, math.ceil(total / cap))


def generate(out_dir: Path | str, scale: str = "tiny", seed: int = 0, gzip: bool = False,
             progress: bool | None = None, **overrides: object) -> SynthSummary:
    """Write the MPD, ENTP and MSD stand-ins (and ``truth/``) for ``scale`` under ``out_dir``.

    Parameters
    ----------
    out_dir : folder that receives ``mpd/``, ``entp/``, ``msd/`` and ``truth/``. Slice and
        triplet files from an earlier run in it that this run does not write (another
        scale, or the other compression) are removed so the folder holds one dataset.
    scale : ``tiny`` | ``sample`` | ``bench`` | ``full`` (see :data:`SCALES`).
    seed : every random draw derives from it; same seed and parameters → identical bytes.
    gzip : write MPD slices and the triplets gzip-compressed (``.json.gz``, ``.txt.gz``).
    progress : print progress to stderr; default on for ``bench`` and ``full``.
    **overrides : any :class:`SynthParams` field, e.g. ``users=50, playlists=100,
        match_share=0.3, latin1_lines=5, crlf=True``.

    Returns
    -------
    SynthSummary
        Counts, measured statistics (also in ``truth/summary.json``) and paths written.
    """
    started = time.perf_counter()
    params = params_for(scale, **overrides)
    out = Path(out_dir)
    if progress is None:
        progress = scale in ("bench", "full")
    level = params.gzip_level if gzip else None
    gz = ".gz" if gzip else ""
    paths: dict[str, list[Path]] = {"mpd": [], "entp": [], "msd": [], "truth": []}

    t0 = time.perf_counter()
    cat = build_catalogue(params, seed)
    _progress(progress, f"catalogue: {cat.n_tracks:,} tracks, {cat.n_songs:,} songs, "
                        f"{len(cat.artist_name):,} artists in {time.perf_counter() - t0:.1f}s")

    # Overlap measurement: every k-th user and playlist (exact at small scales).
    u_stride = _strided(params.users, params.overlap_users)
    p_stride = _strided(params.playlists, params.overlap_playlists)
    ov_user_songs: list[np.ndarray] = []
    ov_user_owner: list[np.ndarray] = []
    ov_pl_songs: list[np.ndarray] = []
    ov_pl_owner: list[np.ndarray] = []

    # ---- MPD slices ----------------------------------------------------------------------
    mpd_dir = out / "mpd"
    generated_on = _generated_on(seed)
    track_freq = np.zeros(cat.n_tracks, np.int64)
    lengths_all = np.zeros(params.playlists, np.int64)
    n_slices = math.ceil(params.playlists / params.slice_size)
    pl_truth_path = out / "truth" / "playlist_genre.tsv"
    written_bytes = 0
    rows_done = 0
    block_cache: dict[int, dict[str, np.ndarray]] = {}
    t0 = time.perf_counter()
    with _atomic_file(pl_truth_path) as pl_truth:
        pl_truth.write(b"pid\tgenre\tsecond_genre\n")
        for s in range(n_slices):
            start = s * params.slice_size
            end = min(params.playlists, start + params.slice_size) - 1
            b_lo, b_hi = start // PLAYLIST_BLOCK, end // PLAYLIST_BLOCK
            for b in list(block_cache):
                if b < b_lo:
                    del block_cache[b]
            for b in range(b_lo, b_hi + 1):
                if b not in block_cache:
                    n_b = min(PLAYLIST_BLOCK, params.playlists - b * PLAYLIST_BLOCK)
                    block_cache[b] = _playlist_block(cat, params, seed, b, n_b)
            blocks = [block_cache[b] for b in range(b_lo, b_hi + 1)]
            data, rows = _render_slice(cat, params, seed, start, end, blocks,
                                       [b * PLAYLIST_BLOCK for b in range(b_lo, b_hi + 1)], generated_on)
            path = _write_bytes(mpd_dir / f"mpd.slice.{start}-{end}.json{gz}", data, level)
            paths["mpd"].append(path)
            written_bytes += len(data)
            owner, item = rows["owner"], rows["item"]
            track_freq += np.bincount(item, minlength=cat.n_tracks)
            lengths_all[start:end + 1] = np.bincount(owner, minlength=end - start + 1)
            rows_done += item.shape[0]
            pl_truth.write(_tsv_rows((start + i, a, b) for i, (a, b) in
                                     enumerate(zip(rows["g1"].tolist(), rows["g2"].tolist()))))
            # overlap sample
            pids = start + owner
            keep = (pids % p_stride) == 0
            songs = cat.track_song[item[keep]]
            ok = songs >= 0
            ov_pl_songs.append(songs[ok])
            ov_pl_owner.append(pids[keep][ok] // p_stride)
            if progress and (s + 1) % max(1, n_slices // 20) == 0:
                el = time.perf_counter() - t0
                _progress(True, f"mpd: {s + 1}/{n_slices} slices, {rows_done:,} track rows, "
                                f"{rows_done / max(el, 1e-9):,.0f} rows/s, {written_bytes / 1e6 / max(el, 1e-9):.0f} MB/s")
    paths["truth"].append(pl_truth_path)
    mpd_seconds = time.perf_counter() - t0

    # ---- ENTP triplets ---------------------------------------------------------------------
    t0 = time.perf_counter()
    n_user_blocks = math.ceil(params.users / USER_BLOCK)
    songs_per_user = np.zeros(params.users, np.int64)
    song_listeners = np.zeros(cat.n_songs, np.int64)
    play_hist = np.zeros(11, np.int64)
    play_sum = 0
    play_max = 0
    listens = 0
    song_ids_all = msd_ids("SO", np.arange(cat.n_songs), seed)
    trip_path = out / "entp" / f"train_triplets.txt{gz}"
    u_truth_path = out / "truth" / "user_genre.tsv"
    with _atomic_file(trip_path, level) as trip, _atomic_file(u_truth_path) as u_truth:
        u_truth.write(b"user_id\tgenre\tsecond_genre\n")
        for b in range(n_user_blocks):
            rng = _block_rng(seed, _S_USERS, b)
            u0 = b * USER_BLOCK
            n = min(USER_BLOCK, params.users - u0)
            counts = _user_counts(rng, n, params, cat.n_songs)
            g1, g2 = _genres(rng, n, cat.genre_weight, params.second_genre_prob)
            p_in = _in_genre(rng, n, params.in_genre_share)
            owner, song = _sample_sets(rng, cat.song_sampler, counts, g1, g2, p_in)
            plays = _play_counts(rng, owner.shape[0], params)
            uids = user_ids(np.arange(u0, u0 + n), seed)
            sids = song_ids_all
            lines = [f"{uids[o]}\t{sids[s]}\t{c}" for o, s, c in zip(owner.tolist(), song.tolist(), plays.tolist())]
            trip.write(("\n".join(lines) + "\n").encode("ascii") if lines else b"")
            u_truth.write(_tsv_rows((uids[i], x, y) for i, (x, y) in enumerate(zip(g1.tolist(), g2.tolist()))))
            songs_per_user[u0:u0 + n] = np.bincount(owner, minlength=n)
            song_listeners += np.bincount(song, minlength=cat.n_songs)
            play_hist += np.bincount(np.minimum(plays, 10), minlength=11)
            play_sum += int(plays.sum())
            play_max = max(play_max, int(plays.max()) if plays.size else 0)
            listens += owner.shape[0]
            uidx = u0 + owner
            keep = (uidx % u_stride) == 0
            ov_user_songs.append(song[keep])
            ov_user_owner.append(uidx[keep] // u_stride)
            if progress and (b + 1) % max(1, n_user_blocks // 20) == 0:
                el = time.perf_counter() - t0
                _progress(True, f"entp: {u0 + n:,}/{params.users:,} users, {listens:,} triplets, "
                                f"{listens / max(el, 1e-9):,.0f} rows/s")
    paths["entp"].append(trip_path)
    paths["truth"].append(u_truth_path)
    entp_seconds = time.perf_counter() - t0

    # ---- MSD metadata ------------------------------------------------------------------
    t0 = time.perf_counter()
    paths["msd"].extend(_write_msd(out / "msd", cat, params, seed, song_ids_all))
    msd_seconds = time.perf_counter() - t0

    # ---- truth + statistics ---------------------------------------------------------------
    t0 = time.perf_counter()
    n_ov_u = math.ceil(params.users / u_stride)
    n_ov_p = math.ceil(params.playlists / p_stride)
    overlap, mean_shared = _overlap_share(
        np.concatenate(ov_user_owner), np.concatenate(ov_user_songs), n_ov_u,
        np.concatenate(ov_pl_owner), np.concatenate(ov_pl_songs), n_ov_p, cat.n_songs)
    paths["truth"].extend(_write_truth(out / "truth", cat, seed, song_ids_all))
    used = track_freq > 0
    matched_songs = cat.song_track >= 0
    listened = song_listeners > 0
    track_variant_matched = cat.track_variant[cat.track_song >= 0]
    song_has_variant = np.zeros(cat.n_songs, bool)
    tv = (cat.track_variant > 0) & (cat.track_song >= 0)
    song_has_variant[cat.track_song[tv]] = True
    song_has_variant |= matched_songs & (cat.artist_variant[cat.rec_artist[cat.song_rec]] > 0)
    used_artists = np.unique(cat.rec_artist[cat.track_rec[used]])
    n_dup_uris_used = int(sum(int(np.count_nonzero(used[g])) >= 2 for g in cat.dup_groups))
    stats: dict[str, object] = {
        "scale": scale,
        "seed": seed,
        "params": asdict(params),
        "users": params.users,
        "playlists": params.playlists,
        "slices": n_slices,
        "listens": int(listens),
        "track_rows": int(rows_done),
        "genres": params.n_genres,
        "songs_per_user": _describe(songs_per_user),
        "play_count": {"mean": round(play_sum / max(listens, 1), 3),
                       "share_1": round(float(play_hist[1]) / max(listens, 1), 4),
                       "share_le_5": round(float(play_hist[1:6].sum()) / max(listens, 1), 4),
                       "max": play_max},
        "playlist_length": _describe(lengths_all),
        "catalogue": {"tracks": cat.n_tracks, "songs": cat.n_songs, "artists": len(cat.artist_name),
                      "albums": len(cat.album_name)},
        "unique_tracks": int(used.sum()),
        "unique_artists": int(used_artists.shape[0]),
        "top_track_playlist_share": round(float(track_freq.max()) / params.playlists, 5),
        "songs_listened": int(listened.sum()),
        "matched_song_share": round(float(matched_songs.mean()), 4),
        "matched_share_of_listened_songs": round(float(matched_songs[listened].mean()) if listened.any() else 0.0, 4),
        "matched_listen_share": round(float(song_listeners[matched_songs].sum()) / max(listens, 1), 4),
        "matched_track_row_share": round(float(track_freq[cat.track_song >= 0].sum()) / max(rows_done, 1), 4),
        "variant_share_of_matched_songs": round(float(song_has_variant[matched_songs].mean()) if matched_songs.any() else 0.0, 4),
        "variant_track_share": round(float((track_variant_matched > 0).mean()) if track_variant_matched.size else 0.0, 4),
        "duplicate_groups": len(cat.dup_groups),
        "duplicate_uris": int(sum(g.shape[0] for g in cat.dup_groups)),
        "duplicate_groups_seen_twice": n_dup_uris_used,
        "sid_mismatches": int((cat.song_mismatch >= 0).sum()),
        "overlap_share": round(overlap, 5),
        "overlap_mean_shared_songs": round(mean_shared, 4),
        "overlap_sample": {"users": n_ov_u, "playlists": n_ov_p,
                           "exact": u_stride == 1 and p_stride == 1},
        "files": {k: sorted(str(p.relative_to(out)) for p in v) for k, v in paths.items() if k != "truth"},
    }
    paths["truth"].append(_write_bytes(out / "truth" / "summary.json",
                                       json.dumps(stats, indent=2, sort_keys=True).encode() + b"\n"))
    _remove_stale(out, paths)
    seconds = time.perf_counter() - started
    _progress(progress, f"done in {seconds:.1f}s (mpd {mpd_seconds:.1f}s, entp {entp_seconds:.1f}s, "
                        f"msd {msd_seconds:.1f}s, truth {time.perf_counter() - t0:.1f}s); "
                        f"overlap share {overlap:.4f}")
    return SynthSummary(out_dir=out, scale=scale, seed=seed, params=params, stats=stats, paths=paths,
                        seconds=seconds)
