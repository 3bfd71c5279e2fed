"""Duplicate tracks: the same song published under several track URIs. No Dagster imports.

Candidates share a *canonical* song key (:func:`spotify_assets.prepare.songkeys.canonical_song_keys`:
case, accents, spacing, version suffixes such as " - Radio Edit", " - Remastered 2011" and
"(feat. X)" removed; a bracketed "(… Remix)" is kept, since a remix is another recording).
The embedding then gives evidence: a pair whose cosine is above what ``null_quantile`` of
random track pairs reach is *confirmed*, one below is *flagged* (same name, different
listening context: maybe a cover or a re-recording), and a pair with a track outside the
embedding vocabulary (too rare) stays *unverified*.

Each group's canonical member is its most popular track (ties: lowest track id); the other
members are its duplicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spotify_assets.prepare.songkeys import canonical_song_keys

__all__ = [
    "CONFIRMED",
    "FLAGGED",
    "UNVERIFIED",
    "DuplicateGroups",
    "duplicate_groups",
    "null_cosine_threshold",
    "pair_cosines",
    "verdicts",
]

CONFIRMED, FLAGGED, UNVERIFIED = "confirmed", "flagged", "unverified"


@dataclass(frozen=True)
class DuplicateGroups:
    """Tracks sharing a canonical key with at least one other track.

    track_ids : int64 (m,) members, grouped (group by group, canonical member first).
    group : int64 (m,) group number 0..n_groups-1.
    canonical : int64 (m,) the group's canonical track id, per member.
    keys : list[str] (m,) the shared canonical key, per member.
    """

    track_ids: np.ndarray
    group: np.ndarray
    canonical: np.ndarray
    keys: list[str]

    @property
    def n_groups(self) -> int:
        return int(self.group.max()) + 1 if self.group.size else 0

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(canonical, duplicate) int64 (m - n_groups,) pairs: every non-canonical member."""
        dup = self.track_ids != self.canonical
        return self.canonical[dup], self.track_ids[dup]


def duplicate_groups(track_ids: np.ndarray, titles: Sequence[str | None], artists: Sequence[str | None],
                     popularity: np.ndarray) -> DuplicateGroups:
    """Group tracks whose canonical song keys are equal.

    Parameters
    ----------
    track_ids : int (n,) track ids; titles, artists : (n,) names aligned with them.
    popularity : (n,) e.g. playlist counts; decides each group's canonical member.
    """
    track_ids = np.asarray(track_ids, dtype=np.int64)
    popularity = np.asarray(popularity, dtype=np.float64)
    keys = np.asarray(canonical_song_keys(titles, artists), dtype=object)
    if track_ids.size == 0:
        return DuplicateGroups(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), [])
    uniq, code, size = np.unique(keys, return_inverse=True, return_counts=True)
    code = code.ravel()
    member = np.flatnonzero(size[code] > 1)
    # group by key, most popular first, ties by id
    order = member[np.lexsort((track_ids[member], -popularity[member], code[member]))]
    key_code = code[order]
    first = np.r_[True, key_code[1:] != key_code[:-1]]
    group = np.cumsum(first) - 1
    canonical = track_ids[order][np.flatnonzero(first)][group]
    return DuplicateGroups(track_ids[order], group.astype(np.int64), canonical.astype(np.int64),
                           [str(k) for k in keys[order]])


def pair_cosines(vectors: np.ndarray, vocab_track_ids: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 (n,) cosine of the embeddings of tracks ``a`` and ``b`` (int (n,) track ids);
    NaN where either track has no embedding. ``vectors`` float32 (V, d) L2-normalised."""
    vocab_track_ids = np.asarray(vocab_track_ids, dtype=np.int64)
    order = np.argsort(vocab_track_ids)
    sorted_ids = vocab_track_ids[order]

    def rows(ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.minimum(np.searchsorted(sorted_ids, ids), max(sorted_ids.size - 1, 0))
        found = sorted_ids.size > 0
        ok = (sorted_ids[pos] == ids) if found else np.zeros(ids.size, bool)
        return np.where(ok, order[pos] if found else -1, -1)

    ra, rb = rows(a), rows(b)
    ok = (ra >= 0) & (rb >= 0)
    out = np.full(ra.size, np.nan)
    out[ok] = np.einsum("nd,nd->n", vectors[ra[ok]], vectors[rb[ok]])
    return out


def null_cosine_threshold(vectors: np.ndarray, quantile: float = 0.95, n_pairs: int = 100_000,
                          seed: int = 0) -> float:
    """The ``quantile`` of cosines between random distinct embedded tracks (seeded sample):
    a duplicate above it is more similar than chance explains."""
    n = vectors.shape[0]
    if n < 2:
        return float("inf")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xD0B]))
    a = rng.integers(0, n, n_pairs)
    b = (a + rng.integers(1, n, n_pairs)) % n
    return float(np.quantile(np.einsum("nd,nd->n", vectors[a], vectors[b]), quantile))


def verdicts(cosines: np.ndarray, threshold: float) -> np.ndarray:
    """object (n,) ``confirmed`` (cosine >= threshold), ``flagged`` (below) or ``unverified`` (NaN)."""
    cosines = np.asarray(cosines, dtype=np.float64)
    out = np.full(cosines.size, FLAGGED, dtype=object)
    out[cosines >= threshold] = CONFIRMED
    out[np.isnan(cosines)] = UNVERIFIED
    return out
