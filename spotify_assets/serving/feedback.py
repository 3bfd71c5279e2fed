"""Durable user feedback (which shown playlist a user liked), in SQLite.

Why SQLite and not the DuckDB warehouse: DuckDB lets one process hold a database file for
writing and then refuses every other process, readers included
(``test_serving_api.py::test_duckdb_single_writer_blocks_a_second_process`` shows it). The
service runs for days beside a pipeline that rewrites the warehouse, so feedback written there
would either stall requests for the length of a pipeline step or fail the step. SQLite in WAL
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
    shown_pids TEXT NOT NULL  -- JSON array of ints, the list the user was shown
)
"""


FEEDBACK_POSITIVES = ("split", "feedback_positives.npz")


def load_feedback_positives(artifacts) -> dict[str, np.ndarray] | None:
    """The ``feedback_positives`` arrays from an ArtifactStore, or None when that asset was never
    materialized (a pipeline without the service: no feedback, nothing to add)."""
    if not artifacts.exists(*FEEDBACK_POSITIVES):
        return None
    return artifacts.load_arrays(*FEEDBACK_POSITIVES)


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
        try:
            yield con
        finally:
            con.close()

    def add(self, user_id: str, liked_pid: int, shown_pids: list[int]) -> int:
        """Store one feedback row in its own transaction; returns its ``feedback_id``."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                cur = con.execute(
                    "INSERT INTO feedback (received_at, user_id, liked_pid, shown_pids) VALUES (?, ?, ?, ?)",
                    (time.time(), str(user_id), int(liked_pid), json.dumps([int(p) for p in shown_pids])))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            return int(cur.lastrowid)

    def stats(self, after_id: int = 0) -> tuple[int, int]:
        """(rows with ``feedback_id > after_id``, the largest ``feedback_id``; 0 when empty)."""
        if not self.path.exists():
            return 0, 0
        with self._connect(read_only=True) as con:
            if con.execute("SELECT count(*) FROM sqlite_master WHERE name = 'feedback'").fetchone()[0] == 0:
                return 0, 0
            n, top = con.execute("SELECT count(*) FILTER (WHERE feedback_id > ?), coalesce(max(feedback_id), 0) "
                                 "FROM feedback", (int(after_id),)).fetchone()
        return int(n), int(top)

    def read(self, up_to_id: int | None = None) -> FeedbackRows:
        """Every row (``feedback_id <= up_to_id`` when given), oldest first."""
        rows: list[tuple] = []
        if self.path.exists():
            with self._connect(read_only=True) as con:
                if con.execute("SELECT count(*) FROM sqlite_master WHERE name = 'feedback'").fetchone()[0]:
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


@dataclass(frozen=True)
class FeedbackPairs:
    """Feedback as training data over dense ids: positives ``users``/``playlists`` int64 (n,),
    sorted and unique by (user, playlist); ``negatives`` per positive as CSR (``negative_indptr``
    int64 (n+1,), ``negatives`` int64): shown playlists the user neither liked nor owns."""

    users: np.ndarray
    playlists: np.ndarray
    negative_indptr: np.ndarray
    negatives: np.ndarray
    counts: dict[str, int]


def training_pairs(rows: FeedbackRows, user_index: dict[str, int], pids: np.ndarray,
                   liked_indptr: np.ndarray, liked_playlists: np.ndarray, liked_split: np.ndarray,
                   owner: np.ndarray, train_code: int) -> FeedbackPairs:
    """Turn feedback rows into train positives without leaking held-out labels.

    pids : int64 (n_playlists,) public pid per dense playlist index (playlist_dictionary). liked_* : the labels' CSR over users with the split code per pair.
    owner : int (n_playlists,) owning user or -1. Rows whose user or liked pid is unknown are
    dropped and counted; a like that is one of the user's validation/test positives is dropped
    (it would put a held-out answer into training) and counted; repeated likes count once.
    """
    n = rows.feedback_id.size
    counts = {"rows": int(n)}
    users = np.array([user_index.get(u, -1) for u in rows.user_id], np.int64)
    liked = _pid_to_index(rows.liked_pid, pids)
    shown = _pid_to_index(rows.shown_pids, pids)
    known = (users >= 0) & (liked >= 0)
    counts["unknown_user_or_playlist"] = int((~known).sum())
    # held-out leak: is (user, liked) a labelled pair with a non-train split?
    key_stride = np.int64(pids.size + 1)
    label_users = np.repeat(np.arange(liked_indptr.size - 1, dtype=np.int64), np.diff(liked_indptr))
    label_keys = label_users * key_stride + liked_playlists.astype(np.int64)
    order = np.argsort(label_keys, kind="stable")
    sorted_keys, sorted_split = label_keys[order], np.asarray(liked_split)[order]
    keys = users * key_stride + liked
    pos = np.searchsorted(sorted_keys, keys)
    pos_clipped = np.minimum(pos, max(sorted_keys.size - 1, 0))
    labelled = known & (sorted_keys.size > 0) & (sorted_keys[pos_clipped] == keys) if sorted_keys.size else np.zeros(n, bool)
    held_out = labelled & (sorted_split[pos_clipped] != train_code) if sorted_keys.size else np.zeros(n, bool)
    already_train = labelled & ~held_out
    counts["held_out_positive_dropped"] = int(held_out.sum())
    counts["already_a_train_positive"] = int(already_train.sum())
    keep = known & ~held_out
    kept_rows = np.flatnonzero(keep)
    # unique (user, playlist), first occurrence wins for the shown list
    uniq_keys, first = np.unique(keys[kept_rows], return_index=True)
    kept_rows = kept_rows[first]
    counts["duplicates_merged"] = int(keep.sum() - kept_rows.size)
    counts["positives"] = int(kept_rows.size)
    neg_lists = []
    for r in kept_rows.tolist():  # feedback volumes are small (thousands of rows)
        u, p = users[r], liked[r]
        cand = shown[rows.shown_indptr[r]:rows.shown_indptr[r + 1]]
        user_liked = liked_playlists[liked_indptr[u]:liked_indptr[u + 1]]
        ok = (cand >= 0) & (cand != p) & ~np.isin(cand, user_liked) & (owner[np.maximum(cand, 0)] != u)
        neg_lists.append(np.unique(cand[ok]))
    lengths = np.array([a.size for a in neg_lists], np.int64)
    counts["negatives"] = int(lengths.sum())
    return FeedbackPairs(
        users=users[kept_rows], playlists=liked[kept_rows],
        negative_indptr=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        negatives=np.concatenate(neg_lists).astype(np.int64) if neg_lists else np.empty(0, np.int64),
        counts=counts)


def _pid_to_index(values: np.ndarray, pids: np.ndarray) -> np.ndarray:
    """Dense playlist index per pid (int64), -1 where the pid is unknown (``pids`` in any order)."""
    values = np.asarray(values, np.int64)
    if pids.size == 0:
        return np.full(values.shape, -1, np.int64)
    order = np.argsort(pids, kind="stable")
    sorted_pids = np.asarray(pids, np.int64)[order]
    pos = np.minimum(np.searchsorted(sorted_pids, values), sorted_pids.size - 1)
    return np.where(sorted_pids[pos] == values, order[pos], -1).astype(np.int64)
