"""The catalogue: genres, artists, recordings, MPD tracks, ENTP/MSD songs and their popularity.

:func:`build_catalogue` draws everything that playlists and users later pick from, from
one seed stream, as numpy arrays plus one string per recording, artist and album;
:class:`_Sampler` turns the popularity weights into fast per-genre draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from spotify_assets.synth.params import _S_CATALOGUE, SynthParams
from spotify_assets.synth.text import (
    _ALBUM_EXTRA,
    _VARIANT_WEIGHTS,
    ARTIST_VARIANT_NAMES,
    GENRES,
    VARIANT_NAMES,
    _artist_strings,
    _artist_variant,
    _title_capacity,
    _title_codes,
    _title_strings,
    _title_variant,
    _two_words,
)


def _zipf_weights(rank: np.ndarray, exponent: float, offset: float) -> np.ndarray:
    return (rank.astype(np.float64) + 1.0 + offset) ** -exponent


def _popularity(genre: np.ndarray, rank: np.ndarray, n_genres: int, head_size: int,
                params: SynthParams) -> np.ndarray:
    """Within-genre popularity (sums to 1 per genre): fixed-size Zipf head + flat Zipf tail."""
    head = np.where(rank < head_size, _zipf_weights(rank, params.head_zipf, params.zipf_offset), 0.0)
    tail = _zipf_weights(rank, params.tail_zipf, params.zipf_offset)
    head /= np.bincount(genre, weights=head, minlength=n_genres)[genre]
    tail /= np.bincount(genre, weights=tail, minlength=n_genres)[genre]
    return params.head_share * head + (1.0 - params.head_share) * tail


def _rank_within(groups: np.ndarray, order_key: np.ndarray) -> np.ndarray:
    """0-based rank of each element inside its group, by ascending ``order_key``."""
    order = np.lexsort((order_key, groups))
    g_sorted = groups[order]
    starts = np.r_[0, np.flatnonzero(g_sorted[1:] != g_sorted[:-1]) + 1]
    counts = np.diff(np.r_[starts, g_sorted.shape[0]])
    rank_sorted = np.arange(g_sorted.shape[0]) - np.repeat(starts, counts)
    rank = np.empty_like(rank_sorted)
    rank[order] = rank_sorted
    return rank


@dataclass
class _Sampler:
    """Weighted draws of catalogue items inside one genre or across all genres.

    ``order`` lists item ids grouped by genre; ``cum`` holds ``genre + within-genre
    cumulative share`` so one ``searchsorted`` serves every genre at once.
    """

    order: np.ndarray
    start: np.ndarray
    cum: np.ndarray
    gcum: np.ndarray
    n_items: int

    @classmethod
    def build(cls, genre: np.ndarray, weight: np.ndarray, genre_weight: np.ndarray,
              rank: np.ndarray | None = None) -> "_Sampler":
        """``rank`` orders items inside a genre (default: by id), so that a draw's uniform
        ``u`` maps monotonically onto that order."""
        key = rank if rank is not None else np.arange(genre.shape[0])
        order = np.lexsort((key, genre))
        g = genre[order]
        n_genres = genre_weight.shape[0]
        start = np.searchsorted(g, np.arange(n_genres + 1))
        if np.any(np.diff(start) == 0):
            raise ValueError("every genre needs at least one item")
        w = weight[order]
        gsum = np.bincount(g, weights=w, minlength=n_genres)
        within = np.empty_like(w)
        cum = np.empty_like(w)
        for gi in range(n_genres):
            s, e = start[gi], start[gi + 1]
            c = np.cumsum(w[s:e]) / gsum[gi]
            c[-1] = 1.0
            cum[s:e] = gi + c
            within[s:e] = w[s:e] / gsum[gi]
        gw = within * (genre_weight / genre_weight.sum())[g]
        gcum = np.cumsum(gw)
        gcum /= gcum[-1]
        return cls(order=order.astype(np.int64), start=start, cum=cum, gcum=gcum,
                   n_items=int(genre.shape[0]))

    def draw(self, genre: np.ndarray, u: np.ndarray) -> np.ndarray:
        """One item per draw: inside ``genre`` where it is >= 0, else from the global mix."""
        out = np.empty(genre.shape[0], np.int64)
        local = genre >= 0
        if local.any():
            g = genre[local]
            pos = np.searchsorted(self.cum, g + u[local], side="right")
            pos = np.clip(pos, self.start[g], self.start[g + 1] - 1)
            out[local] = self.order[pos]
        if (~local).any():
            pos = np.minimum(np.searchsorted(self.gcum, u[~local], side="right"), self.order.shape[0] - 1)
            out[~local] = self.order[pos]
        return out


@dataclass
class Catalogue:
    """Genres, artists, recordings, MPD tracks and ENTP/MSD songs (arrays + strings)."""

    genre_labels: list[str]
    genre_weight: np.ndarray
    # artists
    artist_name: list[str]
    artist_msd_name: list[str]
    artist_variant: np.ndarray
    artist_genre: np.ndarray
    # recordings (one per distinct song/recording)
    rec_title: list[str]
    rec_artist: np.ndarray
    rec_genre: np.ndarray
    # MPD tracks (URIs); duplicates point to the same recording
    track_rec: np.ndarray
    track_name: list[str]
    track_variant: np.ndarray
    track_is_dup: np.ndarray
    track_album: np.ndarray
    track_duration: np.ndarray
    track_song: np.ndarray  # ENTP song index or -1
    album_name: list[str]
    # songs (ENTP/MSD)
    song_rec: np.ndarray
    song_title: list[str]
    song_release: list[str]
    song_year: np.ndarray
    song_track: np.ndarray  # base MPD track index or -1
    song_mismatch: np.ndarray  # index of the wrong song it is confused with, or -1
    track_sampler: _Sampler
    song_sampler: _Sampler
    dup_groups: list[np.ndarray] = field(default_factory=list)

    @property
    def n_tracks(self) -> int:
        return int(self.track_rec.shape[0])

    @property
    def n_songs(self) -> int:
        return int(self.song_rec.shape[0])


def _give_every_artist_a_recording(rng: np.random.Generator, rec_artist: np.ndarray,
                                   rec_genre: np.ndarray, artist_genre: np.ndarray) -> None:
    """Reassign (in place) one recording of a prolific artist of the same genre to each
    artist that drew none, so the artist count of the catalogue is what was asked for."""
    n_art = artist_genre.shape[0]
    count = np.bincount(rec_artist, minlength=n_art)
    for g in np.unique(artist_genre[count == 0]).tolist():
        idle = np.flatnonzero((count == 0) & (artist_genre == g))
        # recordings whose artist keeps at least one other recording after giving one away
        donors = np.flatnonzero((rec_genre == g) & (count[rec_artist] >= 2))
        donors = donors[rng.permutation(donors.shape[0])]
        taken = np.zeros(n_art, np.int64)
        given = 0
        for r in donors.tolist():
            if given == idle.shape[0]:
                break
            a = rec_artist[r]
            if count[a] - taken[a] >= 2:
                taken[a] += 1
                rec_artist[r] = idle[given]
                given += 1
        count -= taken
        count[idle[:given]] = 1


def build_catalogue(params: SynthParams, seed: int) -> Catalogue:
    """Build genres, artists, recordings, tracks and songs for ``params`` (deterministic)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_S_CATALOGUE,)))
    G = params.n_genres
    # The first G genres of the table (pop, chill, workout, country, throwbacks, ...).
    genre_labels = [GENRES[i][0] for i in range(G)]
    # Genre popularity follows the table order (pop, chill, workout, country, ...).
    genre_weight = _zipf_weights(np.arange(G), params.genre_zipf, 1.0)
    genre_weight /= genre_weight.sum()
    # Catalogue size per genre grows slower than popularity (niche genres are deep too).
    genre_size_share = genre_weight**0.5 / (genre_weight**0.5).sum()

    # Artists: genre by size share, at least one per genre.
    n_art = params.n_artists
    artist_genre = np.r_[np.arange(G), rng.choice(G, size=n_art - G, p=genre_size_share)]
    artist_genre = artist_genre[rng.permutation(n_art)]
    artist_name = _artist_strings(rng, n_art)
    artist_variant = np.where(rng.random(n_art) < params.artist_variant_share,
                              rng.integers(1, len(ARTIST_VARIANT_NAMES), n_art), 0).astype(np.int8)
    artist_msd_name = [_artist_variant(n, int(k)) if k else n
                       for n, k in zip(artist_name, artist_variant.tolist())]
    artist_variant[[i for i, (a, b) in enumerate(zip(artist_name, artist_msd_name)) if a == b]] = 0
    # Artist popularity inside its genre (who gets many recordings).
    artist_rank = _rank_within(artist_genre, rng.random(n_art))
    artist_weight = _zipf_weights(artist_rank, 1.0, 2.0)

    # Recordings: matched (MPD+ENTP), ENTP-only, MPD-only.
    n_matched = int(round(params.match_share * params.n_songs))
    n_rec = params.n_tracks + params.n_songs - n_matched
    if n_rec > _title_capacity():
        raise ValueError(f"{n_rec} recordings exceed the title space ({_title_capacity()})")
    rec_genre = np.r_[np.arange(G), np.arange(G), rng.choice(G, size=n_rec - 2 * G, p=genre_size_share)]
    rec_genre = rec_genre[rng.permutation(n_rec)].astype(np.int32)
    rec_role = np.empty(n_rec, np.int8)  # 0 matched, 1 ENTP only, 2 MPD only
    perm = rng.permutation(n_rec)
    rec_role[perm[:n_matched]] = 0
    rec_role[perm[n_matched:params.n_songs]] = 1
    rec_role[perm[params.n_songs:]] = 2
    # Both samplers need every genre: a genre without a matched recording swaps roles with
    # a matched recording of the largest genre (counts per role are unchanged).
    biggest = int(np.argmax(np.bincount(rec_genre, minlength=G)))
    for g in range(G):
        in_g = np.flatnonzero(rec_genre == g)
        if not np.any(rec_role[in_g] == 0):
            donors = np.flatnonzero((rec_role == 0) & (rec_genre == biggest))
            rec_role[donors[0]], rec_role[in_g[0]] = rec_role[in_g[0]], 0
    # Latent popularity inside the genre (smaller = more popular), shared by both sides so
    # the ENTP head and the MPD head are the same songs, as in reality.
    latent = rng.random(n_rec)
    # Artist of each recording, weighted by artist popularity inside the genre; 70 % of the
    # recordings follow popularity (hits belong to the popular artists, so playlists repeat
    # artists and albums as real ones do: ~0.6 artists and ~0.75 albums per track).
    rec_q = _rank_within(rec_genre, latent) / np.bincount(rec_genre, minlength=G)[rec_genre]
    u = np.clip(rec_q + rng.normal(0.0, 0.02, n_rec), 0.0, 1.0 - 1e-12)
    u = np.where(rng.random(n_rec) < 0.3, rng.random(n_rec), u)
    art_sampler = _Sampler.build(artist_genre, artist_weight, np.ones(G), rank=artist_rank)
    rec_artist = art_sampler.draw(rec_genre.astype(np.int64), u)
    rec_title = _title_strings(_title_codes(rng, n_rec))
    # Remixes: a few MPD-only recordings become "<matched title> (… Remix)" by the same artist.
    mpd_only = np.flatnonzero(rec_role == 2)
    matched = np.flatnonzero(rec_role == 0)
    n_remix = min(int(round(params.remix_share * mpd_only.shape[0])), matched.shape[0])
    if n_remix:
        remix = rng.choice(mpd_only, size=n_remix, replace=False)
        source = rng.choice(matched, size=n_remix, replace=False)
        kinds = rng.integers(0, 3, n_remix)
        for r, s, k in zip(remix.tolist(), source.tolist(), kinds.tolist()):
            who = artist_name[int(rng.integers(n_art))]
            suffix = (" (Remix)", f" ({who} Remix)", " (Club Remix)")[k]  # bracketed: a different song
            rec_title[r] = rec_title[s] + suffix
            rec_artist[r] = rec_artist[s]
            rec_genre[r] = rec_genre[s]

    _give_every_artist_a_recording(rng, rec_artist, rec_genre, artist_genre)

    # ---- MPD tracks: one per MPD recording plus duplicate URIs -------------------------
    mpd_recs = np.flatnonzero(rec_role != 1)
    n_base = mpd_recs.shape[0]
    n_dup_recs = int(round(params.duplicate_share * n_base))
    dup_recs = rng.choice(mpd_recs, size=n_dup_recs, replace=False)
    dup_copies = 1 + (rng.random(n_dup_recs) < 0.25).astype(np.int64)
    dup_rec_rep = np.repeat(dup_recs, dup_copies)
    track_rec = np.r_[mpd_recs, dup_rec_rep].astype(np.int64)
    n_trk = track_rec.shape[0]
    track_is_dup = np.r_[np.zeros(n_base, bool), np.ones(dup_rec_rep.shape[0], bool)]
    track_genre = rec_genre[track_rec]
    # MPD popularity: Zipf over the latent rank among MPD recordings of the genre; the
    # duplicates share their recording's weight (the original keeps most of it).
    base_rank = _rank_within(rec_genre[mpd_recs], latent[mpd_recs])
    rec_wt = np.zeros(n_rec)
    rec_wt[mpd_recs] = _popularity(rec_genre[mpd_recs], base_rank, G, params.head_size, params)
    dup_share = rng.uniform(0.1, 0.5, dup_rec_rep.shape[0])
    track_weight = rec_wt[track_rec].copy()
    track_weight[n_base:] *= dup_share / dup_copies.repeat(dup_copies)
    base_of = np.full(n_rec, -1, np.int64)
    base_of[mpd_recs] = np.arange(n_base)
    share_taken = np.zeros(n_base)
    np.add.at(share_taken, base_of[dup_rec_rep], dup_share / dup_copies.repeat(dup_copies))
    track_weight[:n_base] *= 1.0 - share_taken

    # ---- songs (ENTP/MSD) --------------------------------------------------------------
    song_rec = np.flatnonzero(rec_role != 2)
    song_rec = song_rec[rng.permutation(song_rec.shape[0])]
    n_song = song_rec.shape[0]
    song_rank = _rank_within(rec_genre[song_rec], latent[song_rec])
    song_head = max(1, round(params.head_size * params.n_songs / params.n_tracks))
    song_weight = _popularity(rec_genre[song_rec], song_rank, G, song_head, params)
    rec_song = np.full(n_rec, -1, np.int64)
    rec_song[song_rec] = np.arange(n_song)
    track_song = rec_song[track_rec]
    song_track = np.full(n_song, -1, np.int64)
    matched_tracks = np.flatnonzero(track_song[:n_base] >= 0)
    song_track[track_song[matched_tracks]] = matched_tracks

    # ---- spelling variants --------------------------------------------------------------
    p = _VARIANT_WEIGHTS / _VARIANT_WEIGHTS.sum()
    track_variant = np.zeros(n_trk, np.int8)
    is_matched_track = track_song >= 0
    pick = is_matched_track & (rng.random(n_trk) < params.variant_share)
    track_variant[pick] = rng.choice(len(VARIANT_NAMES), size=int(pick.sum()), p=p)
    # MSD-side variants (accents stripped in the MSD, feat. in the MSD title) belong to the
    # song; a duplicate URI gets an MPD-side suffix instead.
    track_variant[track_is_dup & np.isin(track_variant, (5, 8))] = 1
    # Duplicates of MPD-only recordings also get a suffix half of the time (compilations).
    dup_only = track_is_dup & ~is_matched_track & (rng.random(n_trk) < 0.5)
    track_variant[dup_only] = rng.choice([1, 3, 7], size=int(dup_only.sum()))
    years = rng.integers(1995, 2017, n_trk)
    feat_artist = rng.integers(0, n_art, n_trk)
    track_name = [rec_title[r] for r in track_rec.tolist()]
    song_title = [rec_title[r] for r in song_rec.tolist()]
    song_title_variant = np.zeros(n_song, np.int8)  # MSD-side spelling change, by kind
    for t in np.flatnonzero(track_variant).tolist():  # base tracks come first
        if track_is_dup[t] and track_song[t] >= 0 and song_title_variant[track_song[t]]:
            # The MSD already spells this song differently: the duplicate keeps the plain
            # title so every pair differs in one way only (its label stays unambiguous).
            track_variant[t] = 0
            continue
        mpd_title, msd_title, kind = _title_variant(track_name[t], int(track_variant[t]),
                                                    artist_name[int(feat_artist[t])], int(years[t]))
        track_variant[t] = kind
        track_name[t] = mpd_title
        if msd_title != rec_title[track_rec[t]]:
            song_title[track_song[t]] = msd_title
            song_title_variant[track_song[t]] = track_variant[t]
    # The pair label: the MPD-side change, else the song's MSD-side change.
    pair_variant = np.where((track_variant == 0) & (track_song >= 0),
                            song_title_variant[np.maximum(track_song, 0)], track_variant).astype(np.int8)

    # ---- albums -------------------------------------------------------------------------
    # Base tracks: consecutive runs of each artist's tracks by popularity (4-14 per album),
    # so an artist's hits tend to share an album.
    t_art = rec_artist[track_rec[:n_base]]
    order = np.lexsort((latent[track_rec[:n_base]], t_art))
    a_sorted = t_art[order]
    pos_in_artist = _rank_within(a_sorted, np.arange(n_base))
    album_len = rng.integers(4, 15, n_art)
    local_album = pos_in_artist // album_len[a_sorted]
    new_album = np.r_[True, (a_sorted[1:] != a_sorted[:-1]) | (local_album[1:] != local_album[:-1])]
    album_sorted = np.cumsum(new_album) - 1
    track_album = np.empty(n_trk, np.int64)
    track_album[order] = album_sorted
    n_base_albums = int(album_sorted[-1]) + 1 if n_base else 0
    # Duplicates: each on its own single / compilation / deluxe album.
    track_album[n_base:] = n_base_albums + np.arange(n_trk - n_base)
    n_album = n_base_albums + (n_trk - n_base)
    album_first_track = np.full(n_album, -1, np.int64)
    album_first_track[track_album[::-1]] = np.arange(n_trk)[::-1]
    # Album names: the title track, the artist's name (self-titled) or two words; extra
    # albums of duplicates: the single's title or a compilation name.
    album_kind = rng.random(n_album)
    album_words = _two_words(rng, n_album)
    album_extra = rng.integers(0, len(_ALBUM_EXTRA), n_album)
    album_name: list[str] = []
    for a, (t, k, words, extra) in enumerate(zip(album_first_track.tolist(), album_kind.tolist(),
                                                  album_words, album_extra.tolist())):
        title = rec_title[track_rec[t]]
        if a >= n_base_albums:
            name = _ALBUM_EXTRA[extra]
            if name == "The Best Of":
                name = f"The Best Of {artist_name[int(rec_artist[track_rec[t]])]}"
            album_name.append(title if k < 0.4 else name)
        elif k < 0.45:
            album_name.append(title)
        elif k < 0.52:
            album_name.append(artist_name[int(rec_artist[track_rec[t]])])
        else:
            album_name.append(words)
    track_duration = np.clip(rng.lognormal(math.log(215_000), 0.28, n_trk), 30_000, 1_200_000).astype(np.int64)
    track_duration[n_base:] = track_duration[base_of[dup_rec_rep]] + rng.integers(-3000, 3000, n_trk - n_base)

    # ---- MSD extras ---------------------------------------------------------------------
    # MSD release: the MPD album of a matched song, else a made-up album name.
    song_release = [album_name[int(track_album[t])] if t >= 0 else words
                    for t, words in zip(song_track.tolist(), _two_words(rng, n_song))]
    song_year = np.where(rng.random(n_song) < 0.45, 0, rng.integers(1955, 2011, n_song)).astype(np.int64)
    n_mis = params.mismatches or max(3, n_song // 500)
    n_mis = min(n_mis, n_song // 2)
    song_mismatch = np.full(n_song, -1, np.int64)
    mis = rng.choice(n_song, size=n_mis, replace=False)
    song_mismatch[mis] = (mis + 1 + rng.integers(0, n_song - 1, n_mis)) % n_song

    # Groups of track URIs that are the same recording.
    srt = np.argsort(track_rec, kind="stable")
    rs = track_rec[srt]
    bounds = np.r_[0, np.flatnonzero(rs[1:] != rs[:-1]) + 1, n_trk]
    multi = np.flatnonzero(np.diff(bounds) > 1)
    dup_groups = [srt[bounds[i]:bounds[i + 1]] for i in multi.tolist()]

    track_sampler = _Sampler.build(track_genre, track_weight, genre_weight)
    song_sampler = _Sampler.build(rec_genre[song_rec], song_weight, genre_weight)
    return Catalogue(
        genre_labels=genre_labels, genre_weight=genre_weight,
        artist_name=artist_name, artist_msd_name=artist_msd_name, artist_variant=artist_variant,
        artist_genre=artist_genre,
        rec_title=rec_title, rec_artist=rec_artist, rec_genre=rec_genre,
        track_rec=track_rec, track_name=track_name, track_variant=pair_variant,
        track_is_dup=track_is_dup, track_album=track_album, track_duration=track_duration,
        track_song=track_song, album_name=album_name,
        song_rec=song_rec, song_title=song_title, song_release=song_release, song_year=song_year,
        song_track=song_track, song_mismatch=song_mismatch,
        track_sampler=track_sampler, song_sampler=song_sampler, dup_groups=dup_groups,
    )
