"""The service's durable feedback log (which shown playlist a user liked), in SQLite.

Why SQLite and not the DuckDB warehouse: DuckDB lets one process hold a database file for
writing and then refuses every other process, readers included
(``spotify_assets_tests/test_serving.py::test_duckdb_single_writer_blocks_a_second_process``
shows it). The service runs for days beside a pipeline that rewrites the warehouse, so feedback
written there would either stall requests for the length of a pipeline step or fail the step. SQLite in WAL
mode lets the service append while the pipeline's sensor and ``feedback_positives`` asset read
a consistent snapshot, and each request's insert is one fsync'd transaction.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    feedback_id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    user_id TEXT NOT NULL,
    liked_pid INTEGER NOT NULL,
    shown_pids TEXT NOT NULL,  -- JSON array of ints, the list the user was shown
    known_user INTEGER  -- 1/0: the serving model knew the user; NULL: stored before this column existed
)
"""
# Logs created before known_user existed gain it on the next write; their rows keep NULL.
KNOWN_USER_COLUMN = "ALTER TABLE feedback ADD COLUMN known_user INTEGER"


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
    """Append and read feedback rows in one SQLite file (created on first use)."""

    def __init__(self, path: Path | str, timeout_seconds: float = 30.0):
        self.path = Path(path)
        self.timeout_seconds = timeout_seconds

    @contextmanager
    def _connect(self, read_only: bool = False) -> Iterator[sqlite3.Connection]:
        if read_only:
            if not self.path.exists():
                raise FileNotFoundError(self.path)
            con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=self.timeout_seconds)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=self.timeout_seconds, isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            con.execute(SCHEMA)
            if "known_user" not in _columns(con):
                try:
                    con.execute(KNOWN_USER_COLUMN)
                except sqlite3.OperationalError as exc:  # another writer added it first
                    if "duplicate column" not in str(exc):
                        raise
        try:
            yield con
        finally:
            con.close()

    def add(self, user_id: str, liked_pid: int, shown_pids: list[int], *, known_user: bool) -> int:
        """Store one feedback row in its own transaction; returns its ``feedback_id``.

        ``known_user``: whether the serving model knows ``user_id``. A new user's first likes are
        legitimate feedback and are kept, but the pipeline cannot train on a user that is not in
        its user dictionary, so :meth:`stats` can leave them out of the retrain count.
        """
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                cur = con.execute(
                    "INSERT INTO feedback (received_at, user_id, liked_pid, shown_pids, known_user) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (time.time(), str(user_id), int(liked_pid), json.dumps([int(p) for p in shown_pids]),
                     int(bool(known_user))))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            return int(cur.lastrowid)

    def stats(self, after_id: int = 0, known_only: bool = False) -> tuple[int, int]:
        """(rows with ``feedback_id > after_id``, the largest ``feedback_id``; 0 when empty).

        ``known_only`` counts only rows from users the model knew when they were stored (rows
        from before the ``known_user`` column count as known, as they did then); the largest id
        is over every row either way.
        """
        if not self.path.exists():
            return 0, 0
        with self._connect(read_only=True) as con:
            columns = _columns(con)
            if not columns:
                return 0, 0
            known = "AND known_user IS NOT 0" if known_only and "known_user" in columns else ""
            n, top = con.execute(f"SELECT count(*) FILTER (WHERE feedback_id > ? {known}), "
                                 "coalesce(max(feedback_id), 0) FROM feedback", (int(after_id),)).fetchone()
        return int(n), int(top)

    def read(self, up_to_id: int | None = None) -> FeedbackRows:
        """Every row (``feedback_id <= up_to_id`` when given), oldest first."""
        rows: list[tuple] = []
        if self.path.exists():
            with self._connect(read_only=True) as con:
                if _columns(con):
                    rows = con.execute(
                        "SELECT feedback_id, user_id, liked_pid, shown_pids FROM feedback "
                        "WHERE feedback_id <= ? ORDER BY feedback_id",
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


def _columns(con: sqlite3.Connection) -> set[str]:
    """Column names of the feedback table (empty when it does not exist yet)."""
    return {row[1] for row in con.execute("PRAGMA table_info(feedback)").fetchall()}
