"""Fuzzed HTTP requests (issue 16): both POST endpoints of the service, in process, over
hypothesis-generated JSON values, near-valid payloads and raw bytes.

Each input is judged against a strict reference written here, independent of the service:
a request is acceptable when its Host is allowed, it is a POST, its body is at most the
limit, has a JSON media type, is standard JSON (UTF-8, no NaN/Infinity or out-of-range
numbers, no lone surrogates, no repeated keys) and fits the endpoint's schema. Then:

* never a 5xx, never an exception out of the app, and every answer is JSON;
* acceptable requests get 200/201, the others a 4xx;
* a refused request stores nothing; an accepted feedback stores exactly its row (with
  ``known_user`` right); an accepted recommend answers each user once, in order, with at most
  ``k`` distinct known playlists.

The default run uses a short budget; ``pytest -m fuzz`` runs ``FUZZ_EXAMPLES`` examples per
property. How many inputs each target was given is written to
``test-artifacts/fuzz_http_counts.json`` (and printed with ``-s``); ``docs/fuzz-http.md``
records the long run.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spotify_assets.feedback import FeedbackLog
from spotify_assets.paths import PROJECT_ROOT
from spotify_assets.serving.api import MAX_K, MAX_SHOWN, MAX_USERS_PER_REQUEST, create_app
from spotify_assets.serving.settings import LOOPBACK_HOSTS, ServiceSettings
from spotify_assets_tests.asgi import AsgiClient
from spotify_assets_tests.service_bundle import write_bundle

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "2000"))
SHORT_EXAMPLES = 40
COUNTS_FILE = PROJECT_ROOT / "test-artifacts" / "fuzz_http_counts.json"
SETTINGS = ServiceSettings(max_body_bytes=8 * 1024)  # a small limit, so generated bodies cross it
RECOMMEND, FEEDBACK = "/api/playlist/recommend", "/api/feedback"

TRIED: Counter[str] = Counter()
OUTCOMES: Counter[str] = Counter()

_COMMON = dict(deadline=None, suppress_health_check=list(HealthCheck), database=None)
SHORT = settings(max_examples=SHORT_EXAMPLES, derandomize=True, **_COMMON)
LONG = settings(max_examples=FUZZ_EXAMPLES, **_COMMON)


class Target:
    """The service under test and what it knows."""

    def __init__(self, root: Path):
        facts = write_bundle(root / "artifacts", n_users=60, n_playlists=600)
        self.users, self.pids = facts.user_ids, facts.pids
        self.known_users, self.known_pids = set(self.users), set(self.pids)
        self.log = FeedbackLog(root / "feedback.sqlite")
        self.client = AsgiClient(create_app(facts.artifacts, self.log.path, SETTINGS))
        self.version = "bpr-" + facts.bundle_id[:8]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory):
    started = time.time()
    t = Target(tmp_path_factory.mktemp("fuzz_http"))
    yield t
    t.client.close()
    COUNTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(COUNTS_FILE.read_text()) if COUNTS_FILE.exists() else {}
    previous[os.environ.get("PYTEST_FUZZ_RUN_NAME", "last_run")] = {
        "fuzz_examples_setting": FUZZ_EXAMPLES, "short_examples_setting": SHORT_EXAMPLES,
        "inputs_tried": dict(sorted(TRIED.items())), "outcomes": dict(sorted(OUTCOMES.items())),
        "total_inputs": sum(TRIED.values()), "seconds": round(time.time() - started, 1)}
    COUNTS_FILE.write_text(json.dumps(previous, indent=2, sort_keys=True))
    print(f"\nhttp fuzz: {sum(TRIED.values())} inputs: {dict(TRIED)} outcomes {dict(OUTCOMES)} -> {COUNTS_FILE}")


# --------------------------------------------------------------------------------------
# the reference: is a request acceptable, and what must an acceptance look like
# --------------------------------------------------------------------------------------

class Refused(Exception):
    pass


def _pairs_unique(pairs):
    if len({k for k, _ in pairs}) != len(pairs):
        raise Refused("repeated key")
    return dict(pairs)


def _walk_strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _walk_strings(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _walk_strings(v)


def reference_json(raw: bytes):
    """The parsed body, or raise Refused when it is not standard JSON."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused("not utf-8") from exc
    try:
        value = json.loads(text, object_pairs_hook=_pairs_unique)
    except (ValueError, RecursionError) as exc:
        raise Refused(f"json: {type(exc).__name__}") from exc
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            raise Refused("non-finite number")
        if isinstance(v, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in v):
            raise Refused("lone surrogate")
        if isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
    return value


def _strict_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _user_id(v) -> bool:
    return isinstance(v, str) and 1 <= len(v) <= 200


def reference_recommend(body, known_users: set[str]) -> bool:
    if not isinstance(body, dict) or set(body) - {"user_ids", "k"} or "user_ids" not in body:
        return False
    ids, k = body["user_ids"], body.get("k", 5)
    if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_USERS_PER_REQUEST or not all(map(_user_id, ids)):
        return False
    return _strict_int(k) and 1 <= k <= MAX_K and len(ids) * k <= SETTINGS.max_playlists_per_request


FEEDBACK_KEYS = {"user_id", "liked_playlist", "shown_playlists"}


def reference_feedback(body, known_pids: set[int], impressions=lambda _id: None) -> bool:
    """``impressions(id)``: (user_id, model_version, shown pids) of a served list, or None."""
    if not isinstance(body, dict) or not FEEDBACK_KEYS <= set(body) <= FEEDBACK_KEYS | {"impression_id"}:
        return False
    shown, liked = body["shown_playlists"], body["liked_playlist"]
    if not (_user_id(body["user_id"]) and (liked is None or _strict_int(liked)) and isinstance(shown, list)
            and 1 <= len(shown) <= MAX_SHOWN and all(map(_strict_int, shown)) and len(set(shown)) == len(shown)
            and (liked is None or liked in shown) and set(shown) <= known_pids):
        return False
    impression_id = body.get("impression_id")
    if impression_id is None:
        return True
    if not _strict_int(impression_id) or impression_id < 1:
        return False
    served = impressions(impression_id)
    return served is not None and served[0] == body["user_id"] and set(served[2]) == set(shown)


def _json_media(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def check(target: Target, name: str, path: str, raw: bytes, *, chunks: list[bytes] | None = None,
          content_type: str | None = "application/json", host: str | None = "127.0.0.1:8000",
          method: str = "POST") -> None:
    """Send one request and hold the service to the reference."""
    TRIED[name] += 1
    before = target.log.stats()[1]
    reply = target.client.request(method, path, raw, chunks=chunks, content_type=content_type, host=host)
    assert reply.error is None, f"{name}: the app raised {reply.error!r} for {raw[:300]!r}"
    assert reply.status < 500, f"{name}: {reply.status} {reply.body[:300]!r} for {raw[:300]!r}"
    answer = reply.json()  # every answer, refusals included, is JSON
    acceptable, body = host_allowed(host) and method == "POST", None
    if acceptable and len(raw) > SETTINGS.max_body_bytes:
        acceptable = False
    if acceptable:
        try:
            if not raw or not _json_media(content_type):
                raise Refused("no JSON body")
            body = reference_json(raw)
        except Refused:
            acceptable = False
    if acceptable:
        acceptable = (reference_recommend(body, target.known_users) if path == RECOMMEND
                      else reference_feedback(body, target.known_pids, target.log.impression))
    after = target.log.stats()[1]
    OUTCOMES[f"{name}:{reply.status}"] += 1
    if not acceptable:
        assert 400 <= reply.status < 500, f"{name}: {reply.status} {answer!r} for {raw[:300]!r}"
        assert after == before, f"{name}: a refused request stored a row ({raw[:300]!r})"
        return
    if path == FEEDBACK:
        assert reply.status == 201, f"{name}: {reply.status} {answer!r} for acceptable {raw[:300]!r}"
        assert after == before + 1 and answer["feedback_id"] == after
        with sqlite3.connect(target.log.path) as con:
            row = con.execute("SELECT user_id, liked_pid, shown_pids, known_user FROM feedback WHERE feedback_id = ?",
                              (after,)).fetchone()
        assert row == (body["user_id"], body["liked_playlist"], json.dumps(body["shown_playlists"]),
                       int(body["user_id"] in target.known_users))
        served = target.log.impression(body["impression_id"]) if body.get("impression_id") else None
        assert answer["model_version"] == (served[1] if served else target.version)
        assert answer["known_user"] is (body["user_id"] in target.known_users)
        return
    assert reply.status == 200, f"{name}: {reply.status} {answer!r} for acceptable {raw[:300]!r}"
    assert after == before
    k = body.get("k", 5)
    assert [u["user_id"] for u in answer] == body["user_ids"]
    for user in answer:
        got = [p["pid"] for p in user["playlists"]]
        assert 0 < len(got) <= k and len(set(got)) == len(got) and set(got) <= target.known_pids
        assert user["known"] is (user["user_id"] in target.known_users)


HOST = re.compile(r"(?:\[(?P<v6>[^\]]*)\]|(?P<name>[^:\[\]]*))(?::[0-9]+)?", re.ASCII)


def host_allowed(host: str | None) -> bool:
    match = HOST.fullmatch(host.strip().lower()) if host is not None else None
    return bool(match) and (match["v6"] if match["v6"] is not None else match["name"]) in LOOPBACK_HOSTS


# --------------------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------------------

# text that reaches the corners: any code point, lone surrogates included
ANY_CHAR = st.one_of(st.characters(exclude_categories=()), st.characters(categories=["Cs"]))
TEXT = st.text(ANY_CHAR, max_size=30)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-5, 200),
                    st.floats(allow_nan=True, allow_infinity=True), TEXT)
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=6),
                                                            st.dictionaries(TEXT, inner, max_size=6)), max_leaves=30)
CONTENT_TYPES = st.sampled_from(["application/json", "application/json"] * 4 + [
    "application/json; charset=utf-8", "application/problem+json", "APPLICATION/JSON", "text/plain",
    "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "", None])


@st.composite
def encoded(draw, value) -> bytes:
    """``value`` as JSON bytes, the way a sloppy client might send it: NaN/Infinity written as
    literals, lone surrogates escaped or raw (invalid UTF-8), and sometimes a repeated key."""
    ascii_only = draw(st.booleans())
    text = json.dumps(value, allow_nan=True, ensure_ascii=ascii_only)
    if isinstance(value, dict) and value and draw(st.integers(0, 9)) == 9:
        key = next(iter(value))
        text = text[:-1] + ", " + json.dumps(key) + ": " + json.dumps(value[key], allow_nan=True) + "}"
    return text.encode("utf-8", "surrogatepass")


def _weighted(draw, *choices: tuple[int, st.SearchStrategy]):
    """A draw from one of ``choices`` (weight, strategy), the first ones for hypothesis's
    simplest draws: mostly valid values, the rest junk, instead of one_of's even split."""
    pick = draw(st.integers(0, sum(w for w, _ in choices) - 1))
    for weight, strategy in choices:
        if pick < weight:
            return draw(strategy)
        pick -= weight
    raise AssertionError("unreachable")


@st.composite
def recommend_bodies(draw, users: list[str]) -> object:
    user_ids = _weighted(
        draw,
        (6, st.lists(st.sampled_from(users), min_size=1, max_size=8)),
        (2, st.lists(st.one_of(st.sampled_from(users), st.text(ANY_CHAR, min_size=1, max_size=30)),
                     min_size=1, max_size=8)),
        (1, st.lists(st.sampled_from(users), min_size=90, max_size=1100)),  # around the user and work caps
        (1, st.lists(st.one_of(st.sampled_from(users), TEXT, SCALARS), max_size=8)),
        (1, SCALARS))
    body = {"user_ids": user_ids}
    if draw(st.booleans()):
        body["k"] = _weighted(draw, (6, st.integers(1, MAX_K)), (2, st.integers(-3, 200)), (1, SCALARS),
                              (1, st.just(9.0)))
    if draw(st.integers(0, 7)) == 7:
        body[draw(TEXT)] = draw(SCALARS)
    if draw(st.integers(0, 9)) == 9:
        body.pop("user_ids")
    return body


@st.composite
def feedback_bodies(draw, users: list[str], pids: list[int]) -> object:
    shown = _weighted(
        draw,
        (7, st.lists(st.sampled_from(pids), min_size=1, max_size=12, unique=True)),
        (1, st.lists(st.sampled_from(pids), min_size=480, max_size=520, unique=True)),  # around MAX_SHOWN
        (2, st.lists(st.one_of(st.sampled_from(pids), st.integers(), SCALARS), max_size=12)))
    liked = _weighted(draw, (7, st.sampled_from(shown) if shown else st.integers()), (1, st.sampled_from(pids)),
                      (1, st.integers()), (1, SCALARS), (1, st.none()))
    user_id = _weighted(draw, (4, st.sampled_from(users)), (3, st.text(ANY_CHAR, min_size=1, max_size=210)),
                        (2, st.text(min_size=1, max_size=20)), (1, SCALARS))
    body = {"user_id": user_id, "liked_playlist": liked, "shown_playlists": shown}
    if draw(st.integers(0, 3)) == 3:
        body["impression_id"] = _weighted(draw, (3, st.integers(1, 40)), (1, st.integers()), (1, SCALARS))
    if draw(st.integers(0, 7)) == 7:
        body.pop(draw(st.sampled_from(sorted(body))))
    if draw(st.integers(0, 7)) == 7:
        body[draw(TEXT)] = draw(SCALARS)
    return body


@st.composite
def mutated(draw, raw: bytes) -> bytes:
    """``raw`` with a few bytes inserted, deleted or replaced."""
    data = bytearray(raw)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.one_of(st.binary(min_size=1, max_size=3),
                               st.sampled_from([b"NaN", b"Infinity", b"\\ud800", b"\xed\xa0\x80", b"1e999", b"{", b"]",
                                                b'"', b"\\", b",", b"\x00", b"\xff", b"-0", b"9" * 30])))
        if edit == "insert" or not data:
            data[at:at] = piece
        elif edit == "delete":
            del data[at:at + len(piece)]
        else:
            data[at:at + len(piece)] = piece
    return bytes(data)


def _chunked(draw, raw: bytes) -> list[bytes] | None:
    if not draw(st.booleans()):
        return None
    cuts = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=5)))
    return [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)])]


# --------------------------------------------------------------------------------------
# properties: short budget by default, FUZZ_EXAMPLES under -m fuzz
# --------------------------------------------------------------------------------------

def _json_values(target: Target, data) -> None:
    path = data.draw(st.sampled_from([RECOMMEND, FEEDBACK]))
    raw = data.draw(encoded(data.draw(JSON_VALUES)))
    check(target, f"{path.rsplit('/', 1)[1]}_json_values", path, raw, chunks=_chunked(data.draw, raw))


def _mostly(data, usual, strategy):
    """``usual`` nine times in ten, else a draw from ``strategy`` (``usual`` is also what
    hypothesis's simplest draw, 0, gives)."""
    return usual if data.draw(st.integers(0, 9)) < 9 else data.draw(strategy)


def _near_valid(target: Target, data) -> None:
    path = data.draw(st.sampled_from([RECOMMEND, FEEDBACK]))
    body = data.draw(recommend_bodies(target.users) if path == RECOMMEND else feedback_bodies(target.users, target.pids))
    raw = data.draw(encoded(body))
    check(target, f"{path.rsplit('/', 1)[1]}_near_valid", path, raw, chunks=_chunked(data.draw, raw),
          content_type=_mostly(data, "application/json", CONTENT_TYPES),
          method=_mostly(data, "POST", st.sampled_from(["GET", "PUT", "DELETE", "PATCH"])),
          host=_mostly(data, "127.0.0.1:8000", st.one_of(
              st.sampled_from(["localhost", "[::1]:80", "LocalHost:8000", "evil.example", "127.0.0.1:"]),
              st.text(st.characters(codec="latin-1"), max_size=20), st.none())))


def _raw_bytes(target: Target, data) -> None:
    path = data.draw(st.sampled_from([RECOMMEND, FEEDBACK]))
    if data.draw(st.booleans()):
        raw = data.draw(st.binary(max_size=300))
    else:
        body = data.draw(recommend_bodies(target.users) if path == RECOMMEND else feedback_bodies(target.users, target.pids))
        raw = data.draw(mutated(json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")))
    check(target, f"{path.rsplit('/', 1)[1]}_raw_bytes", path, raw, chunks=_chunked(data.draw, raw))


@SHORT
@given(data=st.data())
def test_json_values(target, data) -> None:
    _json_values(target, data)


@SHORT
@given(data=st.data())
def test_near_valid_payloads(target, data) -> None:
    _near_valid(target, data)


@SHORT
@given(data=st.data())
def test_raw_bytes(target, data) -> None:
    _raw_bytes(target, data)


@pytest.mark.fuzz
@LONG
@given(data=st.data())
def test_json_values_long(target, data) -> None:
    _json_values(target, data)


@pytest.mark.fuzz
@LONG
@given(data=st.data())
def test_near_valid_payloads_long(target, data) -> None:
    _near_valid(target, data)


@pytest.mark.fuzz
@LONG
@given(data=st.data())
def test_raw_bytes_long(target, data) -> None:
    _raw_bytes(target, data)


def test_reference_agrees_on_known_cases(target) -> None:
    """The reference itself is right on hand-picked cases (a reference that accepts nothing or
    everything would make every property pass)."""
    good_rec = {"user_ids": target.users[:2], "k": 3}
    good_fb = {"user_id": "x", "liked_playlist": target.pids[0], "shown_playlists": target.pids[:2]}
    assert reference_recommend(reference_json(json.dumps(good_rec).encode()), target.known_users)
    assert reference_feedback(reference_json(json.dumps(good_fb).encode()), target.known_pids)
    assert not reference_recommend({**good_rec, "k": True}, target.known_users)
    assert not reference_recommend({"user_ids": target.users * 20, "k": 10}, target.known_users)
    assert not reference_feedback({**good_fb, "shown_playlists": [target.pids[0]] * 2}, target.known_pids)
    for raw in (b'{"k": NaN}', b'["\\ud800"]', b'{"a": 1, "a": 1}', b"[1e400]", b"\xff"):
        with pytest.raises(Refused):
            reference_json(raw)
    assert host_allowed("localhost:8000") and host_allowed("[::1]") and not host_allowed("evil:80")
    assert not host_allowed(None) and not host_allowed("127.0.0.1:x") and not host_allowed("[::1")
    check(target, "hand_picked", RECOMMEND, json.dumps(good_rec).encode())
    # feedback naming the list it rates: accepted for that list's user and playlists only
    served = target.client.request("POST", RECOMMEND, json.dumps({"user_ids": target.users[:1]}).encode(),
                                   content_type="application/json", host="127.0.0.1").json()[0]
    shown = [p["pid"] for p in served["playlists"]]
    rated = {"user_id": served["user_id"], "liked_playlist": None, "shown_playlists": shown,
             "impression_id": served["impression_id"]}
    assert reference_feedback(rated, target.known_pids, target.log.impression)
    assert not reference_feedback({**rated, "user_id": "someone-else"}, target.known_pids, target.log.impression)
    assert not reference_feedback({**rated, "shown_playlists": shown[:2]}, target.known_pids, target.log.impression)
    check(target, "hand_picked", FEEDBACK, json.dumps(rated).encode())
    check(target, "hand_picked", FEEDBACK, json.dumps({**rated, "user_id": "someone-else"}).encode())
    check(target, "hand_picked", FEEDBACK, json.dumps(good_fb).encode())
    assert OUTCOMES["hand_picked:200"] >= 1 and OUTCOMES["hand_picked:201"] >= 1
