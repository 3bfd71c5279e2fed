"""Library peers a user would reach for instead of the project's kernels (no Dagster imports).

* :func:`label_duckdb_sql`: the labels as one DuckDB SQL query: join the user-song and
  playlist-song tables on song, count overlaps per (user, playlist), score them with the
  kernel's formula and keep each user's top ranks with a window function.
* :func:`knn_sklearn_brute`: scikit-learn ``NearestNeighbors(metric="cosine",
  algorithm="brute")``, the original system's user KNN.

Both walk their work units (users, queries) in a given seeded order, in chunks that double
in size while the time budget lasts (:func:`run_in_chunks`), so that a peer slower than
the kernel it is compared with stops after ``budget_s`` seconds of timed work and the harness
extrapolates linearly, exactly as for the naive methods. They return the same
:class:`~benchmarks.naive.NaiveRun` record; ``extra`` holds the answers for the agreement
checks, which run outside the timed region.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from benchmarks.naive import NaiveRun
from spotify_assets.label.scores import HARD_SHARE, LIKED_SHARE
from spotify_assets.tracks.continuation import ragged_rows

# --------------------------------------------------------------------------------------
# budgeted chunks
# --------------------------------------------------------------------------------------


def run_in_chunks(order: np.ndarray, budget_s: float, work: Callable[[np.ndarray], int],
                  first_chunk: int | None = None) -> NaiveRun:
    """Call ``work(ids)`` on consecutive chunks of ``order`` (int64 (n,), e.g. a seeded
    permutation of user ids) until every id is done or ``budget_s`` seconds of timed work
    have passed (checked between chunks).

    The first chunk has ``first_chunk`` ids (default ``ceil(n / 16)``, so a whole input
    takes five chunks); each next one is twice the previous, but no larger than the ids the
    measured rate would finish in the budget left (and at least ``first_chunk``). ``work``
    returns the units it processed; its calls are the only timed part.

    Returns units / items (ids) done, the timed seconds and whether every id was done.
    """
    order = np.asarray(order, dtype=np.int64)
    n = int(order.size)
    first = max(1, int(first_chunk) if first_chunk else -(-n // 16))
    units = done = 0
    seconds = 0.0
    size = first
    while done < n:
        ids = order[done:done + size]
        started = time.perf_counter()
        units += int(work(ids))
        seconds += time.perf_counter() - started
        done += ids.size
        left = budget_s - seconds
        if left <= 0:
            break
        affordable = int(done / max(seconds, 1e-9) * left)
        size = min(2 * size, max(first, affordable))
    return NaiveRun(units=units, items=done, seconds=seconds, complete=done == n)


def rows_equal(indptr_a: np.ndarray, values_a: np.ndarray, indptr_b: np.ndarray, values_b: np.ndarray) -> np.ndarray:
    """Per row of two CSR-style lists over the same rows (indptr int64 (r + 1,), values
    (nnz,)): bool (r,), True where the rows have the same length and the same values in the
    same order."""
    len_a, len_b = np.diff(indptr_a), np.diff(indptr_b)
    equal = len_a == len_b
    rows = np.flatnonzero(equal)
    lengths = len_a[rows]
    if lengths.sum() == 0:
        return equal
    row_of = np.repeat(rows, lengths)
    differs = values_a[ragged_rows(indptr_a[rows], lengths)] != values_b[ragged_rows(indptr_b[rows], lengths)]
    equal[np.unique(row_of[differs])] = False
    return equal


def gather_rows(indptr: np.ndarray, values: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The CSR-style lists of ``rows`` (int64 (r,)), in that order: (indptr int64 (r + 1,),
    values of ``values``' dtype)."""
    lengths = np.diff(indptr)[rows]
    out_indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return out_indptr, values[ragged_rows(indptr[rows], lengths)]


# --------------------------------------------------------------------------------------
# label: DuckDB SQL
# --------------------------------------------------------------------------------------

#: One chunk of users labelled in SQL. ``chunk_users`` holds the chunk's user ids; the
#: score is the kernel's ``((1 - e) ln(1 + m) + e) / (sqrt(s) sqrt(p))`` (ln(1 + m) of an
#: integer m equals numpy's log1p(m)), ranks are by (score desc, playlist asc), and the
#: liked and hard counts are ``max(1, ceil(round(liked_share n, 12)))`` and
#: ``ceil(round(hard_share (n - k), 12))`` as in ``spotify_assets.label.scores``.
LABEL_SQL = """
WITH chunk_user_song AS (
    SELECT us.user_id, us.song_id FROM user_song AS us JOIN chunk_users USING (user_id)
), user_sizes AS (
    SELECT user_id, count(*)::DOUBLE AS s FROM chunk_user_song GROUP BY user_id
), playlist_sizes AS (
    SELECT playlist_id, count(*)::DOUBLE AS p FROM playlist_song GROUP BY playlist_id
), overlap AS (
    SELECT u.user_id, ps.playlist_id, count(*)::DOUBLE AS m
    FROM chunk_user_song AS u JOIN playlist_song AS ps USING (song_id)
    GROUP BY u.user_id, ps.playlist_id
), scored AS (
    SELECT o.user_id, o.playlist_id,
           ((1.0 - x.e) * ln(1.0 + o.m) + x.e) / (sqrt(us.s) * sqrt(ps.p)) AS score
    FROM overlap AS o
    JOIN exploration AS x USING (user_id)
    JOIN user_sizes AS us USING (user_id)
    JOIN playlist_sizes AS ps USING (playlist_id)
), ranked AS (
    SELECT user_id, playlist_id,
           row_number() OVER (PARTITION BY user_id ORDER BY score DESC, playlist_id) AS rank,
           count(*) OVER (PARTITION BY user_id) AS n_scored
    FROM scored
), cut AS (
    SELECT *, greatest(1, ceil(round($liked_share * n_scored, 12)))::BIGINT AS n_liked FROM ranked
)
SELECT user_id, playlist_id, rank::INTEGER AS rank, n_scored::INTEGER AS n_scored, rank <= n_liked AS liked
FROM cut
WHERE rank <= n_liked + ceil(round($hard_share * (n_scored - n_liked), 12))
ORDER BY user_id, rank
"""


@dataclass
class SqlLabels:
    """Labels of the users the SQL query processed, for the agreement check.

    users : int64 (u,) processed user ids, ascending; n_scored : int64 (u,) playlists with
    m > 0 per user; liked_indptr / hard_indptr : int64 (u + 1,); liked_playlists : int32,
    each user's liked playlists by (score desc, playlist asc); hard_playlists : int32, each
    user's exact hard pool, ascending ids.
    """

    users: np.ndarray
    n_scored: np.ndarray
    liked_indptr: np.ndarray
    liked_playlists: np.ndarray
    hard_indptr: np.ndarray
    hard_playlists: np.ndarray


def _csr_pairs(matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(row int32 (nnz,), column int32 (nnz,)) of a CSR matrix's non-zeros."""
    rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int32), np.diff(matrix.indptr))
    return rows, matrix.indices.astype(np.int32)


def duckdb_label_tables(con, user_song: sp.csr_matrix, playlist_song: sp.csr_matrix, e: np.ndarray) -> None:
    """Create the peer's input tables in ``con`` from the hand-off matrices:
    ``user_song(user_id, song_id)``, ``playlist_song(playlist_id, song_id)`` (INTEGER, one
    row per non-zero) and ``exploration(user_id INTEGER, e DOUBLE)``."""
    import pyarrow as pa

    users, songs = _csr_pairs(user_song)
    playlists, playlist_songs = _csr_pairs(playlist_song)
    frames = {
        "user_song": pa.table({"user_id": users, "song_id": songs}),
        "playlist_song": pa.table({"playlist_id": playlists, "song_id": playlist_songs}),
        "exploration": pa.table({"user_id": np.arange(e.size, dtype=np.int32), "e": np.asarray(e, np.float64)}),
    }
    for name, frame in frames.items():
        con.register(f"{name}_arrow", frame)
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {name}_arrow")
        con.unregister(f"{name}_arrow")


def label_duckdb_sql(user_song: sp.csr_matrix, playlist_song: sp.csr_matrix, e: np.ndarray, users: np.ndarray,
                     budget_s: float, threads: int, liked_share: float = LIKED_SHARE,
                     hard_share: float = HARD_SHARE, memory_limit: str = "", temp_directory: str = "") -> NaiveRun:
    """Label ``users`` (int64, in the given order, chunked by :func:`run_in_chunks`) with
    :data:`LABEL_SQL` in an in-memory DuckDB on ``threads`` threads (``memory_limit`` and
    ``temp_directory`` for spilling when given).

    Loading the tables is setup (not timed, as loading the matrices is not for the kernel);
    each chunk's query, including fetching its rows as numpy arrays, is timed.

    Returns units = scored pairs of the processed users; extra: ``labels`` (a
    :class:`SqlLabels`), ``setup_seconds``, ``duckdb_threads``, ``chunks``.
    """
    import duckdb
    import pyarrow as pa

    con = duckdb.connect(":memory:")
    try:
        con.execute(f"SET threads = {int(threads)}")
        if memory_limit:
            con.execute("SET memory_limit = ?", [memory_limit])
        if temp_directory:
            con.execute("SET temp_directory = ?", [temp_directory])
        started = time.perf_counter()
        duckdb_label_tables(con, user_song, playlist_song, e)
        setup_seconds = time.perf_counter() - started
        parts: list[dict[str, np.ndarray]] = []

        def work(ids: np.ndarray) -> int:
            con.register("chunk_users", pa.table({"user_id": ids.astype(np.int32)}))
            part = con.execute(LABEL_SQL, {"liked_share": liked_share, "hard_share": hard_share}).fetchnumpy()
            con.unregister("chunk_users")
            part = {name: np.asarray(values) for name, values in part.items()}
            parts.append({"ids": ids, **part})
            return int(part["n_scored"][part["rank"] == 1].sum())  # one row of rank 1 per user

        run = run_in_chunks(users, budget_s, work)
        run.extra.update(labels=_sql_labels(parts, user_song.shape[0]), setup_seconds=round(setup_seconds, 3),
                         duckdb_threads=int(con.execute("SELECT current_setting('threads')").fetchall()[0][0]),
                         chunks=len(parts))
        return run
    finally:
        con.close()


def _sql_labels(parts: list[dict[str, np.ndarray]], n_users: int) -> SqlLabels:
    """Assemble the chunks' rows (sorted by user, rank) into :class:`SqlLabels`; users the
    query returned no row for (no overlapping playlist) get empty lists."""
    users = np.sort(np.concatenate([p["ids"] for p in parts])) if parts else np.zeros(0, np.int64)
    column = {name: np.concatenate([p[name] for p in parts]) if parts else np.zeros(0, np.int64)
              for name in ("user_id", "playlist_id", "rank", "n_scored", "liked")}
    order = np.lexsort((column["rank"], column["user_id"]))
    user_id, playlist_id = column["user_id"][order].astype(np.int64), column["playlist_id"][order].astype(np.int32)
    is_liked = column["liked"][order].astype(bool)
    position = np.searchsorted(users, user_id)  # every returned user is one of ``users``
    n_scored = np.zeros(users.size, np.int64)
    n_scored[position] = column["n_scored"][order]

    def indptr(mask: np.ndarray) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(np.bincount(position[mask], minlength=users.size))]).astype(np.int64)

    liked_indptr, hard_indptr = indptr(is_liked), indptr(~is_liked)
    hard_order = np.lexsort((playlist_id[~is_liked], position[~is_liked]))
    return SqlLabels(users=users, n_scored=n_scored, liked_indptr=liked_indptr,
                     liked_playlists=playlist_id[is_liked], hard_indptr=hard_indptr,
                     hard_playlists=playlist_id[~is_liked][hard_order])


# --------------------------------------------------------------------------------------
# KNN: scikit-learn brute-force cosine
# --------------------------------------------------------------------------------------


def knn_sklearn_brute(user_song: sp.csr_matrix, queries: np.ndarray, k: int, budget_s: float) -> NaiveRun:
    """Top-``k`` cosine neighbours of ``queries`` (int64 user ids, chunked by
    :func:`run_in_chunks`) among all users with ``NearestNeighbors(metric="cosine",
    algorithm="brute", n_jobs=1)`` on the float64 CSR rows, one thread.

    sklearn returns ``k + 1`` neighbours per query ordered by distance; the query itself is
    dropped (or the last neighbour when the query is not among them), similarity is
    ``1 - distance`` and only neighbours sharing a song (similarity > 0) are kept, as the
    kernel keeps them. Fitting (which stores the matrix) is setup and not timed.

    Returns units = queries answered; extra: ``neighbors`` int64 (q, k) (-1 padded) and
    ``similarities`` float64 (q, k) (0 padded) in the order of ``extra['queries']`` (int64
    (q,)), ``fit_seconds``.
    """
    from sklearn.neighbors import NearestNeighbors
    from threadpoolctl import threadpool_limits

    x = sp.csr_matrix(user_song, dtype=np.float64)
    n = x.shape[0]
    started = time.perf_counter()
    model = NearestNeighbors(metric="cosine", algorithm="brute", n_jobs=1).fit(x)
    fit_seconds = time.perf_counter() - started
    want = min(k + 1, n)
    answers: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def work(ids: np.ndarray) -> int:
        distances, found = model.kneighbors(x[ids], n_neighbors=want)
        keep = found != ids[:, None]
        keep[keep.all(axis=1), -1] = False  # the query was not returned: drop the farthest
        found = found[keep].reshape(ids.size, want - 1)
        sims = 1.0 - distances[keep].reshape(ids.size, want - 1)
        shared = sims > 1e-9
        neighbors = np.full((ids.size, k), -1, np.int64)
        similarities = np.zeros((ids.size, k), np.float64)
        neighbors[:, :want - 1] = np.where(shared, found, -1)
        similarities[:, :want - 1] = np.where(shared, sims, 0.0)
        answers.append((ids, neighbors, similarities))
        return int(ids.size)

    with threadpool_limits(1):
        run = run_in_chunks(queries, budget_s, work)
    run.extra.update(queries=np.concatenate([a[0] for a in answers]),
                     neighbors=np.concatenate([a[1] for a in answers]),
                     similarities=np.concatenate([a[2] for a in answers]), fit_seconds=round(fit_seconds, 3),
                     chunks=len(answers))
    return run


def knn_agreement(ours_neighbors: np.ndarray, ours_similarities: np.ndarray, neighbors: np.ndarray,
                  similarities: np.ndarray, atol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Per query row (all arrays (q, k); ids -1 and similarities 0 where padded):
    (similarities agree, neighbours agree), both bool (q,).

    Similarities agree when the rows hold the same similarities in the same (descending)
    order within ``atol`` (float32 rounding, as the kernel stores them). Neighbours agree
    when every neighbour of ours whose similarity is above the row's last one by more than
    ``atol`` is among the other's: a full row's last similarity may be shared by more users
    than fit, and which of them fill it (and their order within ties) is not defined.
    """
    q, k = ours_neighbors.shape
    other = np.where(neighbors >= 0, similarities, 0.0).astype(np.float32)
    similarity_ok = np.isclose(ours_similarities.astype(np.float32), other, rtol=0, atol=atol).all(axis=1) \
        & ((ours_neighbors >= 0) == (neighbors >= 0)).all(axis=1)
    full = ours_neighbors[:, -1] >= 0
    last = np.where(ours_neighbors >= 0, ours_similarities, np.inf).min(axis=1)
    sure = (ours_neighbors >= 0) & (~full[:, None] | (ours_similarities > last[:, None] + atol))
    row = np.repeat(np.arange(q, dtype=np.int64), k).reshape(q, k)
    width = int(max(ours_neighbors.max(initial=0), neighbors.max(initial=0))) + 1
    found_keys = (row * width + neighbors)[neighbors >= 0]
    missing = sure & ~np.isin(row * width + ours_neighbors, found_keys)
    return similarity_ok, ~missing.any(axis=1)
