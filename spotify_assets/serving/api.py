"""HTTP service: recommendations, feedback, health (FastAPI on uvicorn).

FastAPI because request validation, clear 422 bodies and the OpenAPI schema come from the
same pydantic models the handlers use; uvicorn because it is the ASGI server FastAPI is
tested with. Start it with ``python -m spotify_assets.serving serve`` (127.0.0.1:8000).

Each endpoint group is an ``APIRouter`` built by a function over the loaded state, and
:func:`create_app` includes them; another group (say, playlist continuation) is one more
``app.include_router(...)``. Requests pass :mod:`spotify_assets.serving.guards` first (allowed
hosts, body size/time limits, standard JSON), so a handler only ever sees a complete body
of standard JSON from an allowed host. Scoring runs on a small thread pool of its own, never
on the event loop, so ``/healthz`` and cheap requests stay fast while heavy ones are scored.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator, model_validator

from spotify_assets.feedback import FeedbackLog
from spotify_assets.serving.guards import AllowedHosts, BufferedJsonBody
from spotify_assets.serving.recommender import PLAYLIST_INDEX, Recommender, StaleIndexError, index_info_path
from spotify_assets.serving.settings import ServiceSettings

MAX_USERS_PER_REQUEST = 1000
MAX_K = 100
MAX_SHOWN = 500


UserId = Annotated[StrictStr, Field(min_length=1, max_length=200)]


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_ids: list[UserId] = Field(min_length=1, max_length=MAX_USERS_PER_REQUEST,
                                   description="Public user ids (the Taste Profile user ids). "
                                               "len(user_ids) x k may not exceed the service's "
                                               "max_playlists_per_request (10,000 by default).")
    k: StrictInt = Field(5, ge=1, le=MAX_K, description="Playlists per user.")


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
    liked_playlist: StrictInt = Field(description="pid of the playlist the user liked; one of shown_playlists.")
    shown_playlists: list[StrictInt] = Field(min_length=1, max_length=MAX_SHOWN,
                                             description="pids of the playlists the user was shown, each once.")

    @field_validator("shown_playlists")
    @classmethod
    def _each_once(cls, shown: list[int]) -> list[int]:
        if len(set(shown)) != len(shown):
            seen: set[int] = set()
            repeated = sorted({p for p in shown if p in seen or seen.add(p)})
            raise ValueError(f"shown_playlists repeats pids {repeated[:20]}: list each shown playlist once")
        return shown

    @model_validator(mode="after")
    def _liked_was_shown(self) -> FeedbackRequest:
        if self.liked_playlist not in self.shown_playlists:
            raise ValueError("liked_playlist must be one of shown_playlists (feedback is about a list the user saw)")
        return self


class FeedbackStored(BaseModel):
    feedback_id: int
    stored: bool = True
    known_user: bool = Field(description="Whether the model knows the user. Feedback from new users is stored "
                                         "but does not count toward the retrain threshold.")


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


class _ScoringPool:
    """A capacity limiter for scoring threads, created on the event loop that first uses it."""

    def __init__(self, threads: int):
        self.threads = max(1, int(threads))
        self._limiter: anyio.CapacityLimiter | None = None

    async def run(self, func, *args):
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.threads)
        return await anyio.to_thread.run_sync(func, *args, limiter=self._limiter)


def recommendations_router(live: _LiveRecommender, settings: ServiceSettings) -> APIRouter:
    """``POST /api/playlist/recommend``."""
    router = APIRouter()
    pool = _ScoringPool(settings.scoring_threads)

    def score(user_ids: list[str], k: int) -> bytes:
        # serialized here, in the worker thread: a 10,000-playlist answer is ~0.7 MB of JSON
        return json.dumps(live.get().recommend(user_ids, k=k), ensure_ascii=False, separators=(",", ":")).encode()

    @router.post("/api/playlist/recommend", response_model=list[UserRecommendations])
    async def recommend(body: RecommendRequest) -> Response:
        """Top-k playlists per user; unknown users get the popularity list with ``cold_start`` set."""
        asked = len(body.user_ids) * body.k
        if asked > settings.max_playlists_per_request:
            raise HTTPException(status_code=422, detail=(
                f"{len(body.user_ids)} user ids x k={body.k} asks for {asked} playlists; at most "
                f"{settings.max_playlists_per_request} per request: send fewer user ids or a smaller k"))
        return Response(await pool.run(score, body.user_ids, body.k), media_type="application/json")

    return router


def feedback_router(live: _LiveRecommender, log: FeedbackLog) -> APIRouter:
    """``POST /api/feedback``."""
    router = APIRouter()

    @router.post("/api/feedback", response_model=FeedbackStored, status_code=201)
    def post_feedback(body: FeedbackRequest) -> dict:
        """Store which shown playlist a user liked. Unknown playlist ids, a liked playlist that was
        not shown and repeated shown ids are refused (422, nothing stored). Users the model does not
        know are stored with ``known_user`` false."""
        rec = live.get()
        unknown = sorted({p for p in body.shown_playlists if p not in rec.pid_to_index})
        if unknown:
            raise HTTPException(status_code=422, detail=f"unknown playlist ids: {unknown[:20]}")
        known_user = body.user_id in rec.user_to_index
        feedback_id = log.add(body.user_id, body.liked_playlist, body.shown_playlists, known_user=known_user)
        return {"feedback_id": feedback_id, "known_user": known_user}

    return router


def health_router(live: _LiveRecommender, log: FeedbackLog) -> APIRouter:
    """``GET /healthz``."""
    router = APIRouter()

    @router.get("/healthz")
    def healthz() -> dict:
        rec = live.get()
        return {"status": "ok", "model": rec.model, "users": len(rec.user_ids), "playlists": rec.n_playlists,
                "feedback_rows": log.stats()[0]}

    return router


def add_offline_docs(app: FastAPI) -> None:
    """Swagger UI at ``/docs`` from files shipped in the ``swagger-ui-bundle-v2`` wheel, served
    under ``/docs/assets`` (FastAPI's default page loads them from a CDN: blank offline)."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} - docs",
                                   swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/assets/swagger-ui.css",
                                   swagger_favicon_url="/docs/assets/favicon-32x32.png")


def create_app(artifacts_dir: Path, feedback_path: Path, settings: ServiceSettings | None = None) -> FastAPI:
    """The ASGI app over a materialized serving bundle and a feedback SQLite file."""
    settings = settings or ServiceSettings()
    live = _LiveRecommender(artifacts_dir)
    live.get()  # fail at start-up, not at the first request, when nothing is materialized
    log = FeedbackLog(feedback_path)
    app = FastAPI(title="spotify_assets recommendations",
                  description="Top-k playlists per user from the best materialized model, and user feedback.",
                  version="1.0", docs_url=None, redoc_url=None)
    app.include_router(recommendations_router(live, settings))
    app.include_router(feedback_router(live, log))
    app.include_router(health_router(live, log))
    add_offline_docs(app)

    @app.exception_handler(FileNotFoundError)
    async def missing_bundle(request: Request, exc: FileNotFoundError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    # the last added runs first: the host check, then the body
    app.add_middleware(BufferedJsonBody, limit=settings.max_body_bytes, timeout=settings.body_timeout_seconds)
    app.add_middleware(AllowedHosts, hosts=settings.allowed_hosts)
    return app
