"""Playlist names as hashed n-gram features (fastText-style), for the two-tower model's
playlist tower. No Dagster imports.

A name is normalized (Unicode NFKC, casefold, accents stripped, everything that is not a
letter, digit or "&" turned into a space, spaces collapsed), then described by its words,
its word bigrams and the character 3- and 4-grams of the name with its spaces removed and
"<" ">" as boundaries, so that "Road Trip 🚗", "roadtrip" and "ROAD TRIP!!" share most
features. Each feature string is hashed with CRC-32 (stable across processes and
platforms, unlike Python's salted ``hash``) into ``buckets`` rows of an embedding table.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections.abc import Sequence

import numpy as np

from spotify_assets.tracks.continuation import ragged_rows

__all__ = ["CHAR_NGRAMS", "name_features", "name_feature_csr", "name_tokens", "normalize_name"]

CHAR_NGRAMS = (3, 4)
_NOT_WORD = re.compile(r"[^0-9a-z&]+")


def normalize_name(name: str) -> str:
    """Lower-case ASCII-folded words of ``name`` separated by single spaces ("" if none)."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", name).casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(_NOT_WORD.sub(" ", text).split())


def name_tokens(name: str, char_ngrams: Sequence[int] = CHAR_NGRAMS) -> list[str]:
    """The feature strings of ``name``: ``w:`` words, ``b:`` word bigrams, ``c:`` character
    n-grams of the space-free normalized name with "<" ">" boundaries (unique, sorted)."""
    normalized = normalize_name(name)
    if not normalized:
        return []
    words = normalized.split()
    out = {f"w:{w}" for w in words} | {f"b:{a} {b}" for a, b in zip(words, words[1:])}
    joined = f"<{''.join(words)}>"
    for n in char_ngrams:
        out |= {f"c:{joined[i:i + n]}" for i in range(max(len(joined) - n + 1, 0))}
    return sorted(out)


def name_features(name: str, buckets: int, char_ngrams: Sequence[int] = CHAR_NGRAMS) -> np.ndarray:
    """int64 (n,) distinct hashed feature rows of ``name`` in 0..buckets-1, ascending."""
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    hashed = {zlib.crc32(token.encode("utf-8")) % buckets for token in name_tokens(name, char_ngrams)}
    return np.array(sorted(hashed), dtype=np.int64)


def name_feature_csr(names: Sequence[str], buckets: int,
                     char_ngrams: Sequence[int] = CHAR_NGRAMS) -> tuple[np.ndarray, np.ndarray]:
    """Features of many names: (indptr int64 (n + 1,), rows int64 (nnz,)); name ``i`` has
    ``rows[indptr[i]:indptr[i + 1]]``. Each distinct name is tokenized once (playlists
    repeat names a lot), the rest is a vectorized gather."""
    unique, inverse = np.unique(np.asarray([str(n) for n in names], dtype=object).astype(str), return_inverse=True)
    per_unique = [name_features(u, buckets, char_ngrams) for u in unique.tolist()]
    u_counts = np.array([f.size for f in per_unique], np.int64)
    u_flat = np.concatenate(per_unique) if per_unique else np.zeros(0, np.int64)
    u_starts = np.r_[0, np.cumsum(u_counts)[:-1]] if u_counts.size else np.zeros(0, np.int64)
    counts = u_counts[inverse] if u_counts.size else np.zeros(len(names), np.int64)
    starts = u_starts[inverse] if u_counts.size else np.zeros(len(names), np.int64)
    rows = u_flat[ragged_rows(starts, counts)]
    return np.r_[0, np.cumsum(counts)].astype(np.int64), rows.astype(np.int64)
