"""The naive methods the original system used, implemented honestly (no Dagster imports).

Each function processes work units (slices, users, rows, queries, batches) in a seeded
order until ``budget_s`` seconds have passed, then stops and reports how many units it
finished, so the harness can extrapolate linearly to the whole input ("extrapolated from
N rows"). None of them is made slow on purpose: they use the idiomatic Python of the
original notebooks (dicts, sets, ``random.Random``, per-sample ``Dataset``), plus every
setup that is cheap to precompute (inverted indexes, norms) outside the timed loop.

Every function returns a :class:`NaiveRun`; ``units`` counts the stage's unit (track rows,
scored pairs, triplets, negatives, queries) so rates compare with the fast kernels'.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp


@dataclass
class NaiveRun:
    """What a budget-limited naive run did.

    units : work units finished (in the stage's unit); items : loop items finished (users,
    slices, queries...); seconds : wall time of the timed loop; complete : every item of the
    input was processed (no extrapolation needed); extra : stage-specific facts
    (agreement with the fast kernel, bytes read...).
    """

    units: int
    items: int
    seconds: float
    complete: bool
    extra: dict = field(default_factory=dict)


class _Budget:
    """Wall-clock budget checked once per loop item."""

    def __init__(self, seconds: float):
        self.started = time.perf_counter()
        self.deadline = self.started + max(0.0, seconds)

    def spent(self) -> bool:
        return time.perf_counter() >= self.deadline

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


# --------------------------------------------------------------------------------------
# ingest: json.load + pandas, the notebook way
# --------------------------------------------------------------------------------------


def ingest_pandas(slices: Sequence[Path], database: Path, budget_s: float) -> NaiveRun:
    """Load MPD slices with ``json.load`` and ``pandas.json_normalize`` and insert the
    frames into DuckDB (one slice per loop item, in file order).

    Returns units = track rows inserted, extra['bytes'] = on-disk bytes of the slices read,
    extra['duckdb_threads'] = the connection's ``threads`` setting (DuckDB's default).
    """
    import duckdb
    import pandas as pd

    database.unlink(missing_ok=True)
    con = duckdb.connect(str(database))
    duckdb_threads = int(con.execute("SELECT current_setting('threads')").fetchall()[0][0])
    budget = _Budget(budget_s)
    rows = bytes_read = done = 0
    try:
        for path in slices:
            with open(path, "rb") as handle:
                document = json.load(handle)
            playlists = pd.DataFrame(document["playlists"]).drop(columns=["tracks"])
            tracks = pd.json_normalize(document["playlists"], record_path="tracks", meta=["pid"])
            con.register("_playlists", playlists)
            con.register("_tracks", tracks)
            verb = "INSERT INTO" if done else "CREATE TABLE"
            con.execute(f"{verb} naive_playlists {'' if done else 'AS'} SELECT * FROM _playlists")
            con.execute(f"{verb} naive_tracks {'' if done else 'AS'} SELECT * FROM _tracks")
            con.unregister("_playlists")
            con.unregister("_tracks")
            rows += len(tracks)
            bytes_read += path.stat().st_size
            done += 1
            if budget.spent():
                break
    finally:
        con.close()
        database.unlink(missing_ok=True)
    return NaiveRun(units=rows, items=done, seconds=budget.elapsed(), complete=done == len(slices),
                    extra={"bytes": bytes_read, "duckdb_threads": duckdb_threads})


# --------------------------------------------------------------------------------------
# label: per user, per overlapping playlist, one Python score
# --------------------------------------------------------------------------------------


def label_per_pair(user_song: sp.csr_matrix, playlist_song: sp.csr_matrix, e: np.ndarray, users: np.ndarray,
                   budget_s: float, liked_share: float = 0.015, hard_share: float = 0.2) -> NaiveRun:
    """Row-at-a-time labeling of ``users`` (int64, processed in the given order).

    Per user: count overlaps m(u, j) through a song -> playlists inverted index (a dict),
    score every overlapping pair with ``((1-e)·ln(1+m) + e) / (sqrt(s)·sqrt(p))`` in Python,
    sort the user's pairs by (score desc, playlist asc) and cut the liked and hard lists.
    The inverted index is built before the clock starts.

    Returns units = scored pairs; extra['liked'] = {user: [liked playlist ids in order]}
    for the agreement check against the fused labeler.
    """
    csc = playlist_song.tocsc()
    inverted = [csc.indices[csc.indptr[c]:csc.indptr[c + 1]].tolist() for c in range(csc.shape[1])]
    p = np.diff(playlist_song.indptr).tolist()
    indptr, indices = user_song.indptr, user_song.indices
    budget = _Budget(budget_s)
    pairs = done = 0
    liked: dict[int, list[int]] = {}
    for u in users.tolist():
        songs = indices[indptr[u]:indptr[u + 1]].tolist()
        overlap: dict[int, int] = {}
        for song in songs:
            for j in inverted[song]:
                overlap[j] = overlap.get(j, 0) + 1
        eu, root_s = float(e[u]), math.sqrt(len(songs))
        scored = []
        for j, m in overlap.items():
            score = ((1.0 - eu) * math.log1p(m) + eu) / (root_s * math.sqrt(p[j]))
            scored.append((-score, j))
        scored.sort()
        n = len(scored)
        k = max(1, math.ceil(round(liked_share * n, 12))) if n else 0
        h = math.ceil(round(hard_share * (n - k), 12))
        liked[u] = [j for _, j in scored[:k]]
        _hard = sorted(j for _, j in scored[k:k + h])
        pairs += n
        done += 1
        if budget.spent():
            break
    return NaiveRun(units=pairs, items=done, seconds=budget.elapsed(), complete=done == users.size,
                    extra={"liked": liked})


# --------------------------------------------------------------------------------------
# triplets and eval batches: per-user Python loops with sets and rejection sampling
# --------------------------------------------------------------------------------------


def _owned_by_user(owner: np.ndarray) -> dict[int, set[int]]:
    owned: dict[int, set[int]] = {}
    for j, o in enumerate(owner.tolist()):
        if o >= 0:
            owned.setdefault(o, set()).add(j)
    return owned


def triplets_per_user(liked_indptr: np.ndarray, liked_playlists: np.ndarray, split: np.ndarray,
                      hard_indptr: np.ndarray, hard_playlists: np.ndarray, owner: np.ndarray, n_playlists: int,
                      users: np.ndarray, seed: int, budget_s: float, n_hard: int = 2, n_easy: int = 2) -> NaiveRun:
    """Per user: sets of liked and owned playlists, the usable hard pool as a list, then per
    train positive ``n_hard`` uniform picks from the pool and ``n_easy`` uniform playlists
    redrawn until neither liked nor owned (``random.Random(seed)``).

    Returns units = triplets written (rows of (user, positive, negative)).
    """
    rnd = random.Random(seed)
    budget = _Budget(budget_s)
    owned = _owned_by_user(owner)
    rows: list[tuple[int, int, int]] = []
    done = 0
    for u in users.tolist():
        lo, hi = int(liked_indptr[u]), int(liked_indptr[u + 1])
        liked = set(liked_playlists[lo:hi].tolist())
        mine = owned.get(u, set())
        pool = [j for j in hard_playlists[hard_indptr[u]:hard_indptr[u + 1]].tolist() if j not in mine]
        for i in range(lo, hi):
            if split[i] != 0:
                continue
            pos = int(liked_playlists[i])
            for slot in range(n_hard + n_easy):
                if slot < n_hard and pool:
                    neg = pool[rnd.randrange(len(pool))]
                else:
                    neg = rnd.randrange(n_playlists)
                    while neg in liked or neg in mine:
                        neg = rnd.randrange(n_playlists)
                rows.append((u, pos, neg))
        done += 1
        if budget.spent():
            break
    return NaiveRun(units=len(rows), items=done, seconds=budget.elapsed(), complete=done == users.size)


def eval_rows_per_user(liked_indptr: np.ndarray, liked_playlists: np.ndarray, split: np.ndarray, which: int,
                       hard_indptr: np.ndarray, hard_playlists: np.ndarray, owner: np.ndarray, n_playlists: int,
                       users: np.ndarray, seed: int, budget_s: float, n_negatives: int = 50) -> NaiveRun:
    """Per user, per held-out positive of split ``which``: ``random.sample`` of half the
    negatives from the usable hard pool, the rest uniform and redrawn until neither liked,
    owned nor already in the row.

    Returns units = negatives drawn (rows x n_negatives).
    """
    rnd = random.Random(seed)
    budget = _Budget(budget_s)
    owned = _owned_by_user(owner)
    want_hard = n_negatives // 2
    out: list[list[int]] = []
    done = 0
    for u in users.tolist():
        lo, hi = int(liked_indptr[u]), int(liked_indptr[u + 1])
        liked = set(liked_playlists[lo:hi].tolist())
        mine = owned.get(u, set())
        pool = [j for j in hard_playlists[hard_indptr[u]:hard_indptr[u + 1]].tolist() if j not in mine]
        for i in range(lo, hi):
            if split[i] != which:
                continue
            row = rnd.sample(pool, min(want_hard, len(pool)))
            taken = set(row)
            while len(row) < n_negatives:
                neg = rnd.randrange(n_playlists)
                if neg in liked or neg in mine or neg in taken:
                    continue
                row.append(neg)
                taken.add(neg)
            out.append(row)
        done += 1
        if budget.spent():
            break
    return NaiveRun(units=len(out) * n_negatives, items=done, seconds=budget.elapsed(), complete=done == users.size)


# --------------------------------------------------------------------------------------
# BPR: per-sample Dataset + DataLoader + autograd
# --------------------------------------------------------------------------------------


def bpr_dataloader_epoch(triplets: np.ndarray, n_users: int, n_playlists: int, dim: int, batch_size: int, lr: float,
                         reg: float, seed: int, budget_s: float) -> NaiveRun:
    """The textbook loop: a map-style ``Dataset`` whose ``__getitem__`` returns one triplet,
    ``DataLoader(shuffle=True)`` collating ``batch_size`` of them, the shared ``BPRNet``
    (dense embeddings) and autograd + ``torch.optim.SGD`` on the mean BPR loss with L2.

    Returns units = triplets trained on.
    """
    import torch

    from spotify_assets.train.bpr import BPRNet

    torch.manual_seed(seed)

    class TripletDataset(torch.utils.data.Dataset):
        def __init__(self, data: np.ndarray):
            self.data = torch.as_tensor(data, dtype=torch.int64)

        def __len__(self) -> int:
            return self.data.shape[0]

        def __getitem__(self, index: int) -> torch.Tensor:
            return self.data[index]

    net = BPRNet(n_users, n_playlists, dim, seed=seed)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    loader = torch.utils.data.DataLoader(TripletDataset(triplets), batch_size=batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    budget = _Budget(budget_s)
    seen = batches = 0
    for batch in loader:
        u, i, j = batch[:, 0], batch[:, 1], batch[:, 2]
        scores = net.score(u, torch.stack([i, j], dim=1))
        l2 = net.users(u).pow(2).sum() + net.playlists(batch[:, 1:]).pow(2).sum()
        loss = torch.nn.functional.softplus(-(scores[:, 0] - scores[:, 1])).mean() + 0.5 * reg * l2 / batch.shape[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += batch.shape[0]
        batches += 1
        if budget.spent():
            break
    return NaiveRun(units=seen, items=batches, seconds=budget.elapsed(), complete=seen == triplets.shape[0],
                    extra={"batches": batches})


# --------------------------------------------------------------------------------------
# KNN: one query at a time
# --------------------------------------------------------------------------------------


def knn_one_query_at_a_time(user_song: sp.csr_matrix, queries: np.ndarray, k: int, budget_s: float,
                            on_result: Callable[[int, np.ndarray, np.ndarray], None] | None = None) -> NaiveRun:
    """Brute force per query: one sparse row times ``Xᵀ`` (all users), cosine by the
    precomputed norms, self excluded, ``argpartition`` for the top k, then a sort by
    (similarity desc, id asc). ``on_result(user, neighbours int64 (<=k,), similarities
    float64 (<=k,))`` receives each answer.

    Returns units = queries answered.
    """
    x = sp.csr_matrix(user_song, dtype=np.float64)
    xt = x.T.tocsr()
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    safe = np.where(norms > 0, norms, np.inf)
    budget = _Budget(budget_s)
    done = 0
    for u in queries.tolist():
        sims = (x[u] @ xt).toarray().ravel() / (safe[u] * safe)
        sims[u] = 0.0
        kk = min(k, sims.size - 1)
        top = np.argpartition(-sims, kk)[:kk] if kk < sims.size else np.arange(sims.size)
        top = top[sims[top] > 0]
        top = top[np.lexsort((top, -sims[top]))]
        if on_result is not None:
            on_result(u, top, sims[top])
        done += 1
        if budget.spent():
            break
    return NaiveRun(units=done, items=done, seconds=budget.elapsed(), complete=done == queries.size)
