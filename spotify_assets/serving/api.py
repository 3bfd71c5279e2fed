"""HTTP service: recommendations, feedback, health (FastAPI on uvicorn).

FastAPI because request validation, clear 422 bodies and the OpenAPI schema come from the
same pydantic models the handlers use; uvicorn because it is the ASGI server FastAPI is
tested with. Start it with ``python -m spotify_assets.serving serve`` (127.0.0.1:8000).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from spotify_assets.serving.feedback import FeedbackLog
from spotify_assets.serving.recommender import PLAYLIST_INDEX, Recommender, StaleIndexError, index_info_path

MAX_BODY_BYTES = 64 * 1024
MAX_USERS_PER_REQUEST = 1000
MAX_SHOWN = 500

UserId = Annotated[StrictStr, Field(min_length=1, max_length=200)]


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_ids: list[UserId] = Field(min_length=1, max_length=MAX_USERS_PER_REQUEST,
                                   description="Public user ids (the Taste Profile user ids).")
    k: StrictInt = Field(5, ge=1, le=100, description="Playlists per user.")


class PlaylistOut(BaseModel):
    pid: int
    name: str
    score: float


class UserRecommendations(BaseModel):
    user_id: str
    known: bool = Field(description="False when the user id is not in the model: the cold-start list is served.")
    cold_start: bool = Field(description="True when the popularity list was served (unknown user or no history).")
    model: str
    playlists: list[PlaylistOut]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: UserId
    liked_playlist: StrictInt = Field(description="pid of the playlist the user liked.")
    shown_playlists: list[StrictInt] = Field(min_length=1, max_length=MAX_SHOWN,
                                             description="pids of the playlists the user was shown.")


class FeedbackStored(BaseModel):
    feedback_id: int
    stored: bool = True


class BodySizeLimit:
    """ASGI middleware: 413 for bodies over ``limit`` bytes, by header or by counting chunks."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._reject(send)
        seen = 0

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _TooLarge:
            await self._reject(send)

    async def _reject(self, send):
        body = f'{{"detail":"request body larger than {self.limit} bytes"}}'.encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class _LiveRecommender:
    """Holds the loaded bundle and reloads it when the pipeline writes a new one."""

    def __init__(self, artifacts_dir: Path):
        self.artifacts_dir = Path(artifacts_dir)
        self._lock = threading.Lock()
        self._stamp = None
        self._current: Recommender | None = None

    def get(self) -> Recommender:
        # playlist_index writes its .json last, after the bundle and the index file
        info = self.artifacts_dir.joinpath(*index_info_path(PLAYLIST_INDEX))
        stamp = info.stat().st_mtime_ns if info.exists() else None
        with self._lock:
            if self._current is None or stamp != self._stamp:
                try:
                    self._current = Recommender(self.artifacts_dir)
                    self._stamp = stamp
                except (StaleIndexError, OSError, ValueError, KeyError):
                    if self._current is None:
                        raise
                    # mid-rewrite by the pipeline: keep answering from the loaded bundle
            return self._current


def create_app(artifacts_dir: Path, feedback_path: Path, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The ASGI app over a materialized serving bundle and a feedback SQLite file."""
    live = _LiveRecommender(artifacts_dir)
    live.get()  # fail at start-up, not at the first request, when nothing is materialized
    feedback = FeedbackLog(feedback_path)
    app = FastAPI(title="spotify_assets recommendations",
                  description="Top-k playlists per user from the best materialized model, and user feedback.",
                  version="1.0")

    @app.get("/healthz")
    def healthz() -> dict:
        rec = live.get()
        return {"status": "ok", "model": rec.model, "users": len(rec.user_ids), "playlists": rec.n_playlists,
                "feedback_rows": feedback.stats()[0]}

    @app.post("/api/playlist/recommend", response_model=list[UserRecommendations])
    async def recommend(body: RecommendRequest) -> list[dict]:
        """Top-k playlists per user; unknown users get the popularity list with ``cold_start`` set."""
        return live.get().recommend(body.user_ids, k=body.k)

    @app.post("/api/feedback", response_model=FeedbackStored, status_code=201)
    def post_feedback(body: FeedbackRequest) -> dict:
        """Store which shown playlist a user liked. Unknown playlist ids are refused (nothing stored)."""
        known = live.get().pid_to_index
        unknown = sorted({p for p in [body.liked_playlist, *body.shown_playlists] if p not in known})
        if unknown:
            raise HTTPException(status_code=422, detail=f"unknown playlist ids: {unknown[:20]}")
        return {"feedback_id": feedback.add(body.user_id, body.liked_playlist, body.shown_playlists)}

    @app.exception_handler(FileNotFoundError)
    async def missing_bundle(request: Request, exc: FileNotFoundError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    from spotify_assets.tracks.api import continuation_router  # POST /api/playlist/continue

    app.include_router(continuation_router(artifacts_dir))
    if max_body_bytes:
        app.add_middleware(BodySizeLimit, limit=max_body_bytes)
    return app
