"""The HTTP service under hostile and careless clients: what each bad request gets.

In-process (raw ASGI, :mod:`spotify_assets_tests.asgi`) over a seeded bundle
(:mod:`spotify_assets_tests.service_bundle`) for request handling; a real server on a free
port for what only a socket shows (timeouts, the connection cap, the event loop under load).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from spotify_assets.feedback import FeedbackLog
from spotify_assets.serving.api import create_app
from spotify_assets.serving.settings import ServiceSettings
from spotify_assets_tests.asgi import AsgiClient
from spotify_assets_tests.servers import _start, _stop, free_port, wait_http
from spotify_assets_tests.service_bundle import BundleFacts, write_bundle

RECOMMEND, FEEDBACK = "/api/playlist/recommend", "/api/feedback"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> BundleFacts:
    return write_bundle(tmp_path_factory.mktemp("bundle") / "artifacts", n_users=120, n_playlists=600)


@pytest.fixture()
def service(bundle: BundleFacts, tmp_path: Path):
    """(client, feedback log) over a fresh feedback file."""
    log = FeedbackLog(tmp_path / "feedback.sqlite")
    with AsgiClient(create_app(bundle.artifacts, log.path)) as client:
        yield client, log


def _stored(log: FeedbackLog) -> int:
    return log.stats()[1]


def _good_feedback(bundle: BundleFacts) -> dict:
    return {"user_id": bundle.user_ids[0], "liked_playlist": bundle.pids[1], "shown_playlists": bundle.pids[:4]}


# -- item 8: non-standard JSON is a 422, never a 500 ------------------------------------------

NON_STANDARD = {
    "NaN literal": (b'{"user_ids": ["a"], "k": NaN}', b'{"user_id": "a", "liked_playlist": NaN, "shown_playlists": [1]}'),
    "Infinity literal": (b'{"user_ids": ["a"], "k": Infinity}', b'{"user_id": "a", "liked_playlist": 1, "shown_playlists": [-Infinity]}'),
    "number beyond float range": (b'{"user_ids": ["a"], "k": 1e400}', b'{"user_id": "a", "liked_playlist": 1e400, "shown_playlists": [1]}'),
    "lone surrogate escape": (b'{"user_ids": ["\\ud800"]}', b'{"user_id": "\\udc00x", "liked_playlist": 1, "shown_playlists": [1]}'),
    "surrogate in a key": (b'{"user_ids": ["a"], "\\ud800": 1}', b'{"\\ud800": 1}'),
    "encoded surrogate bytes": (b'{"user_ids": ["\xed\xa0\x80"]}', b'{"user_id": "\xed\xa0\x80", "liked_playlist": 1, "shown_playlists": [1]}'),
    "invalid UTF-8": (b'{"user_ids": ["\xff\xfe"]}', b'{"user_id": "\xc3", "liked_playlist": 1, "shown_playlists": [1]}'),
    "UTF-16 body": ('{"user_ids": ["a"]}'.encode("utf-16"), '{"user_id": "a"}'.encode("utf-16")),
    "repeated key": (b'{"user_ids": ["a"], "k": 1, "k": 100}', b'{"user_id": "a", "user_id": "b", "liked_playlist": 1, "shown_playlists": [1]}'),
    "nested 30,000 deep": (b"[" * 30_000 + b"]" * 30_000, b'{"user_id": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"),
    "integer of 5,000 digits": (b'{"user_ids": ["a"], "k": ' + b"9" * 5000 + b"}",
                                b'{"user_id": "a", "liked_playlist": ' + b"9" * 5000 + b', "shown_playlists": [1]}'),
}


@pytest.mark.parametrize("case", sorted(NON_STANDARD))
def test_non_standard_json_is_a_422_that_stores_nothing(service, case: str) -> None:
    client, log = service
    for path, body in zip((RECOMMEND, FEEDBACK), NON_STANDARD[case]):
        reply = client.request("POST", path, body)
        assert reply.status == 422, (path, reply)
        assert reply.error is None
        detail = reply.json()["detail"]
        assert isinstance(detail, str) and "JSON" in detail, detail
    assert _stored(log) == 0


def test_standard_json_with_escapes_and_astral_characters_still_works(service, bundle) -> None:
    client, log = service
    reply = client.request("POST", RECOMMEND, json.dumps({"user_ids": ["caf\u00e9 \U0001F600", bundle.user_ids[3]]}).encode())
    assert reply.status == 200, reply
    assert [u["user_id"] for u in reply.json()] == ["caf\u00e9 \U0001F600", bundle.user_ids[3]]
    body = {**_good_feedback(bundle), "user_id": "new \U0001F600 user"}
    reply = client.request("POST", FEEDBACK, json.dumps(body, ensure_ascii=True).encode())
    assert reply.status == 201, reply
    assert log.read().user_id == ["new \U0001F600 user"]


# -- item 9: a chunked body over the limit is a 413 --------------------------------------------

def test_chunked_body_over_the_limit_is_413_and_stores_nothing(service, bundle) -> None:
    client, log = service
    body = json.dumps({**_good_feedback(bundle), "user_id": "x" * 70_000}).encode()
    chunks = [body[i:i + 4096] for i in range(0, len(body), 4096)]
    for path in (FEEDBACK, RECOMMEND):
        reply = client.request("POST", path, chunks=chunks)
        assert reply.status == 413, reply
        assert "larger than 65536 bytes" in reply.json()["detail"]
    # the same limit by Content-Length, and a chunked body under it is accepted
    assert client.request("POST", FEEDBACK, body).status == 413
    small = json.dumps(_good_feedback(bundle)).encode()
    assert client.request("POST", FEEDBACK, chunks=[small[:7], small[7:20], small[20:]]).status == 201
    assert _stored(log) == 1


def test_a_body_that_stops_arriving_is_a_408(bundle, tmp_path: Path) -> None:
    app = create_app(bundle.artifacts, tmp_path / "f.sqlite", ServiceSettings(body_timeout_seconds=0.5))
    with AsgiClient(app) as client:
        started = time.monotonic()
        reply = client.request("POST", FEEDBACK, chunks=[b'{"user_id": "a", ', b"rest"], stall_after=1)
        assert reply.status == 408 and reply.headers.get("connection") == "close", reply
        assert time.monotonic() - started < 5
    assert FeedbackLog(tmp_path / "f.sqlite").stats() == (0, 0)


# -- item 10: the work per request is capped ---------------------------------------------------

def test_work_per_request_is_capped(service, bundle) -> None:
    client, _ = service
    cap = ServiceSettings().max_playlists_per_request
    users = (bundle.user_ids * 10)[:1000]
    reply = client.request("POST", RECOMMEND, json.dumps({"user_ids": users, "k": 100}).encode())
    assert reply.status == 422 and f"at most {cap}" in reply.json()["detail"], reply
    at_cap = client.request("POST", RECOMMEND, json.dumps({"user_ids": users, "k": cap // 1000}).encode())
    assert at_cap.status == 200 and len(at_cap.json()) == 1000
    assert all(len(u["playlists"]) == cap // 1000 for u in at_cap.json())


# -- item 12: only configured hosts ------------------------------------------------------------

def test_only_configured_hosts_are_served(service, bundle, tmp_path: Path) -> None:
    client, _ = service
    for host in ("127.0.0.1:8000", "localhost", "LOCALHOST:80", "[::1]:8000", "127.0.0.1"):
        assert client.request("GET", "/healthz", host=host).status == 200, host
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.", "[::2]:8000",
                 "127.0.0.2", "", " ", "a:b:c", "localhost:", "localhost:8x", "127.0.0.1:\u00b2", "[::1", None):
        reply = client.request("GET", "/healthz", host=host)
        assert reply.status == 400 and "host" in reply.json()["detail"].lower(), (host, reply)
    reply = client.request("POST", FEEDBACK, json.dumps(_good_feedback(bundle)).encode(), host="rebind.example")
    assert reply.status == 400 and _stored(service[1]) == 0
    app = create_app(bundle.artifacts, tmp_path / "f.sqlite", ServiceSettings(allowed_hosts=("api.internal",)))
    with AsgiClient(app) as other:
        assert other.request("GET", "/healthz", host="api.internal:8000").status == 200
        assert other.request("GET", "/healthz", host="127.0.0.1:8000").status == 400


# -- item 13: /docs needs no network -----------------------------------------------------------

def test_docs_page_loads_its_assets_from_the_service(service) -> None:
    client, _ = service
    page = client.request("GET", "/docs")
    assert page.status == 200 and b"SwaggerUIBundle" in page.body
    text = page.body.decode()
    assert "http://" not in text and "https://" not in text and "//cdn" not in text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"/docs/assets/{asset}" in text
        reply = client.request("GET", f"/docs/assets/{asset}")
        assert reply.status == 200 and len(reply.body) > 100_000, asset
    assert client.request("GET", "/docs/assets/../api.py").status == 404
    assert client.request("GET", "/redoc").status == 404  # ReDoc would come from a CDN: not offered
    assert client.request("GET", "/openapi.json").json()["paths"].keys() >= {RECOMMEND, FEEDBACK, "/healthz"}


# -- item 14: junk feedback is refused, unknown users are marked -------------------------------

def test_junk_feedback_is_refused_and_unknown_users_are_marked(service, bundle) -> None:
    client, log = service
    good = _good_feedback(bundle)
    junk = {
        "liked not among shown": ({**good, "liked_playlist": bundle.pids[9]}, "liked_playlist must be one of"),
        "duplicated shown ids": ({**good, "shown_playlists": [bundle.pids[1], bundle.pids[2], bundle.pids[1]]},
                                 "repeats"),
        "unknown playlist": ({**good, "shown_playlists": [*good["shown_playlists"], 7]}, "unknown playlist ids"),
    }
    for name, (body, needle) in junk.items():
        reply = client.request("POST", FEEDBACK, json.dumps(body).encode())
        assert reply.status == 422 and needle in json.dumps(reply.json()), (name, reply)
    assert _stored(log) == 0
    known = client.request("POST", FEEDBACK, json.dumps(good).encode())
    newcomer = client.request("POST", FEEDBACK, json.dumps({**good, "user_id": "first-visit"}).encode())
    assert (known.status, newcomer.status) == (201, 201)
    assert known.json()["known_user"] is True and newcomer.json()["known_user"] is False
    with sqlite3.connect(log.path) as con:
        assert con.execute("SELECT user_id, known_user FROM feedback ORDER BY feedback_id").fetchall() == [
            (bundle.user_ids[0], 1), ("first-visit", 0)]
    # only feedback from users the model knows counts toward a retrain
    assert log.stats() == (2, 2) and log.stats(known_only=True) == (1, 2)


def test_a_log_from_before_known_user_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE feedback (feedback_id INTEGER PRIMARY KEY AUTOINCREMENT, received_at REAL NOT NULL, "
                    "user_id TEXT NOT NULL, liked_pid INTEGER NOT NULL, shown_pids TEXT NOT NULL)")
        con.execute("INSERT INTO feedback (received_at, user_id, liked_pid, shown_pids) VALUES (0, 'old', 1, '[1]')")
    log = FeedbackLog(path)
    assert log.stats(known_only=True) == (1, 1)  # rows from before the column counted as before
    log.add("new", 2, [2], known_user=False)
    assert log.stats() == (2, 2) and log.stats(known_only=True) == (1, 2)
    assert log.read().user_id == ["old", "new"]


# -- the service imports nothing from Dagster; the artifacts root is resolved once ---------------

def test_service_and_cli_import_no_dagster() -> None:
    probe = subprocess.run([sys.executable, "-c", (
        "import sys\n"
        "import spotify_assets.serving, spotify_assets.serving.api, spotify_assets.serving.server\n"
        "import spotify_assets.serving.__main__, spotify_assets.feedback, spotify_assets.paths\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'duckdb', 'torch')))")],
        capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "[]"


def test_cli_reads_the_artifacts_root_the_pipeline_uses(bundle, tmp_path: Path) -> None:
    env = {**os.environ, "SPOTIFY_ASSETS_ARTIFACTS": str(bundle.artifacts)}
    cli = subprocess.run([sys.executable, "-m", "spotify_assets.serving", "--data-dir", str(tmp_path / "elsewhere"),
                          "recommend", bundle.user_ids[5], "-k", "2"], capture_output=True, text=True, env=env, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)[0]["known"] is True
    env["SPOTIFY_ASSETS_ARTIFACTS"] = "s3://bucket/spotify_assets"
    cli = subprocess.run([sys.executable, "-m", "spotify_assets.serving", "recommend", "x"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert cli.returncode == 2 and "local copy" in cli.stderr, cli.stderr


# -- a real server: timeouts, the connection cap, the event loop under load ---------------------

@pytest.fixture()
def server(bundle: BundleFacts, tmp_path: Path):
    """Start ``serve`` with short timeouts and a small connection cap; yield its port."""
    port = free_port()
    env = {**os.environ, "SPOTIFY_ASSETS_ARTIFACTS": str(bundle.artifacts), "SPOTIFY_ASSETS_LOG_LEVEL": "warning"}
    log = tmp_path / "server.log"
    process = _start([sys.executable, "-m", "spotify_assets.serving", "--data-dir", str(tmp_path), "serve",
                      "--port", str(port), "--feedback-db", str(tmp_path / "feedback.sqlite"),
                      "--header-timeout", "1", "--body-timeout", "1", "--keep-alive-timeout", "1",
                      "--max-connections", "8"], env, log)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 120, process, log)
        yield port
    finally:
        _stop(process)


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Read until the server closes the connection; (closed in time, bytes received)."""
    sock.settimeout(seconds)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
        return True, data
    except (TimeoutError, socket.timeout):
        return False, data
    except ConnectionResetError:
        return True, data


def test_slow_and_idle_clients_are_disconnected(server: int, bundle: BundleFacts) -> None:
    port = server
    # idle: connected, nothing sent
    idle = socket.create_connection(("127.0.0.1", port))
    # slow headers: a byte at a time, never finishing the header block
    slow_headers = socket.create_connection(("127.0.0.1", port))
    slow_headers.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    # slow body: headers promise 200 bytes, 10 arrive
    slow_body = socket.create_connection(("127.0.0.1", port))
    slow_body.sendall(b"POST /api/feedback HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 200\r\n\r\n{\"user_id\"")
    started = time.monotonic()
    for _ in range(6):  # keep trickling header bytes past the header timeout
        time.sleep(0.3)
        try:
            slow_headers.sendall(b"X")
        except OSError:
            break
    # endless headers, sent fast
    huge_headers = socket.create_connection(("127.0.0.1", port))
    huge_headers.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(70)))
    for name, sock, expect in (("idle", idle, b""), ("slow headers", slow_headers, b"408"),
                               ("slow body", slow_body, b"408"), ("huge headers", huge_headers, b"431")):
        closed, data = _closed_within(sock, 5)
        sock.close()
        assert closed, f"{name}: still open after {time.monotonic() - started:.1f}s"
        assert expect in data.split(b"\r\n", 1)[0], (name, data[:200])
    assert time.monotonic() - started < 6
    # keep-alive: a finished request's connection closes after the keep-alive timeout
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    con.request("GET", "/healthz")
    assert con.getresponse().read()
    closed, _ = _closed_within(con.sock, 4)
    con.close()
    assert closed


def test_connection_cap_answers_503_until_idle_clients_time_out(server: int) -> None:
    port = server
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
    try:
        time.sleep(0.2)
        con = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        con.request("GET", "/healthz")
        assert con.getresponse().status == 503
        con.close()
        time.sleep(1.5)  # the header timeout closes the idle ones
        assert all(_closed_within(s, 3)[0] for s in idle)
        con = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        con.request("GET", "/healthz")
        assert con.getresponse().status == 200
        con.close()
    finally:
        for s in idle:
            s.close()


def test_chunked_over_the_limit_through_a_socket_is_413(server: int) -> None:
    con = http.client.HTTPConnection("127.0.0.1", server, timeout=30)
    body = b'{"user_id": "' + b"x" * 70_000 + b'", "liked_playlist": 1, "shown_playlists": [1]}'
    con.request("POST", FEEDBACK, body=iter([body[i:i + 8192] for i in range(0, len(body), 8192)]),
                headers={"Content-Type": "application/json"}, encode_chunked=True)
    response = con.getresponse()
    assert response.status == 413 and b"larger than" in response.read()
    con.close()


def test_healthz_stays_fast_while_clients_loop_the_heaviest_requests(server: int, bundle: BundleFacts) -> None:
    """Three clients loop 1,000-id requests (k=100, over the cap, and k=10, at it) while /healthz is
    timed; the issue measured 17.6 s for /healthz under this load when scoring ran on the event loop."""
    port = server
    users = (bundle.user_ids * 10)[:1000]
    bodies = [json.dumps({"user_ids": users, "k": k}) for k in (100, 10)]
    stop = threading.Event()
    statuses: list[int] = []

    def client(worker: int) -> None:
        con = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        i = worker
        while not stop.is_set():
            con.request("POST", RECOMMEND, bodies[i % 2], {"Content-Type": "application/json"})
            response = con.getresponse()
            response.read()
            statuses.append(response.status)
            i += 1
        con.close()

    threads = [threading.Thread(target=client, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        latencies = []
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            started = time.monotonic()
            con = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            con.request("GET", "/healthz")
            assert con.getresponse().status == 200
            con.close()
            latencies.append(time.monotonic() - started)
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(120)
    assert 200 in statuses and 422 in statuses and set(statuses) <= {200, 422}
    # Scoring on the event loop made every probe wait for a whole 1,000-id request (17.6 s);
    # off the loop a probe waits for a thread, not a request. The bounds leave room for a
    # machine whose two cores are shared with other jobs (a probe took 1.01 s at load 8).
    median = sorted(latencies)[len(latencies) // 2]
    assert median < 0.5 and max(latencies) < 3.0, \
        f"/healthz took {median:.2f}s (median), up to {max(latencies):.2f}s under load ({len(latencies)} probes)"
