"""Deterministic generator of byte-compatible stand-ins for the public input datasets.

The real Million Playlist Dataset (MPD), Echo Nest Taste Profile (ENTP) and Million Song
Dataset (MSD) metadata cannot be downloaded here, so this module writes files in exactly
their published layouts (DESIGN §1) with realistic statistics:

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
"""

from __future__ import annotations

import argparse
import gzip as _gzip
import io
import json
import math
import os
import sys
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import IO

import numpy as np
import orjson
import scipy.sparse as sp

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

# --------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------


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

# --------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------

#: (label, playlist names hinting the genre). Names are unique across genres.
GENRES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pop", ("pop", "pop hits", "top 40", "pop bangers")),
    ("chill", ("chill vibes", "chill", "relax", "lazy sunday", "chillin")),
    ("workout", ("workout", "gym", "running", "pump up", "cardio")),
    ("country", ("country roads", "country", "honky tonk", "backroads")),
    ("throwbacks", ("throwbacks", "throwback jams", "old school", "nostalgia")),
    ("hip hop", ("hip hop", "rap", "bars", "hip hop hits")),
    ("rock", ("rock", "classic rock", "rock n roll", "guitar heroes")),
    ("indie", ("indie", "indie vibes", "indie mix", "hipster")),
    ("edm", ("edm", "rave", "festival", "bass drops")),
    ("r&b", ("r&b", "rnb", "slow jams", "smooth r&b")),
    ("latin", ("latin", "reggaeton", "fiesta latina", "latino")),
    ("jazz", ("jazz", "jazz night", "smooth jazz", "jazzy")),
    ("classical", ("classical", "piano", "orchestra", "mozart & co")),
    ("metal", ("metal", "heavy metal", "headbang", "mosh pit")),
    ("party", ("party", "party time", "pregame", "turn up")),
    ("sad", ("sad", "sad songs", "heartbreak", "feels")),
    ("love", ("love songs", "love", "romance", "date night")),
    ("christmas", ("christmas", "xmas", "holiday", "winter wonderland")),
    ("worship", ("worship", "gospel", "praise", "sunday service")),
    ("summer", ("summer", "summer vibes", "beach", "sunshine")),
    ("road trip", ("road trip", "roadtrip", "drive", "car songs")),
    ("sleep", ("sleep", "bedtime", "lullabies", "night night")),
    ("punk", ("punk", "pop punk", "punk rock", "skate punk")),
    ("emo", ("emo", "emo nite", "emo forever", "scene")),
    ("folk", ("folk", "indie folk", "folksy", "campfire")),
    ("blues", ("blues", "delta blues", "blues night", "bluesy")),
    ("soul", ("soul", "soulful", "neo soul", "old soul")),
    ("funk", ("funk", "funky", "groove", "get down")),
    ("reggae", ("reggae", "island vibes", "roots reggae", "irie")),
    ("disco", ("disco", "disco fever", "boogie", "studio 54")),
    ("house", ("house", "deep house", "house music", "tech house")),
    ("techno", ("techno", "berlin", "warehouse", "minimal")),
    ("dubstep", ("dubstep", "wubs", "brostep", "drops")),
    ("trap", ("trap", "trap music", "trap bangers", "lit")),
    ("k-pop", ("kpop", "k-pop", "bias", "idols")),
    ("90s", ("90s", "90's", "nineties", "90s kids")),
    ("80s", ("80s", "80's", "eighties", "80s hits")),
    ("2000s", ("2000s", "00s", "early 2000s", "y2k")),
    ("70s", ("70s", "70's", "seventies", "groovy 70s")),
    ("disney", ("disney", "disney jams", "princess songs", "disney channel")),
    ("broadway", ("broadway", "musicals", "show tunes", "hamilton")),
    ("soundtrack", ("soundtrack", "movie music", "film scores", "ost")),
    ("lofi", ("lofi", "lo-fi beats", "lofi hip hop", "beats to relax")),
    ("acoustic", ("acoustic", "unplugged", "acoustic covers", "coffeehouse")),
    ("alternative", ("alternative", "alt rock", "alternative rock", "modern rock")),
    ("grunge", ("grunge", "seattle", "flannel", "90s grunge")),
    ("ska", ("ska", "ska punk", "skank", "third wave")),
    ("bluegrass", ("bluegrass", "banjo", "mountain music", "appalachia")),
    ("americana", ("americana", "alt country", "heartland", "dust")),
    ("motown", ("motown", "oldies", "doo wop", "60s soul")),
    ("afrobeats", ("afrobeats", "afro", "naija", "afrobeat")),
    ("dancehall", ("dancehall", "riddim", "bashment", "yardie")),
    ("bachata", ("bachata", "merengue", "bachata romantica", "dominicana")),
    ("j-pop", ("jpop", "anime", "j-pop", "anisong")),
    ("kids", ("kids", "kids songs", "family", "children")),
    ("rainy day", ("rainy day", "rain", "cloudy", "gloomy")),
    ("study", ("study", "studying", "focus", "homework")),
    ("coffee", ("coffee", "morning coffee", "cafe", "brunch")),
    ("wedding", ("wedding", "first dance", "reception", "bridal")),
    ("cleaning", ("cleaning", "chores", "clean the house", "tidy")),
    ("karaoke", ("karaoke", "sing along", "singalong", "belt it")),
    ("hardcore", ("hardcore", "metalcore", "breakdowns", "hxc")),
    ("screamo", ("screamo", "post-hardcore", "scream", "warped tour")),
    ("synthwave", ("synthwave", "retrowave", "outrun", "neon nights")),
    ("trance", ("trance", "uplifting trance", "trance anthems", "euphoria")),
    ("drum and bass", ("drum and bass", "dnb", "jungle", "liquid")),
    ("ambient", ("ambient", "soundscapes", "drone", "atmospheric")),
    ("instrumental", ("instrumental", "no lyrics", "instrumentals", "post rock")),
    ("gaming", ("gaming", "video game music", "gamer", "boss battle")),
    ("spanish", ("en español", "spanish", "musica", "mix latino")),
    ("french", ("french", "chanson", "paris", "musique")),
    ("german", ("german", "deutsch", "schlager", "deutschrap")),
    ("italian", ("italian", "italia", "canzoni", "amore")),
    ("brazil", ("brazil", "bossa nova", "samba", "brasil")),
    ("tropical", ("tropical", "tropical house", "island", "paradise")),
    ("halloween", ("halloween", "spooky", "creepy", "scary")),
    ("girl power", ("girl power", "queens", "boss", "divas")),
    ("bro country", ("bro country", "tailgate", "truck", "beer")),
    ("chillhop", ("chillhop", "jazzhop", "late night beats", "study beats")),
    ("oldies", ("50s", "60s", "golden oldies", "classics")),
    ("festival", ("coachella", "lollapalooza", "bonnaroo", "glasto")),
    ("throwback rap", ("old school rap", "90s rap", "golden era", "boom bap")),
    ("yoga", ("yoga", "meditation", "zen", "mindfulness")),
    ("motivation", ("motivation", "hype", "get hyped", "beast mode")),
    ("sunset", ("sunset", "golden hour", "dusk", "evening")),
    ("late night", ("late night", "3am", "after hours", "night drive")),
    ("dance", ("dance", "dance party", "dancing", "dance floor")),
    ("sexy", ("sexy", "baby making", "bedroom", "sensual")),
    ("shower", ("shower", "shower songs", "shower jams", "bathroom")),
    ("gym rap", ("gym rap", "lifting", "deadlift", "gains")),
    ("country love", ("country love", "country love songs", "cowboy romance", "barn dance")),
    ("grime", ("grime", "uk rap", "drill", "uk drill")),
    ("garage", ("uk garage", "2 step", "garage", "speed garage")),
    ("swing", ("swing", "big band", "lindy", "crooners")),
    ("opera", ("opera", "arias", "bel canto", "operatic")),
    ("new wave", ("new wave", "synthpop", "post punk", "darkwave")),
    ("psychedelic", ("psychedelic", "psych", "trippy", "acid")),
    ("shoegaze", ("shoegaze", "dream pop", "reverb", "wall of sound")),
    ("singer songwriter", ("singer songwriter", "songwriters", "storytellers", "troubadour")),
)

#: Names with no genre hint (real MPD has plenty of these).
_GENERIC_NAMES = ("my playlist", "songs", "new playlist", "favorites", "mix", "music", "good stuff",
                  "jams", "car", "stuff", "random", "liked", "playlist", "faves", "tunes")
_NAME_DECOR = ("", "", "", "", "", " 🔥", " ☀️", " 🎶", "!!", " 2017", " 2016", " mix", "  ")
_DESCRIPTIONS = ("songs for {}", "my {} playlist", "{} all day", "the best {} songs", "{}. enough said.")

_TITLE_A = ("", "Oh,", "Hey,", "Baby,", "My", "Your", "Our", "This", "That", "No More",
            "Don't Stop", "Take Me to the", "Beyond the", "Into the", "Dancing in the",
            "Lost in the", "Say Hello to the", "Never Mind the", "Waiting for the", "I Love the")
_TITLE_B = ("", "Golden", "Silver", "Electric", "Broken", "Burning", "Wild", "Lonely", "Crazy",
            "Sweet", "Blue", "Red", "Midnight", "Summer", "Winter", "Neon", "Silent", "Hollow",
            "Falling", "Velvet", "Crystal", "Paper", "Stone", "Secret", "Endless", "Little", "Big",
            "Dirty", "Pretty", "Lazy", "Holy", "Cosmic", "Faded", "Frozen", "Heavy", "Easy", "Dark",
            "Bright", "Slow", "Fast", "Lucky", "Savage", "Tender", "Restless", "Sunday", "Friday",
            "Cold", "Hot", "Bitter", "Naïve")
_TITLE_C = ("Heart", "River", "Night", "Fire", "Rain", "Dream", "Road", "Love", "Light", "Sky",
            "Moon", "Sun", "Stars", "Ocean", "City", "Girl", "Boy", "World", "Home", "Time",
            "Soul", "Mind", "Eyes", "Hands", "Kiss", "Dance", "Song", "Heaven", "Paradise", "Angel",
            "Ghost", "Shadow", "Thunder", "Lightning", "Storm", "Wind", "Summertime", "Morning",
            "Evening", "Sunrise", "Sunset", "Highway", "Train", "Car", "Bridge", "Garden", "Rose",
            "Diamond", "Gold", "Money", "Queen", "King", "Child", "Mother", "Father", "Brother",
            "Sister", "Friend", "Lover", "Stranger", "Hero", "Villain", "Devil", "Saint", "Sinner",
            "Wolf", "Tiger", "Bird", "Butterfly", "Horse", "Lion", "Snake", "Mountain", "Valley",
            "Desert", "Island", "Beach", "Wave", "Tide", "Echo", "Silence", "Noise", "Radio",
            "Television", "Telephone", "Letter", "Story", "Secret Place", "Memory", "Promise",
            "Lie", "Truth", "Chance", "Game", "Party", "Club", "Bar", "Street", "Avenue",
            "Boulevard", "Window", "Door", "Room", "Bed", "Mirror", "Picture", "Photograph",
            "Candle", "Flame", "Smoke", "Ashes", "Dust", "Bones", "Blood", "Tears", "Smile",
            "Laughter", "Wonder", "Magic", "Miracle", "Mystery", "Machine", "Robot", "Rocket",
            "Satellite", "Planet", "Galaxy", "Universe", "Café", "Mañana", "Corazón", "Señorita",
            "Niña", "Déjà Vu", "Fiancée", "Piñata", "Jalapeño", "Soirée", "Façade", "Crème Brûlée",
            "Nothin'", "Rock 'n' Roll", '"Heroes"', '"Paradise Lost"', "Sugar", "Honey", "Cherry",
            "Lemonade", "Whiskey", "Wine", "Champagne", "Coffee", "Cigarettes", "Medicine")
_TITLE_D = ("", "Tonight", "Again", "Forever", "Tomorrow", "in the Rain", "of Mine", "on Fire",
            "Pt. 2", "(Interlude)", "(Reprise)", "Blues", "Anthem", "Lullaby", "Serenade", "Ballad",
            "Theme", "No. 5", ", Baby", ", Pt. 1", "in Paris", "in My Head", "All Night", "Goodbye",
            "Hello", "Is Calling", "Never Dies", "Rising", "Returns", "Again and Again",
            "(Acoustic)", "for You", "Tonite", "Away", "at Last", "Underground", "Overdrive",
            "Revolution", "Parade", "Medley")

_FIRST = ("Alex", "Sam", "Jamie", "Taylor", "Jordan", "Casey", "Riley", "Morgan", "Avery", "Quinn",
          "Billy", "Johnny", "Bobby", "Tommy", "Jimmy", "Danny", "Frankie", "Charlie", "Eddie",
          "Ella", "Grace", "Ruby", "Lily", "Hazel", "Ivy", "Mae", "Rose", "June", "Nina", "Lola",
          "Marcus", "Isaac", "Owen", "Caleb", "Miles", "Otis", "Ray", "Nat", "Etta", "Aretha",
          "José", "Zoë", "Chloé", "Renée", "Andrés", "Inés", "Joaquín", "Björn", "Søren",
          "François", "Noël", "Léa", "Raúl", "Sinéad", "Maëlle", "Agnès", "Jürgen", "Ángel",
          "Lucía", "Mónica", "Tomás", "Elías", "Héctor", "Dolores", "Mateo", "Luca", "Kenji",
          "Yuki", "Amara", "Kofi", "Zara", "Priya", "Arjun", "Leila", "Omar", "Sasha", "Dmitri",
          "Anya", "Ingrid", "Lars")
_LAST = ("Smith", "Johnson", "Brown", "Miller", "Davis", "Wilson", "Moore", "Clark", "Lewis",
         "Walker", "Hall", "Young", "King", "Wright", "Hill", "Green", "Baker", "Carter", "Turner",
         "Parker", "Collins", "Stewart", "Morris", "Rogers", "Cooper", "Reed", "Bell", "Ward",
         "Brooks", "Gray", "James", "Watson", "Price", "Bennett", "Wood", "Barnes", "Ross",
         "Jenkins", "Perry", "Long", "García", "Muñoz", "Pérez", "Müller", "Åström", "Löwe",
         "Dubois", "Fernández", "González", "Rodríguez", "Martínez", "Jiménez", "Ibáñez",
         "Søndergaard", "Björklund", "Lefèvre", "Bélanger", "Côté", "Núñez", "Peña", "Rossi",
         "Bianchi", "Romano", "Silva", "Santos", "Costa", "Tanaka", "Sato", "Kim", "Park",
         "Nguyen", "Okafor", "Mensah", "Haddad", "Novak", "Kowalski", "Ivanov", "Larsen",
         "Jensen", "Berg", "Moreau")
_BAND_NOUNS = ("Wolves", "Strangers", "Kings", "Queens", "Ghosts", "Lovers", "Rebels", "Saints",
               "Sinners", "Angels", "Tigers", "Foxes", "Ravens", "Crows", "Horses", "Lions",
               "Machines", "Robots", "Astronauts", "Pilots", "Sailors", "Drifters", "Wanderers",
               "Dreamers", "Believers", "Outlaws", "Brothers", "Sisters", "Daughters", "Sons",
               "Hearts", "Bones", "Stones", "Diamonds", "Roses", "Flowers", "Waves", "Tides",
               "Echoes", "Shadows", "Lights", "Stars", "Comets", "Rockets", "Satellites", "Planets",
               "Giants", "Kids", "Twins", "Cousins", "Neighbors", "Friends", "Villains", "Heroes",
               "Monsters", "Vampires", "Zombies", "Witches", "Wizards", "Prophets")
_CONSONANTS = "bdfgklmnprstvzjy"
_VOWELS = "aeiou"
_SYLLABLES = tuple(c + v for c in _CONSONANTS for v in _VOWELS)  # fixed length 2: uniquely decodable
_ALBUM_EXTRA = ("Greatest Hits", "The Best Of", "Deluxe Edition", "Anthology", "Essentials",
                "Collection", "Gold", "Hits", "Live at the Garden", "B-Sides")

#: Spelling variants of a matched song on the MPD side (truth label per code).
VARIANT_NAMES = ("exact", "radio_edit", "feat", "remaster", "case", "accents", "spaces", "live",
                 "feat_msd")
_VARIANT_WEIGHTS = np.array([0.0, 0.18, 0.12, 0.15, 0.15, 0.12, 0.12, 0.08, 0.08])
ARTIST_VARIANT_NAMES = ("exact", "case", "accents", "and", "spaces")

_BASE62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8)
_HEX = np.frombuffer(b"0123456789ABCDEF", np.uint8)
_HEX_LOWER = np.frombuffer(b"0123456789abcdef", np.uint8)
_UPPER = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", np.uint8)


def strip_accents(text: str) -> str:
    """``text`` with combining marks removed (``"Beyoncé"`` → ``"Beyonce"``)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


_ACCENT_ADD = str.maketrans({"e": "é", "a": "á", "o": "ó", "i": "í", "u": "ú"})


def _add_accent(text: str) -> str:
    """Put an accent on the first vowel after the first character (unchanged if none)."""
    for i, ch in enumerate(text[1:], start=1):
        if ch in "eaoiu":
            return text[:i] + ch.translate(_ACCENT_ADD) + text[i + 1:]
    return text


def _double_space(text: str) -> str:
    i = text.find(" ")
    return text.replace(" ", "  ", 1) if i > 0 else text + " "


# --------------------------------------------------------------------------------------
# Deterministic ids (bijective hashes of dense indices: unique by construction)
# --------------------------------------------------------------------------------------


def _keys(seed: int, kind: int, n: int = 4) -> np.ndarray:
    return np.random.SeedSequence(seed, spawn_key=(_S_IDS, kind)).generate_state(n, np.uint64)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: a bijection of uint64 that looks random."""
    x = x.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _digits(x: np.ndarray, base: int, width: int) -> np.ndarray:
    """(n, width) most-significant-first digits of uint64 ``x`` in ``base``."""
    out = np.empty((x.shape[0], width), np.uint8)
    x = x.copy()
    b = np.uint64(base)
    for k in range(width - 1, -1, -1):
        out[:, k] = (x % b).astype(np.uint8)
        x //= b
    return out


def _as_str(codes: np.ndarray) -> list[str]:
    """Rows of an (n, w) uint8 ASCII array as Python strings."""
    codes = np.ascontiguousarray(codes)
    return codes.view(f"S{codes.shape[1]}").ravel().astype(f"U{codes.shape[1]}").tolist()


def _prefixed(prefix: bytes, body: np.ndarray) -> list[str]:
    head = np.broadcast_to(np.frombuffer(prefix, np.uint8), (body.shape[0], len(prefix)))
    return _as_str(np.hstack([head, body]))


def spotify_ids(index: np.ndarray, seed: int, kind: int) -> np.ndarray:
    """(n, 22) base62 codes of Spotify-like ids for dense ``index`` (unique per ``kind``)."""
    k = _keys(seed, kind)
    idx = index.astype(np.uint64)
    hi = _mix64(idx ^ k[0])
    lo = _mix64(idx ^ k[1])  # bijective in idx, so ids are unique
    return _BASE62[np.hstack([_digits(hi, 62, 11), _digits(lo, 62, 11)])]


def spotify_uris(kind: str, index: np.ndarray, seed: int) -> list[str]:
    """``spotify:<kind>:<22 base62>`` for each dense index."""
    code = {"track": 1, "artist": 2, "album": 3}[kind]
    return _prefixed(f"spotify:{kind}:".encode(), spotify_ids(index, seed, code))


def msd_ids(prefix: str, index: np.ndarray, seed: int) -> list[str]:
    """MSD-style ids (``SOAKIMP12A8C130995``): prefix + 5 letters + ``12`` + 9 hex digits.

    The hex part is an affine bijection of the index modulo 16**9, so ids are unique.
    """
    k = _keys(seed, 10 if prefix == "SO" else 11)
    idx = index.astype(np.uint64)
    mod = np.uint64(16**9)
    body = (idx * np.uint64(0x9E3779B1) + (k[0] % mod)) % mod  # odd multiplier: bijective
    letters = _UPPER[_digits(_mix64(idx ^ k[1]), 26, 5)]
    hexpart = _HEX[_digits(body, 16, 9)]
    mid = np.broadcast_to(np.frombuffer(b"12", np.uint8), (idx.shape[0], 2))
    return _prefixed(prefix.encode(), np.hstack([letters, mid, hexpart]))


def user_ids(index: np.ndarray, seed: int) -> list[str]:
    """40 lowercase hex characters per user (like the real ENTP ids), unique by construction."""
    k = _keys(seed, 12)
    idx = index.astype(np.uint64)
    a = _mix64(idx ^ k[0])  # bijective
    b = _mix64(idx ^ k[1])
    c = _mix64(idx ^ k[2]) >> np.uint64(32)
    return _as_str(_HEX_LOWER[np.hstack([_digits(a, 16, 16), _digits(b, 16, 16), _digits(c, 16, 8)])])


# --------------------------------------------------------------------------------------
# Catalogue
# --------------------------------------------------------------------------------------


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


def _title_strings(codes: np.ndarray) -> list[str]:
    """Titles from mixed-radix codes over four disjoint word slots (unique per code)."""
    nb, nc, nd = len(_TITLE_B), len(_TITLE_C), len(_TITLE_D)
    d = codes % nd
    c = (codes // nd) % nc
    b = (codes // (nd * nc)) % nb
    a = codes // (nd * nc * nb)
    out = []
    for ai, bi, ci, di in zip(a.tolist(), b.tolist(), c.tolist(), d.tolist()):
        parts = [p for p in (_TITLE_A[ai], _TITLE_B[bi], _TITLE_C[ci]) if p]
        text = " ".join(parts)
        tail = _TITLE_D[di]
        if tail:
            text = text + tail if tail.startswith(",") else f"{text} {tail}"
        out.append(text)
    return out


def _title_capacity() -> int:
    return len(_TITLE_A) * len(_TITLE_B) * len(_TITLE_C) * len(_TITLE_D)


def _title_codes(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` distinct title codes, biased towards short titles (empty optional slots).

    Short forms run out first (there are only ``len(_TITLE_C)`` one-word titles); each
    round weakens the bias so that large catalogues fill up with longer titles.
    """
    na, nb, nc, nd = len(_TITLE_A), len(_TITLE_B), len(_TITLE_C), len(_TITLE_D)
    codes = np.empty(0, np.int64)
    p_a, p_b, p_d = 0.7, 0.35, 0.7  # probability that the optional slot stays empty
    while codes.shape[0] < n:
        m = int((n - codes.shape[0]) * 1.5) + 64
        a = np.where(rng.random(m) < p_a, 0, rng.integers(1, na, m))
        b = np.where(rng.random(m) < p_b, 0, rng.integers(1, nb, m))
        c = rng.integers(0, nc, m)
        d = np.where(rng.random(m) < p_d, 0, rng.integers(1, nd, m))
        allc = np.r_[codes, ((a * nb + b) * nc + c) * nd + d]
        _, first = np.unique(allc, return_index=True)
        codes = allc[np.sort(first)][:n]
        p_a, p_b, p_d = p_a * 0.7, p_b * 0.7, p_d * 0.7
    return codes


def _two_words(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` album-like names "<Adjective> <Noun>" (repeats allowed, as in real catalogues)."""
    adj = rng.integers(1, len(_TITLE_B), n).tolist()
    noun = rng.integers(0, len(_TITLE_C), n).tolist()
    return [f"{_TITLE_B[a]} {_TITLE_C[b]}" for a, b in zip(adj, noun)]


def _artist_strings(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct artist names in several styles (person, band, invented word)."""
    syl = len(_SYLLABLES)
    forms = [
        ("person", len(_FIRST) * len(_LAST), 0.30),
        ("band", (len(_TITLE_B) - 1) * len(_BAND_NOUNS), 0.15),
        ("word", syl**3, 0.30),
        ("dj", 3 * syl**2, 0.05),
        ("first_word", len(_FIRST) * syl**3, 0.20),
    ]
    want = rng.multinomial(n, [p for _, _, p in forms])
    counts = []
    overflow = 0
    for (name, cap, _), w in zip(forms, want):
        take = min(int(w), cap)
        overflow += int(w) - take
        counts.append(take)
    counts[-1] += overflow  # the largest form absorbs what the small ones cannot hold
    names: list[str] = []
    for (form, cap, _), count in zip(forms, counts):
        picks = rng.choice(cap, size=count, replace=False) if count else np.empty(0, np.int64)
        for p in picks.tolist():
            if form == "person":
                names.append(f"{_FIRST[p // len(_LAST)]} {_LAST[p % len(_LAST)]}")
            elif form == "band":
                adj = _TITLE_B[1 + p // len(_BAND_NOUNS)]
                names.append(f"The {adj} {_BAND_NOUNS[p % len(_BAND_NOUNS)]}")
            elif form == "word":
                names.append((_SYLLABLES[p // syl**2] + _SYLLABLES[(p // syl) % syl] + _SYLLABLES[p % syl]).capitalize())
            elif form == "dj":
                pre = ("DJ", "Lil", "MC")[p // syl**2]
                names.append(f"{pre} {(_SYLLABLES[(p // syl) % syl] + _SYLLABLES[p % syl]).capitalize()}")
            else:
                q = p % syl**3
                word = (_SYLLABLES[q // syl**2] + _SYLLABLES[(q // syl) % syl] + _SYLLABLES[q % syl]).capitalize()
                names.append(f"{_FIRST[p // syl**3]} {word}")
    order = rng.permutation(len(names))
    names = [names[i] for i in order.tolist()]
    # Forms can collide after case folding ("Lars Berg" vs a first+word name): rename.
    seen: set[str] = set()
    for i, name in enumerate(names):
        key = name.casefold()
        extra = 2
        while key in seen:
            name = f"{names[i]} {['II', 'III', 'IV', 'V', 'VI', 'VII'][min(extra - 2, 5)]}{'' if extra < 8 else extra}"
            key = name.casefold()
            extra += 1
        seen.add(key)
        names[i] = name
    return names


def _artist_variant(name: str, kind: int) -> str:
    if kind == 1:
        return name.upper() if len(name) < 12 else name.lower()
    if kind == 2:
        stripped = strip_accents(name)
        return stripped if stripped != name else _add_accent(name)
    if kind == 3:
        return name.replace("The ", "", 1) if name.startswith("The ") else f"{name} & Friends"
    if kind == 4:
        return _double_space(name)
    return name


def _title_variant(title: str, kind: int, feat: str, year: int) -> tuple[str, str, int]:
    """(MPD spelling, MSD spelling, kind applied) of a title under variant ``kind``.

    ``year`` doubles as a coin for the sub-forms. An accent variant of a title with no
    vowel to accent falls back to a case variant (the kind returned says which).
    """
    if kind == 5 and strip_accents(title) == title and _add_accent(title) == title:
        kind = 4
    if kind == 1:
        return f"{title} - Radio Edit", title, kind
    if kind == 2:
        return f"{title} (feat. {feat})", title, kind
    if kind == 3:
        return (f"{title} - Remastered {year}" if year % 4 else f"{title} - Remastered"), title, kind
    if kind == 4:
        return (title.lower() if year % 3 else title.upper()), title, kind
    if kind == 5:
        stripped = strip_accents(title)
        # The MSD is often ASCII-folded; a title without accents gets one on the MPD side.
        return ((title, stripped) if stripped != title else (_add_accent(title), title)) + (kind,)
    if kind == 6:
        return _double_space(title), title, kind
    if kind == 7:
        return f"{title} - Live", title, kind
    if kind == 8:
        return title, f"{title} (feat. {feat})", kind
    return title, title, kind


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


# --------------------------------------------------------------------------------------
# Set sampling (playlists and users)
# --------------------------------------------------------------------------------------


def _genres(rng: np.random.Generator, n: int, genre_weight: np.ndarray, p_second: float) -> tuple[np.ndarray, np.ndarray]:
    G = genre_weight.shape[0]
    g1 = rng.choice(G, size=n, p=genre_weight)
    g2 = rng.choice(G, size=n, p=genre_weight)
    same = g2 == g1
    g2[same] = (g2[same] + 1 + rng.integers(0, max(G - 1, 1), int(same.sum()))) % G if G > 1 else -1
    g2 = np.where(rng.random(n) < p_second, g2, -1)
    return g1.astype(np.int64), g2.astype(np.int64)


def _sample_sets(rng: np.random.Generator, sampler: _Sampler, counts: np.ndarray, g1: np.ndarray,
                 g2: np.ndarray, p_in: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct items per entity: ``counts[i]`` items for entity ``i``.

    Each draw comes from the entity's primary genre (or its secondary, when it has one)
    with probability ``p_in[i]``, else from the global popularity mix. Draws are repeated
    until every entity holds ``counts[i]`` distinct items (later rounds lean on the global
    mix so that small genres cannot stall); the result is shuffled within each entity.

    Returns
    -------
    owner, item : int64 arrays of equal length, grouped by owner (ascending).
    """
    n = counts.shape[0]
    counts = np.minimum(counts, sampler.n_items)
    keys = np.empty(0, np.int64)
    n_items = np.int64(sampler.n_items)
    have = np.zeros(n, np.int64)
    for round_ in range(12):
        need = counts - have
        if not np.any(need > 0):
            break
        who = np.flatnonzero(need > 0)
        factor = 1.25 if round_ == 0 else 2.0
        m = np.ceil(need[who] * factor).astype(np.int64) + 2
        owner = np.repeat(who, m)
        k = owner.shape[0]
        local = rng.random(k) < p_in[owner] * (0.5**round_ if round_ >= 2 else 1.0)
        use_second = (g2[owner] >= 0) & (rng.random(k) < 0.4)
        genre = np.where(use_second, g2[owner], g1[owner])
        genre = np.where(local, genre, -1)
        items = sampler.draw(genre, rng.random(k))
        new = owner * n_items + items
        allk = np.r_[keys, new]
        _, first = np.unique(allk, return_index=True)
        first.sort()
        allk = allk[first]
        own = allk // n_items
        srt = np.argsort(own, kind="stable")
        allk, own = allk[srt], own[srt]
        start = np.searchsorted(own, np.arange(n))
        rank = np.arange(own.shape[0]) - start[own]
        keep = rank < counts[own]
        keys = allk[keep]
        have = np.bincount(keys // n_items, minlength=n)
    owner = keys // n_items
    item = keys % n_items
    shuffle = np.lexsort((rng.random(owner.shape[0]), owner))
    return owner[shuffle], item[shuffle]


def _in_genre(rng: np.random.Generator, n: int, mean: float) -> np.ndarray:
    """Per-entity in-genre share ~ Beta with the given mean (concentration 17)."""
    if mean >= 1.0 or mean <= 0.0:
        return np.full(n, mean)
    return rng.beta(17.0 * mean, 17.0 * (1.0 - mean), n)


def _user_counts(rng: np.random.Generator, n: int, params: SynthParams, n_songs: int) -> np.ndarray:
    mu = math.log(params.user_songs_median)
    sigma = math.sqrt(2.0 * math.log(params.user_songs_mean / params.user_songs_median))
    cap = max(1, min(5_000, n_songs // 3))
    return np.clip(np.rint(rng.lognormal(mu, sigma, n)), 1, cap).astype(np.int64)


def _playlist_lengths(rng: np.random.Generator, n: int, params: SynthParams, n_tracks: int) -> np.ndarray:
    length = np.rint(rng.lognormal(math.log(params.playlist_len_median), params.playlist_len_sigma, n))
    return np.clip(length, 5, min(250, n_tracks)).astype(np.int64)


def _play_counts(rng: np.random.Generator, n: int, params: SynthParams) -> np.ndarray:
    return np.minimum(rng.zipf(params.play_count_zipf, n), 9_667).astype(np.int64)


# --------------------------------------------------------------------------------------
# Output helpers
# --------------------------------------------------------------------------------------


class _AtomicWriter:
    """Binary file written to a hidden temporary name in the same folder, renamed on close."""

    def __init__(self, path: Path, gzip_level: int | None = None):
        self.path = path
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._raw = open(self.tmp, "wb")
        self._gz: _gzip.GzipFile | None = None
        if gzip_level is not None:
            # mtime=0 and no file name: the same data gives the same bytes.
            self._gz = _gzip.GzipFile(filename="", mode="wb", fileobj=self._raw,
                                      compresslevel=gzip_level, mtime=0)
        self.handle: IO[bytes] = self._gz if self._gz is not None else self._raw

    def write(self, data: bytes) -> None:
        self.handle.write(data)

    def commit(self) -> Path:
        if self._gz is not None:
            self._gz.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            if self._gz is not None:
                self._gz.close()
            self._raw.close()
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "_AtomicWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def _write_bytes(path: Path, data: bytes, gzip_level: int | None = None) -> Path:
    with _AtomicWriter(path, gzip_level) as out:
        out.write(data)
    return path


def _tsv_rows(rows: Iterable[Sequence[object]]) -> bytes:
    return "".join("\t".join(str(v) for v in row) + "\n" for row in rows).encode("utf-8")


def _tsv(rows: Iterable[Sequence[object]], header: Sequence[str]) -> bytes:
    return ("\t".join(header) + "\n").encode("utf-8") + _tsv_rows(rows)


def _csv_field(value: str) -> str:
    if any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


# --------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------


@dataclass
class SynthSummary:
    """What :func:`generate` wrote and the statistics it measured.

    ``stats`` is also written to ``truth/summary.json`` (without timings, so the file is
    byte-identical for the same seed); ``paths`` maps a dataset name to the files written.
    """

    out_dir: Path
    scale: str
    seed: int
    params: SynthParams
    stats: dict[str, object]
    paths: dict[str, list[Path]]
    seconds: float = 0.0

    @property
    def n_users(self) -> int:
        return int(self.stats["users"])  # type: ignore[arg-type]

    @property
    def n_playlists(self) -> int:
        return int(self.stats["playlists"])  # type: ignore[arg-type]

    @property
    def n_listens(self) -> int:
        return int(self.stats["listens"])  # type: ignore[arg-type]

    @property
    def n_track_rows(self) -> int:
        return int(self.stats["track_rows"])  # type: ignore[arg-type]

    @property
    def overlap_share(self) -> float:
        return float(self.stats["overlap_share"])  # type: ignore[arg-type]


def _describe(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"min": 0, "median": 0.0, "mean": 0.0, "max": 0}
    return {"min": int(values.min()), "median": float(np.median(values)),
            "mean": round(float(values.mean()), 3), "max": int(values.max())}


def _progress(enabled: bool, message: str) -> None:
    if enabled:
        print(f"[synth] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------


def _block_rng(seed: int, stream: int, block: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, block)))


def _playlist_block(cat: Catalogue, params: SynthParams, seed: int, block: int,
                    n: int) -> dict[str, np.ndarray]:
    """Draw ``n`` playlists of block ``block`` (pids ``block * PLAYLIST_BLOCK + i``)."""
    rng = _block_rng(seed, _S_PLAYLISTS, block)
    lengths = _playlist_lengths(rng, n, params, cat.track_sampler.n_items)
    g1, g2 = _genres(rng, n, cat.genre_weight, params.second_genre_prob)
    p_in = _in_genre(rng, n, params.in_genre_share)
    owner, item = _sample_sets(rng, cat.track_sampler, lengths, g1, g2, p_in)
    return {
        "lengths": np.bincount(owner, minlength=n), "g1": g1, "g2": g2, "owner": owner, "item": item,
        "name_pick": rng.integers(0, 1 << 30, n), "name_style": rng.random(n),
        "decor": rng.integers(0, len(_NAME_DECOR), n), "generic": rng.random(n),
        "desc": rng.random(n), "collab": rng.random(n),
        # Day-truncated like the real MPD, 2010-01-01 .. 2017-10-31.
        "modified_at": 1_262_304_000 + rng.integers(0, 2_860, n) * 86_400,
        "followers": np.minimum(rng.zipf(2.2, n), 50_000),
        "edits": np.minimum(rng.zipf(1.6, n), 300) + rng.integers(0, 20, n),
    }


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
    pl_truth = _AtomicWriter(out / "truth" / "playlist_genre.tsv")
    pl_truth.write(b"pid\tgenre\tsecond_genre\n")
    written_bytes = 0
    rows_done = 0
    block_cache: dict[int, dict[str, np.ndarray]] = {}
    t0 = time.perf_counter()
    try:
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
        paths["truth"].append(pl_truth.commit())
    except BaseException:
        pl_truth.abort()
        raise
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
    trip = _AtomicWriter(out / "entp" / f"train_triplets.txt{gz}", level)
    u_truth = _AtomicWriter(out / "truth" / "user_genre.tsv")
    u_truth.write(b"user_id\tgenre\tsecond_genre\n")
    try:
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
        paths["entp"].append(trip.commit())
        paths["truth"].append(u_truth.commit())
    except BaseException:
        trip.abort()
        u_truth.abort()
        raise
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


def _overlap_share(u_owner: np.ndarray, u_song: np.ndarray, n_u: int, p_owner: np.ndarray,
                   p_song: np.ndarray, n_p: int, n_songs: int) -> tuple[float, float]:
    """Share of (user, playlist) pairs sharing at least one song, and mean shared songs."""
    U = sp.csr_matrix((np.ones(u_owner.shape[0], np.float32), (u_owner, u_song)), shape=(n_u, n_songs))
    P = sp.csr_matrix((np.ones(p_owner.shape[0], np.float32), (p_owner, p_song)), shape=(n_p, n_songs))
    U.data[:] = 1.0
    P.sum_duplicates()
    P.data[:] = 1.0  # a song counts once per playlist even under two URIs
    C = (U @ P.T).tocsr()
    pairs = float(n_u) * float(n_p)
    return C.nnz / pairs, float(C.sum()) / pairs


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


def _write_truth(folder: Path, cat: Catalogue, seed: int, song_ids: list[str]) -> list[Path]:
    """Ground truth for tests (loaders never read it); per-track files are streamed in chunks."""
    written = []
    genres = [(g, cat.genre_labels[g], round(float(cat.genre_weight[g]), 6)) for g in range(len(cat.genre_labels))]
    written.append(_write_bytes(folder / "genres.tsv", _tsv(genres, ("genre", "label", "weight"))))
    matched = np.flatnonzero(cat.track_song >= 0)
    with _AtomicWriter(folder / "song_track_map.tsv") as out:
        out.write(_tsv((), ("song_id", "track_uri", "title_variant", "artist_variant", "duplicate_uri", "mismatched")))
        for chunk in np.array_split(matched, max(1, matched.shape[0] // 200_000)):
            uris = spotify_uris("track", chunk, seed)
            art_var = cat.artist_variant[cat.rec_artist[cat.track_rec[chunk]]].tolist()
            song = cat.track_song[chunk]
            out.write(_tsv_rows(
                (song_ids[s], u, VARIANT_NAMES[v], ARTIST_VARIANT_NAMES[a], int(d), int(m >= 0))
                for s, u, v, a, d, m in zip(song.tolist(), uris, cat.track_variant[chunk].tolist(), art_var,
                                            cat.track_is_dup[chunk].tolist(), cat.song_mismatch[song].tolist())))
    written.append(out.path)
    with _AtomicWriter(folder / "duplicate_tracks.tsv") as out:
        out.write(_tsv((), ("group", "track_uri")))
        if cat.dup_groups:
            members = np.concatenate(cat.dup_groups)
            group = np.repeat(np.arange(len(cat.dup_groups)), [g.shape[0] for g in cat.dup_groups])
            out.write(_tsv_rows(zip(group.tolist(), spotify_uris("track", members, seed))))
    written.append(out.path)
    with _AtomicWriter(folder / "track_genre.tsv") as out:
        out.write(_tsv((), ("track_uri", "genre")))
        for chunk in np.array_split(np.arange(cat.n_tracks), max(1, cat.n_tracks // 200_000)):
            out.write(_tsv_rows(zip(spotify_uris("track", chunk, seed), cat.rec_genre[cat.track_rec[chunk]].tolist())))
    written.append(out.path)
    s_genre = cat.rec_genre[cat.song_rec].tolist()
    written.append(_write_bytes(folder / "song_genre.tsv", _tsv(zip(song_ids, s_genre), ("song_id", "genre"))))
    return written


_STALE_PATTERNS = ("mpd/mpd.slice.*.json", "mpd/mpd.slice.*.json.gz", "entp/train_triplets.txt",
                   "entp/train_triplets.txt.gz")


def _remove_stale(out: Path, paths: dict[str, list[Path]]) -> None:
    keep = {p.resolve() for v in paths.values() for p in v}
    for pattern in _STALE_PATTERNS:
        for p in out.glob(pattern):
            if p.resolve() not in keep:
                p.unlink()


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``python -m spotify_assets.synth``)."""
    parser = argparse.ArgumentParser(
        prog="python -m spotify_assets.synth",
        description=(
            "Write deterministic stand-ins for the Spotify Million Playlist Dataset (mpd/), "
            "the Echo Nest Taste Profile triplets (entp/) and Million Song Dataset metadata "
            "(msd/) in their published formats, plus ground truth (truth/) for tests. The "
            "same seed and options always give byte-identical files."),
        epilog=("scales: " + "; ".join(f"{k}: {v.users:,} users x {v.playlists:,} playlists"
                                       for k, v in SCALES.items())
                + ". Example: python -m spotify_assets.synth --scale sample --seed 0 --out data/raw --gzip"),
    )
    parser.add_argument("--scale", choices=sorted(SCALES, key=list(SCALES).index), default="tiny",
                        help="size preset (default: tiny)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (gets mpd/, entp/, msd/, truth/)")
    parser.add_argument("--gzip", action="store_true", help="gzip the MPD slices and the triplets")
    parser.add_argument("--users", type=int, help="override the number of ENTP users")
    parser.add_argument("--playlists", type=int, help="override the number of MPD playlists")
    parser.add_argument("--slice-size", type=int, help="playlists per slice file (default 1000; 250 at tiny, 500 at sample)")
    parser.add_argument("--match-share", type=float, help="share of ENTP songs with an MPD counterpart (default 0.40)")
    parser.add_argument("--latin1-lines", type=int, default=None,
                        help="write this many non-ASCII lines of msd/unique_tracks.txt Latin-1 encoded")
    parser.add_argument("--crlf", action="store_true", help="write msd/song_data.csv with CRLF line endings")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    overrides = {"users": args.users, "playlists": args.playlists, "slice_size": args.slice_size,
                 "match_share": args.match_share, "latin1_lines": args.latin1_lines,
                 "crlf": True if args.crlf else None}
    try:
        summary = generate(args.out, scale=args.scale, seed=args.seed, gzip=args.gzip,
                           progress=not args.quiet, **overrides)
    except ValueError as exc:
        parser.error(str(exc))
    keys = ("users", "playlists", "slices", "listens", "track_rows", "unique_tracks", "unique_artists",
            "songs_per_user", "playlist_length", "top_track_playlist_share", "matched_song_share",
            "variant_share_of_matched_songs", "overlap_share")
    report = {k: summary.stats[k] for k in keys}
    report["seconds"] = round(summary.seconds, 2)
    report["out"] = str(summary.out_dir)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
