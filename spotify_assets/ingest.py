"""Loaders for the raw public datasets into DuckDB (no Dagster imports).

Every loader validates before it touches the warehouse and replaces its rows inside one
transaction, so a bad file fails with an :class:`InputFormatError` naming the file and the
record/line, and whatever was loaded before stays exactly as it was.

Formats (DESIGN §1):

* MPD slice ``mpd.slice.<start>-<end>.json[.gz]``: one pretty-printed JSON object
  ``{"info": {...}, "playlists": [...]}``; ``collaborative`` is the *string* "true"/"false".
* ENTP ``train_triplets.txt[.gz]``: ``user_id \\t song_id \\t play_count``, no header.
* MSD ``unique_tracks.txt`` (``<SEP>``-separated, not guaranteed UTF-8), ``song_data.csv``
  (header, quoted fields, maybe CRLF) and ``sid_mismatches.txt``.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

MPD_SLICE_PATTERN = re.compile(r"^mpd\.slice\.(\d+)-(\d+)\.json(\.gz)?$")
DEFAULT_MAX_SLICE_BYTES = 512 * 1024 * 1024
# DuckDB reads a whole slice as one JSON value; a real slice is ~33 MB, above DuckDB's
# 16 MB default object limit.
_MAX_JSON_OBJECT_BYTES = 1 << 30

MPD_PLAYLISTS_DDL = """
CREATE TABLE IF NOT EXISTS mpd_playlists (
    slice VARCHAR NOT NULL,
    pid BIGINT NOT NULL,
    name VARCHAR NOT NULL,
    collaborative BOOLEAN NOT NULL,
    modified_at BIGINT,
    num_tracks INTEGER NOT NULL,
    num_albums INTEGER,
    num_followers INTEGER,
    num_edits INTEGER,
    duration_ms BIGINT,
    num_artists INTEGER,
    description VARCHAR
)"""

MPD_PLAYLIST_TRACKS_DDL = """
CREATE TABLE IF NOT EXISTS mpd_playlist_tracks (
    slice VARCHAR NOT NULL,
    pid BIGINT NOT NULL,
    pos INTEGER NOT NULL,
    track_uri VARCHAR NOT NULL,
    track_name VARCHAR NOT NULL,
    artist_uri VARCHAR NOT NULL,
    artist_name VARCHAR NOT NULL,
    album_uri VARCHAR NOT NULL,
    album_name VARCHAR NOT NULL,
    duration_ms BIGINT
)"""

# The schema DuckDB's JSON reader converts a slice into. Every leaf stays JSON: a typed read
# would silently cast wrong types (12.5 -> 13, "12" -> 12, true -> 1, [1] -> '[1]'), so
# _MPD_TYPED_SQL casts each leaf and checks its JSON type in the same pass. Missing keys
# become NULL and are caught by the SQL validation below.
_TRACK_FIELD_TYPES = {
    "pos": "int", "track_uri": "str", "track_name": "str", "artist_uri": "str",
    "artist_name": "str", "album_uri": "str", "album_name": "str", "duration_ms": "int",
}
_PLAYLIST_FIELD_TYPES = {
    "pid": "int", "name": "str", "collaborative": "bool_str", "modified_at": "int",
    "num_tracks": "int", "num_albums": "int", "num_followers": "int", "num_edits": "int",
    "duration_ms": "int", "num_artists": "int", "description": "str",
}
_TRACK_STRUCT = "STRUCT(" + ", ".join(f"{f} JSON" for f in _TRACK_FIELD_TYPES) + ")"
_PLAYLIST_STRUCT = (
    "STRUCT(" + ", ".join(f"{f} JSON" for f in _PLAYLIST_FIELD_TYPES) + f", tracks {_TRACK_STRUCT}[])"
)
_JSON_TYPES_OK = {
    # integers must also fit BIGINT (an UBIGINT above 2**63-1 does not)
    "int": "json_type({x}) IN ('BIGINT', 'UBIGINT') AND try_cast({x} AS BIGINT) IS NOT NULL",
    "str": "json_type({x}) = 'VARCHAR'",
    "bool_str": "json_type({x}) IN ('VARCHAR', 'BOOLEAN')",
}
# try_cast: a mistyped leaf must not abort the pass; types_ok flags its playlist instead
_JSON_CAST = {"int": "try_cast({x} AS BIGINT)", "str": "({x} ->> '$')", "bool_str": "({x} ->> '$')"}


def _leaf_ok(expr: str, kind: str) -> str:
    return f"({expr} IS NULL OR ({_JSON_TYPES_OK[kind].format(x=expr)}))"


# One pass over the JSON leaves: cast each, and flag each playlist whose leaves all have
# the right JSON type.
_MPD_TYPED_SQL = (
    "CREATE OR REPLACE TEMP TABLE _slice_playlists AS SELECT i, "
    + ", ".join(f"{_JSON_CAST[kind].format(x=f)} AS {f}" for f, kind in _PLAYLIST_FIELD_TYPES.items())
    + ", list_transform(tracks, lambda t: {"
    + ", ".join(f"'{f}': {_JSON_CAST[kind].format(x='t.' + f)}" for f, kind in _TRACK_FIELD_TYPES.items())
    + "}) AS tracks, "
    + " AND ".join(_leaf_ok(f, kind) for f, kind in _PLAYLIST_FIELD_TYPES.items())
    + " AND coalesce(list_bool_and(list_transform(tracks, lambda t: "
    + " AND ".join(_leaf_ok(f"t.{f}", kind) for f, kind in _TRACK_FIELD_TYPES.items())
    + ")), true) AS types_ok"
    + " FROM (SELECT unnest(playlists, max_depth := 2), generate_subscripts(playlists, 1) - 1 AS i"
    + " FROM _slice_raw)"
)

_PLAYLIST_INT_FIELDS = ("pid", "num_tracks")
_PLAYLIST_OPTIONAL_INT_FIELDS = (
    "modified_at",
    "num_albums",
    "num_followers",
    "num_edits",
    "duration_ms",
    "num_artists",
)
_TRACK_STR_FIELDS = (
    "track_uri",
    "track_name",
    "artist_uri",
    "artist_name",
    "album_uri",
    "album_name",
)
_INT32_MAX = 2**31 - 1
# optional playlist counts stored as INTEGER (the others are BIGINT)
_PLAYLIST_INT32_FIELDS = ("num_tracks", "num_albums", "num_followers", "num_edits", "num_artists")
_INT64_MAX = 2**63 - 1


class InputFormatError(ValueError):
    """A raw input file is malformed; the message names the file and the record or line."""

    def __init__(self, path: Path | str, where: str, problem: str):
        self.path = str(path)
        self.where = where
        self.problem = problem
        super().__init__(f"{self.path}: {where}: {problem}")


@dataclass(frozen=True)
class LoadResult:
    """What one loader call wrote: row counts per table, input bytes and wall seconds."""

    path: str
    rows: dict[str, int]
    input_bytes: int
    seconds: float
    notes: dict[str, int | str]

    @property
    def mb_per_s(self) -> float:
        return self.input_bytes / 1e6 / max(self.seconds, 1e-9)


def slice_key(path: Path) -> str:
    """The dynamic-partition key of an MPD slice file: its file name."""
    return path.name


def list_mpd_slices(mpd_dir: Path) -> list[Path]:
    """MPD slice files in ``mpd_dir``, ordered by their first pid (not lexicographically)."""
    if not mpd_dir.is_dir():
        return []
    slices = [p for p in mpd_dir.iterdir() if MPD_SLICE_PATTERN.match(p.name)]
    return sorted(slices, key=lambda p: int(MPD_SLICE_PATTERN.match(p.name).group(1)))


def _check_file(path: Path, max_bytes: int | None = None) -> int:
    if not path.exists():
        raise InputFormatError(path, "file", "does not exist")
    if not path.is_file():
        raise InputFormatError(path, "file", "is not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise InputFormatError(path, "file", "is empty (0 bytes)")
    if max_bytes is not None and size > max_bytes:
        raise InputFormatError(
            path, "file", f"is {size:,} bytes, over the configured limit of {max_bytes:,}"
        )
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as handle:
            try:
                first = handle.read(1)
            except (OSError, EOFError) as exc:
                raise InputFormatError(path, "gzip", f"cannot be decompressed: {exc}") from exc
        if not first:
            raise InputFormatError(path, "file", "decompresses to an empty stream")
    return size


def first_row(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> tuple | None:
    """The first row of ``sql`` or None. Reads the result to the end: DuckDB 2 refuses new
    statements on a connection whose previous result is half-read."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """BEGIN ... COMMIT around the block; ROLLBACK (and re-raise) on any error, so readers see
    all of the block's writes or none of them."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


# DuckDB quotes the offending input in its error messages, cut at a byte count: when the cut
# falls inside a UTF-8 character the Python binding raises UnicodeDecodeError instead of the
# DuckDB error (found by fuzzing), so the loaders catch both.
_DUCKDB_ERRORS = (duckdb.Error, UnicodeDecodeError)


def _duckdb_message(exc: Exception) -> str:
    """The informative first lines of a DuckDB error (it appends pages of hints)."""
    if isinstance(exc, UnicodeDecodeError):
        return "DuckDB rejected the file (its error message quoted the input undecodably)"
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return " | ".join(lines[:3])


# --------------------------------------------------------------------------------------
# MPD
# --------------------------------------------------------------------------------------


def ensure_mpd_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(MPD_PLAYLISTS_DDL)
    con.execute(MPD_PLAYLIST_TRACKS_DDL)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_mpd_document(document: object, path: Path | str) -> None:
    """Raise :class:`InputFormatError` at the first record that breaks the MPD layout.

    This is the slow, precise path: it runs only after DuckDB's fast typed reader or the
    SQL validation has rejected a slice, to name the exact record and field.
    """
    if not isinstance(document, dict):
        raise InputFormatError(path, "top level", f"expected a JSON object, got {type(document).__name__}")
    if "playlists" not in document:
        raise InputFormatError(path, "top level", "missing the 'playlists' key")
    playlists = document["playlists"]
    if not isinstance(playlists, list):
        raise InputFormatError(
            path, "playlists", f"expected a list of playlists, got {type(playlists).__name__}"
        )
    seen_pids: dict[int, int] = {}
    for index, playlist in enumerate(playlists):
        where = f"playlists[{index}]"
        if not isinstance(playlist, dict):
            raise InputFormatError(path, where, f"expected an object, got {type(playlist).__name__}")
        if "pid" in playlist:
            where = f"playlists[{index}] (pid {playlist['pid']!r})"
        for field in _PLAYLIST_INT_FIELDS:
            value = playlist.get(field)
            if not _is_int(value):
                raise InputFormatError(path, where, f"field '{field}' must be an integer, got {value!r}")
            if value < 0 or value > (_INT32_MAX if field in _PLAYLIST_INT32_FIELDS else _INT64_MAX):
                raise InputFormatError(path, where, f"field '{field}' out of range: {value!r}")
        for field in _PLAYLIST_OPTIONAL_INT_FIELDS:
            value = playlist.get(field)
            limit = _INT32_MAX if field in _PLAYLIST_INT32_FIELDS else _INT64_MAX
            if value is not None and (not _is_int(value) or value < 0 or value > limit):
                raise InputFormatError(
                    path, where, f"field '{field}' must be a non-negative integer, got {value!r}"
                )
        if not isinstance(playlist.get("name"), str):
            raise InputFormatError(path, where, f"field 'name' must be a string, got {playlist.get('name')!r}")
        collaborative = playlist.get("collaborative")
        # isinstance first: 1 == True, so `1 in (True, False)` would accept a number
        if not (isinstance(collaborative, bool) or (isinstance(collaborative, str) and collaborative in ("true", "false"))):
            raise InputFormatError(
                path, where, f"field 'collaborative' must be \"true\" or \"false\", got {playlist.get('collaborative')!r}"
            )
        description = playlist.get("description")
        if description is not None and not isinstance(description, str):
            raise InputFormatError(path, where, f"field 'description' must be a string, got {description!r}")
        pid = playlist["pid"]
        if pid in seen_pids:
            raise InputFormatError(path, where, f"duplicate pid {pid} (also playlists[{seen_pids[pid]}])")
        seen_pids[pid] = index
        tracks = playlist.get("tracks")
        if not isinstance(tracks, list):
            raise InputFormatError(path, where, f"field 'tracks' must be a list, got {type(tracks).__name__}")
        if playlist["num_tracks"] != len(tracks):
            raise InputFormatError(
                path, where, f"num_tracks is {playlist['num_tracks']} but the playlist lists {len(tracks)} tracks"
            )
        for t_index, track in enumerate(tracks):
            t_where = f"{where}.tracks[{t_index}]"
            if not isinstance(track, dict):
                raise InputFormatError(path, t_where, f"expected an object, got {type(track).__name__}")
            if not _is_int(track.get("pos")) or not 0 <= track["pos"] <= _INT32_MAX:
                raise InputFormatError(path, t_where, f"field 'pos' must be a non-negative integer, got {track.get('pos')!r}")
            for field in _TRACK_STR_FIELDS:
                if not isinstance(track.get(field), str):
                    raise InputFormatError(path, t_where, f"field '{field}' must be a string, got {track.get(field)!r}")
            if not track["track_uri"].startswith("spotify:track:"):
                raise InputFormatError(path, t_where, f"track_uri {track['track_uri']!r} is not a spotify:track: URI")
            duration = track.get("duration_ms")
            if duration is not None and (not _is_int(duration) or duration < 0 or duration > _INT64_MAX):
                raise InputFormatError(path, t_where, f"field 'duration_ms' must be a non-negative integer, got {duration!r}")


def _diagnose_mpd_slice(path: Path, fallback: str) -> InputFormatError:
    """Parse the slice in Python to name the exact broken record; ``fallback`` otherwise."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        return InputFormatError(path, "file", f"cannot be read: {exc}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return InputFormatError(path, f"line {line}, byte {exc.start}", "is not valid UTF-8")
    try:
        # parse_constant rejects NaN/Infinity, which are not JSON.
        document = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        return InputFormatError(path, f"line {exc.lineno}, column {exc.colno}", f"malformed JSON: {exc.msg}")
    except ValueError as exc:
        return InputFormatError(path, "JSON", str(exc))
    try:
        validate_mpd_document(document, path)
    except InputFormatError as exc:
        return exc
    return InputFormatError(path, "slice", fallback)


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-standard JSON constant {name} is not allowed")


_MPD_VALIDATION_SQL = """
SELECT i, pid, problem FROM (
    SELECT i, pid AS pid,
        CASE
            WHEN pid IS NULL OR pid < 0 THEN 'missing or negative pid'
            WHEN name IS NULL THEN 'missing name'
            WHEN collaborative IS NULL OR collaborative NOT IN ('true', 'false')
                THEN 'collaborative must be "true" or "false"'
            WHEN num_tracks IS NULL OR tracks IS NULL THEN 'missing num_tracks or tracks'
            WHEN num_tracks <> len(tracks) THEN 'num_tracks disagrees with the tracks list'
            WHEN num_tracks > 2147483647 THEN 'num_tracks out of range'
            WHEN list_bool_or(list_transform(tracks, lambda t: t IS NULL OR t.pos IS NULL OR t.pos < 0
                OR t.pos > 2147483647
                OR t.track_uri IS NULL OR NOT starts_with(t.track_uri, 'spotify:track:')
                OR t.track_name IS NULL OR t.artist_uri IS NULL OR t.artist_name IS NULL
                OR t.album_uri IS NULL OR t.album_name IS NULL
                OR t.duration_ms < 0))
                THEN 'a track has a missing, mistyped or out-of-range field'
            WHEN least(modified_at, num_albums, num_followers, num_edits,
                       duration_ms, num_artists) < 0 THEN 'a count is negative'
            WHEN greatest(num_albums, num_followers, num_edits, num_artists) > 2147483647
                THEN 'a count is out of range'
        END AS problem
    FROM _slice_playlists
) WHERE problem IS NOT NULL
ORDER BY i
LIMIT 1
"""


def load_mpd_slice(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    slice_name: str | None = None,
    *,
    max_bytes: int | None = DEFAULT_MAX_SLICE_BYTES,
    commit_lock: threading.Lock | None = None,
) -> LoadResult:
    """Replace the rows of one MPD slice in ``mpd_playlists`` and ``mpd_playlist_tracks``.

    Parameters
    ----------
    con : an open read-write DuckDB connection (not inside a transaction).
    path : the slice file (``.json`` or ``.json.gz``).
    slice_name : the partition key stored in the ``slice`` column; defaults to the file name.
    max_bytes : reject files larger than this (on-disk bytes).

    Both tables are updated in one transaction: the previous rows of this slice are deleted
    and the new ones inserted, or, on any error, nothing changes. A pid that another slice
    already holds is rejected (pids are unique across the MPD).

    ``commit_lock``: when several threads load slices through cursors of one database (see
    :func:`load_mpd_slices`), parsing and validation run in parallel and this lock serializes
    the cross-slice pid check with the commit, so no two slices can both slip in one pid.
    """
    started = time.perf_counter()
    path = Path(path)
    slice_name = slice_name or slice_key(path)
    size = _check_file(path, max_bytes)
    with commit_lock or nullcontext():
        ensure_mpd_tables(con)
    try:
        # One typed pass of DuckDB's JSON reader over the file (the slow part), then
        # cheap in-memory unnesting.
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _slice_raw AS
            SELECT playlists FROM read_json(
                ?, columns={{'info': 'JSON', 'playlists': '{_PLAYLIST_STRUCT}[]'}},
                format='unstructured', maximum_object_size={_MAX_JSON_OBJECT_BYTES})
            """,
            [str(path)],
        )
        n_docs = con.execute("SELECT count(*) FROM _slice_raw").fetchall()[0][0]
        if n_docs != 1:
            raise InputFormatError(path, "top level", f"expected one JSON object, found {n_docs} values")
        con.execute(_MPD_TYPED_SQL)
    except _DUCKDB_ERRORS as exc:
        raise _diagnose_mpd_slice(path, _duckdb_message(exc)) from exc
    finally:
        con.execute("DROP TABLE IF EXISTS _slice_raw")
    mistyped = first_row(con, "SELECT i, pid FROM _slice_playlists WHERE NOT types_ok ORDER BY i LIMIT 1")
    if mistyped is not None:
        raise _diagnose_mpd_slice(path, f"playlists[{mistyped[0]}]: a field has the wrong JSON type")
    problem = first_row(con, _MPD_VALIDATION_SQL)
    if problem is not None:
        index, pid, message = problem
        # Name the record precisely through the Python validator; fall back to the SQL verdict.
        raise _diagnose_mpd_slice(path, f"playlists[{index}] (pid {pid}): {message}")
    duplicate = first_row(con, 
        "SELECT pid, count(*) FROM _slice_playlists GROUP BY pid HAVING count(*) > 1 ORDER BY pid LIMIT 1"
    )
    if duplicate is not None:
        raise _diagnose_mpd_slice(path, f"pid {duplicate[0]} appears {duplicate[1]} times")
    try:
        with commit_lock or nullcontext(), transaction(con):
            # inside the transaction (and the lock): what another slice committed is visible
            clash = first_row(con,
                """
                SELECT s.pid, m.slice FROM _slice_playlists s JOIN mpd_playlists m USING (pid)
                WHERE m.slice <> ? ORDER BY s.pid LIMIT 1
                """,
                [slice_name],
            )
            if clash is not None:
                raise InputFormatError(
                    path, f"pid {clash[0]}", f"already loaded from slice {clash[1]!r}; pids must be unique across slices"
                )
            con.execute("DELETE FROM mpd_playlist_tracks WHERE slice = ?", [slice_name])
            con.execute("DELETE FROM mpd_playlists WHERE slice = ?", [slice_name])
            # File order is kept (DuckDB preserves insertion order), so no sort is needed.
            con.execute(
                """
                INSERT INTO mpd_playlists
                SELECT ?, pid, name, collaborative = 'true', modified_at, num_tracks, num_albums,
                       num_followers, num_edits, duration_ms, num_artists, description
                FROM _slice_playlists
                """,
                [slice_name],
            )
            con.execute(
                """
                INSERT INTO mpd_playlist_tracks
                SELECT ?, pid, t.pos, t.track_uri, t.track_name, t.artist_uri, t.artist_name,
                       t.album_uri, t.album_name, t.duration_ms
                FROM (SELECT pid, unnest(tracks) AS t FROM _slice_playlists)
                """,
                [slice_name],
            )
            n_playlists, n_tracks, empty = con.execute(
                "SELECT count(*), coalesce(sum(len(tracks)), 0), count(*) FILTER (WHERE len(tracks) = 0) FROM _slice_playlists"
            ).fetchall()[0]
            rows = {"mpd_playlists": int(n_playlists), "mpd_playlist_tracks": int(n_tracks)}
    finally:
        con.execute("DROP TABLE IF EXISTS _slice_playlists")
    return LoadResult(
        path=str(path),
        rows=rows,
        input_bytes=size,
        seconds=time.perf_counter() - started,
        notes={"slice": slice_name, "empty_playlists": int(empty)},
    )


def load_mpd_slices(
    con: duckdb.DuckDBPyConnection,
    slices: list[tuple[Path, str]],
    *,
    workers: int = 2,
    max_bytes: int | None = DEFAULT_MAX_SLICE_BYTES,
    on_done=None,
) -> tuple[list[LoadResult], list[InputFormatError]]:
    """Load ``slices`` ((path, slice name) pairs) with ``workers`` threads, each on its own cursor.

    DuckDB parses one JSON document on one thread, so one slice at a time leaves the other
    cores idle; here each thread parses and validates its slice in parallel and the commits
    (one transaction per slice) take turns through a lock. Returns (loaded results in input
    order, rejected slices' errors in input order); other exceptions propagate. ``on_done``
    is called as ``on_done(index, result_or_error)`` as slices finish (progress logging).
    """
    ensure_mpd_tables(con)
    lock = threading.Lock()
    outcomes: list[LoadResult | InputFormatError | None] = [None] * len(slices)

    def load(index: int) -> None:
        path, name = slices[index]
        cursor = con.cursor()
        try:
            outcome: LoadResult | InputFormatError = load_mpd_slice(
                cursor, path, name, max_bytes=max_bytes, commit_lock=lock)
        except InputFormatError as exc:
            outcome = exc
        finally:
            cursor.close()
        outcomes[index] = outcome
        if on_done is not None:
            with lock:
                on_done(index, outcome)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for future in [pool.submit(load, i) for i in range(len(slices))]:
            future.result()
    loaded = [o for o in outcomes if isinstance(o, LoadResult)]
    failed = [o for o in outcomes if isinstance(o, InputFormatError)]
    return loaded, failed


# --------------------------------------------------------------------------------------
# ENTP listening triplets
# --------------------------------------------------------------------------------------


def load_entp_triplets(con: duckdb.DuckDBPyConnection, path: Path) -> LoadResult:
    """Replace ``entp_listens(user_id, song_id, play_count)`` with the triplets in ``path``.

    The file is read by DuckDB's parallel CSV reader with a fixed three-column schema (no
    sniffing, no quoting), so a row with the wrong number of columns or a non-integer
    count fails with the line number. Counts must be positive; ids non-empty. The table
    is replaced inside one transaction.
    """
    started = time.perf_counter()
    path = Path(path)
    size = _check_file(path)
    with transaction(con):
        try:
            # play_count is read as text and cast only when it is all digits: DuckDB's
            # string -> BIGINT cast would round "5.5" to 6 and read "1e3", "0x10", "1_000".
            con.execute(
                f"""
                CREATE OR REPLACE TABLE entp_listens AS
                SELECT user_id, song_id,
                       CASE WHEN regexp_full_match(play_count, '[0-9]{{1,18}}') THEN CAST(play_count AS BIGINT) END
                           AS play_count
                FROM read_csv(?, {_ENTP_CSV_OPTIONS}, columns={{'user_id': 'VARCHAR', 'song_id': 'VARCHAR', 'play_count': 'VARCHAR'}})
                """,
                [str(path)],
            )
        except _DUCKDB_ERRORS as exc:
            raise InputFormatError(path, "triplets", _duckdb_message(exc)) from exc
        bad = first_row(con, 
            """
            SELECT user_id, song_id, play_count FROM entp_listens
            WHERE play_count IS NULL OR play_count <= 0 OR play_count > 2147483647
               OR user_id IS NULL OR song_id IS NULL OR user_id = '' OR song_id = ''
            LIMIT 1
            """
        )
        if bad is not None:
            if bad[2] is None:
                _raise_typed_entp_error(con, path)
            line = _find_line(path, bad)
            raise InputFormatError(
                path, f"line {line}" if line else "record", f"invalid triplet {bad!r}: ids must be non-empty and play_count a positive integer"
            )
        n_rows = con.execute("SELECT count(*) FROM entp_listens").fetchall()[0][0]
        duplicates = con.execute(
            "SELECT count(*) FROM (SELECT 1 FROM entp_listens GROUP BY user_id, song_id HAVING count(*) > 1)"
        ).fetchall()[0][0]
    return LoadResult(
        path=str(path),
        rows={"entp_listens": int(n_rows)},
        input_bytes=size,
        seconds=time.perf_counter() - started,
        notes={"duplicate_user_song_pairs": int(duplicates)},
    )


_ENTP_CSV_OPTIONS = (
    "delim='\t', header=false, quote='', escape='', auto_detect=false, strict_mode=true, null_padding=false"
)


def _raise_typed_entp_error(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Error path of a non-integer play_count: DuckDB's typed reader names the line of a
    count that is not a number at all; a number that is not an integer ("5.5", "1e3") is
    found in Python."""
    try:
        con.execute(
            f"SELECT max(play_count) FROM read_csv(?, {_ENTP_CSV_OPTIONS}, "
            "columns={'user_id': 'VARCHAR', 'song_id': 'VARCHAR', 'play_count': 'BIGINT'})",
            [str(path)],
        ).fetchall()
    except _DUCKDB_ERRORS as exc:
        raise InputFormatError(path, "triplets", _duckdb_message(exc)) from exc
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            fields = raw.rstrip(b"\r\n").split(b"\t")
            if len(fields) == 3 and not re.fullmatch(rb"[0-9]{1,18}", fields[2]):
                raise InputFormatError(
                    path, f"line {number}", f"play_count {fields[2].decode('utf-8', 'replace')!r} is not a positive integer"
                )
    raise InputFormatError(path, "triplets", "a play_count is not a positive integer")


def _find_line(path: Path, record: tuple) -> int | None:
    """1-based line of the first row equal to ``record`` (error path only: streams the file)."""
    user_id, song_id = (record[0] or ""), (record[1] or "")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) == 3 and fields[0] == user_id and fields[1] == song_id:
                return number
    return None


# --------------------------------------------------------------------------------------
# MSD metadata
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecodedLines:
    lines: list[str]
    latin1_lines: int
    replaced_lines: int


def decode_lines_robustly(raw: bytes) -> DecodedLines:
    """Decode ``raw`` line by line: UTF-8, else Latin-1 (some MSD copies are Latin-1).

    Latin-1 maps every byte, so nothing is lost; the lines that needed it are counted so
    the asset can report them. Lines that decode as UTF-8 are never re-interpreted.
    """
    try:
        # not str.splitlines(): it also breaks at \x0b, \x0c, \x1c-\x1e, \x85, \u2028 and
        # \u2029, which may occur inside a title; bytes.splitlines breaks at \r, \n only
        return DecodedLines([line.decode("utf-8") for line in raw.splitlines()], 0, 0)
    except UnicodeDecodeError:
        pass
    lines: list[str] = []
    latin1 = 0
    for chunk in raw.splitlines():
        try:
            lines.append(chunk.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(chunk.decode("latin-1"))
            latin1 += 1
    return DecodedLines(lines, latin1, latin1)


def read_unique_tracks(path: Path) -> tuple[pa.Table, int]:
    """Parse ``unique_tracks.txt`` into (track_id, song_id, artist_name, title); return also
    the number of lines decoded as Latin-1."""
    _check_file(path)
    decoded = decode_lines_robustly(Path(path).read_bytes())
    track_ids, song_ids, artists, titles = [], [], [], []
    for number, line in enumerate(decoded.lines, start=1):
        if not line:
            continue
        fields = line.split("<SEP>")
        if len(fields) != 4:
            raise InputFormatError(path, f"line {number}", f"expected 4 '<SEP>'-separated fields, found {len(fields)}")
        track_id, song_id, artist, title = fields
        if not track_id.startswith("TR") or not song_id.startswith("SO"):
            raise InputFormatError(path, f"line {number}", f"expected TR… track id and SO… song id, got {track_id!r}, {song_id!r}")
        track_ids.append(track_id)
        song_ids.append(song_id)
        artists.append(artist)
        titles.append(title)
    table = pa.table(
        {"track_id": track_ids, "song_id": song_ids, "artist_name": artists, "title": titles},
        schema=pa.schema([(n, pa.string()) for n in ("track_id", "song_id", "artist_name", "title")]),
    )
    return table, decoded.latin1_lines


_MISMATCH_PATTERN = re.compile(r"^ERROR: <(SO[0-9A-Z]+) (TR[0-9A-Z]+)>")


def read_sid_mismatches(path: Path) -> pa.Table:
    """Song ids the MSD lists as matched to the wrong track (``sid_mismatches.txt``)."""
    decoded = decode_lines_robustly(Path(path).read_bytes())
    song_ids, track_ids = [], []
    for number, line in enumerate(decoded.lines, start=1):
        if not line.strip():
            continue
        match = _MISMATCH_PATTERN.match(line)
        if match is None:
            raise InputFormatError(path, f"line {number}", "expected 'ERROR: <SO… TR…> …'")
        song_ids.append(match.group(1))
        track_ids.append(match.group(2))
    return pa.table({"song_id": pa.array(song_ids, pa.string()), "track_id": pa.array(track_ids, pa.string())})


def load_msd_songs(
    con: duckdb.DuckDBPyConnection,
    *,
    unique_tracks: Path | None,
    song_data: Path | None,
    sid_mismatches: Path | None = None,
) -> LoadResult:
    """Replace ``msd_songs``: one row per MSD song id with title, artist, release, year,
    one track id and a ``mismatched`` flag from ``sid_mismatches.txt``.

    Either metadata file may be missing, not both. Where both give a title/artist,
    ``song_data.csv`` wins (it is the per-song file; ``unique_tracks`` is per track).
    """
    started = time.perf_counter()
    if unique_tracks is None and song_data is None:
        raise InputFormatError("msd", "inputs", "neither unique_tracks.txt nor song_data.csv was found")
    input_bytes = 0
    notes: dict[str, int | str] = {}
    tracks = pa.table({n: pa.array([], pa.string()) for n in ("track_id", "song_id", "artist_name", "title")})
    if unique_tracks is not None:
        input_bytes += _check_file(Path(unique_tracks))
        tracks, latin1 = read_unique_tracks(Path(unique_tracks))
        notes["unique_tracks_latin1_lines"] = latin1
    mismatches = pa.table({"song_id": pa.array([], pa.string()), "track_id": pa.array([], pa.string())})
    if sid_mismatches is not None and Path(sid_mismatches).exists():
        input_bytes += Path(sid_mismatches).stat().st_size
        mismatches = read_sid_mismatches(Path(sid_mismatches))
    con.register("_msd_tracks", tracks)
    con.register("_msd_mismatches", mismatches)
    try:
        if song_data is not None:
            song_data = Path(song_data)
            input_bytes += _check_file(song_data)
            try:
                # year is read as text: DuckDB's cast would round "2001.5" and read "1e3"
                con.execute(
                    """
                    CREATE OR REPLACE TEMP TABLE _msd_song_data_raw AS
                    SELECT * FROM read_csv(?, header=true, auto_detect=false, quote='"', escape='"',
                        strict_mode=true,
                        columns={'song_id': 'VARCHAR', 'title': 'VARCHAR', 'release': 'VARCHAR',
                                 'artist_name': 'VARCHAR', 'year': 'VARCHAR'})
                    """,
                    [str(song_data)],
                )
            except _DUCKDB_ERRORS as exc:
                raise InputFormatError(song_data, "csv", _duckdb_message(exc)) from exc
            header = _first_line(song_data)
            if [h.strip().strip('"') for h in header.split(",")] != ["song_id", "title", "release", "artist_name", "year"]:
                raise InputFormatError(song_data, "line 1", f"unexpected header {header!r}")
            # rowid follows file order: record N is the N-th data row after the header
            bad = first_row(con, 
                "SELECT rowid + 1, song_id FROM _msd_song_data_raw WHERE song_id IS NULL OR NOT starts_with(song_id, 'SO') "
                "ORDER BY rowid LIMIT 1"
            )
            if bad is not None:
                raise InputFormatError(song_data, f"record {bad[0]}", f"invalid song_id {bad[1]!r}")
            bad = first_row(con, 
                "SELECT rowid + 1, song_id, year FROM _msd_song_data_raw "
                "WHERE year IS NOT NULL AND NOT regexp_full_match(trim(year), '[0-9]{1,4}') ORDER BY rowid LIMIT 1"
            )
            if bad is not None:
                raise InputFormatError(
                    song_data, f"record {bad[0]} (song {bad[1]})", f"year {bad[2]!r} is not a non-negative integer"
                )
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _msd_song_data AS SELECT song_id, title, release, artist_name, "
                "CAST(trim(year) AS INTEGER) AS year FROM _msd_song_data_raw"
            )
        else:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _msd_song_data (song_id VARCHAR, title VARCHAR, "
                "release VARCHAR, artist_name VARCHAR, year INTEGER)"
            )
        with transaction(con):
            con.execute(
                """
                CREATE OR REPLACE TABLE msd_songs AS
                WITH per_track AS (
                    SELECT song_id, min(track_id) AS track_id,
                           arg_min(title, track_id) AS title, arg_min(artist_name, track_id) AS artist_name
                    FROM _msd_tracks GROUP BY song_id
                ), per_song AS (
                    SELECT song_id, arg_min(title, title) AS title, arg_min(release, title) AS release,
                           arg_min(artist_name, title) AS artist_name,
                           arg_min(nullif(year, 0), title) AS year
                    FROM _msd_song_data GROUP BY song_id
                )
                SELECT coalesce(s.song_id, t.song_id) AS song_id,
                       t.track_id,
                       coalesce(s.title, t.title) AS title,
                       coalesce(s.artist_name, t.artist_name) AS artist_name,
                       s.release,
                       s.year,
                       coalesce(coalesce(s.song_id, t.song_id) IN (SELECT song_id FROM _msd_mismatches), false)
                           AS mismatched
                FROM per_song s FULL OUTER JOIN per_track t USING (song_id)
                ORDER BY song_id
                """
            )
            n_rows, n_mismatched = first_row(con, 
                "SELECT count(*), count(*) FILTER (WHERE mismatched) FROM msd_songs"
            )
    finally:
        con.unregister("_msd_tracks")
        con.unregister("_msd_mismatches")
        con.execute("DROP TABLE IF EXISTS _msd_song_data")
        con.execute("DROP TABLE IF EXISTS _msd_song_data_raw")
    notes["mismatched_songs"] = int(n_mismatched)
    return LoadResult(
        path=", ".join(str(p) for p in (unique_tracks, song_data, sid_mismatches) if p is not None),
        rows={"msd_songs": int(n_rows)},
        input_bytes=input_bytes,
        seconds=time.perf_counter() - started,
        notes=notes,
    )


def _first_line(path: Path) -> str:
    with open(path, "rb") as handle:
        raw = handle.readline()
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")


def table_schema(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    """(column, type) pairs of a table, for asset metadata."""
    return [
        (name, dtype)
        for name, dtype in con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
            [table],
        ).fetchall()
    ]
