"""Serving: Annoy indexes, top-k recommendations, the HTTP service.

``recommend(user_ids, k=5)`` answers from the materialized serving bundle under the artifacts
store (``$SPOTIFY_ASSETS_ARTIFACTS``, default ``$SPOTIFY_ASSETS_DATA_DIR/artifacts``, resolved
by :mod:`spotify_assets.paths` exactly as the pipeline resolves it); it loads the bundle once
per process and never retrains. Nothing here imports Dagster.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from spotify_assets.paths import local_artifacts_dir
from spotify_assets.serving.recommender import Recommender

__all__ = ["Recommender", "default_artifacts_dir", "recommend"]


def default_artifacts_dir() -> Path:
    """The artifacts store the pipeline writes to, as a local folder."""
    return local_artifacts_dir()


@lru_cache(maxsize=4)
def _loaded(artifacts_dir: str) -> Recommender:
    return Recommender(Path(artifacts_dir))


def recommend(user_ids: list[str] | str, k: int = 5, artifacts_dir: Path | None = None) -> list[dict]:
    """Top-``k`` playlists per user id (``[{"user_id", "known", "cold_start", "model", "playlists"}]``).

    Unknown ids get the popularity list with ``cold_start=True`` and ``known=False``.
    """
    if isinstance(user_ids, str):
        user_ids = [user_ids]
    folder = Path(artifacts_dir) if artifacts_dir is not None else default_artifacts_dir()
    return _loaded(str(folder.resolve())).recommend(list(user_ids), k=k)
