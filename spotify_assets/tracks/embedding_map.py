"""A 2-D map of track embeddings coloured by the genre their playlists' names suggest.
No Dagster imports; matplotlib's Agg canvas only (no pyplot state, no display).

Genres come from playlist *names* alone: a name that contains one of a genre's keywords
(whole words, after lower-casing) votes for that genre for every track in the playlist; a
track takes the genre with most votes (ties: the earlier genre in :data:`GENRE_KEYWORDS`).
The keywords are the common genre/mood words of real MPD playlist names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["GENRE_KEYWORDS", "UNKNOWN", "name_genres", "pca_2d", "render_map", "track_genres"]

UNKNOWN = "unknown"

#: genre -> keywords/phrases found in playlist names (matched as whole words).
GENRE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "christmas": ("christmas", "xmas", "holiday", "winter wonderland"),
    "worship": ("worship", "gospel", "praise", "sunday service", "christian"),
    "country": ("country", "honky tonk", "backroads"),
    "hip hop": ("hip hop", "rap", "bars", "hiphop"),
    "r&b": ("r&b", "rnb", "slow jams"),
    "rock": ("rock", "guitar heroes", "rock n roll"),
    "metal": ("metal", "headbang", "mosh pit"),
    "punk": ("punk",),
    "emo": ("emo", "scene"),
    "indie": ("indie", "hipster"),
    "folk": ("folk", "folksy", "campfire"),
    "edm": ("edm", "rave", "festival", "bass drops"),
    "house": ("house",),
    "techno": ("techno", "berlin", "minimal"),
    "dubstep": ("dubstep", "wubs", "brostep"),
    "trap": ("trap",),
    "latin": ("latin", "latino", "latina", "reggaeton"),
    "reggae": ("reggae", "irie", "island vibes"),
    "jazz": ("jazz", "jazzy"),
    "blues": ("blues", "bluesy"),
    "soul": ("soul", "soulful"),
    "funk": ("funk", "funky", "groove"),
    "disco": ("disco", "boogie"),
    "classical": ("classical", "piano", "orchestra", "mozart"),
    "k-pop": ("kpop", "k-pop", "idols"),
    "workout": ("workout", "gym", "running", "pump up", "cardio"),
    "party": ("party", "pregame", "turn up"),
    "chill": ("chill", "chillin", "relax", "lazy sunday"),
    "sleep": ("sleep", "bedtime", "lullabies"),
    "sad": ("sad", "heartbreak", "feels"),
    "love": ("love", "romance", "date night"),
    "summer": ("summer", "beach", "sunshine"),
    "road trip": ("road trip", "roadtrip", "drive", "car songs"),
    "throwbacks": ("throwback", "throwbacks", "old school", "nostalgia", "90s", "80s", "oldies"),
    "pop": ("pop", "top 40", "hits"),
}


def _patterns() -> list[tuple[str, re.Pattern]]:
    return [(genre, re.compile(r"(?<![\w&-])(?:" + "|".join(re.escape(k) for k in words) + r")(?![\w&-])"))
            for genre, words in GENRE_KEYWORDS.items()]


def name_genres(names: Sequence[str | None]) -> np.ndarray:
    """int64 (n,) index into ``GENRE_KEYWORDS`` of the first genre whose keyword occurs in
    each playlist name (lower-cased, whitespace-collapsed), -1 when none does. Each
    distinct name is matched once."""
    patterns = _patterns()
    memo: dict[str | None, int] = {}
    out = np.empty(len(names), np.int64)
    for i, name in enumerate(names):
        if name not in memo:
            text = " ".join(str(name or "").lower().split())
            memo[name] = next((g for g, (_, pat) in enumerate(patterns) if pat.search(text)), -1)
        out[i] = memo[name]
    return out


def track_genres(row_playlist_genre: np.ndarray, row_track: np.ndarray, tracks: np.ndarray) -> np.ndarray:
    """int64 (m,) majority genre of each of ``tracks`` (int (m,) track ids), -1 without votes.

    row_playlist_genre : int (nnz,) genre of the playlist of each playlist-track row (-1 = none).
    row_track : int (nnz,) track id of the same rows.
    """
    tracks = np.asarray(tracks, dtype=np.int64)
    n_genres = len(GENRE_KEYWORDS)
    pos = np.full(int(max(tracks.max(initial=0), np.max(row_track, initial=0))) + 1, -1, np.int64)
    pos[tracks] = np.arange(tracks.size)
    rows = pos[np.asarray(row_track, dtype=np.int64)]
    ok = (rows >= 0) & (np.asarray(row_playlist_genre) >= 0)
    votes = np.bincount(rows[ok] * n_genres + row_playlist_genre[ok], minlength=tracks.size * n_genres)
    votes = votes.reshape(tracks.size, n_genres)
    return np.where(votes.max(axis=1) > 0, votes.argmax(axis=1), -1).astype(np.int64)


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project float (n, d) rows on their first two principal components.

    Returns
    -------
    coords : float64 (n, 2); explained : float64 (2,) share of variance of each component.
    Each component's sign is fixed (largest-magnitude loading positive), so the map is
    reproducible.
    """
    x = np.asarray(vectors, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    if x.shape[0] < 2:
        return np.zeros((x.shape[0], 2)), np.zeros(2)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:2]
    comps = comps * np.sign(comps[np.arange(comps.shape[0]), np.abs(comps).argmax(axis=1)])[:, None]
    coords = x @ comps.T
    if coords.shape[1] < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    var = s ** 2
    explained = np.pad(var[:2] / max(var.sum(), 1e-300), (0, max(0, 2 - var[:2].size)))
    return coords, explained


def render_map(coords: np.ndarray, genre: np.ndarray, path: Path | str, title: str, top_genres: int = 10,
               explained: np.ndarray | None = None) -> dict[str, int]:
    """Write a PNG scatter of ``coords`` (n, 2) coloured by ``genre`` (int (n,), -1 = unknown).

    The ``top_genres`` most frequent genres get their own colour; the rest are grey "other".
    Returns the number of points per legend entry.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = list(GENRE_KEYWORDS)
    genre = np.asarray(genre, dtype=np.int64)
    known = genre[genre >= 0]
    counts = np.bincount(known, minlength=len(labels))
    shown = [g for g in np.argsort(-counts, kind="stable")[:top_genres] if counts[g] > 0]
    fig = Figure(figsize=(8, 6.5), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    other = ~np.isin(genre, shown)
    legend = {}
    if other.any():
        ax.scatter(coords[other, 0], coords[other, 1], s=6, c="#c8c8c8", linewidths=0, label="other / unknown")
        legend["other / unknown"] = int(other.sum())
    cmap = matplotlib.colormaps["tab10" if len(shown) <= 10 else "tab20"]
    for i, g in enumerate(shown):
        mask = genre == g
        ax.scatter(coords[mask, 0], coords[mask, 1], s=8, color=cmap(i % cmap.N), linewidths=0, label=labels[g])
        legend[labels[g]] = int(mask.sum())
    if explained is not None:
        ax.set_xlabel(f"PC1 ({100 * explained[0]:.1f}% of variance)")
        ax.set_ylabel(f"PC2 ({100 * explained[1]:.1f}% of variance)")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=7, markerscale=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return legend
