"""The service's durable log: which shown playlist a user liked (or that they liked none), every
list the service served (impressions) and every feedback request it refused, in SQLite.

Why SQLite and not the DuckDB warehouse: DuckDB lets one process hold a database file for
writing and then refuses every other process, readers included
(``spotify_assets_tests/test_serving.py::test_duckdb_single_writer_blocks_a_second_process``
shows it). The service runs for days beside a pipeline that rewrites the warehouse, so feedback
written there would either stall requests for the length of a pipeline step or fail the step. SQLite in WAL
mode lets the service append while the pipeline's sensors and assets read a consistent
snapshot. Each feedback row is one fsync'd transaction (``synchronous=FULL``); impressions and
refusals, written on every request, are committed with ``synchronous=NORMAL`` (in WAL mode: safe
against a crash of the service, not of the machine), so logging them costs no fsync.

Tables:

* ``feedback``: one row per ``POST /api/feedback``; ``liked_pid`` NULL when the user liked none
  of the shown list; ``model_version`` of the bundle that served the list; ``impression_id``
  when the client named the list it rates.
* ``impressions``: one row per user list served (``/api/playlist/recommend`` and the page), with
  the model version, the canary arm (``champion`` / ``candidate``) and the cold-start flag.
* ``refusals``: one row per refused feedback request (status and reason).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS feedback (
        feedback_id INTEGER PRIMARY KEY AUTOINCREMENT,
        received_at REAL NOT NULL,
        user_id TEXT NOT NULL,
        liked_pid INTEGER,  -- NULL: the user saw the list and liked none of it
        shown_pids TEXT NOT NULL,  -- JSON array of ints, the list the user was shown
        known_user INTEGER,  -- 1/0: the serving model knew the user; NULL: stored before this column existed
        model_version TEXT,  -- the bundle that served the list; NULL: stored before versions were recorded
        impression_id INTEGER  -- the served list this rates, when the client said
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS impressions (
        impression_id INTEGER PRIMARY KEY AUTOINCREMENT,
        served_at REAL NOT NULL,
        user_id TEXT NOT NULL,
        model_version TEXT NOT NULL,
        arm TEXT NOT NULL,  -- champion | candidate
        cold_start INTEGER NOT NULL,
        known_user INTEGER NOT NULL,
        shown_pids TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS refusals (
        refusal_id INTEGER PRIMARY KEY AUTOINCREMENT,
        received_at REAL NOT NULL,
        endpoint TEXT NOT NULL,
        status INTEGER NOT NULL,
        reason TEXT NOT NULL
    )
    """,
)
# Columns added after the first release: older logs gain them on the next write (their rows keep NULL).
ADDED_COLUMNS = {"known_user": "INTEGER", "model_version": "TEXT", "impression_id": "INTEGER"}
TABLES = ("feedback", "impressions", "refusals")
# like-rates join feedback to impressions, per model version and arm
INDEXES = ("CREATE INDEX IF NOT EXISTS feedback_by_impression ON feedback (impression_id)",
           "CREATE INDEX IF NOT EXISTS impressions_by_version ON impressions (model_version, arm, impression_id)")


@dataclass(frozen=True)
class Impression:
    """One user list served."""

    user_id: str
    model_version: str
    arm: str
    cold_start: bool
    known_user: bool
    shown_pids: Sequence[int]


def default_feedback_path(data_dir: Path) -> Path:
    """``$SPOTIFY_ASSETS_FEEDBACK_DB`` or ``<data_dir>/serving/feedback.sqlite`` (service and pipeline agree)."""
    return Path(os.environ.get("SPOTIFY_ASSETS_FEEDBACK_DB", Path(data_dir) / "serving" / "feedback.sqlite"))


@dataclass(frozen=True)
class FeedbackRows:
    """Feedback as columns: ids int64 (n,), user_id str list, liked_pid int64 (n,), shown as CSR
    (shown_indptr int64 (n+1,), shown_pids int64)."""

    feedback_id: np.ndarray
    user_id: list[str]
    liked_pid: np.ndarray
    shown_indptr: np.ndarray
    shown_pids: np.ndarray


class FeedbackLog:
    """Append and read feedback, impressions and refusals in one SQLite file (created on first use).

    Writers keep one connection per thread (the schema is checked once per log object), so a
    request's insert costs a transaction, not a connection.
    """

    def __init__(self, path: Path | str, timeout_seconds: float = 30.0):
        self.path = Path(path)
        self.timeout_seconds = timeout_seconds
        self._local = threading.local()
        self._schema_lock = threading.Lock()
        self._schema_ready = False

    def _ensure_schema(self, con: sqlite3.Connection) -> None:
        with self._schema_lock:
            if self._schema_ready:
                return
            con.execute("BEGIN IMMEDIATE")
            try:
                for statement in SCHEMA:
                    con.execute(statement)
                columns = _columns(con)
                if _liked_pid_not_null(con):
                    _rebuild_feedback_table(con, columns)
                    columns = _columns(con)
                for name, sql_type in ADDED_COLUMNS.items():
                    if name not in columns:
                        con.execute(f"ALTER TABLE feedback ADD COLUMN {name} {sql_type}")
                for statement in INDEXES:
                    con.execute(statement)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            self._schema_ready = True

    def _writer(self, durable: bool) -> sqlite3.Connection:
        """This thread's writing connection: ``durable`` ones fsync every commit."""
        key = "durable" if durable else "fast"
        cons = getattr(self._local, "cons", None)
        if cons is None or cons.get("path") != self.path or not self.path.exists():
            for old in (cons or {}).values():
                if isinstance(old, sqlite3.Connection):
                    old.close()
            cons = self._local.cons = {"path": self.path}
            self._schema_ready = self._schema_ready and self.path.exists()
        con = cons.get(key)
        if con is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=self.timeout_seconds, isolation_level=None,
                                  check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._ensure_schema(con)
            cons[key] = con
        return con

    @contextmanager
    def _transaction(self, durable: bool) -> Iterator[sqlite3.Connection]:
        con = self._writer(durable)
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        if not self.path.exists():
            raise FileNotFoundError(self.path)
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=self.timeout_seconds)
        try:
            yield con
        finally:
            con.close()

    def add(self, user_id: str, liked_pid: int | None, shown_pids: list[int], *, known_user: bool,
            model_version: str | None = None, impression_id: int | None = None) -> int:
        """Store one feedback row in its own fsync'd transaction; returns its ``feedback_id``.

        ``liked_pid`` None records that the user saw ``shown_pids`` and liked none of them.
        ``known_user``: whether the serving model knows ``user_id``. A new user's first likes are
        legitimate feedback and are kept, but the pipeline cannot train on a user that is not in
        its user dictionary, so :meth:`stats` can leave them out of the retrain count.
        """
        with self._transaction(durable=True) as con:
            cur = con.execute(
                "INSERT INTO feedback (received_at, user_id, liked_pid, shown_pids, known_user, model_version, "
                "impression_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (time.time(), str(user_id), None if liked_pid is None else int(liked_pid),
                 json.dumps([int(p) for p in shown_pids]), int(bool(known_user)), model_version,
                 None if impression_id is None else int(impression_id)))
            return int(cur.lastrowid)

    def add_impressions(self, impressions: Sequence[Impression]) -> list[int]:
        """Record served lists in one transaction; returns their ``impression_id`` in order."""
        if not impressions:
            return []
        now = time.time()
        with self._transaction(durable=False) as con:
            first = None
            for imp in impressions:
                cur = con.execute(
                    "INSERT INTO impressions (served_at, user_id, model_version, arm, cold_start, known_user, "
                    "shown_pids) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (now, imp.user_id, imp.model_version, imp.arm, int(imp.cold_start), int(imp.known_user),
                     json.dumps([int(p) for p in imp.shown_pids])))
                first = first or int(cur.lastrowid)
            # one writer at a time (BEGIN IMMEDIATE): the ids of one transaction are consecutive
            return list(range(first, first + len(impressions)))

    def impression(self, impression_id: int) -> tuple[str, str, list[int]] | None:
        """(user_id, model_version, shown pids) of a served list, or None when there is no such id."""
        con = self._writer(durable=False)
        row = con.execute("SELECT user_id, model_version, shown_pids FROM impressions WHERE impression_id = ?",
                          (int(impression_id),)).fetchone()
        return None if row is None else (row[0], row[1], json.loads(row[2]))

    def add_refusal(self, endpoint: str, status: int, reason: str) -> None:
        """Record a refused request (the reason cut to 300 characters)."""
        with self._transaction(durable=False) as con:
            con.execute("INSERT INTO refusals (received_at, endpoint, status, reason) VALUES (?, ?, ?, ?)",
                        (time.time(), endpoint, int(status), str(reason)[:300]))

    def stats(self, after_id: int = 0, known_only: bool = False) -> tuple[int, int]:
        """(feedback rows with ``feedback_id > after_id``, the largest ``feedback_id``; 0 when empty).

        ``known_only`` counts only likes from users the model knew when they were stored (rows
        from before the ``known_user`` column count as known, as they did then; a row that liked
        nothing is not a training positive); the largest id is over every row either way.
        """
        if not self.path.exists():
            return 0, 0
        with self._reader() as con:
            columns = _columns(con)
            if not columns:
                return 0, 0
            known = ("AND known_user IS NOT 0 AND liked_pid IS NOT NULL"
                     if known_only and "known_user" in columns else "")
            n, top = con.execute(f"SELECT count(*) FILTER (WHERE feedback_id > ? {known}), "
                                 "coalesce(max(feedback_id), 0) FROM feedback", (int(after_id),)).fetchone()
        return int(n), int(top)

    def high_water_marks(self) -> dict[str, int]:
        """The largest id of each table (0 when empty or missing): what changed since a cursor."""
        marks = {table: 0 for table in TABLES}
        if not self.path.exists():
            return marks
        with self._reader() as con:
            present = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for table, key in (("feedback", "feedback_id"), ("impressions", "impression_id"),
                               ("refusals", "refusal_id")):
                if table in present:
                    marks[table] = int(con.execute(f"SELECT coalesce(max({key}), 0) FROM {table}").fetchone()[0])
        return marks

    def like_counts(self, model_version: str, arm: str | None = None, since: float = 0.0,
                    first: int | None = None, last: int | None = None) -> tuple[int, int]:
        """(impressions, liked impressions) of ``model_version``: of one ``arm`` when given,
        served at or after ``since`` (epoch seconds), only its ``first`` or ``last`` n
        impressions when given. An impression is liked when a feedback row names it and likes
        one of its playlists."""
        if not self.path.exists():
            return 0, 0
        order, limit = ("DESC", last) if last is not None else ("ASC", first if first is not None else -1)
        with self._reader() as con:
            if "impressions" not in {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}:
                return 0, 0
            n, liked = con.execute(
                f"""
                WITH chosen AS (
                    SELECT impression_id FROM impressions
                    WHERE model_version = ? AND (? IS NULL OR arm = ?) AND served_at >= ?
                    ORDER BY impression_id {order} LIMIT ?
                )
                SELECT count(*), coalesce(sum(EXISTS (SELECT 1 FROM feedback f WHERE f.impression_id = c.impression_id
                                                      AND f.liked_pid IS NOT NULL)), 0)
                FROM chosen c
                """, (model_version, arm, arm, float(since), int(limit))).fetchone()
        return int(n), int(liked)

    def read(self, up_to_id: int | None = None) -> FeedbackRows:
        """Every like (``feedback_id <= up_to_id`` when given), oldest first; rows that liked
        nothing are not training data and are left out."""
        rows: list[tuple] = []
        if self.path.exists():
            with self._reader() as con:
                if _columns(con):
                    rows = con.execute(
                        "SELECT feedback_id, user_id, liked_pid, shown_pids FROM feedback "
                        "WHERE feedback_id <= ? AND liked_pid IS NOT NULL ORDER BY feedback_id",
                        (2**62 if up_to_id is None else int(up_to_id),)).fetchall()
        shown = [json.loads(r[3]) for r in rows]
        lengths = np.array([len(s) for s in shown], np.int64)
        return FeedbackRows(
            feedback_id=np.array([r[0] for r in rows], np.int64),
            user_id=[r[1] for r in rows],
            liked_pid=np.array([r[2] for r in rows], np.int64),
            shown_indptr=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            shown_pids=np.array([p for s in shown for p in s], np.int64),
        )

    def read_tables(self) -> dict[str, list[tuple]]:
        """Every row of every table as tuples in column order (``columns()`` names them);
        missing tables and columns read as empty / NULL. For the online metrics."""
        out: dict[str, list[tuple]] = {table: [] for table in TABLES}
        if not self.path.exists():
            return out
        with self._reader() as con:
            present = {r[0]: {c[1] for c in con.execute(f"PRAGMA table_info({r[0]})")}
                       for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for table, names in LOG_COLUMNS.items():
                if table in present:
                    select = ", ".join(n if n in present[table] else f"NULL AS {n}" for n in names)
                    out[table] = con.execute(f"SELECT {select} FROM {table} ORDER BY 1").fetchall()
        return out


#: the columns :meth:`FeedbackLog.read_tables` returns per table
LOG_COLUMNS = {
    "feedback": ("feedback_id", "received_at", "user_id", "liked_pid", "known_user", "model_version",
                 "impression_id"),
    "impressions": ("impression_id", "served_at", "user_id", "model_version", "arm", "cold_start", "known_user"),
    "refusals": ("refusal_id", "received_at", "endpoint", "status", "reason"),
}


def _liked_pid_not_null(con: sqlite3.Connection) -> bool:
    """Whether the feedback table is the first release's, where every row had to name a like."""
    return any(row[1] == "liked_pid" and row[3] for row in con.execute("PRAGMA table_info(feedback)"))


def _rebuild_feedback_table(con: sqlite3.Connection, columns: set[str]) -> None:
    """Copy a first-release feedback table into the current schema (SQLite cannot drop a NOT
    NULL constraint in place); ids and rows are kept; runs inside the caller's transaction."""
    kept = [c for c in ("feedback_id", "received_at", "user_id", "liked_pid", "shown_pids", *ADDED_COLUMNS)
            if c in columns]
    con.execute("ALTER TABLE feedback RENAME TO feedback_first_release")
    con.execute(SCHEMA[0])
    names = ", ".join(kept)
    con.execute(f"INSERT INTO feedback ({names}) SELECT {names} FROM feedback_first_release")
    con.execute("DROP TABLE feedback_first_release")


def _columns(con: sqlite3.Connection) -> set[str]:
    """Column names of the feedback table (empty when it does not exist yet)."""
    return {row[1] for row in con.execute("PRAGMA table_info(feedback)").fetchall()}
