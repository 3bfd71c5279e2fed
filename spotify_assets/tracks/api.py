"""``POST /api/playlist/continue``: tracks to continue a playlist from its name and/or its
tracks, served by the two-tower model (a FastAPI router the recommendation service mounts).

The model file (``tracks/two_tower.pt`` under the artifacts folder, written by the
``two_tower_model`` asset) holds the weights, the vocabulary and each vocabulary track's URI,
name and artist, so answering never touches the warehouse. It is loaded on the first request
and reloaded when the pipeline replaces the file; until one exists the endpoint answers 503.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

from spotify_assets.contract import TWO_TOWER
from spotify_assets.tracks.two_tower import TwoTowerModel, load_two_tower

__all__ = ["ContinueRequest", "ContinueResponse", "LiveTwoTower", "continuation_router", "continue_playlist"]

MAX_SEED_TRACKS = 500
MAX_K = 500
MAX_NAME_CHARS = 200

TrackUri = Annotated[StrictStr, Field(min_length=1, max_length=200)]


class ContinueRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr = Field("", max_length=MAX_NAME_CHARS, description="The playlist's name (may be empty).")
    tracks: list[TrackUri] = Field(default_factory=list, max_length=MAX_SEED_TRACKS,
                                   description="Track URIs already in the playlist (spotify:track:...).")
    k: StrictInt = Field(10, ge=1, le=MAX_K, description="Tracks to return.")

    @model_validator(mode="after")
    def _something_to_go_on(self) -> ContinueRequest:
        if not self.name.strip() and not self.tracks:
            raise ValueError("give a playlist name, tracks, or both")
        return self


class TrackOut(BaseModel):
    track_uri: str
    track_name: str
    artist_name: str
    score: float


class ContinueResponse(BaseModel):
    model: str = Field(description="The model that ranked the tracks.")
    name_used: bool = Field(description="Whether the name gave the model anything to read (letters or digits).")
    tracks_used: list[str] = Field(description="Request URIs the model knows and used as context.")
    ignored_tracks: list[str] = Field(
        description="Request URIs the model does not know (not in its training playlists): ignored.")
    tracks: list[TrackOut]


def continue_playlist(model: TwoTowerModel, name: str, track_uris: list[str], k: int) -> dict:
    """The response body for one playlist: the top ``k`` vocabulary tracks for ``name`` and
    the known URIs of ``track_uris`` (never one of them), with names and artists."""
    catalogue = model.catalogue
    if catalogue is None:
        raise ValueError("the two-tower model file has no track catalogue: rematerialize two_tower_model")
    uri_to_row = model.uri_rows()
    rows = [uri_to_row.get(uri, -1) for uri in track_uris]
    used = list(dict.fromkeys(u for u, r in zip(track_uris, rows) if r >= 0))
    ignored = list(dict.fromkeys(u for u, r in zip(track_uris, rows) if r < 0))
    seeds = model.vocab_track_ids[[r for r in rows if r >= 0]] if used else np.zeros(0, np.int64)
    ids, scores = model.rank([name], np.asarray(seeds, np.int64).reshape(1, -1) if seeds.size else
                             np.full((1, 1), -1, np.int64), k)
    out_rows = model.rows(ids[0][ids[0] >= 0])
    return {
        "model": "two_tower",
        "name_used": model.name_has_features(name),
        "tracks_used": used,
        "ignored_tracks": ignored,
        "tracks": [{"track_uri": catalogue["track_uri"][r], "track_name": catalogue["track_name"][r],
                    "artist_name": catalogue["artist_name"][r], "score": round(float(s), 6)}
                   for r, s in zip(out_rows.tolist(), scores[0][ids[0] >= 0].tolist())],
    }


class LiveTwoTower:
    """The loaded model, reloaded when the file changes (the pipeline replaces it atomically,
    so a reader sees the old file or the new one)."""

    def __init__(self, artifacts_dir: Path | str):
        self.path = TWO_TOWER.under(artifacts_dir)
        self._lock = threading.Lock()
        self._stamp: int | None = None
        self._model: TwoTowerModel | None = None

    def get(self) -> TwoTowerModel:
        """The current model; FileNotFoundError when none was ever materialized."""
        stamp = self.path.stat().st_mtime_ns if self.path.exists() else None
        with self._lock:
            if self._model is None or (stamp is not None and stamp != self._stamp):
                if stamp is None:
                    raise FileNotFoundError(f"no two-tower model at {self.path}: materialize two_tower_model "
                                            "(`make run`)")
                try:
                    model = load_two_tower(self.path)
                    model.track_vectors()  # score the vocabulary once, not on the first request
                    self._model, self._stamp = model, stamp
                except (OSError, RuntimeError, ValueError, KeyError):
                    if self._model is None:
                        raise
            return self._model


def continuation_router(artifacts_dir: Path | str) -> APIRouter:
    """The router with ``POST /api/playlist/continue`` over the model in ``artifacts_dir``."""
    live = LiveTwoTower(artifacts_dir)
    router = APIRouter()
    lock = threading.Lock()  # torch modules are not safe to call from several threads at once

    @router.post("/api/playlist/continue", response_model=ContinueResponse)
    def continue_endpoint(body: ContinueRequest) -> dict:
        """Tracks to add to a playlist given its name, its tracks, or both. URIs the model
        does not know are ignored and listed in ``ignored_tracks``; the playlist's own tracks
        are never returned."""
        try:
            model = live.get()
        except FileNotFoundError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            raise HTTPException(status_code=503, detail=f"the two-tower model could not be loaded: {exc}") from exc
        try:
            with lock:
                return continue_playlist(model, body.name, body.tracks, body.k)
        except ValueError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc

    return router
