"""The Million Song Dataset metadata files: ``unique_tracks.txt``, ``song_data.csv``, ``sid_mismatches.txt``."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from spotify_assets.synth.catalogue import Catalogue
from spotify_assets.synth.ids import msd_ids
from spotify_assets.synth.params import _S_MSD, SynthParams
from spotify_assets.synth.writing import _csv_field, _write_bytes


def _write_msd(folder: Path, cat: Catalogue, params: SynthParams, seed: int,
               song_ids: list[str]) -> list[Path]:
    """``unique_tracks.txt``, ``song_data.csv`` and ``sid_mismatches.txt``."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_S_MSD,)))
    n = cat.n_songs
    # ~3 % of songs carry a second MSD track id (the MSD has a few such duplicates).
    extra = np.flatnonzero(rng.random(n) < 0.03)
    track_owner = np.r_[np.arange(n), extra]
    track_owner = track_owner[np.argsort(rng.random(track_owner.shape[0]), kind="stable")]
    tr_ids = msd_ids("TR", np.arange(track_owner.shape[0]), seed)
    first_tr = np.full(n, -1, np.int64)
    first_tr[track_owner[::-1]] = np.arange(track_owner.shape[0])[::-1]
    msd_artist = [cat.artist_msd_name[a] for a in cat.rec_artist[cat.song_rec].tolist()]
    lines: list[str] = []
    for t, s in enumerate(track_owner.tolist()):
        lines.append(f"{tr_ids[t]}<SEP>{song_ids[s]}<SEP>{msd_artist[s]}<SEP>{cat.song_title[s]}")
    # Latin-1 lines: some copies of the file are not UTF-8.
    latin1 = set()
    if params.latin1_lines:
        candidates = [i for i, line in enumerate(lines) if not line.isascii() and _latin1_ok(line)]
        if candidates:
            pick = rng.choice(len(candidates), size=min(params.latin1_lines, len(candidates)), replace=False)
            latin1 = {candidates[i] for i in pick.tolist()}
    buf = io.BytesIO()
    for i, line in enumerate(lines):
        buf.write((line + "\n").encode("latin-1" if i in latin1 else "utf-8"))
    written = [_write_bytes(folder / "unique_tracks.txt", buf.getvalue())]

    eol = "\r\n" if params.crlf else "\n"
    out = ["song_id,title,release,artist_name,year"]
    for s in np.argsort(rng.random(n), kind="stable").tolist():
        out.append(",".join([song_ids[s], _csv_field(cat.song_title[s]), _csv_field(cat.song_release[s]),
                             _csv_field(msd_artist[s]), str(int(cat.song_year[s]))]))
    written.append(_write_bytes(folder / "song_data.csv", (eol.join(out) + eol).encode("utf-8")))

    mis_lines = []
    for s in np.flatnonzero(cat.song_mismatch >= 0).tolist():
        other = int(cat.song_mismatch[s])
        mis_lines.append(f"ERROR: <{song_ids[s]} {tr_ids[first_tr[s]]}> {msd_artist[s]}  -  {cat.song_title[s]}"
                         f"  !=  {msd_artist[other]}  -  {cat.song_title[other]}")
    written.append(_write_bytes(folder / "sid_mismatches.txt", ("\n".join(mis_lines) + "\n").encode("utf-8")))
    return written


def _latin1_ok(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True
