"""HTTP service: the page, recommendations, feedback, health, metrics (FastAPI on uvicorn).

FastAPI because request validation, clear 422 bodies and the OpenAPI schema come from the
same pydantic models the handlers use; uvicorn because it is the ASGI server FastAPI is
tested with. Start it with ``python -m spotify_assets.serving serve`` (127.0.0.1:8000).

Each endpoint group is an ``APIRouter`` built by a function over the loaded state, and
:func:`create_app` includes them; another group (say, playlist continuation) is one more
``app.include_router(...)``. Requests pass :mod:`spotify_assets.serving.guards` first (allowed
hosts, body size/time limits, standard JSON), so a handler only ever sees a complete body
of standard JSON from an allowed host. Scoring runs on a small thread pool of its own, never
on the event loop, so ``/healthz`` and cheap requests stay fast while heavy ones are scored.

Each user's list comes from the champion or, during a canary, the candidate bundle
(:mod:`spotify_assets.serving.live`); every list served is logged as an impression with its
model version, and a feedback row records the version that served the list it rates, so the
pipeline measures each version's like-rate (``online_metrics``, ``canary_decision``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator, model_validator

from spotify_assets.feedback import FeedbackLog
from spotify_assets.serving.guards import AllowedHosts, BufferedJsonBody
from spotify_assets.serving.live import LiveServing, Served, Serving
from spotify_assets.serving.metrics import RequestMetrics, ServiceMetrics
from spotify_assets.serving.page import CONTENT_SECURITY_POLICY, STATIC_DIR, render
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
    model: str = Field(description="The model that ranked the list ('popularity' for the cold-start list).")
    model_version: str = Field(description="The serving bundle that answered (<model>-<bundle id>).")
    arm: str = Field(description="'champion', or 'candidate' when a canary routes this user to the new bundle.")
    impression_id: int = Field(description="Id of this served list; send it with the feedback about the list.")
    playlists: list[PlaylistOut]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: UserId
    liked_playlist: StrictInt | None = Field(description="pid of the playlist the user liked, one of shown_playlists; "
                                                         "null when the user liked none of them.")
    shown_playlists: list[StrictInt] = Field(min_length=1, max_length=MAX_SHOWN,
                                             description="pids of the playlists the user was shown, each once.")
    impression_id: StrictInt | None = Field(None, ge=1, description="The impression_id of the recommendation "
                                                                    "response shown; then the user and the shown "
                                                                    "playlists must be that response's.")

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
        if self.liked_playlist is not None and self.liked_playlist not in self.shown_playlists:
            raise ValueError("liked_playlist must be one of shown_playlists (feedback is about a list the user saw)")
        return self


class FeedbackStored(BaseModel):
    feedback_id: int
    stored: bool = True
    known_user: bool = Field(description="Whether the model knows the user. Feedback from new users is stored "
                                         "but does not count toward the retrain threshold.")
    model_version: str = Field(description="The serving bundle whose list this feedback rates.")


class _ScoringPool:
    """A capacity limiter for scoring threads, created on the event loop that first uses it."""

    def __init__(self, threads: int):
        self.threads = max(1, int(threads))
        self._limiter: anyio.CapacityLimiter | None = None

    async def run(self, func, *args):
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.threads)
        return await anyio.to_thread.run_sync(func, *args, limiter=self._limiter)


class _Recorder:
    """Logs served lists as impressions and counts them in the metrics."""

    def __init__(self, log: FeedbackLog, metrics: ServiceMetrics):
        self.log, self.metrics = log, metrics

    def __call__(self, served: list[Served]) -> list[int]:
        ids = self.log.add_impressions([s.impression() for s in served])
        for s in served:
            self.metrics.served(s.recommender.version, s.arm, s.recommendation.cold_start)
        return ids


def recommendations_router(live: LiveServing, settings: ServiceSettings, record: _Recorder) -> APIRouter:
    """``POST /api/playlist/recommend``."""
    router = APIRouter()
    pool = _ScoringPool(settings.scoring_threads)

    def score(user_ids: list[str], k: int) -> bytes:
        served = live.get().recommend(user_ids, k)
        ids = record(served)
        answer = [{**s.recommender.as_dict(s.user_id, s.user, s.recommendation), "arm": s.arm, "impression_id": i}
                  for s, i in zip(served, ids)]
        # serialized here, in the worker thread: a 10,000-playlist answer is ~0.7 MB of JSON
        return json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode()

    @router.post("/api/playlist/recommend", response_model=list[UserRecommendations])
    async def recommend(body: RecommendRequest) -> Response:
        """Top-k playlists per user; unknown users get the popularity list with ``cold_start`` set.
        Each list carries the version that served it and an ``impression_id`` for feedback."""
        asked = len(body.user_ids) * body.k
        if asked > settings.max_playlists_per_request:
            raise HTTPException(status_code=422, detail=(
                f"{len(body.user_ids)} user ids x k={body.k} asks for {asked} playlists; at most "
                f"{settings.max_playlists_per_request} per request: send fewer user ids or a smaller k"))
        return Response(await pool.run(score, body.user_ids, body.k), media_type="application/json")

    return router


def feedback_router(live: LiveServing, log: FeedbackLog, metrics: ServiceMetrics) -> APIRouter:
    """``POST /api/feedback``."""
    router = APIRouter()

    @router.post("/api/feedback", response_model=FeedbackStored, status_code=201)
    def post_feedback(body: FeedbackRequest) -> dict:
        """Store which shown playlist a user liked (``liked_playlist`` null: none of them). Unknown
        playlist ids, a liked playlist that was not shown, repeated shown ids and an
        ``impression_id`` of another user or list are refused (422, nothing stored). Users the
        model does not know are stored with ``known_user`` false."""
        serving = live.get()
        if body.impression_id is not None:
            impression = log.impression(body.impression_id)
            if impression is None or impression[0] != body.user_id:
                raise HTTPException(status_code=422, detail=f"impression_id {body.impression_id} is not a list "
                                                            f"served to this user_id")
            if set(impression[2]) != set(body.shown_playlists):
                raise HTTPException(status_code=422, detail=f"shown_playlists differ from the list served as "
                                                            f"impression {body.impression_id}")
            version = impression[1]
        else:
            version = serving.recommender(serving.arm_of(body.user_id)).version
        rec = serving.recommender(serving.arm_of(body.user_id))
        unknown = sorted({p for p in body.shown_playlists if p not in rec.pid_to_index})
        if unknown:
            raise HTTPException(status_code=422, detail=f"unknown playlist ids: {unknown[:20]}")
        known_user = body.user_id in rec.user_to_index
        feedback_id = log.add(body.user_id, body.liked_playlist, body.shown_playlists, known_user=known_user,
                              model_version=version, impression_id=body.impression_id)
        metrics.feedback.labels("true" if body.liked_playlist is not None else "false").inc()
        return {"feedback_id": feedback_id, "known_user": known_user, "model_version": version}

    return router


def health_router(live: LiveServing, log: FeedbackLog, metrics: ServiceMetrics) -> APIRouter:
    """``GET /healthz`` and ``GET /metrics`` (Prometheus text format)."""
    router = APIRouter()

    @router.get("/healthz")
    def healthz() -> dict:
        serving = live.get()
        rec = serving.champion
        return {"status": "ok", "model": rec.model, "model_version": rec.version, "versions": serving.versions(),
                "candidate_share": serving.rollout.candidate_share if serving.candidate is not None else 0.0,
                "users": len(rec.user_ids), "playlists": rec.n_playlists, "feedback_rows": log.stats()[0]}

    @router.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        serving = live.get()
        report_serving(metrics, serving)
        metrics.feedback_rows.set(log.stats()[0])
        payload, content_type = metrics.exposition()
        return Response(payload, media_type=content_type)

    return router


def report_serving(metrics: ServiceMetrics, serving: Serving) -> None:
    bundles = {arm: (serving.recommender(arm).model, serving.recommender(arm).kind, version)
               for arm, version in serving.versions().items()}
    metrics.serving(bundles, serving.rollout.candidate_share if serving.candidate is not None else 0.0)


def page_router(live: LiveServing, settings: ServiceSettings, record: _Recorder) -> APIRouter:
    """``GET /``: the page (see :mod:`spotify_assets.serving.page`)."""
    router = APIRouter()
    pool = _ScoringPool(settings.scoring_threads)

    def build(user_id: str | None) -> str:
        serving = live.get()
        served, impression = None, None
        if user_id:
            served = serving.recommend([user_id], 5)[0]
            impression = record([served])[0]
        return render(serving, user_id, served, impression)

    @router.get("/", include_in_schema=False)
    async def page(user_id: Annotated[str | None, Query(max_length=200)] = None) -> HTMLResponse:
        html = await pool.run(build, (user_id or "").strip() or None)
        return HTMLResponse(html, headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY,
                                           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})

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
    """The ASGI app over the materialized (or deployed) serving bundles and a feedback SQLite file."""
    settings = settings or ServiceSettings()
    live = LiveServing(artifacts_dir, search=settings.search)
    serving = live.get()  # fail at start-up, not at the first request, when nothing is materialized
    log = FeedbackLog(feedback_path)
    metrics = ServiceMetrics()
    report_serving(metrics, serving)
    record = _Recorder(log, metrics)
    app = FastAPI(title="spotify_assets recommendations",
                  description="Top-k playlists per user from the best materialized model, and user feedback.",
                  version="1.0", docs_url=None, redoc_url=None)
    app.include_router(page_router(live, settings, record))
    app.include_router(recommendations_router(live, settings, record))
    app.include_router(feedback_router(live, log, metrics))
    app.include_router(health_router(live, log, metrics))
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="page-assets")
    add_offline_docs(app)

    @app.exception_handler(FileNotFoundError)
    async def missing_bundle(request: Request, exc: FileNotFoundError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    from spotify_assets.tracks.api import continuation_router  # POST /api/playlist/continue

    app.include_router(continuation_router(artifacts_dir))

    def refused(route: str, status: int, body: bytes) -> None:
        log.add_refusal(route, status, _refusal_reason(body))

    # the last added runs first: metrics around everything, then the host check, then the body
    app.add_middleware(BufferedJsonBody, limit=settings.max_body_bytes, timeout=settings.body_timeout_seconds)
    app.add_middleware(AllowedHosts, hosts=settings.allowed_hosts)
    app.add_middleware(RequestMetrics, metrics=metrics, on_refused=refused)
    return app


def _refusal_reason(body: bytes) -> str:
    """One line from a refusal's JSON body: the detail, or pydantic's first error."""
    try:
        detail = json.loads(body)["detail"]
    except (ValueError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace")
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        first = detail[0]
        return f"{'.'.join(str(x) for x in first.get('loc', ()))}: {first.get('msg', '')}"[:300]
    return str(detail)[:300]
