"""The RecSys Challenge 2018 protocol on held-out playlists: ten seed categories, 500
recommendations per playlist, R-precision (with artist credit), NDCG, clicks, precision@100.
No Dagster imports.

The challenge set held 1,000 playlists in each of ten categories (Chen et al., "Recsys
Challenge 2018: Automatic Music Playlist Continuation", 2018):

======================  =====  ===========  =====
category                seeds  which        title
======================  =====  ===========  =====
title only              0      -            yes
title + first 1         1      first        yes
title + first 5         5      first        yes
first 5, no title       5      first        no
title + first 10        10     first        yes
first 10, no title      10     first        no
title + first 25        25     first        yes
title + random 25       25     random       yes
title + first 100       100    first        yes
title + random 100      100    random       yes
======================  =====  ===========  =====

Here the held-out playlists are one split of a seeded split *by playlist* (no model trains on
them). A playlist qualifies for a category when at least ``min_held_out`` distinct tracks are
left to find after its seeds; each category draws up to ``per_category`` of the qualifying
playlists (seeded), so one playlist may serve several categories, each with its own seeds
(each category is a separate task; the synthetic held-out split is too small for ten disjoint
groups of 1,000). As in the challenge set, only tracks that occur in the training playlists
count as held-out tracks ("all tracks in the challenge set appear in the MPD"). A category
with fewer than ``min_queries`` qualifying playlists is skipped and reported.

Metrics are those of :mod:`spotify_assets.tracks.continuation`; "overall" is the mean over
every (category, playlist) query, as the challenge averaged over its whole set.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

import scipy.sparse as sp

from spotify_assets.tracks.continuation import (
    als_rank,
    clicks,
    cooccurrence_rank,
    embedding_rank,
    ndcg,
    popularity_rank,
    r_precision,
    ragged_rows,
)

__all__ = [
    "ALSSettings",
    "CATEGORIES",
    "METRICS",
    "Category",
    "ChallengeSet",
    "baseline_rankers",
    "build_challenge_set",
    "evaluate_models",
    "model_ranker",
    "precision_at",
    "results_markdown",
    "score_ranking",
    "select_als",
    "target_verdicts",
]

K = 500


@dataclass(frozen=True)
class Category:
    """One challenge scenario: ``seeds`` tracks given (the first ones, or random positions
    when ``random``), with or without the playlist's title."""

    name: str
    seeds: int
    random: bool = False
    title: bool = True


CATEGORIES: tuple[Category, ...] = (
    Category("title only", 0),
    Category("title + first 1", 1),
    Category("title + first 5", 5),
    Category("first 5, no title", 5, title=False),
    Category("title + first 10", 10),
    Category("first 10, no title", 10, title=False),
    Category("title + first 25", 25),
    Category("title + random 25", 25, random=True),
    Category("title + first 100", 100),
    Category("title + random 100", 100, random=True),
)

#: (column, label, higher is better) of every reported metric
METRICS: tuple[tuple[str, str, bool], ...] = (
    ("r_precision", "R-precision (artist credit)", True),
    ("ndcg", "NDCG", True),
    ("clicks", "clicks", False),
    ("precision_at_100", "precision@100", True),
    ("r_precision_tracks", "R-precision (tracks only)", True),
)


@dataclass(frozen=True)
class ChallengeSet:
    """Continuation queries of several categories.

    category : int64 (Q,) index into :data:`CATEGORIES`.
    playlist : int64 (Q,) index of the query's playlist in the arrays it was built from.
    seeds : int64 (Q, S) seed track ids in playlist order for "first", position order for
        "random"; -1 pads (S = the most seeds of any category present, at least 1).
    has_title : bool (Q,) whether the model may read the playlist's name.
    truth_indptr : int64 (Q + 1,); truth : int64 (nnz,) held-out track ids, unique and
        ascending per query, seeds removed.
    skipped : {category name: qualifying playlists} of categories left out (too few).
    """

    category: np.ndarray
    playlist: np.ndarray
    seeds: np.ndarray
    has_title: np.ndarray
    truth_indptr: np.ndarray
    truth: np.ndarray
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.category.size)

    def subset(self, rows: np.ndarray) -> ChallengeSet:
        """The queries at ``rows`` (int64 (m,)), in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = np.diff(self.truth_indptr)[rows]
        starts = self.truth_indptr[rows]
        gather = ragged_rows(starts, lengths)
        return ChallengeSet(self.category[rows], self.playlist[rows], self.seeds[rows], self.has_title[rows],
                            np.r_[0, np.cumsum(lengths)].astype(np.int64), self.truth[gather], dict(self.skipped))

    def names(self, playlist_names: Sequence[str]) -> list[str]:
        """Each query's playlist name from ``playlist_names`` (indexed like the input
        playlists), "" where the category hides the title."""
        return [playlist_names[p] if t else "" for p, t in zip(self.playlist.tolist(), self.has_title.tolist())]

    def categories_present(self) -> list[int]:
        return sorted(set(self.category.tolist()))


def _seed_positions(lengths: np.ndarray, n_seed: int, random: bool, rng: np.random.Generator) -> np.ndarray:
    """int64 (n, n_seed) positions of the seeds inside playlists of ``lengths`` (n,), every
    length > n_seed: 0..n_seed-1, or ``n_seed`` distinct random positions in ascending order."""
    n = lengths.size
    if n == 0:
        return np.zeros((0, n_seed), np.int64)
    if not random or n_seed == 0:
        return np.tile(np.arange(n_seed, dtype=np.int64), (n, 1))
    # n_seed smallest of one uniform key per position (positions past the end key +inf)
    width = int(lengths.max(initial=0))
    keys = rng.random((n, width))
    keys[np.arange(width)[None, :] >= lengths[:, None]] = np.inf
    picked = np.argpartition(keys, n_seed - 1, axis=1)[:, :n_seed]
    return np.sort(picked, axis=1).astype(np.int64)


def build_challenge_set(indptr: np.ndarray, tracks: np.ndarray, held_out: np.ndarray, known_tracks: np.ndarray,
                        seed: int, per_category: int = 1000, min_held_out: int = 1, min_queries: int = 10,
                        categories: Sequence[int] | None = None) -> ChallengeSet:
    """Challenge queries from the playlists marked ``held_out``.

    Parameters
    ----------
    indptr : int64 (P + 1,); tracks : int (nnz,) track ids in playlist order.
    held_out : bool (P,) playlists that may be queried (none of them may be in training data).
    known_tracks : bool (n_tracks,) tracks that occur in the training playlists; only they
        count as held-out tracks (the challenge set's rule).
    seed : drives the playlist draw per category and the random seed positions.
    per_category : playlists drawn per category (0 = every qualifying one).
    min_held_out : distinct known tracks that must remain after the seeds.
    min_queries : a category with fewer qualifying playlists is skipped (``skipped``).
    categories : indices into :data:`CATEGORIES` (default all).
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    tracks = np.asarray(tracks, dtype=np.int64)
    held_out = np.asarray(held_out, dtype=bool)
    known_tracks = np.asarray(known_tracks, dtype=bool)
    if held_out.size != indptr.size - 1:
        raise ValueError(f"held_out has {held_out.size} entries for {indptr.size - 1} playlists")
    if tracks.size and (tracks.min() < 0 or tracks.max() >= known_tracks.size):
        raise ValueError(f"track ids must lie in 0..{known_tracks.size - 1}")
    chosen = list(range(len(CATEGORIES))) if categories is None else [int(c) for c in categories]
    lengths = np.diff(indptr)
    candidates = np.flatnonzero(held_out)
    width = max([CATEGORIES[c].seeds for c in chosen] + [1])
    parts: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    skipped: dict[str, int] = {}
    for c in chosen:
        category = CATEGORIES[c]
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC4A1, c]))
        pool = candidates[lengths[candidates] > category.seeds]
        positions = _seed_positions(lengths[pool], category.seeds, category.random, rng)
        seeds = np.full((pool.size, width), -1, np.int64)
        seeds[:, :category.seeds] = tracks[indptr[pool][:, None] + positions]
        # held-out rows: every position that is not a seed, of a known track that is not a seed
        row_pl = np.repeat(np.arange(pool.size), lengths[pool])
        row_track = tracks[ragged_rows(indptr[pool], lengths[pool])]
        keep = known_tracks[row_track] & ~(seeds[row_pl] == row_track[:, None]).any(axis=1)
        keys = np.unique(row_pl[keep] * np.int64(known_tracks.size) + row_track[keep])
        t_pl, t_track = keys // known_tracks.size, keys % known_tracks.size
        per_playlist = np.bincount(t_pl, minlength=pool.size)
        qualifies = np.flatnonzero(per_playlist >= max(1, min_held_out))
        if qualifies.size < max(1, min_queries):
            skipped[category.name] = int(qualifies.size)
            continue
        if 0 < per_category < qualifies.size:
            qualifies = np.sort(rng.choice(qualifies, size=per_category, replace=False))
        in_set = np.isin(t_pl, qualifies)
        parts.append((c, pool[qualifies], seeds[qualifies], per_playlist[qualifies], t_track[in_set]))
    if not parts:
        empty = np.zeros(0, np.int64)
        return ChallengeSet(empty, empty, np.zeros((0, width), np.int64), np.zeros(0, bool), np.zeros(1, np.int64),
                            empty, skipped)
    category = np.concatenate([np.full(p[1].size, p[0], np.int64) for p in parts])
    counts = np.concatenate([p[3] for p in parts])
    return ChallengeSet(
        category=category,
        playlist=np.concatenate([p[1] for p in parts]).astype(np.int64),
        seeds=np.concatenate([p[2] for p in parts]),
        has_title=np.array([CATEGORIES[c].title for c in category.tolist()], bool),
        truth_indptr=np.r_[0, np.cumsum(counts)].astype(np.int64),
        truth=np.concatenate([p[4] for p in parts]).astype(np.int64),
        skipped=skipped,
    )


def precision_at(recommended: np.ndarray, truth_indptr: np.ndarray, truth: np.ndarray, n: int = 100) -> np.ndarray:
    """float64 (Q,) share of the first ``n`` recommendations that are held-out tracks (hits / n)."""
    recommended = np.asarray(recommended, dtype=np.int64)[:, :n]
    q = recommended.shape[0]
    width = int(max(recommended.max(initial=0), truth.max(initial=0))) + 1
    truth_keys = np.repeat(np.arange(q), np.diff(truth_indptr)) * width + truth
    hits = np.isin(np.arange(q)[:, None] * width + recommended, truth_keys) & (recommended >= 0)
    return hits.sum(axis=1) / n


def score_ranking(recommended: np.ndarray, queries: ChallengeSet, track_artist: np.ndarray) -> dict[str, np.ndarray]:
    """Per-query metrics {name: float64 (Q,)} of ranked lists (Q, K) for ``queries``."""
    t_ptr, t = queries.truth_indptr, queries.truth
    return {
        "r_precision": r_precision(recommended, t_ptr, t, track_artist),
        "r_precision_tracks": r_precision(recommended, t_ptr, t),
        "ndcg": ndcg(recommended, t_ptr, t),
        "clicks": clicks(recommended, t_ptr, t).astype(np.float64),
        "precision_at_100": precision_at(recommended, t_ptr, t, 100),
    }


Ranker = Callable[[ChallengeSet], np.ndarray]


def evaluate_models(rankers: Mapping[str, Ranker], queries: ChallengeSet, track_artist: np.ndarray,
                    k: int = K, log: Callable[[str], None] | None = None) -> list[dict]:
    """Run every ranker on the same ``queries`` and score it per category and overall.

    rankers : {model name: f(queries) -> int64 (Q, k) ranked track ids (-1 = empty slot)}.
    Returns rows {"category", "model", "queries", <metric means>, "seconds"} (the ranker's
    time, on the "overall" row), categories in :data:`CATEGORIES` order then "overall".
    """
    rows = []
    for model, rank in rankers.items():
        started = time.perf_counter()
        ranked = np.asarray(rank(queries), dtype=np.int64)
        seconds = time.perf_counter() - started
        if ranked.shape != (queries.size, k):
            raise ValueError(f"{model} returned {ranked.shape}, want {(queries.size, k)}")
        per_query = score_ranking(ranked, queries, track_artist)
        groups = [(CATEGORIES[c].name, queries.category == c) for c in queries.categories_present()]
        for name, mask in [*groups, ("overall", np.ones(queries.size, bool))]:
            rows.append({"category": name, "model": model, "queries": int(mask.sum()),
                         **{m: float(v[mask].mean()) for m, v in per_query.items()},
                         "seconds": round(seconds, 3) if name == "overall" else 0.0})
        if log is not None:
            overall = rows[-1]
            log(f"{model}: R-precision {overall['r_precision']:.4f}, NDCG {overall['ndcg']:.4f}, "
                f"clicks {overall['clicks']:.2f} over {queries.size:,} queries ({seconds:.1f}s)")
    return rows


@dataclass(frozen=True)
class ALSSettings:
    """The ALS baseline's hyper-parameters (``implicit``, BM25-weighted)."""

    factors: int = 32
    iterations: int = 8
    alpha: float = 10.0
    regularization: float = 0.05


def baseline_rankers(train: sp.csr_matrix, k: int = K, item2vec: tuple[np.ndarray, np.ndarray] | None = None,
                     als: ALSSettings | None = ALSSettings(), seed: int = 0) -> dict[str, Ranker]:
    """The seed-track baselines, all fitted on the training playlists only.

    train : (P, T) binary CSR of the training playlists; popularity is its column sums.
    item2vec : (vectors float32 (V, d) L2-normalised, track ids int64 (V,)) or None.
    als : settings, or None to leave ALS out.
    A query without seeds gets the popularity list from every one of them: they have
    nothing to say about a name.
    """
    popularity = np.asarray(train.sum(axis=0)).ravel()
    n_tracks = train.shape[1]
    rankers: dict[str, Ranker] = {
        "popularity": lambda q: popularity_rank(popularity, q.seeds, k),
        "cooccurrence": lambda q: cooccurrence_rank(train, q.seeds, k, popularity),
    }
    if item2vec is not None:
        vectors, track_ids = item2vec
        rankers["item2vec"] = lambda q: embedding_rank(vectors, track_ids, n_tracks, q.seeds, k, popularity)
    if als is not None:
        rankers["als"] = lambda q: als_rank(train, q.seeds, k, factors=als.factors, alpha=als.alpha,
                                            regularization=als.regularization, iterations=als.iterations,
                                            seed=seed, popularity=popularity)
    return rankers


def model_ranker(model, names: Sequence[str], k: int = K) -> Ranker:
    """A ranker from any model with ``rank(names, seeds, k) -> (track ids (Q, k), scores)``
    (the two-tower model): each query's playlist name from ``names`` (indexed like the
    playlists the set was built from; hidden where the category has no title) and its seeds."""
    return lambda q: model.rank(q.names(names), q.seeds, k)[0]


def select_als(train: sp.csr_matrix, val: ChallengeSet, track_artist: np.ndarray,
               grid: Sequence[ALSSettings], k: int = K, seed: int = 0) -> tuple[ALSSettings, list[dict]]:
    """The ALS settings of ``grid`` with the best mean NDCG on the *val* set (the
    notebook swept alpha the same way); returns it and one row per setting."""
    if not grid:
        raise ValueError("the ALS grid is empty")
    trials = []
    for settings in grid:
        started = time.perf_counter()
        ranked = als_rank(train, val.seeds, k, factors=settings.factors, alpha=settings.alpha,
                          regularization=settings.regularization, iterations=settings.iterations, seed=seed)
        scores = score_ranking(ranked, val, track_artist)
        trials.append({**asdict(settings), "val_ndcg": float(scores["ndcg"].mean()),
                       "val_r_precision": float(scores["r_precision"].mean()),
                       "seconds": round(time.perf_counter() - started, 2)})
    best = max(range(len(grid)), key=lambda i: trials[i]["val_ndcg"])
    return grid[best], trials


def _fmt(value: float, digits: int) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def results_markdown(rows: Sequence[Mapping], models: Sequence[str] | None = None,
                     metrics: Sequence[tuple[str, str, bool]] = METRICS) -> str:
    """One markdown table per metric: categories (with their query counts) down, models
    across, the best value of each row in bold."""
    models = list(models) if models is not None else list(dict.fromkeys(r["model"] for r in rows))
    categories = list(dict.fromkeys(r["category"] for r in rows))
    value = {(r["category"], r["model"]): r for r in rows}
    blocks = []
    for column, label, higher in metrics:
        lines = [f"**{label}**", "", "| category | queries | " + " | ".join(models) + " |",
                 "|---|---:|" + "---:|" * len(models)]
        for category in categories:
            cells = [value.get((category, m), {}).get(column, float("nan")) for m in models]
            finite = [c for c in cells if not math.isnan(c)]
            best = (max(finite) if higher else min(finite)) if finite else None
            digits = 2 if column == "clicks" else 4
            shown = [f"**{_fmt(c, digits)}**" if best is not None and _fmt(c, digits) == _fmt(best, digits)
                     else _fmt(c, digits) for c in cells]
            queries = next((value[(category, m)]["queries"] for m in models if (category, m) in value), 0)
            lines.append(f"| {category} | {queries:,} | " + " | ".join(shown) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


#: categories where the two-tower must beat ALS and item2vec (title only and <= 5 seeds)
BEAT_CATEGORIES = tuple(c.name for c in CATEGORIES if c.seeds <= 5)


def target_verdicts(rows: Sequence[Mapping], model: str = "two_tower", beat: Sequence[str] = ("als", "item2vec"),
                    tolerance: float = 0.01, metrics: Sequence[str] = ("r_precision", "ndcg")) -> list[dict]:
    """The issue's targets per category and metric: in :data:`BEAT_CATEGORIES` ``model``
    must beat every model in ``beat``; elsewhere it must be within ``tolerance`` of the best
    model. Rows {"category", "metric", "target", model, "reference", "margin", "met"};
    ``margin`` > 0 means met with room (for "within" targets: ``model - best + tolerance``)."""
    value = {(r["category"], r["model"]): r for r in rows}
    categories = [c for c in dict.fromkeys(r["category"] for r in rows) if c != "overall"]
    out = []
    for category in categories:
        if (category, model) not in value:
            continue
        ours_row = value[(category, model)]
        for metric in metrics:
            ours = float(ours_row[metric])
            if category in BEAT_CATEGORIES:
                others = {m: float(value[(category, m)][metric]) for m in beat if (category, m) in value}
                reference = max(others.values()) if others else float("nan")
                margin = ours - reference
                target = "beats " + " and ".join(others)
                met = bool(others) and margin > 0
            else:
                others = {m: float(r[metric]) for (c, m), r in value.items() if c == category and m != model}
                best = max(others, key=others.get) if others else ""
                reference = others.get(best, float("nan"))
                margin = ours - reference + tolerance
                target = f"within {tolerance} of the best ({best})" if best else "within of the best"
                met = bool(others) and margin >= 0
            out.append({"category": category, "metric": metric, "target": target, model: round(ours, 4),
                        "reference": round(reference, 4), "margin": round(margin, 4), "met": met})
    return out
