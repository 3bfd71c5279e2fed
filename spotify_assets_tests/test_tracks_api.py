"""POST /api/playlist/continue over real HTTP (uvicorn on 127.0.0.1, a free port, always
stopped) and ``python -m spotify_assets.tracks continue``, on a two-tower model trained on
planted genre playlists."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI

from spotify_assets.contract import TWO_TOWER
from spotify_assets.tracks.__main__ import main as tracks_main
from spotify_assets.tracks.api import MAX_K, MAX_SEED_TRACKS, continuation_router
from spotify_assets_tests.servers import free_port
from spotify_assets_tests.test_two_tower import Planted, train_planted


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder whose artifacts/ holds a two-tower model of the planted playlists."""
    data = tmp_path_factory.mktemp("api") / "data"
    train_planted(Planted(), TWO_TOWER.under(data / "artifacts"))
    return data


def uri(track: int) -> str:
    return f"spotify:track:{track:022d}"  # the planted catalogue's URIs


class Server:
    """uvicorn serving ``app`` on 127.0.0.1:<free port> in a thread."""

    def __init__(self, app: FastAPI):
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def post(self, body: object, raw: bytes | None = None) -> tuple[int, dict]:
        data = raw if raw is not None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/playlist/continue", data=data,
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


def app_for(data_dir: Path) -> FastAPI:
    app = FastAPI()
    app.include_router(continuation_router(data_dir / "artifacts"))
    return app


@pytest.fixture(scope="module")
def server(data_dir: Path):
    with Server(app_for(data_dir)) as running:
        yield running


def test_continue_endpoint_answers_names_tracks_and_both(server: Server) -> None:
    genre_of = Planted().track_genre
    status, body = server.post({"name": "Country Roads 🔥", "k": 15})
    assert status == 200 and body["model"] == "two_tower" and body["name_used"]
    assert len(body["tracks"]) == 15 and body["ignored_tracks"] == [] and body["tracks_used"] == []
    ids = [int(t["track_uri"].rsplit(":", 1)[1]) for t in body["tracks"]]
    assert (genre_of[ids] == 3).mean() >= 0.9  # the planted country genre, from the name alone
    first = body["tracks"][0]
    assert first["track_name"] == f"Song {ids[0]}" and first["artist_name"] == f"Artist {ids[0] // 4}"
    assert [t["score"] for t in body["tracks"]] == sorted((t["score"] for t in body["tracks"]), reverse=True)

    seeds = [uri(61), uri(62), uri(63)]
    unknown = ["spotify:track:nope", uri(10**9)]
    status, body = server.post({"name": "", "tracks": seeds + unknown + [uri(61)], "k": 10})
    assert status == 200 and not body["name_used"]
    assert body["tracks_used"] == seeds and body["ignored_tracks"] == unknown
    returned = [t["track_uri"] for t in body["tracks"]]
    assert len(returned) == 10 and not set(returned) & set(seeds)  # the playlist's own tracks never come back
    assert (genre_of[[int(u.rsplit(":", 1)[1]) for u in returned]] == 1).mean() >= 0.9

    status, only_unknown = server.post({"name": "gym", "tracks": unknown})
    assert status == 200 and only_unknown["ignored_tracks"] == unknown and len(only_unknown["tracks"]) == 10


@pytest.mark.parametrize("body", [
    {"name": "rock", "k": 0},
    {"name": "rock", "k": MAX_K + 1},
    {"name": "rock", "k": "5"},  # strict: no string -> int coercion
    {"name": "rock", "k": 5.0},
    {"name": 42},
    {"name": "rock", "tracks": "spotify:track:x"},
    {"name": "rock", "tracks": [1, 2]},
    {"name": "rock", "tracks": [""]},
    {"name": "rock", "tracks": [uri(1)] * (MAX_SEED_TRACKS + 1)},
    {"name": "rock", "extra": True},
    {"name": "x" * 201},
    {},
    {"name": "   ", "tracks": []},
    [{"name": "rock"}],
])
def test_continue_endpoint_rejects_bad_requests(server: Server, body: object) -> None:
    status, answer = server.post(body)
    assert status == 422, answer


def test_continue_endpoint_rejects_malformed_json(server: Server) -> None:
    status, _ = server.post(None, raw=b'{"name": "rock", ')
    assert status == 422


def test_continue_endpoint_is_503_without_a_model(tmp_path: Path) -> None:
    with Server(app_for(tmp_path)) as server:
        status, body = server.post({"name": "rock"})
        assert status == 503 and "two_tower_model" in body["detail"]


def test_continue_command(data_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert tracks_main(["continue", "--name", "workout", "--track", uri(121), "--track", "spotify:track:nope",
                        "--k", "5", "--data-dir", str(data_dir)]) == 0
    out, err = capsys.readouterr()
    assert "| rank | track | artist | score | uri |" in out and out.count("spotify:track:") == 5
    assert "spotify:track:nope" in err
    assert tracks_main(["continue", "--name", "rock", "--json", "--k", "3", "--data-dir", str(data_dir)]) == 0
    body = json.loads(capsys.readouterr().out)
    assert len(body["tracks"]) == 3 and np.isin([t["track_uri"] for t in body["tracks"]], [uri(i) for i in range(60)]).all()
    assert tracks_main(["continue", "--data-dir", str(data_dir)]) == 2  # neither name nor tracks
    assert tracks_main(["continue", "--name", "rock", "--data-dir", str(data_dir / "missing")]) == 2
    assert "no two-tower model" in capsys.readouterr().err
