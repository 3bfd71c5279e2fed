"""Nearest tracks by cosine: through the serving Annoy index when it exists, else exact.

Artifacts (declared in :mod:`spotify_assets.contract`):

* :data:`~spotify_assets.contract.TRACK_EMBEDDINGS` (``tracks/track_embeddings.npz``):
  ``vectors`` float32 (n, d) L2-normalised, ``track_ids`` int64 (n,) dense track ids of
  ``track_dictionary``;
* :data:`~spotify_assets.contract.TRACK_INDEX` (``serve/track_index.ann``): an Annoy index
  (angular metric) whose item ``i`` is row ``i`` of the embeddings (built by the serving
  group; optional).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from spotify_assets.contract import TRACK_EMBEDDINGS

__all__ = [
    "TrackEmbeddings",
    "find_tracks",
    "load_embeddings",
    "similar_tracks",
    "similar_table",
    "track_details",
]

@dataclass(frozen=True)
class TrackEmbeddings:
    """vectors float32 (n, d) L2-normalised; track_ids int64 (n,); row_of int64 (n_ids,) row of
    each track id (-1 = not embedded)."""

    vectors: np.ndarray
    track_ids: np.ndarray

    @property
    def row_of(self) -> np.ndarray:
        row_of = np.full(int(self.track_ids.max(initial=-1)) + 1, -1, np.int64)
        row_of[self.track_ids] = np.arange(self.track_ids.size)
        return row_of

    def rows(self, track_ids: np.ndarray) -> np.ndarray:
        """int64 rows of ``track_ids`` (-1 where a track has no embedding)."""
        ids = np.asarray(track_ids, dtype=np.int64)
        row_of = self.row_of
        ok = (ids >= 0) & (ids < row_of.size)
        return np.where(ok, row_of[np.where(ok, ids, 0)], -1)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> TrackEmbeddings:
        """From :data:`~spotify_assets.contract.TRACK_EMBEDDINGS`' ``vectors`` and ``track_ids``."""
        return cls(np.asarray(arrays["vectors"], np.float32), np.asarray(arrays["track_ids"], np.int64))


def load_embeddings(artifact_root: Path | str) -> TrackEmbeddings:
    """Read :data:`~spotify_assets.contract.TRACK_EMBEDDINGS` under the local artifacts folder
    ``artifact_root`` (pickle disabled)."""
    return TrackEmbeddings.from_arrays(TRACK_EMBEDDINGS.load(TRACK_EMBEDDINGS.under(artifact_root),
                                                             "vectors", "track_ids"))


def _exact(embeddings: TrackEmbeddings, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = embeddings.vectors[rows] @ embeddings.vectors.T  # (q, n)
    sims[np.arange(rows.size), rows] = -np.inf  # never the query itself
    kk = min(k, embeddings.vectors.shape[0] - 1)
    part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk] if kk > 0 else np.zeros((rows.size, 0), np.int64)
    top = np.take_along_axis(sims, part, axis=1)
    order = np.lexsort((part, -top), axis=1)
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(top, order, axis=1)


def _open_index(index_path: Path, embeddings: TrackEmbeddings):
    """The Annoy index at ``index_path`` when it matches ``embeddings`` (one item per row),
    else None, with the reason it was not used (None: it is used)."""
    from spotify_assets.serving.index import load_annoy

    try:
        index = load_annoy(index_path, embeddings.vectors.shape[1], "angular")
    except OSError as exc:
        return None, f"the index could not be read: {exc}"
    n_items = index.get_n_items()
    if n_items != embeddings.vectors.shape[0]:
        index.unload()
        return None, f"the index holds {n_items} items, the embeddings {embeddings.vectors.shape[0]}: rebuild track_index"
    return index, None


def _annoy(index, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    neighbors = np.full((rows.size, k), -1, np.int64)
    sims = np.full((rows.size, k), np.nan)
    for i, row in enumerate(rows.tolist()):
        items, dists = index.get_nns_by_item(row, k + 1, include_distances=True)
        pairs = [(item, dist) for item, dist in zip(items, dists) if item != row][:k]
        if pairs:
            neighbors[i, :len(pairs)] = [p[0] for p in pairs]
            # angular distance d = sqrt(2 - 2 cos) for unit vectors
            sims[i, :len(pairs)] = [1.0 - p[1] ** 2 / 2.0 for p in pairs]
    return neighbors, sims


def similar_tracks(embeddings: TrackEmbeddings, track_ids: np.ndarray, k: int = 10,
                   index_path: Path | str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """The ``k`` nearest embedded tracks of each query track by cosine.

    Parameters
    ----------
    track_ids : int (q,) query track ids; each must have an embedding (ValueError otherwise).
    index_path : an Annoy index over the same rows; used when the file exists and holds one
        item per embedding (approximate), exact brute force otherwise (an index built from
        older embeddings, before ``track_index`` is rebuilt, is not used).

    Returns
    -------
    neighbor_ids : int64 (q, k) track ids (-1 = fewer neighbours exist); cosines : float64
    (q, k); method : "annoy", "exact", or "exact (<why the index was not used>)".
    """
    rows = embeddings.rows(np.atleast_1d(track_ids))
    if (rows < 0).any():
        missing = np.atleast_1d(track_ids)[rows < 0]
        raise ValueError(f"tracks {missing.tolist()} have no embedding (below the minimum count)")
    index, stale = (_open_index(Path(index_path), embeddings) if index_path is not None and Path(index_path).exists()
                    else (None, None))
    if index is not None:
        neighbors, sims, method = *_annoy(index, rows, k), "annoy"
    else:
        neighbors, sims = _exact(embeddings, rows, k)
        method = "exact" if stale is None else f"exact ({stale})"
        if neighbors.shape[1] < k:
            neighbors = np.pad(neighbors, ((0, 0), (0, k - neighbors.shape[1])), constant_values=-1)
            sims = np.pad(sims.astype(np.float64), ((0, 0), (0, k - sims.shape[1])), constant_values=np.nan)
    ids = np.where(neighbors >= 0, embeddings.track_ids[np.maximum(neighbors, 0)], -1)
    return ids.astype(np.int64), np.asarray(sims, dtype=np.float64), method


def find_tracks(con: duckdb.DuckDBPyConnection, query: str, limit: int = 5) -> list[tuple[int, str, str, int]]:
    """Tracks whose name matches ``query``: exact (case-insensitive) matches first, then names
    containing it; most popular first. Rows (track_id, track_name, artist_name, n_playlists)."""
    return con.execute(
        """
        SELECT track_id, track_name, artist_name, n_playlists FROM track_dictionary
        WHERE track_name ILIKE '%' || ? || '%'
        ORDER BY lower(track_name) = lower(?) DESC, n_playlists DESC, track_id
        LIMIT ?
        """,
        [query, query, limit],
    ).fetchall()


def track_details(con: duckdb.DuckDBPyConnection, track_ids: np.ndarray) -> dict[int, tuple[str, str, int]]:
    """{track_id: (track_name, artist_name, n_playlists)} for ``track_ids``."""
    ids = [int(t) for t in np.unique(np.asarray(track_ids, dtype=np.int64)) if t >= 0]
    if not ids:
        return {}
    rows = con.execute(
        "SELECT track_id, track_name, artist_name, n_playlists FROM track_dictionary WHERE track_id IN "
        "(SELECT unnest(?::INTEGER[]))", [ids]).fetchall()
    return {int(r[0]): (r[1], r[2], int(r[3])) for r in rows}


def similar_table(con: duckdb.DuckDBPyConnection, embeddings: TrackEmbeddings, track_id: int, k: int = 10,
                  index_path: Path | str | None = None) -> tuple[list[dict], str]:
    """Rows {rank, track, artist, cosine, playlists} of the ``k`` tracks nearest ``track_id``."""
    ids, sims, method = similar_tracks(embeddings, np.array([track_id]), k, index_path)
    details = track_details(con, ids[0])
    rows = []
    for rank, (tid, sim) in enumerate(zip(ids[0].tolist(), sims[0].tolist()), start=1):
        if tid < 0:
            continue
        name, artist, n = details.get(tid, ("?", "?", 0))
        rows.append({"rank": rank, "track": name, "artist": artist, "cosine": round(float(sim), 3), "playlists": n})
    return rows, method
