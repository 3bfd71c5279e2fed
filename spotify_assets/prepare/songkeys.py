"""Song keys that match the same song across the MSD/ENTP and MPD catalogues.

* plain key: Unicode NFKC, casefold, trim, collapse inner whitespace; ``title@@artist``.
* canonical key: the plain key's normalization, plus accents stripped and version
  suffixes dropped from the title (" - Radio Edit", " - Remastered 2011", "(feat. X)",
  " - Live", " - Single Version", …) and featured artists dropped from the artist. A
  bracketed "(… Remix)" is kept: a remix is a different recording.

Missing values: ``None`` (or NaN from a dataframe) is treated as an empty string, so a
song without title and artist keys to ``"@@"``; callers that must reject such rows check
for that key (:func:`is_empty_key`). Any other non-string raises ``TypeError``.

Whole columns: :func:`plain_song_keys` / :func:`canonical_song_keys` key two aligned
sequences, normalizing each distinct title and artist once (catalogues repeat them a lot).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

SEPARATOR = "@@"
_WHITESPACE = re.compile(r"\s+")

# " - Radio Edit", " - Remastered 2011", "- Remastered 2011", " - 2011 Remaster", " - Live",
# " - Single Version", " - Mono", " - Original Mix", " - Album Version", " - Edit"... A dash
# suffix that names a remix or a mix other than the original is kept: that is another song.
_DASH_SUFFIX = re.compile(
    r"(?:\s+[-–—]\s*|\s*[-–—]\s+)(?!.*\b(?:re-?mix|(?<!original )mix|dub)\b)(?:"
    r"(?:\d{4}\s+)?(?:digital(?:ly)?\s+)?remaster(?:ed)?(?:\s+version)?(?:\s+\d{4})?"
    r"|radio\s+edit|single\s+(?:version|edit)|album\s+version|original\s+(?:mix|version)"
    r"|edit|live(?:\s+(?:at|from|in)\b.*)?|mono(?:\s+version)?|stereo(?:\s+version)?"
    r"|explicit(?:\s+version)?|clean(?:\s+version)?|bonus\s+track|acoustic(?:\s+version)?"
    r"|from\s+.*|.*\bversion"
    r")\s*$",
    re.IGNORECASE,
)
# "(feat. X)", "[ft. X]", "(with X)", "(Remastered 2011)", "(Live)", "(Radio Edit)"...
_BRACKET_SUFFIX = re.compile(
    r"\s*[\(\[](?:"
    r"feat\.?|featuring|ft\.?|with\s"
    r")[^\)\]]*[\)\]]"
    r"|\s*[\(\[](?:(?:\d{4}\s+)?(?:digital(?:ly)?\s+)?remaster(?:ed)?[^\)\]]*|radio\s+edit|single\s+version"
    r"|album\s+version|live[^\)\]]*|mono|stereo|explicit|clean|bonus\s+track)[\)\]]",
    re.IGNORECASE,
)
# "Song feat. X" without brackets, at the end of a title
_BARE_FEAT = re.compile(r"\s+(?:feat\.?|featuring|ft\.)\s+.*$", re.IGNORECASE)
# featured artists in the artist field: "Artist feat. X", "Artist ft. X", "Artist featuring X"
_ARTIST_FEAT = re.compile(r"\s+(?:feat\.?|featuring|ft\.)\s+.*$", re.IGNORECASE)


def _text(text) -> str:
    if text is None or (isinstance(text, float) and text != text):  # None or NaN
        return ""
    if not isinstance(text, str):
        raise TypeError(f"song titles and artists must be str or None, got {type(text).__name__}")
    return text


def normalize(text: str | None) -> str:
    """NFKC, casefold, trim, collapse inner whitespace (``None`` -> "")."""
    text = _text(text)
    if not text:
        return ""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def strip_accents(text: str) -> str:
    """Drop combining marks after NFKD ("Beyoncé" -> "Beyonce")."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def plain_song_key(title: str | None, artist: str | None) -> str:
    """``normalize(title) + "@@" + normalize(artist)``."""
    return f"{normalize(title)}{SEPARATOR}{normalize(artist)}"


# The suffix patterns backtrack: their cost grows with the square of the title length (a
# 48k-character title of " - " took over a minute). Real titles are far shorter; longer
# ones keep their suffixes (normalized and accent-stripped only).
MAX_CANONICAL_CHARS = 512


@lru_cache(maxsize=1 << 18)
def canonical_title(title: str | None) -> str:
    """The normalized title without version suffixes or featured artists (titles over
    ``MAX_CANONICAL_CHARS`` characters are only normalized and accent-stripped)."""
    text = normalize(title)
    if len(text) > MAX_CANONICAL_CHARS:
        return _WHITESPACE.sub(" ", strip_accents(text)).strip()
    previous = None
    # Suffixes stack ("Song (feat. X) - Remastered 2011"): strip until nothing changes.
    while previous != text:
        previous = text
        text = _DASH_SUFFIX.sub("", text)
        text = _BRACKET_SUFFIX.sub("", text)
        text = _BARE_FEAT.sub("", text).strip()
    return _WHITESPACE.sub(" ", strip_accents(text)).strip() or strip_accents(normalize(title))


@lru_cache(maxsize=1 << 18)
def canonical_artist(artist: str | None) -> str:
    """The normalized artist without featured artists, accents stripped."""
    text = _ARTIST_FEAT.sub("", normalize(artist)).strip()
    return _WHITESPACE.sub(" ", strip_accents(text)).strip()


def canonical_song_key(title: str | None, artist: str | None) -> str:
    """``canonical_title(title) + "@@" + canonical_artist(artist)``."""
    return f"{canonical_title(title)}{SEPARATOR}{canonical_artist(artist)}"


def is_empty_key(key: str) -> bool:
    """True for the key of a song with neither title nor artist."""
    return key == SEPARATOR


def _keys(titles: Iterable[str | None], artists: Iterable[str | None], title_fn, artist_fn) -> list[str]:
    titles, artists = list(titles), list(artists)
    if len(titles) != len(artists):
        raise ValueError(f"{len(titles)} titles but {len(artists)} artists")
    title_memo: dict = {}
    artist_memo: dict = {}
    out = []
    for title, artist in zip(titles, artists):
        t = title_memo.get(title)
        if t is None:
            t = title_memo[title] = title_fn(title)
        a = artist_memo.get(artist)
        if a is None:
            a = artist_memo[artist] = artist_fn(artist)
        out.append(t + SEPARATOR + a)
    return out


def plain_song_keys(titles: Iterable[str | None], artists: Iterable[str | None]) -> list[str]:
    """:func:`plain_song_key` of aligned titles and artists (each distinct value
    normalized once)."""
    return _keys(titles, artists, normalize, normalize)


def canonical_song_keys(titles: Iterable[str | None], artists: Iterable[str | None]) -> list[str]:
    """:func:`canonical_song_key` of aligned titles and artists."""
    return _keys(titles, artists, canonical_title, canonical_artist)
