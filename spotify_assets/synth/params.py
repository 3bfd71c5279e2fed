"""What shapes a generated dataset: :class:`SynthParams`, the scale presets and the seed's streams.

Every random draw of the generator comes from one seed, split into independent
:class:`numpy.random.SeedSequence` streams (the ``_S_*`` spawn keys below); playlists and
users are drawn in fixed-size blocks with one stream each, so the bytes written never
depend on how blocks are grouped into files.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from spotify_assets.synth.text import GENRES


@dataclass(frozen=True)
class SynthParams:
    """Everything that shapes the generated data (a scale preset plus overrides).

    Attributes
    ----------
    users, playlists : number of ENTP users and MPD playlists.
    slice_size : playlists per MPD slice file (1,000 in the real dataset).
    n_tracks : MPD catalogue size in distinct recordings; duplicate URIs come on top.
    n_songs : ENTP/MSD songs.
    n_artists : artists (shared by both sides; the MSD may spell them differently).
    n_genres : genre/mood clusters (at most ``len(GENRES)``).
    match_share : share of ENTP songs with an MPD counterpart.
    variant_share : share of matched songs whose MPD title is spelled differently.
    artist_variant_share : share of artists whose MSD name is spelled differently.
    duplicate_share : share of MPD recordings published under extra track URIs.
    remix_share : share of MPD-only recordings that are remixes of a matched song
        (same artist, title + " (… Remix)"; a *different* song, so never matched).
    in_genre_share : mean share of a user's / playlist's items drawn from its genres.
    second_genre_prob : probability that a user / playlist has a second genre.
    genre_zipf : Zipf exponent of genre popularity.
    head_size, head_share, head_zipf, tail_zipf, zipf_offset : popularity inside a genre is
        a mixture: ``head_share`` of the draws go to the ``head_size`` most popular MPD
        recordings of the genre with Zipf weights ``(rank + zipf_offset) ** -head_zipf``, the
        rest to all of them with the flatter ``tail_zipf``. A fixed-size head keeps the hit
        shares (most popular track, user-playlist overlap) the same at every catalogue size
        while the tail supplies the millions of rarely used tracks. ENTP songs use the same
        mixture over the same latent ranks, with the head scaled by ``n_songs / n_tracks``.
    user_songs_median, user_songs_mean : target distinct songs per user (lognormal).
    playlist_len_median, playlist_len_sigma : lognormal playlist length, clipped to 5–250.
    play_count_zipf : exponent of the (discrete Zipf) play-count distribution.
    description_share, collaborative_share : playlist field rates.
    mismatches : number of ``sid_mismatches.txt`` lines (0 = derived from ``n_songs``).
    latin1_lines : number of ``unique_tracks.txt`` lines written Latin-1 encoded.
    crlf : write ``song_data.csv`` with CRLF line endings.
    overlap_users, overlap_playlists : sample sizes for the overlap measurement.
    gzip_level : compression level used with ``gzip=True``.
    """

    users: int
    playlists: int
    slice_size: int
    n_tracks: int
    n_songs: int
    n_artists: int
    n_genres: int
    match_share: float = 0.40
    variant_share: float = 0.50
    artist_variant_share: float = 0.10
    duplicate_share: float = 0.06
    remix_share: float = 0.01
    in_genre_share: float = 0.85
    second_genre_prob: float = 0.40
    genre_zipf: float = 0.8
    head_size: int = 400
    head_share: float = 0.6
    head_zipf: float = 1.0
    tail_zipf: float = 0.6
    zipf_offset: float = 20.0
    user_songs_median: float = 27.0
    user_songs_mean: float = 48.0
    playlist_len_median: float = 49.0
    playlist_len_sigma: float = 0.82
    play_count_zipf: float = 2.3
    description_share: float = 0.03
    collaborative_share: float = 0.02
    mismatches: int = 0
    latin1_lines: int = 0
    crlf: bool = False
    overlap_users: int = 2000
    overlap_playlists: int = 5000
    gzip_level: int = 6

    def validate(self) -> None:
        """Raise ``ValueError`` for parameters the generator cannot honour."""
        if self.users < 1 or self.playlists < 1:
            raise ValueError("users and playlists must be >= 1")
        if not 1 <= self.slice_size:
            raise ValueError("slice_size must be >= 1")
        if not 1 <= self.n_genres <= len(GENRES):
            raise ValueError(f"n_genres must be in 1..{len(GENRES)}")
        if self.n_tracks < 10 * self.n_genres or self.n_songs < 10 * self.n_genres:
            raise ValueError("n_tracks and n_songs must be >= 10 per genre")
        if self.n_artists < self.n_genres:
            raise ValueError("n_artists must be >= n_genres")
        for name in ("match_share", "variant_share", "artist_variant_share", "duplicate_share",
                     "remix_share", "in_genre_share", "head_share", "second_genre_prob", "description_share",
                     "collaborative_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if round(self.match_share * self.n_songs) > self.n_tracks:
            raise ValueError("match_share * n_songs must not exceed n_tracks")
        if self.user_songs_mean <= self.user_songs_median:
            raise ValueError("user_songs_mean must exceed user_songs_median (lognormal)")
        if self.play_count_zipf <= 1.0:
            raise ValueError("play_count_zipf must be > 1")
        if not 0 <= self.gzip_level <= 9:
            raise ValueError("gzip_level must be in 0..9")


#: Scale presets. ``full`` matches the published MPD/ENTP shape.
SCALES: dict[str, SynthParams] = {
    # tiny and sample share one catalogue shape (per-genre depth decides the overlap density).
    "tiny": SynthParams(users=200, playlists=500, slice_size=250, n_tracks=80_000, n_songs=16_000,
                        n_artists=12_000, n_genres=50, head_share=0.45),
    # sample is committed: 500-playlist slices keep every file under 5 MB gzipped (a
    # 1,000-playlist slice is ~5.3 MB; 22-char random ids do not compress).
    "sample": SynthParams(users=2_000, playlists=5_000, slice_size=500, n_tracks=80_000,
                          n_songs=16_000, n_artists=12_000, n_genres=50, head_share=0.45,
                          gzip_level=9),
    "bench": SynthParams(users=100_000, playlists=100_000, slice_size=1_000, n_tracks=700_000,
                         n_songs=150_000, n_artists=90_000, n_genres=60),
    # Sized so that the *used* catalogue matches the published MPD: 2.15M recordings + duplicate
    # URIs ≈ 2.31M track URIs of which ≈2.26M occur in 66M rows; ≈296k of 310k artists occur.
    "full": SynthParams(users=1_000_000, playlists=1_000_000, slice_size=1_000,
                        n_tracks=2_150_000, n_songs=384_000, n_artists=310_000, n_genres=80),
}


def params_for(scale: str = "tiny", **overrides: object) -> SynthParams:
    """The preset for ``scale`` with ``overrides`` (any :class:`SynthParams` field) applied.

    Raises
    ------
    ValueError
        Unknown scale, unknown override name, or invalid resulting parameters.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {sorted(SCALES)}")
    names = {f.name for f in fields(SynthParams)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown synth parameter(s) {unknown}; known: {sorted(names)}")
    params = replace(SCALES[scale], **{k: v for k, v in overrides.items() if v is not None})
    params.validate()
    return params


# Fixed block sizes: each block has its own RNG stream, so output never depends on how
# blocks are grouped into files or processed.
PLAYLIST_BLOCK = 250
USER_BLOCK = 1_000

# Independent streams of the seed (SeedSequence spawn keys).
_S_CATALOGUE, _S_PLAYLISTS, _S_USERS, _S_IDS, _S_MSD = 0, 1, 2, 3, 4
