"""Deterministic generator of byte-compatible stand-ins for the public input datasets.

The real Million Playlist Dataset (MPD), Echo Nest Taste Profile (ENTP) and Million Song
Dataset (MSD) metadata cannot be downloaded here, so this package writes files in exactly
their published layouts (listed below) with realistic statistics:

* genre/mood clusters: every user and playlist draws most of its items from one or two
  genres, and playlist names hint the genre ("chill vibes", "workout", "country roads");
* Zipf-like popularity inside each genre and across genres (the most popular track is in
  a few percent of playlists);
* user distinct-song counts with median ≈27 and mean ≈48, heavy-tailed play counts;
* playlists of 5–250 tracks, mean ≈66;
* a configurable share (default 40 %) of ENTP songs with an MPD counterpart, often under
  a variant spelling (" - Radio Edit", " (feat. X)", " - Remastered 2011", case, accents,
  extra inner spaces), and some songs under several MPD track URIs;
* *sparse* user-playlist overlap (a few percent of pairs share a song), measured and
  reported in ``truth/summary.json``.

Everything is derived from one seed: the catalogue (genres, artists, recordings, tracks,
songs) from one stream, each fixed-size block of playlists and of users from its own
:class:`numpy.random.SeedSequence` child, so the bytes written depend only on the seed and
the parameters, never on the clock or on how the work is chunked into files. Playlists
and users are streamed block by block; only the catalogue (numpy arrays and one string per
recording/artist/album) is held in memory.

Layout written under ``out``::

    mpd/mpd.slice.<start>-<end>.json[.gz]   Spotify MPD slices (pretty-printed JSON)
    entp/train_triplets.txt[.gz]            user_id \\t song_id \\t play_count
    msd/unique_tracks.txt                   track_id<SEP>song_id<SEP>artist_name<SEP>title
    msd/song_data.csv                       song_id,title,release,artist_name,year
    msd/sid_mismatches.txt                  ERROR: <SO… TR…> Artist  -  Title  !=  Artist  -  Title
    truth/                                  ground truth for tests (not part of the datasets)

Command line::

    python -m spotify_assets.synth --scale sample --seed 0 --out data/raw --gzip

Modules (each imports only the ones listed before it)::

    text        genre vocabulary, title/artist/album names, spelling variants
    params      SynthParams, the scale presets, block sizes and seed streams
    ids         Spotify URIs, MSD ids and ENTP user ids (bijective hashes of indices)
    catalogue   build_catalogue: genres, artists, recordings, tracks, songs, popularity
    population  playlists and users: genres, lengths, distinct items, play counts
    writing     atomic (gzip) file writers, TSV/CSV encoding, stale-file removal
    mpd         MPD slice JSON
    msd         MSD metadata files
    truth       truth/ files for tests
    summary     SynthSummary and the measured statistics
    generator   generate: the driver that streams everything to disk
    cli         main: the command line (``__main__`` runs it)
"""

from __future__ import annotations

from spotify_assets.synth.cli import main
from spotify_assets.synth.generator import generate
from spotify_assets.synth.params import SCALES, SynthParams, params_for
from spotify_assets.synth.summary import SynthSummary
from spotify_assets.synth.text import VARIANT_NAMES, strip_accents

__all__ = [
    "SCALES",
    "SynthParams",
    "SynthSummary",
    "VARIANT_NAMES",
    "generate",
    "main",
    "params_for",
    "strip_accents",
]
