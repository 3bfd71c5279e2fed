"""Loaders for the raw public datasets into DuckDB (no Dagster imports).

Every loader validates before it touches the warehouse and replaces its rows inside one
transaction, so a bad file fails with an :class:`InputFormatError` naming the file and the
record/line, and whatever was loaded before stays exactly as it was.

Formats (as the public datasets ship them):

* MPD slice ``mpd.slice.<start>-<end>.json[.gz]``: one pretty-printed JSON object
  ``{"info": {...}, "playlists": [...]}``; ``collaborative`` is the *string* "true"/"false";
  the playlists' pids lie in ``<start>..<end>``; a slice is never empty.
* ENTP ``train_triplets.txt[.gz]``: ``user_id \\t song_id \\t play_count``, no header.
* MSD ``unique_tracks.txt`` (``<SEP>``-separated, not guaranteed UTF-8), ``song_data.csv``
  (header, quoted fields, maybe CRLF) and ``sid_mismatches.txt``.
"""

from __future__ import annotations

import gc
import gzip
import hashlib
import json
import logging
import multiprocessing
import operator
import os
import re
import sys
import tempfile
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import chain, repeat
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

_log = logging.getLogger(__name__)

MPD_SLICE_PATTERN = re.compile(r"^mpd\.slice\.(\d+)-(\d+)\.json(\.gz)?$")
# The most bytes a slice may hold, on disk and (for .gz) after decompression.
DEFAULT_MAX_SLICE_BYTES = 512 * 1024 * 1024
# Naming the exact broken record parses the slice in Python (~10x its size in memory); a
# real slice is ~33 MB. Above this, an error carries DuckDB's verdict without the record.
DIAGNOSIS_MAX_BYTES = 128 * 1024 * 1024
_READ_CHUNK = 1024 * 1024
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

# One row per loaded slice file: what the warehouse holds for it (the slice sensor skips
# files whose size + mtime, or failing that whose content hash, match).
MPD_SLICE_FILES_DDL = """
CREATE TABLE IF NOT EXISTS mpd_slice_files (
    slice VARCHAR NOT NULL,
    bytes BIGINT NOT NULL,
    mtime_ns BIGINT NOT NULL,
    sha256 VARCHAR NOT NULL,
    loaded_at TIMESTAMP NOT NULL
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

    def __reduce__(self):
        # pickled by the worker processes of load_mpd_slices (the default would call
        # __init__ with the one formatted message)
        return (type(self), (self.path, self.where, self.problem))


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


def slice_pid_range(name: str) -> tuple[int, int] | None:
    """(first, last) pid of a slice file name (``mpd.slice.0-999.json`` -> (0, 999)), or None
    for a name that is not a slice name."""
    match = MPD_SLICE_PATTERN.match(name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def slice_twin_name(name: str) -> str | None:
    """The other spelling of the same slice: ``x.json`` <-> ``x.json.gz`` (None for a name
    that is not a slice name). Both hold the same pids, so they are one slice."""
    if MPD_SLICE_PATTERN.match(name) is None:
        return None
    return name[: -len(".gz")] if name.endswith(".gz") else name + ".gz"


@dataclass(frozen=True)
class SliceFingerprint:
    """What identifies the content of a slice file: size and mtime (cheap to compare) and the
    SHA-256 of its bytes on disk (decides when size or mtime differ)."""

    bytes: int
    mtime_ns: int
    sha256: str

    def same_stat(self, path: Path) -> bool:
        stat = path.stat()
        return (stat.st_size, stat.st_mtime_ns) == (self.bytes, self.mtime_ns)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks (hashlib releases the GIL)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_fingerprint(path: Path) -> SliceFingerprint:
    stat = Path(path).stat()
    return SliceFingerprint(stat.st_size, stat.st_mtime_ns, file_sha256(path))


def list_mpd_slices(mpd_dir: Path) -> list[Path]:
    """MPD slice files in ``mpd_dir``, ordered by their first pid (not lexicographically)."""
    if not mpd_dir.is_dir():
        return []
    slices = [p for p in mpd_dir.iterdir() if MPD_SLICE_PATTERN.match(p.name)]
    return sorted(slices, key=lambda p: int(MPD_SLICE_PATTERN.match(p.name).group(1)))


def _check_inside_folder(path: Path, allow_external_symlinks: bool) -> None:
    """Refuse a file that is (or passes through) a symlink leading out of its folder: a
    slice dropped into the watched folder must not make the loader read elsewhere on disk.
    The folder itself may be a link (``data/raw/mpd -> /datasets/mpd``)."""
    if allow_external_symlinks:
        return
    folder = path.parent.resolve()
    real = path.resolve()
    if real.parent != folder and folder not in real.parents:
        raise InputFormatError(
            path, "file",
            f"is a symlink to {real}, outside its folder {folder}; copy the file into the folder, "
            "or opt in with the allow_external_symlinks setting (SPOTIFY_ASSETS_ALLOW_EXTERNAL_SYMLINKS=1)",
        )


def is_gzip(path: Path) -> bool:
    """True when the file starts with the gzip magic bytes, whatever its name says (a slice
    renamed from ``x.json.gz`` to ``x.json`` without unpacking is still gzip)."""
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _open_bytes(path: Path):
    """A binary reader of the file's content, unpacking gzip (see :func:`is_gzip`)."""
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


def _read_all(path: Path) -> bytes:
    """The whole (unpacked) content of a small text file; a broken gzip stream is an input error."""
    try:
        with _open_bytes(path) as handle:
            return handle.read()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise InputFormatError(path, "gzip", f"cannot be decompressed: {exc}") from exc


def _compression(path: Path) -> str:
    """DuckDB's ``compression`` option for the file (its extension may not say)."""
    return "gzip" if is_gzip(path) else "none"


def _check_decompressed_size(path: Path, max_bytes: int) -> None:
    """Stream through a gzip file (1 MiB at a time) and refuse it once it unpacks to more than
    ``max_bytes``: a few KB on disk can hold gigabytes of whitespace."""
    total = 0
    with gzip.open(path, "rb") as handle:
        try:
            while chunk := handle.read(_READ_CHUNK):
                total += len(chunk)
                if total > max_bytes:
                    raise InputFormatError(
                        path, "gzip", f"decompresses to more than {max_bytes:,} bytes, over the configured limit"
                    )
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise InputFormatError(path, "gzip", f"cannot be decompressed: {exc}") from exc


def _check_file(path: Path, max_bytes: int | None = None, *, allow_external_symlinks: bool = False) -> int:
    """Refuse a missing, empty, oversized (on disk or, for .gz, unpacked) or out-of-folder
    file; return its size on disk."""
    if not path.exists():
        raise InputFormatError(path, "file", "does not exist")
    _check_inside_folder(path, allow_external_symlinks)
    if not path.is_file():
        raise InputFormatError(path, "file", "is not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise InputFormatError(path, "file", "is empty (0 bytes)")
    if max_bytes is not None and size > max_bytes:
        raise InputFormatError(
            path, "file", f"is {size:,} bytes, over the configured limit of {max_bytes:,}"
        )
    if is_gzip(path):
        with gzip.open(path, "rb") as handle:
            try:
                first = handle.read(1)
            except (OSError, EOFError) as exc:
                raise InputFormatError(path, "gzip", f"cannot be decompressed: {exc}") from exc
        if not first:
            raise InputFormatError(path, "file", "decompresses to an empty stream")
        if max_bytes is not None:
            _check_decompressed_size(path, max_bytes)
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
    con.execute(MPD_SLICE_FILES_DDL)


_EMPTY_SLICE = (
    "the slice holds no playlists; a real slice is never empty, so the file is refused "
    "rather than erasing the rows loaded for this slice"
)


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
    if not playlists:
        raise InputFormatError(path, "playlists", _EMPTY_SLICE)
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


def _diagnose_mpd_slice(path: Path, fallback: str, where: str = "slice") -> InputFormatError:
    """Parse the slice in Python to name the exact broken record; ``where: fallback``
    otherwise. Reads at most ``DIAGNOSIS_MAX_BYTES`` (a larger slice gets the fallback)."""
    try:
        with _open_bytes(path) as handle:
            raw = handle.read(DIAGNOSIS_MAX_BYTES + 1)
    except (OSError, EOFError) as exc:
        return InputFormatError(path, "file", f"cannot be read: {exc}")
    if len(raw) > DIAGNOSIS_MAX_BYTES:
        return InputFormatError(
            path, where, f"{fallback} (the slice is over {DIAGNOSIS_MAX_BYTES:,} bytes, too large to name the record)"
        )
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
    return InputFormatError(path, where, fallback)


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


# The Arrow layout of a parsed slice: the warehouse columns without ``slice`` (the writer
# adds it), in the warehouse's types.
MPD_PLAYLIST_SCHEMA = pa.schema([
    ("pid", pa.int64()), ("name", pa.string()), ("collaborative", pa.bool_()), ("modified_at", pa.int64()),
    ("num_tracks", pa.int32()), ("num_albums", pa.int32()), ("num_followers", pa.int32()),
    ("num_edits", pa.int32()), ("duration_ms", pa.int64()), ("num_artists", pa.int32()),
    ("description", pa.string()),
])
MPD_TRACK_SCHEMA = pa.schema([
    ("pid", pa.int64()), ("pos", pa.int32()), ("track_uri", pa.string()), ("track_name", pa.string()),
    ("artist_uri", pa.string()), ("artist_name", pa.string()), ("album_uri", pa.string()),
    ("album_name", pa.string()), ("duration_ms", pa.int64()),
])
#: Slice parsers: "auto" (orjson + Python checks, DuckDB's reader whenever those are unsure),
#: "duckdb" (DuckDB's reader and SQL checks only: the loader before issue 18).
MPD_PARSERS = ("auto", "duckdb")


@dataclass(frozen=True)
class ParsedSlice:
    """One MPD slice read and validated, not yet written (see :func:`read_mpd_slice`).

    Attributes
    ----------
    path : the slice file.
    slice_name : the partition key its rows get in the ``slice`` column.
    size : bytes on disk.
    fingerprint : size, mtime and SHA-256 of the file as it was read.
    playlists : ``n_playlists`` rows in file order, :data:`MPD_PLAYLIST_SCHEMA`
        (pid int64, name string, collaborative bool, counts int32/int64, description string).
    tracks : ``n_tracks`` rows, playlist by playlist in file order, :data:`MPD_TRACK_SCHEMA`
        (pid int64, pos int32, six strings, duration_ms int64).
    parser : "orjson" (the fast path accepted it) or "duckdb" (DuckDB's reader did).
    seconds : wall seconds spent reading and validating.
    """

    path: Path
    slice_name: str
    size: int
    fingerprint: SliceFingerprint
    playlists: pa.Table
    tracks: pa.Table
    parser: str
    seconds: float

    @property
    def empty_playlists(self) -> int:
        """Playlists with no tracks (they load; the count goes into the notes)."""
        return int(pc.sum(pc.equal(self.playlists["num_tracks"], 0)).as_py() or 0)


def read_mpd_slice(
    path: Path,
    slice_name: str | None = None,
    *,
    max_bytes: int | None = DEFAULT_MAX_SLICE_BYTES,
    allow_external_symlinks: bool = False,
    parser: str = "auto",
    con: duckdb.DuckDBPyConnection | None = None,
) -> ParsedSlice:
    """Read and validate one MPD slice file into Arrow tables, touching no warehouse.

    Parameters
    ----------
    path : the slice file (``.json`` or ``.json.gz``).
    slice_name : the partition key; defaults to the file name.
    max_bytes : reject files larger than this, on disk or (``.gz``) after decompression.
    allow_external_symlinks : follow a symlink that leads out of the file's folder.
    parser : "auto": orjson parses the slice and vectorised checks validate it; anything
        those checks are not sure of (an unknown key, a duplicate key, a wrong type, an
        escape they cannot account for, a byte-order mark, ...) goes to DuckDB's reader and
        SQL checks, which accept or refuse exactly as before and name the record. "duckdb":
        DuckDB's reader only. Both give the same tables for every slice that loads.
    con : the DuckDB connection DuckDB's reader runs on (temp tables only); None = a private
        in-memory one with one thread (what a worker process uses).

    Returns
    -------
    ParsedSlice with ``playlists`` (n_playlists rows) and ``tracks`` (n_tracks rows).

    Raises
    ------
    InputFormatError naming the file and the record, for every file the loader refuses:
    the checks, their order and their messages are those of :func:`load_mpd_slice`.
    """
    if parser not in MPD_PARSERS:
        raise ValueError(f"parser must be one of {MPD_PARSERS}, got {parser!r}")
    started = time.perf_counter()
    path = Path(path)
    slice_name = slice_name or slice_key(path)
    pid_range = slice_pid_range(path.name)
    if pid_range is not None and pid_range[0] > pid_range[1]:
        raise InputFormatError(path, "file name", f"the range {pid_range[0]}-{pid_range[1]} is empty (first pid > last pid)")
    twin_file = path.parent / slice_twin_name(path.name) if pid_range is not None else None
    if twin_file is not None and twin_file.exists():
        raise InputFormatError(
            path, "file",
            f"both {path.name} and {twin_file.name} are in {path.parent}: they are the same slice "
            f"(pids {pid_range[0]}-{pid_range[1]}); keep one",
        )
    size = _check_file(path, max_bytes, allow_external_symlinks=allow_external_symlinks)
    tables = None
    used = "orjson"
    if parser == "auto" and size <= _FAST_PATH_MAX_BYTES:  # (a larger file is hashed in chunks)
        stat = path.stat()
        on_disk = path.read_bytes()
        fingerprint = SliceFingerprint(stat.st_size, stat.st_mtime_ns, hashlib.sha256(on_disk).hexdigest())
        with _gc_paused():
            tables = _parse_slice_fast(on_disk, pid_range)
        del on_disk
    else:
        fingerprint = file_fingerprint(path)
    if tables is None:
        used = "duckdb"
        if con is None:
            with duckdb.connect(config={"threads": 1}) as private:
                tables = _parse_slice_duckdb(private, path, pid_range)
        else:
            tables = _parse_slice_duckdb(con, path, pid_range)
    if not fingerprint.same_stat(path):
        raise InputFormatError(path, "file", "changed while it was being loaded; load it again")
    return ParsedSlice(path, slice_name, size, fingerprint, tables[0], tables[1], used,
                       time.perf_counter() - started)


def _parse_slice_duckdb(
    con: duckdb.DuckDBPyConnection, path: Path, pid_range: tuple[int, int] | None
) -> tuple[pa.Table, pa.Table]:
    """DuckDB's JSON reader and the SQL checks (the loader before issue 18): (playlists,
    tracks) as Arrow tables in :data:`MPD_PLAYLIST_SCHEMA` / :data:`MPD_TRACK_SCHEMA`, or
    the :class:`InputFormatError` naming the first broken record."""
    try:
        try:
            # One typed pass of DuckDB's JSON reader over the file (the slow part), then
            # cheap in-memory unnesting.
            con.execute(
                f"""
                CREATE OR REPLACE TEMP TABLE _slice_raw AS
                SELECT playlists FROM read_json(
                    ?, columns={{'info': 'JSON', 'playlists': '{_PLAYLIST_STRUCT}[]'}},
                    format='unstructured', maximum_object_size={_MAX_JSON_OBJECT_BYTES},
                    compression='{_compression(path)}')
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
        _validate_slice_playlists(con, path, pid_range)
        # File order is kept (DuckDB preserves insertion order), so no sort is needed.
        playlists = con.sql(
            "SELECT pid, name, collaborative = 'true' AS collaborative, modified_at, num_tracks, num_albums, "
            "num_followers, num_edits, duration_ms, num_artists, description FROM _slice_playlists"
        ).to_arrow_table()
        tracks = con.sql(
            "SELECT pid, t.pos AS pos, t.track_uri AS track_uri, t.track_name AS track_name, "
            "t.artist_uri AS artist_uri, t.artist_name AS artist_name, t.album_uri AS album_uri, "
            "t.album_name AS album_name, t.duration_ms AS duration_ms "
            "FROM (SELECT pid, unnest(tracks) AS t FROM _slice_playlists)"
        ).to_arrow_table()
    finally:
        con.execute("DROP TABLE IF EXISTS _slice_playlists")
    return (playlists.cast(MPD_PLAYLIST_SCHEMA), tracks.cast(MPD_TRACK_SCHEMA))


# The fast path's layout: every key it may meet (anything else goes to DuckDB's reader).
_TOP_KEYS = frozenset({"info", "playlists"})
_PLAYLIST_KEYS = frozenset(_PLAYLIST_FIELD_TYPES) | {"tracks"}
_TRACK_KEYS = frozenset(_TRACK_FIELD_TYPES)
_NONE = type(None)
# (field, required, upper bound, Arrow type) of the integer fields; every integer is >= 0
_PLAYLIST_INTS = (
    ("pid", True, _INT64_MAX, pa.int64()), ("modified_at", False, _INT64_MAX, pa.int64()),
    ("num_tracks", True, _INT32_MAX, pa.int32()), ("num_albums", False, _INT32_MAX, pa.int32()),
    ("num_followers", False, _INT32_MAX, pa.int32()), ("num_edits", False, _INT32_MAX, pa.int32()),
    ("duration_ms", False, _INT64_MAX, pa.int64()), ("num_artists", False, _INT32_MAX, pa.int32()),
)
_TRACK_INTS = (("pos", True, _INT32_MAX, pa.int32()), ("duration_ms", False, _INT64_MAX, pa.int64()))


class _Unsure(Exception):
    """The fast path cannot vouch for the slice: DuckDB's reader decides."""


def _column(fields: dict[str, pa.Array], name: str, kind: str, required: bool, n_rows: int) -> pa.Array:
    """Field ``name`` of a struct array whose type pyarrow inferred from the parsed JSON:
    int64 (``kind`` "int") or string ("str"), null where missing (``required``: nowhere).
    Inference gives another type for any mix (an int beside a float is double, beside a
    bool or a string an error): then, or for a missing required value, :class:`_Unsure`."""
    column = fields.get(name)
    wanted = pa.int64() if kind == "int" else pa.string()
    if column is None or column.type == pa.null():
        column = pa.nulls(n_rows if column is None else len(column), wanted)
    if column.type != wanted or (required and column.null_count):
        raise _Unsure
    return column


def _int_column(fields: dict[str, pa.Array], name: str, required: bool, limit: int, dtype: pa.DataType,
                n_rows: int) -> pa.Array:
    """An integer field (see :func:`_column`), every value in 0..``limit``, cast to ``dtype``."""
    column = _column(fields, name, "int", required, n_rows)
    if len(column) > column.null_count:
        bounds = pc.min_max(column).as_py()
        if bounds["min"] < 0 or bounds["max"] > limit:
            raise _Unsure
    return column.cast(dtype)


def _colons(column: pa.Array) -> int:
    """How many ':' the strings of a string array hold."""
    return int(pc.sum(pc.count_substring(column, ":")).as_py() or 0)


def _members_and_colons(value: object) -> tuple[int, int]:
    """(object members, ':' inside keys and strings) of a parsed JSON value, at any depth."""
    members = colons = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            members += len(item)
            colons += sum(key.count(":") for key in item)
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)
        elif type(item) is str:
            colons += item.count(":")
    return members, colons


_TRUE_FALSE = pa.array(["true", "false"])
# Parsed into Python objects a slice takes ~10x its size in memory (as for the diagnosis):
# a larger one goes to DuckDB's reader, which holds it as compact vectors.
_FAST_PATH_MAX_BYTES = DIAGNOSIS_MAX_BYTES


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the block: orjson's ~70k acyclic containers per
    slice would trigger it again and again (about a tenth of a slice's parse)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _parse_slice_fast(raw: bytes, pid_range: tuple[int, int] | None) -> tuple[pa.Table, pa.Table] | None:
    """orjson + vectorised checks: (playlists, tracks) as Arrow tables when the slice
    certainly passes every check of DuckDB's path and loads the same values there, else
    None (DuckDB's reader then accepts, or refuses naming the record).

    ``raw`` is the file's bytes (gzip is unpacked here, one stream only). What it vouches
    for: one JSON object with only the keys ``info`` and ``playlists``; a non-empty list of
    playlist objects with only the MPD's keys and their JSON types (integers in
    0..int32/int64 max as the columns need; ``collaborative`` "true"/"false" or a boolean);
    ``num_tracks`` equal to the length of ``tracks``; track objects likewise; distinct pids
    inside the file name's range; ``spotify:track:`` URIs. pyarrow converts the parsed
    playlists in one pass, inferring each field's type (a float among integers makes the
    field double, which is refused: pyarrow would truncate it into an int64 column).
    orjson keeps the last of duplicate keys, which DuckDB refuses: every member of a JSON
    object has exactly one ':' outside strings, so the file's ':' count must equal the
    parsed members plus the ':' inside parsed keys and strings (a file with ``\\u003``
    escapes, which could spell a ':', is left to DuckDB).
    """
    try:
        if raw[:2] == b"\x1f\x8b":
            unpack = zlib.decompressobj(wbits=31)
            raw = unpack.decompress(raw, _FAST_PATH_MAX_BYTES + 1)
            if not unpack.eof or unpack.unused_data:
                return None  # (also when it unpacks to more than the limit)
        if len(raw) > _FAST_PATH_MAX_BYTES:
            return None
        # (a one-byte search first: memchr-fast, and most generated slices hold no escape)
        if b"\\" in raw and b"\\u003" in raw:
            return None
        document = orjson.loads(raw)
        if type(document) is not dict or not document.keys() <= _TOP_KEYS:
            return None
        playlists = document.get("playlists")
        if type(playlists) is not list or not playlists:
            return None
        # dict.keys raises TypeError for anything but a dict; ``keys() <= set`` allocates
        # nothing (frozenset.issuperset(dict) would build a set per object)
        if not all(map(operator.le, map(dict.keys, playlists), repeat(_PLAYLIST_KEYS))):
            return None
        track_lists = [p.get("tracks") for p in playlists]
        if set(map(type, track_lists)) != {list}:
            return None
        tracks = list(chain.from_iterable(track_lists))
        if not all(map(operator.le, map(dict.keys, tracks), repeat(_TRACK_KEYS))):
            return None
        members, colons = _members_and_colons(document.get("info"))
        members += len(document) + sum(map(len, playlists)) + sum(map(len, tracks))
        n_playlists, n_tracks = len(playlists), len(tracks)
        del document, track_lists, tracks

        inferred = pa.array(playlists)
        del playlists
        if not pa.types.is_struct(inferred.type):
            return None
        fields = {f.name: inferred.field(i) for i, f in enumerate(inferred.type)}
        p_cols = {f: _int_column(fields, f, req, lim, t, n_playlists) for f, req, lim, t in _PLAYLIST_INTS}
        p_cols["name"] = _column(fields, "name", "str", True, n_playlists)
        p_cols["description"] = _column(fields, "description", "str", False, n_playlists)
        colons += _colons(p_cols["name"]) + _colons(p_cols["description"])
        collaborative = fields.get("collaborative")
        if collaborative is None or collaborative.null_count:
            return None
        if collaborative.type == pa.string():
            if not pc.all(pc.is_in(collaborative, value_set=_TRUE_FALSE)).as_py():
                return None
            collaborative = pc.equal(collaborative, "true")
        elif collaborative.type != pa.bool_():
            return None
        p_cols["collaborative"] = collaborative

        pids = p_cols["pid"]
        if pc.count_distinct(pids).as_py() != n_playlists:
            return None
        if pid_range is not None:
            bounds = pc.min_max(pids).as_py()
            if bounds["min"] < pid_range[0] or bounds["max"] > pid_range[1]:
                return None
        track_column = fields.get("tracks")
        if track_column is None or not pa.types.is_list(track_column.type) or track_column.null_count:
            return None
        lengths = pc.list_value_length(track_column)
        if not pc.all(pc.equal(lengths, p_cols["num_tracks"].cast(pa.int32()))).as_py():
            return None
        flat = track_column.flatten()
        if len(flat) != n_tracks:
            return None
        if flat.type == pa.null():
            t_fields: dict[str, pa.Array] = {}
        elif pa.types.is_struct(flat.type):
            t_fields = {f.name: flat.field(i) for i, f in enumerate(flat.type)}
        else:
            return None
        t_cols = {f: _int_column(t_fields, f, req, lim, typ, n_tracks) for f, req, lim, typ in _TRACK_INTS}
        for field in _TRACK_STR_FIELDS:
            t_cols[field] = _column(t_fields, field, "str", True, n_tracks)
            colons += _colons(t_cols[field])
        if n_tracks and not pc.all(pc.starts_with(t_cols["track_uri"], "spotify:track:")).as_py():
            return None
        if raw.count(b":") != members + colons:
            return None
        t_cols["pid"] = pa.array(np.repeat(pids.to_numpy(), lengths.to_numpy()), pa.int64())
    except (_Unsure, ValueError, TypeError, OverflowError, UnicodeError, zlib.error, pa.ArrowException):
        return None  # orjson.JSONDecodeError is a ValueError
    return (
        pa.Table.from_arrays([p_cols[f.name] for f in MPD_PLAYLIST_SCHEMA], schema=MPD_PLAYLIST_SCHEMA),
        pa.Table.from_arrays([t_cols[f.name] for f in MPD_TRACK_SCHEMA], schema=MPD_TRACK_SCHEMA),
    )


def write_mpd_slice(con: duckdb.DuckDBPyConnection, parsed: ParsedSlice) -> LoadResult:
    """Replace the rows of ``parsed``'s slice in the MPD tables, in one transaction.

    Inside the transaction (one writer per database: :func:`load_mpd_slices`' process): a
    pid that another slice already holds is refused (pids are unique across the MPD), the
    previous rows of the slice and of its ``.json``/``.json.gz`` twin are deleted, the new
    rows appended in file order, and the file's fingerprint stored in ``mpd_slice_files``.
    On any error nothing changes. ``seconds`` of the result is reading plus writing.
    """
    started = time.perf_counter()
    path, slice_name = parsed.path, parsed.slice_name
    twin = slice_twin_name(slice_name)
    names = [slice_name, twin or slice_name]
    con.register("_mpd_new_playlists", parsed.playlists)
    con.register("_mpd_new_tracks", parsed.tracks)
    try:
        with transaction(con):
            # inside the transaction: what another slice committed is visible
            clash = first_row(con,
                """
                SELECT s.pid, m.slice FROM _mpd_new_playlists s JOIN mpd_playlists m USING (pid)
                WHERE m.slice NOT IN (?, ?) ORDER BY s.pid LIMIT 1
                """,
                names,
            )
            if clash is not None:
                raise InputFormatError(
                    path, f"pid {clash[0]}", f"already loaded from slice {clash[1]!r}; pids must be unique across slices"
                )
            held = {row[0] for row in con.execute(
                "SELECT DISTINCT slice FROM mpd_playlists WHERE list_contains(?, slice)", [names]).fetchall()}
            replaced_twin = twin is not None and twin in held
            if held:
                _delete_slice_rows(con, names)
            else:
                # a slice's track rows never outlive its playlist rows (written and deleted
                # together; an empty slice is refused), so a first load skips scanning the
                # largest table for rows it cannot have
                con.execute("DELETE FROM mpd_slice_files WHERE list_contains(?, slice)", [names])
            con.execute(
                """
                INSERT INTO mpd_playlists
                SELECT ?, pid, name, collaborative, modified_at, num_tracks, num_albums,
                       num_followers, num_edits, duration_ms, num_artists, description
                FROM _mpd_new_playlists
                """,
                [slice_name],
            )
            con.execute(
                """
                INSERT INTO mpd_playlist_tracks
                SELECT ?, pid, pos, track_uri, track_name, artist_uri, artist_name,
                       album_uri, album_name, duration_ms
                FROM _mpd_new_tracks
                """,
                [slice_name],
            )
            fingerprint = parsed.fingerprint
            con.execute(
                "INSERT INTO mpd_slice_files VALUES (?, ?, ?, ?, now()::TIMESTAMP)",
                [slice_name, fingerprint.bytes, fingerprint.mtime_ns, fingerprint.sha256],
            )
    finally:
        con.unregister("_mpd_new_playlists")
        con.unregister("_mpd_new_tracks")
    written = time.perf_counter() - started
    notes: dict[str, int | str] = {"slice": slice_name, "empty_playlists": parsed.empty_playlists,
                                   "sha256": parsed.fingerprint.sha256, "parser": parsed.parser,
                                   "read_ms": round(parsed.seconds * 1000), "write_ms": round(written * 1000)}
    if replaced_twin:
        notes["replaced_slice"] = twin
    return LoadResult(
        path=str(path),
        rows={"mpd_playlists": parsed.playlists.num_rows, "mpd_playlist_tracks": parsed.tracks.num_rows},
        input_bytes=parsed.size,
        seconds=parsed.seconds + written,
        notes=notes,
    )


def load_mpd_slice(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    slice_name: str | None = None,
    *,
    max_bytes: int | None = DEFAULT_MAX_SLICE_BYTES,
    allow_external_symlinks: bool = False,
    parser: str = "auto",
) -> LoadResult:
    """Replace the rows of one MPD slice in ``mpd_playlists`` and ``mpd_playlist_tracks``.

    Parameters
    ----------
    con : an open read-write DuckDB connection (not inside a transaction).
    path : the slice file (``.json`` or ``.json.gz``).
    slice_name : the partition key stored in the ``slice`` column; defaults to the file name.
    max_bytes : reject files larger than this, on disk or (``.gz``) after decompression.
    allow_external_symlinks : follow a symlink that leads out of the file's folder
        (refused by default).
    parser : see :func:`read_mpd_slice` ("auto" or "duckdb"; the same rows either way).

    Both tables are updated in one transaction: the previous rows of this slice are deleted
    and the new ones inserted, or, on any error, nothing changes. Refused: a pid that
    another slice already holds (pids are unique across the MPD), a pid outside the range
    of a slice file name (``mpd.slice.0-999.json`` holds pids 0..999), and a slice with no
    playlists (it would erase the slice's rows). ``x.json`` and ``x.json.gz`` are the same
    slice: loading one replaces the rows loaded from the other (a rename), unless both files
    are in the folder. The file's size, mtime and SHA-256 are stored in ``mpd_slice_files``
    in the same transaction (``notes["sha256"]``). :func:`load_mpd_slices` loads many slices,
    reading them in worker processes.
    """
    ensure_mpd_tables(con)
    parsed = read_mpd_slice(path, slice_name, max_bytes=max_bytes, allow_external_symlinks=allow_external_symlinks,
                            parser=parser, con=con)
    return write_mpd_slice(con, parsed)


def _validate_slice_playlists(con: duckdb.DuckDBPyConnection, path: Path, pid_range: tuple[int, int] | None) -> None:
    """Checks on the parsed ``_slice_playlists`` before anything is written: JSON types,
    layout, duplicate pids, pids within the file name's range, at least one playlist."""
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
    if pid_range is not None:
        outside = first_row(con,
            "SELECT i, pid FROM _slice_playlists WHERE pid NOT BETWEEN ? AND ? ORDER BY i LIMIT 1", list(pid_range)
        )
        if outside is not None:
            raise InputFormatError(
                path, f"playlists[{outside[0]}] (pid {outside[1]})",
                f"pid {outside[1]} is outside the range {pid_range[0]}-{pid_range[1]} of the file name",
            )
    if first_row(con, "SELECT 1 FROM _slice_playlists LIMIT 1") is None:
        # the Python validator tells a missing or mistyped 'playlists' from an empty list
        raise _diagnose_mpd_slice(path, _EMPTY_SLICE, where="playlists")


def _delete_slice_rows(con: duckdb.DuckDBPyConnection, slices: list[str]) -> None:
    """Delete every row of ``slices`` from the MPD tables (inside the caller's transaction)."""
    for table in ("mpd_playlist_tracks", "mpd_playlists", "mpd_slice_files"):
        con.execute(f"DELETE FROM {table} WHERE list_contains(?, slice)", [slices])


def slice_fingerprints(con: duckdb.DuckDBPyConnection) -> dict[str, SliceFingerprint]:
    """The fingerprint of each slice the warehouse holds (empty before the first load)."""
    if first_row(con, "SELECT 1 FROM information_schema.tables WHERE table_name = 'mpd_slice_files'") is None:
        return {}
    rows = con.execute("SELECT slice, bytes, mtime_ns, sha256 FROM mpd_slice_files").fetchall()
    return {name: SliceFingerprint(int(size), int(mtime), sha) for name, size, mtime, sha in rows}


def stale_slices(con: duckdb.DuckDBPyConnection, mpd_dir: Path) -> dict[str, int]:
    """Slices with rows in ``mpd_playlists`` whose file (under either spelling, ``.json`` or
    ``.json.gz``) is no longer in ``mpd_dir``: {slice: playlists}."""
    if first_row(con, "SELECT 1 FROM information_schema.tables WHERE table_name = 'mpd_playlists'") is None:
        return {}
    present = {p.name for p in list_mpd_slices(Path(mpd_dir))}
    held = con.execute("SELECT slice, count(*) FROM mpd_playlists GROUP BY slice ORDER BY slice").fetchall()
    return {name: int(n) for name, n in held if name not in present and slice_twin_name(name) not in present}


def drop_slices(con: duckdb.DuckDBPyConnection, slices: list[str]) -> dict[str, int]:
    """Delete every row of ``slices`` in one transaction; returns {slice: playlists deleted}."""
    if not slices:
        return {}
    ensure_mpd_tables(con)
    with transaction(con):
        counts = dict(con.execute(
            "SELECT slice, count(*) FROM mpd_playlists WHERE list_contains(?, slice) GROUP BY slice", [slices]
        ).fetchall())
        _delete_slice_rows(con, slices)
    return {name: int(counts.get(name, 0)) for name in slices}


# DuckDB checkpoints once the WAL outgrows checkpoint_threshold (16 MiB by default): about
# every slice, each time recompressing the last, partly filled row group. A multi-slice
# load raises it for its duration and checkpoints once at the end (halves the writer's time).
_LOAD_CHECKPOINT_THRESHOLD = "256MB"


def default_mpd_workers() -> int:
    """Worker processes for :func:`load_mpd_slices` by default: one per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _init_reader_process(parent_pid: int) -> None:
    """Runs first in each reader process.

    A reader whose writer is killed (SIGKILL, the OOM killer) would otherwise wait on its
    task queue forever: it holds both ends of the queue's pipe, so it never sees EOF. A
    daemon thread ends it once it has been re-parented. And pa.array() asks whether its
    argument is a pandas object, importing pandas (about a second of CPU) the first time;
    a reader never meets one, so pandas is marked absent here (this process only reads).
    """
    sys.modules.setdefault("pandas", None)

    def exit_with_parent() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=exit_with_parent, name="exit-with-writer", daemon=True).start()


def _read_in_worker(path: Path, slice_name: str, max_bytes: int | None, allow_external_symlinks: bool,
                    parser: str) -> ParsedSlice:
    """:func:`read_mpd_slice` in a worker process (module level: the pool pickles it by name)."""
    return read_mpd_slice(path, slice_name, max_bytes=max_bytes, allow_external_symlinks=allow_external_symlinks,
                          parser=parser)


def load_mpd_slices(
    con: duckdb.DuckDBPyConnection,
    slices: list[tuple[Path, str]],
    *,
    workers: int | None = None,
    max_bytes: int | None = DEFAULT_MAX_SLICE_BYTES,
    allow_external_symlinks: bool = False,
    on_done=None,
    parser: str = "auto",
) -> tuple[list[LoadResult], list[InputFormatError]]:
    """Load ``slices`` ((path, slice name) pairs): read in ``workers`` processes, written here.

    Parameters
    ----------
    con : the warehouse connection; this process is the only writer.
    slices : (file, partition key) pairs.
    workers : processes that read and validate slices at once (:func:`read_mpd_slice`:
        parse, type checks, Arrow tables); None or 0 = one per core
        (:func:`default_mpd_workers`). With 1, or a single slice, no process is started.
    on_done : called as ``on_done(index, result_or_error)`` after each slice's commit or
        refusal, in input order (progress logging); an exception it raises stops the load.
    parser : see :func:`read_mpd_slice`.

    Slices are independent, so workers (spawned, not forked: the caller may run threads)
    parse them in parallel and send back Arrow tables; this process writes them one
    transaction per slice with :func:`write_mpd_slice`, in input order, so the tables'
    row order is that of loading the slices one by one, and of two slices holding one pid
    the later one is refused. At most ``workers + 1`` parsed slices wait here at once. A
    refused slice changes nothing and the others still load. Returns (loaded results in
    input order, refused slices' errors in input order); other exceptions propagate.
    Spawned workers import the caller's ``__main__`` module, so a script calling this needs
    the usual ``if __name__ == "__main__":`` guard (``python -m``, pytest, Dagster: fine).

    DuckDB's ``checkpoint_threshold`` is raised to 256 MB for the load (see
    ``_LOAD_CHECKPOINT_THRESHOLD``) and, with worker processes, ``threads`` set to 1; both
    are restored after it, and one CHECKPOINT ends the load.
    Progress: one INFO line per slice on this module's logger, and ``on_done``.
    """
    ensure_mpd_tables(con)
    n_workers = min(int(workers or default_mpd_workers()), max(1, len(slices)))
    threshold, threads = first_row(con, "SELECT current_setting('checkpoint_threshold'), current_setting('threads')")
    if _setting_bytes(threshold) < _setting_bytes(_LOAD_CHECKPOINT_THRESHOLD):
        con.execute("SET checkpoint_threshold = ?", [_LOAD_CHECKPOINT_THRESHOLD])
    if n_workers > 1:
        # the readers keep the cores busy: one writer thread appends with less CPU than
        # DuckDB's pool (measured 17 vs 36 ms a slice for the track insert)
        con.execute("SET threads = 1")
    try:
        return _load_mpd_slices(con, slices, n_workers=n_workers, max_bytes=max_bytes,
                                allow_external_symlinks=allow_external_symlinks, on_done=on_done, parser=parser)
    finally:
        con.execute("SET checkpoint_threshold = ?", [threshold])
        con.execute(f"SET threads = {int(threads)}")
        try:
            con.execute("CHECKPOINT")  # within the load's time, not the next writer's
        except duckdb.Error:
            pass  # another transaction is open on the database: DuckDB checkpoints later


def _setting_bytes(value: str) -> float:
    """Bytes of a DuckDB size setting as ``current_setting`` spells it ("16.0 MiB", "256MB")."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", value)
    if match is None:
        return float("inf")
    units = {"": 1, "b": 1, "bytes": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
             "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
    return float(match.group(1)) * units.get(match.group(2).lower(), float("inf"))


def _load_mpd_slices(con, slices, *, n_workers, max_bytes, allow_external_symlinks, on_done, parser):
    outcomes: list[LoadResult | InputFormatError] = []
    started = time.perf_counter()
    done_bytes = [0]

    def write(index: int, parsed: ParsedSlice | InputFormatError) -> None:
        outcome: LoadResult | InputFormatError = parsed
        if isinstance(parsed, ParsedSlice):
            try:
                outcome = write_mpd_slice(con, parsed)
            except InputFormatError as exc:
                outcome = exc
        outcomes.append(outcome)
        if isinstance(outcome, LoadResult):
            done_bytes[0] += outcome.input_bytes
            elapsed = time.perf_counter() - started
            _log.info("[%d/%d] %s: %s playlists, %s tracks (%s); %.0f MB/s so far", index + 1, len(slices),
                      outcome.notes["slice"], f"{outcome.rows['mpd_playlists']:,}",
                      f"{outcome.rows['mpd_playlist_tracks']:,}", outcome.notes["parser"],
                      done_bytes[0] / 1e6 / max(elapsed, 1e-9))
        else:
            _log.warning("[%d/%d] refused: %s", index + 1, len(slices), outcome)
        if on_done is not None:
            on_done(index, outcome)

    if n_workers <= 1:
        for index, (path, name) in enumerate(slices):
            try:
                parsed: ParsedSlice | InputFormatError = read_mpd_slice(
                    path, name, max_bytes=max_bytes, allow_external_symlinks=allow_external_symlinks,
                    parser=parser, con=con)
            except InputFormatError as exc:
                parsed = exc
            write(index, parsed)
    else:
        pool = ProcessPoolExecutor(max_workers=n_workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_reader_process, initargs=(os.getpid(),))
        try:
            pending: deque[Future] = deque()
            for index in range(len(slices)):
                while len(pending) < n_workers + 1 and len(outcomes) + len(pending) < len(slices):
                    path, name = slices[len(outcomes) + len(pending)]
                    pending.append(pool.submit(_read_in_worker, Path(path), name, max_bytes,
                                               allow_external_symlinks, parser))
                try:
                    parsed = pending.popleft().result()
                except InputFormatError as exc:
                    parsed = exc
                write(index, parsed)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    loaded = [o for o in outcomes if isinstance(o, LoadResult)]
    failed = [o for o in outcomes if isinstance(o, InputFormatError)]
    return loaded, failed



# --------------------------------------------------------------------------------------
# ENTP listening triplets
# --------------------------------------------------------------------------------------


def load_entp_triplets(
    con: duckdb.DuckDBPyConnection, path: Path, *, allow_external_symlinks: bool = False
) -> LoadResult:
    """Replace ``entp_listens(user_id, song_id, play_count)`` with the triplets in ``path``.

    The file is read by DuckDB's parallel CSV reader with a fixed three-column schema (no
    sniffing, no quoting). Counts must be positive integers; ids non-empty; every line ends
    the same way (``\\n``, ``\\r\\n`` or ``\\r``). Any rejected file fails with the number of
    its first malformed line (found by :func:`_diagnose_entp` on the error path). The table
    is replaced inside one transaction.
    """
    started = time.perf_counter()
    path = Path(path)
    size = _check_file(path, allow_external_symlinks=allow_external_symlinks)
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
                FROM read_csv(?, {_ENTP_CSV_OPTIONS}, compression='{_compression(path)}',
                              columns={{'user_id': 'VARCHAR', 'song_id': 'VARCHAR', 'play_count': 'VARCHAR'}})
                """,
                [str(path)],
            )
        except _DUCKDB_ERRORS as exc:
            raise _diagnose_entp(path, _duckdb_message(exc)) from exc
        bad = first_row(con,
            """
            SELECT user_id, song_id, play_count FROM entp_listens
            WHERE play_count IS NULL OR play_count <= 0 OR play_count > 2147483647
               OR user_id IS NULL OR song_id IS NULL OR user_id = '' OR song_id = ''
            LIMIT 1
            """
        )
        if bad is not None:
            raise _diagnose_entp(
                path, f"invalid triplet {bad!r}: ids must be non-empty and play_count a positive integer")
        if _ends_with_a_stray_carriage_return(path):
            raise _diagnose_entp(path, "a stray carriage return (\\r) ends the last line")
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
# DuckDB's reader refuses longer lines; the scanner below never buffers more than this.
_MAX_LINE_BYTES = 8 * 1024 * 1024
_LINE_END = re.compile(rb"\r\n|\r|\n")
_ENDING_NAMES = {b"\n": "\\n", b"\r\n": "\\r\\n", b"\r": "\\r"}


def _ends_with_a_stray_carriage_return(path: Path) -> bool:
    """True when the last line ends with a lone ``\\r`` while the first ends with ``\\n`` or
    ``\\r\\n``: DuckDB's strict reader refuses mixed line endings everywhere but there (found
    by the long fuzz run: ``0\\t0\\t1\\r\\n0\\t0\\t1\\r`` loaded). Reads the first and the
    last bytes: a seek for a plain file, a stream for gzip."""
    with _open_bytes(path) as handle:
        head = handle.read(_READ_CHUNK)
        if is_gzip(path):
            tail = head[-2:]
            while chunk := handle.read(_READ_CHUNK):
                tail = (tail + chunk)[-2:]
        else:
            handle.seek(max(0, path.stat().st_size - 2))
            tail = handle.read(2)
    if not tail.endswith(b"\r"):
        return False
    first = _LINE_END.search(head)
    return first is not None and first.group() != b"\r" and first.end() < len(head)


def _split_lines(handle, path: Path) -> Iterator[tuple[bytes, bytes]]:
    """(line, ending) pairs of a binary stream, split at ``\\r\\n``, ``\\r`` or ``\\n`` as
    DuckDB's reader splits them; the last line's ending is ``b""``. Reads 1 MiB at a time."""
    buffer = b""
    while True:
        chunk = handle.read(_READ_CHUNK)
        buffer += chunk
        position = 0
        for match in _LINE_END.finditer(buffer):
            # a \r at the end of the buffer may be the first half of \r\n
            if match.group() == b"\r" and match.end() == len(buffer) and chunk:
                break
            yield buffer[position:match.start()], match.group()
            position = match.end()
        buffer = buffer[position:]
        if not chunk:
            if buffer:
                yield buffer, b""
            return
        if len(buffer) > _MAX_LINE_BYTES:
            raise InputFormatError(path, "line", f"a line is longer than {_MAX_LINE_BYTES:,} bytes")


def _triplet_line_problem(line: bytes) -> str | None:
    """Why one ENTP line is not a triplet (None if it is one)."""
    fields = line.split(b"\t")
    if len(fields) == 4 and fields[3] == b"":
        fields = fields[:3]  # DuckDB ignores one trailing tab: the row is unambiguous
    if len(fields) != 3:
        return f"expected 3 tab-separated fields, found {len(fields)}"
    try:
        user_id, song_id, count = (field.decode("utf-8") for field in fields)
    except UnicodeDecodeError:
        return "is not valid UTF-8"
    if not user_id or not song_id:
        return f"empty {'user_id' if not user_id else 'song_id'}"
    if not re.fullmatch(r"[0-9]{1,18}", count) or not 0 < int(count) <= _INT32_MAX:
        return f"play_count {count!r} is not a positive integer"
    return None


def _diagnose_entp(path: Path, fallback: str) -> InputFormatError:
    """The error for a rejected triplet file, naming its first malformed line: a wrong
    number of fields, a count that is not a positive integer, an empty id, invalid UTF-8,
    a stray carriage return, or a line ending that differs from the first line's. Streams
    the file (error path only); ``fallback`` (DuckDB's verdict) if no line is at fault."""
    first_ending: bytes | None = None
    with _open_bytes(path) as handle:
        for number, (line, ending) in enumerate(_split_lines(handle, path), start=1):
            if number == 1:
                line = line.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark
            if first_ending is None:
                first_ending = ending
            elif ending and ending != first_ending:
                if ending == b"\r":
                    detail = (f"a stray carriage return (\\r) ends the line early; earlier lines end with "
                              f"{_ENDING_NAMES[first_ending]}")
                else:
                    detail = (f"mixed line endings: the line ends with {_ENDING_NAMES[ending]}, earlier lines with "
                              f"{_ENDING_NAMES[first_ending]}; use one line ending throughout")
                return InputFormatError(path, f"line {number}", detail)
            if not line:
                continue  # blank lines are not records
            problem = _triplet_line_problem(line)
            if problem is not None:
                return InputFormatError(path, f"line {number}", problem)
    return InputFormatError(path, "triplets", fallback)


# --------------------------------------------------------------------------------------
# MSD metadata
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecodedLines:
    """Decoded lines and how many needed Windows-1252 (``cp1252_lines``) or had a byte that
    Windows-1252 leaves undefined, stored as U+FFFD (``replaced_lines``)."""

    lines: list[str]
    cp1252_lines: int
    replaced_lines: int


# C1 control characters (U+0080..U+009F) are what Windows-1252 punctuation becomes when
# decoded as Latin-1 (0x92 -> U+0092 instead of ’). Text is never stored with them: each
# maps to its Windows-1252 character, or U+FFFD for the five bytes cp1252 leaves undefined.
C1_CONTROLS = "".join(chr(code) for code in range(0x80, 0xA0))
C1_AS_CP1252 = bytes(range(0x80, 0xA0)).decode("cp1252", errors="replace")
_C1_TABLE = str.maketrans(C1_CONTROLS, C1_AS_CP1252)
_HAS_C1 = re.compile("[\x80-\x9f]")


def without_c1_controls(text: str) -> str:
    """``text`` with every C1 control character replaced by its Windows-1252 reading."""
    return text.translate(_C1_TABLE) if _HAS_C1.search(text) else text


def decode_lines_robustly(raw: bytes) -> DecodedLines:
    """Decode ``raw`` line by line: UTF-8, else Windows-1252 (some MSD copies are not UTF-8;
    Windows-1252 is Latin-1 plus printable punctuation where Latin-1 has C1 controls).

    Lines that decode as UTF-8 are never re-interpreted; C1 control characters are replaced
    by their Windows-1252 characters in every line (see :func:`without_c1_controls`).
    """
    try:
        # not str.splitlines(): it also breaks at \x0b, \x0c, \x1c-\x1e, \x85, \u2028 and
        # \u2029, which may occur inside a title; bytes.splitlines breaks at \r, \n only
        return DecodedLines([without_c1_controls(line.decode("utf-8")) for line in raw.splitlines()], 0, 0)
    except UnicodeDecodeError:
        pass
    lines: list[str] = []
    cp1252 = replaced = 0
    for chunk in raw.splitlines():
        try:
            lines.append(without_c1_controls(chunk.decode("utf-8")))
        except UnicodeDecodeError:
            line = chunk.decode("cp1252", errors="replace")
            lines.append(line)
            cp1252 += 1
            replaced += "\ufffd" in line
    return DecodedLines(lines, cp1252, replaced)


def read_unique_tracks(path: Path, *, allow_external_symlinks: bool = False) -> tuple[pa.Table, int]:
    """Parse ``unique_tracks.txt`` into (track_id, song_id, artist_name, title); return also
    the number of lines decoded as Windows-1252."""
    _check_file(path, allow_external_symlinks=allow_external_symlinks)
    decoded = decode_lines_robustly(_read_all(path))
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
    return table, decoded.cp1252_lines


_MISMATCH_PATTERN = re.compile(r"^ERROR: <(SO[0-9A-Z]+) (TR[0-9A-Z]+)>")


def read_sid_mismatches(path: Path) -> pa.Table:
    """Song ids the MSD lists as matched to the wrong track (``sid_mismatches.txt``)."""
    decoded = decode_lines_robustly(_read_all(path))
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
    allow_external_symlinks: bool = False,
) -> LoadResult:
    """Replace ``msd_songs``: one row per MSD song id with title, artist, release, year,
    one track id and a ``mismatched`` flag from ``sid_mismatches.txt``.

    Either metadata file may be missing, not both. Where both give a title/artist,
    ``song_data.csv`` wins (it is the per-song file; ``unique_tracks`` is per track). Text
    is decoded as UTF-8, else Windows-1252, and stored without C1 control characters.
    """
    started = time.perf_counter()
    if unique_tracks is None and song_data is None:
        raise InputFormatError("msd", "inputs", "neither unique_tracks.txt nor song_data.csv was found")
    input_bytes = 0
    notes: dict[str, int | str] = {}
    tracks = pa.table({n: pa.array([], pa.string()) for n in ("track_id", "song_id", "artist_name", "title")})
    if unique_tracks is not None:
        input_bytes += _check_file(Path(unique_tracks), allow_external_symlinks=allow_external_symlinks)
        tracks, cp1252 = read_unique_tracks(Path(unique_tracks), allow_external_symlinks=allow_external_symlinks)
        notes["unique_tracks_cp1252_lines"] = cp1252
    mismatches = pa.table({"song_id": pa.array([], pa.string()), "track_id": pa.array([], pa.string())})
    if sid_mismatches is not None and Path(sid_mismatches).exists():
        _check_inside_folder(Path(sid_mismatches), allow_external_symlinks)
        input_bytes += Path(sid_mismatches).stat().st_size
        mismatches = read_sid_mismatches(Path(sid_mismatches))
    con.register("_msd_tracks", tracks)
    con.register("_msd_mismatches", mismatches)
    try:
        if song_data is not None:
            song_data = Path(song_data)
            input_bytes += _check_file(song_data, allow_external_symlinks=allow_external_symlinks)
            notes["song_data_cp1252_lines"] = _read_song_data(con, song_data)
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
                "CREATE OR REPLACE TEMP TABLE _msd_song_data AS SELECT song_id, translate(title, $c1, $cp) AS title, "
                "translate(release, $c1, $cp) AS release, translate(artist_name, $c1, $cp) AS artist_name, "
                "CAST(trim(year) AS INTEGER) AS year FROM _msd_song_data_raw",
                {"c1": C1_CONTROLS, "cp": C1_AS_CP1252},
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


_SONG_DATA_CSV = """
CREATE OR REPLACE TEMP TABLE _msd_song_data_raw AS
SELECT * FROM read_csv(?, header=true, auto_detect=false, quote='"', escape='"', strict_mode=true,
    compression='{compression}',
    columns={{'song_id': 'VARCHAR', 'title': 'VARCHAR', 'release': 'VARCHAR', 'artist_name': 'VARCHAR',
              'year': 'VARCHAR'}})
"""


def _read_song_data(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    """Read ``song_data.csv`` into ``_msd_song_data_raw`` (year as text: DuckDB's cast would
    round "2001.5" and read "1e3"). A file that is not UTF-8 is read through a UTF-8 copy
    decoded line by line (UTF-8, else Windows-1252); returns how many lines needed that."""
    try:
        con.execute(_SONG_DATA_CSV.format(compression=_compression(path)), [str(path)])
        return 0
    except _DUCKDB_ERRORS as exc:
        raw = _read_all(path)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            raise InputFormatError(path, "csv", _duckdb_message(exc)) from exc
    decoded = decode_lines_robustly(raw)
    with tempfile.TemporaryDirectory(prefix="spotify_assets_msd_") as folder:
        utf8_copy = Path(folder) / "song_data.csv"
        utf8_copy.write_text("\n".join(decoded.lines) + "\n", encoding="utf-8")
        try:
            con.execute(_SONG_DATA_CSV.format(compression="none"), [str(utf8_copy)])
        except _DUCKDB_ERRORS as exc:
            raise InputFormatError(path, "csv", _duckdb_message(exc)) from exc
    return decoded.cp1252_lines


def _first_line(path: Path) -> str:
    with _open_bytes(path) as handle:
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
