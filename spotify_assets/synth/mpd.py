"""The Million Playlist Dataset slice files: playlist names and the slice JSON."""

from __future__ import annotations

import time

import numpy as np
import orjson

from spotify_assets.synth.catalogue import Catalogue
from spotify_assets.synth.ids import spotify_uris
from spotify_assets.synth.params import SynthParams
from spotify_assets.synth.text import _DESCRIPTIONS, _GENERIC_NAMES, _NAME_DECOR, GENRES


def _playlist_name(label_names: tuple[str, ...], pick: int, style: float, decor: int,
                   generic: bool) -> str:
    base = _GENERIC_NAMES[pick % len(_GENERIC_NAMES)] if generic else label_names[pick % len(label_names)]
    if style < 0.55:
        name = base
    elif style < 0.85:
        name = base.title()
    elif style < 0.9:
        name = base.upper()
    else:
        name = base.capitalize()
    return name + _NAME_DECOR[decor]


def _render_slice(cat: Catalogue, params: SynthParams, seed: int, start: int, end: int,
                  blocks: list[dict[str, np.ndarray]], block_starts: list[int],
                  generated_on: str) -> tuple[bytes, dict[str, np.ndarray]]:
    """JSON bytes of the slice with pids ``start..end`` built from the covering blocks."""
    # Concatenate the block rows that fall in [start, end].
    owners, items, cols = [], [], {}
    for blk, b0 in zip(blocks, block_starts):
        n = blk["g1"].shape[0]
        lo, hi = max(start, b0), min(end + 1, b0 + n)
        if lo >= hi:
            continue
        sel = (blk["owner"] >= lo - b0) & (blk["owner"] < hi - b0)
        owners.append(blk["owner"][sel] + b0 - start)
        items.append(blk["item"][sel])
        for key, arr in blk.items():
            if key in ("owner", "item"):
                continue
            cols.setdefault(key, []).append(arr[lo - b0:hi - b0])
    owner = np.concatenate(owners)
    item = np.concatenate(items)
    c = {k: np.concatenate(v) for k, v in cols.items()}
    n = end - start + 1
    # Per-slice string tables for the distinct tracks only.
    uniq, inv = np.unique(item, return_inverse=True)
    rec = cat.track_rec[uniq]
    art = cat.rec_artist[rec]
    alb = cat.track_album[uniq]
    t_uri = spotify_uris("track", uniq, seed)
    a_uri = spotify_uris("artist", art, seed)
    al_uri = spotify_uris("album", alb, seed)
    t_name = [cat.track_name[i] for i in uniq.tolist()]
    a_name = [cat.artist_name[i] for i in art.tolist()]
    al_name = [cat.album_name[i] for i in alb.tolist()]
    dur = cat.track_duration[uniq].tolist()
    # Playlist-level aggregates, vectorized.
    lengths = np.bincount(owner, minlength=n)
    bounds = np.r_[0, np.cumsum(lengths)]
    duration = np.bincount(owner, weights=cat.track_duration[item], minlength=n).astype(np.int64)
    n_alb = np.int64(len(cat.album_name))
    n_albums = np.bincount(np.unique(owner * n_alb + cat.track_album[item]) // n_alb, minlength=n)
    n_artists = np.bincount(np.unique(owner * np.int64(len(cat.artist_name)) + cat.rec_artist[cat.track_rec[item]])
                            // len(cat.artist_name), minlength=n)
    inv_l = inv.tolist()
    playlists = []
    for i in range(n):
        g1 = int(c["g1"][i])
        generic = bool(c["generic"][i] < 0.08)
        name = _playlist_name(GENRES[g1][1], int(c["name_pick"][i]), float(c["name_style"][i]),
                              int(c["decor"][i]), generic)
        tracks = []
        for pos, j in enumerate(inv_l[bounds[i]:bounds[i + 1]]):
            tracks.append({"pos": pos, "artist_name": a_name[j], "track_uri": t_uri[j],
                           "artist_uri": a_uri[j], "track_name": t_name[j], "album_uri": al_uri[j],
                           "duration_ms": dur[j], "album_name": al_name[j]})
        pl = {
            "name": name,
            "collaborative": "true" if c["collab"][i] < params.collaborative_share else "false",
            "pid": start + i,
            "modified_at": int(c["modified_at"][i]),
            "num_tracks": int(lengths[i]),
            "num_albums": int(n_albums[i]),
            "num_followers": int(c["followers"][i]),
            "tracks": tracks,
            "num_edits": int(c["edits"][i]),
            "duration_ms": int(duration[i]),
            "num_artists": int(n_artists[i]),
        }
        if c["desc"][i] < params.description_share:
            template = _DESCRIPTIONS[int(c["name_pick"][i]) % len(_DESCRIPTIONS)]
            pl["description"] = template.format(cat.genre_labels[g1])
        playlists.append(pl)
    doc = {"info": {"generated_on": generated_on, "slice": f"{start}-{end}", "version": "v1"},
           "playlists": playlists}
    data = orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
    return data, {"owner": owner, "item": item, "g1": c["g1"], "g2": c["g2"]}


def _generated_on(seed: int) -> str:
    """A fixed, seed-derived timestamp in the MPD's ``generated_on`` format."""
    base = 1_512_290_502  # 2017-12-03 08:41:42 UTC, when the real MPD was generated
    stamp = base + (seed % 100_000) * 61
    us = (seed * 7_919) % 1_000_000
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(stamp)) + f".{us:06d}"
