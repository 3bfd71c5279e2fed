"""A seeded serving bundle in the layout ``serving_model`` + ``playlist_index`` write, for HTTP
tests that need a service in a second instead of a materialized pipeline (~30 s).

The vectors are random (clustered), the index is a real Annoy index over them, and the
recommender loads the folder exactly as it loads a pipeline's; tests that check the content
of recommendations against the pipeline use ``test_serving_assets.py``'s ``served`` fixture.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from spotify_assets.contract import BUNDLE, BUNDLE_INFO, BUNDLE_PLAYLISTS, BUNDLE_USERS, PLAYLIST_INDEX, PLAYLIST_INDEX_INFO
from spotify_assets.serving.index import build_annoy


@dataclass(frozen=True)
class BundleFacts:
    artifacts: Path
    user_ids: list[str]  # every user the model knows, dense order
    pids: list[int]  # every playlist, dense order
    cold_users: list[str]
    bundle_id: str


def write_bundle(artifacts: Path, n_users: int = 200, n_playlists: int = 1500, dim: int = 16, seed: int = 0,
                 excluded_per_user: int = 8, use_index: bool = True) -> BundleFacts:
    """Write ``serve/`` under ``artifacts``: vectors (float32, ``dim + 1`` with the bias column),
    per-user exclusions, a tenth of the users cold, a popularity list of 100, names, user ids,
    and an Annoy ``dot`` index over every playlist (``use_index=False`` marks exact scoring faster)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(12, dim)) * 2
    users = (centers[rng.integers(0, 12, n_users)] + rng.normal(size=(n_users, dim))).astype(np.float32)
    items = (centers[rng.integers(0, 12, n_playlists)] + rng.normal(size=(n_playlists, dim))).astype(np.float32)
    user_vectors = np.hstack([users, np.ones((n_users, 1), np.float32)])
    playlist_vectors = np.hstack([items, rng.normal(size=(n_playlists, 1)).astype(np.float32)])
    excluded = np.sort(rng.integers(0, n_playlists, (n_users, excluded_per_user)), axis=1).astype(np.int64)
    cold = rng.random(n_users) < 0.1
    popularity = rng.random(n_playlists)
    popular = np.argsort(-popularity, kind="stable")[:100].astype(np.int64)
    indexed = np.arange(n_playlists, dtype=np.int64)
    pids = (100_000 + rng.permutation(n_playlists) * 3).astype(np.int64)
    user_ids = [f"user-{i:05d}" for i in range(n_users)]
    bundle_id = f"synthetic-{seed}-{n_users}x{n_playlists}"
    BUNDLE.under(artifacts).parent.mkdir(parents=True, exist_ok=True)
    rows = [np.unique(r) for r in excluded]
    arrays = dict(user_vectors=user_vectors, playlist_vectors=playlist_vectors,
                  excluded_indptr=np.concatenate([[0], np.cumsum([r.size for r in rows])]).astype(np.int64),
                  excluded=np.concatenate(rows).astype(np.int64), cold_start=cold, popular=popular,
                  popular_scores=popularity[popular].astype(np.float32), indexed_playlists=indexed)
    BUNDLE.check_arrays(arrays)  # the layout serving_model writes, minus the song matrices (optional)
    np.savez(BUNDLE.under(artifacts), **arrays)
    BUNDLE_INFO.under(artifacts).write_text(json.dumps({
        "model": "bpr", "chosen_by": "synthetic", "bundle_id": bundle_id, "n_users": n_users,
        "n_playlists": n_playlists, "indexed_playlists": n_playlists, "dim": dim + 1}))
    pq.write_table(pa.table({"pid": pids, "name": [f"playlist {i}" for i in range(n_playlists)]}),
                   BUNDLE_PLAYLISTS.under(artifacts))
    pq.write_table(pa.table({"user_id": user_ids}), BUNDLE_USERS.under(artifacts))
    build_annoy(playlist_vectors, PLAYLIST_INDEX.under(artifacts), metric="dot", n_trees=10, seed=seed)
    PLAYLIST_INDEX_INFO.under(artifacts).write_text(json.dumps({
        "bundle_id": bundle_id, "metric": "dot", "dim": dim + 1, "n_trees": 10, "search_k": -1,
        "index_faster_than_exact": use_index}))
    return BundleFacts(Path(artifacts), user_ids, pids.tolist(), [u for u, c in zip(user_ids, cold) if c], bundle_id)
