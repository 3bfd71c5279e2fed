"""The page at ``/``: pick or type a user id, see the recommended playlists, like one.

Server-rendered HTML (every value escaped; playlist names are user content) with one small
script, ``static/page.js``, that posts the like to ``/api/feedback`` and shows the stored row.
Nothing is loaded from another origin (the machine may be offline), and the Content Security
Policy says so: scripts, styles and requests only from the service itself.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from spotify_assets.serving.live import Served, Serving, shared_songs

STATIC_DIR = Path(__file__).with_name("static")
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                           "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SHOWN_SONGS = 5
EXAMPLE_USERS = 8


def example_users(serving: Serving, n: int = EXAMPLE_USERS) -> list[str]:
    """A few user ids to pick from: known users spread over the dictionary, warm ones first."""
    rec = serving.champion
    step = max(1, len(rec.user_ids) // (4 * n))
    ids = [u for i, u in enumerate(rec.user_ids[::step]) if not rec.cold[i * step]][:n]
    return ids


def render(serving: Serving, user_id: str | None, served: Served | None, impression_id: int | None) -> str:
    """The whole page; ``served`` is the user's list when a user id was given."""
    options = "".join(f'<option value="{escape(u)}"></option>' for u in example_users(serving))
    versions = ", ".join(f"{arm}: {escape(v)}" for arm, v in serving.versions().items())
    body = [
        "<h1>Playlist recommendations</h1>",
        f'<p class="sub">Serving {versions}.</p>',
        '<form class="pick" method="get" action="/">',
        '<label for="user_id">User id</label>',
        f'<input id="user_id" name="user_id" list="example-users" required maxlength="200" '
        f'value="{escape(user_id or "")}" placeholder="type or pick a Taste Profile user id">',
        f'<datalist id="example-users">{options}</datalist>',
        '<button type="submit" id="show">Recommend</button>',
        "</form>",
    ]
    if served is not None:
        body.append(_recommendations(served, impression_id))
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<title>Playlist recommendations</title>"
            "<link rel=\"stylesheet\" href=\"/static/page.css\">"
            "<script src=\"/static/page.js\" defer></script></head><body>"
            + "\n".join(body) + "</body></html>")


def _recommendations(served: Served, impression_id: int | None) -> str:
    rec, recommendation = served.recommender, served.recommendation
    pids = rec.pids[recommendation.playlists].tolist()
    badge = ('<span class="badge cold" id="cold-start">cold start: most popular playlists</span>'
             if recommendation.cold_start else f'<span class="badge">{escape(rec.model)}</span>')
    known = "" if served.user is not None else " (a user the model does not know)"
    items = []
    for j, pid in zip(recommendation.playlists.tolist(), pids):
        tracks = rec.playlist_tracks[j] if j < len(rec.playlist_tracks) else []
        shared = shared_songs(rec, served.user, j)
        names = [rec.song_names[s] for s in shared[:SHOWN_SONGS].tolist()] if rec.song_names else []
        more = f" and {shared.size - SHOWN_SONGS} more" if shared.size > SHOWN_SONGS else ""
        shared_html = (f'<p class="shared">Songs you share ({shared.size}): {escape("; ".join(names))}{more}</p>'
                       if shared.size else '<p class="shared">No song in common with your history.</p>')
        items.append(
            f'<li data-pid="{pid}"><div class="name">{escape(rec.names[j] or f"playlist {pid}")}</div>'
            f'<p class="tracks">Starts with: {escape("; ".join(tracks)) or "(no track names)"}</p>'
            f"{shared_html}"
            f'<button type="button" class="like" data-pid="{pid}">Like</button>'
            f'<span class="status" role="status"></span></li>')
    return (f'<section id="recommendations" data-user="{escape(served.user_id)}" '
            f'data-shown="{escape(json.dumps(pids))}" data-impression="{impression_id or 0}">'
            f'<h2>For {escape(served.user_id)}{known}</h2>'
            f'<p class="meta">{badge} version {escape(rec.version)}, {escape(served.arm)} arm</p>'
            f'<ol class="recs">{"".join(items)}</ol>'
            '<p><button type="button" class="none secondary">None of these</button>'
            '<span class="status" role="status"></span></p></section>')
