"""Verdicts for the tracks group's asset checks (pure: arrays or a DuckDB connection in, a
:class:`spotify_assets.checks.Verdict` out; the Dagster wrappers are in ``defs/tracks/checks.py``)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np

from spotify_assets.checks import Verdict

__all__ = ["continuation_beats_popularity", "duplicates_mostly_confirmed", "embeddings_valid", "examples_valid",
           "png_valid", "two_tower_ranks"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def examples_valid(con: duckdb.DuckDBPyConnection, context: int = 5) -> Verdict:
    """next_track_examples: one split per playlist, every example's split equals its playlist's,
    ids inside track_dictionary, and exactly ``max(n_tracks - context, 0)`` examples per playlist."""
    n_tracks = con.execute("SELECT count(*) FROM track_dictionary").fetchall()[0][0]
    cols = [f"context_{i}" for i in range(1, context + 1)] + ["next_track_id"]
    out_of_range = con.execute(
        "SELECT count(*) FROM next_track_examples WHERE "
        + " OR ".join(f"{c} < 0 OR {c} >= ?" for c in cols), [n_tracks] * len(cols)).fetchall()[0][0]
    multi_split = con.execute(
        "SELECT count(*) FROM (SELECT pid FROM track_playlist_splits GROUP BY pid HAVING count(*) > 1)").fetchall()[0][0]
    wrong_split = con.execute(
        "SELECT count(*) FROM next_track_examples e JOIN track_playlist_splits s USING (pid) WHERE e.split <> s.split"
    ).fetchall()[0][0]
    wrong_count = con.execute(
        """SELECT count(*) FROM track_playlist_splits s
           LEFT JOIN (SELECT pid, count(*) AS n FROM next_track_examples GROUP BY pid) e USING (pid)
           WHERE coalesce(e.n, 0) <> greatest(s.n_tracks - ?, 0)""", [context]).fetchall()[0][0]
    bad = {"ids_out_of_range": int(out_of_range), "playlists_in_two_splits": int(multi_split),
           "examples_with_wrong_split": int(wrong_split), "playlists_with_wrong_example_count": int(wrong_count)}
    problems = {k: v for k, v in bad.items() if v}
    return Verdict(not problems, "examples valid" if not problems else f"problems: {problems}", bad)


def embeddings_valid(vectors: np.ndarray, track_ids: np.ndarray, n_tracks: int) -> Verdict:
    """Embeddings: float32 (n, d) finite unit rows; track ids unique, int64, in 0..n_tracks-1."""
    details: dict[str, int | float | str] = {"rows": int(vectors.shape[0]), "dim": int(vectors.shape[1])}
    problems = []
    if vectors.dtype != np.float32 or track_ids.dtype != np.int64:
        problems.append(f"dtypes {vectors.dtype}/{track_ids.dtype}, want float32/int64")
    if vectors.shape[0] != track_ids.shape[0]:
        problems.append(f"{vectors.shape[0]} vectors for {track_ids.shape[0]} track ids")
    if vectors.shape[0] == 0:
        problems.append("no embedded tracks")
    finite = np.isfinite(vectors).all()
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    details["max_norm_error"] = float(np.abs(norms - 1.0).max(initial=0.0)) if finite else float("nan")
    if not finite:
        problems.append("non-finite values")
    elif details["max_norm_error"] > 1e-3:
        problems.append(f"rows not unit norm (max error {details['max_norm_error']:.2g})")
    if np.unique(track_ids).size != track_ids.size:
        problems.append("duplicate track ids")
    if track_ids.size and (track_ids.min() < 0 or track_ids.max() >= n_tracks):
        problems.append(f"track ids outside 0..{n_tracks - 1}")
    return Verdict(not problems, "; ".join(problems) or "finite unit vectors, unique in-range ids", details)


def duplicates_mostly_confirmed(con: duckdb.DuckDBPyConnection, min_share: float = 0.5) -> Verdict:
    """Of the key-matched duplicate pairs that have embeddings, at least ``min_share`` are confirmed."""
    confirmed, verified, total = con.execute(
        "SELECT count(*) FILTER (WHERE verdict = 'confirmed'), count(*) FILTER (WHERE verdict <> 'unverified'), "
        "count(*) FROM duplicate_tracks WHERE track_id <> canonical_track_id").fetchall()[0]
    share = confirmed / verified if verified else float("nan")
    ok = verified == 0 or share >= min_share
    return Verdict(ok, f"{confirmed} of {verified} verifiable duplicate pairs confirmed ({total} pairs in all)",
                   {"confirmed": int(confirmed), "verifiable": int(verified), "pairs": int(total),
                    "confirmed_share": round(share, 4) if verified else "n/a"})


def png_valid(path: Path | str, min_bytes: int = 2_000) -> Verdict:
    """A file that starts with the PNG signature, has an IHDR of non-zero size and ``min_bytes``+."""
    path = Path(path)
    if not path.exists():
        return Verdict(False, f"{path} does not exist", {})
    head = path.read_bytes()[:24]
    size = path.stat().st_size
    width = int.from_bytes(head[16:20], "big") if len(head) >= 24 else 0
    height = int.from_bytes(head[20:24], "big") if len(head) >= 24 else 0
    ok = head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR" and width > 0 and height > 0 and size >= min_bytes
    return Verdict(ok, f"{'valid' if ok else 'invalid'} PNG {width}x{height}, {size:,} bytes",
                   {"bytes": int(size), "width": width, "height": height})


def continuation_beats_popularity(con: duckdb.DuckDBPyConnection, model: str = "item2vec",
                                  category: str = "overall") -> Verdict:
    """``model``'s continuation NDCG in ``category`` is above the popularity baseline's."""
    rows = dict(con.execute("SELECT model, ndcg FROM playlist_continuation_eval WHERE category = ?",
                            [category]).fetchall())
    if model not in rows or "popularity" not in rows:
        return Verdict(False, f"missing rows for {category!r}: have {sorted(rows)}", {})
    ok = rows[model] > rows["popularity"]
    return Verdict(ok, f"{category}: {model} NDCG {rows[model]:.4f} vs popularity {rows['popularity']:.4f}",
                   {f"{model}_ndcg": float(rows[model]), "popularity_ndcg": float(rows["popularity"])})


def two_tower_ranks(path: Path | str, names: tuple[str, ...] = ("road trip", "chill vibes"), k: int = 50) -> Verdict:
    """The two-tower artifact loads with ``weights_only=True``, has a catalogue row per
    vocabulary track, and ranks ``k`` distinct vocabulary tracks for name-only playlists
    (different names, different lists)."""
    from spotify_assets.tracks.two_tower import load_two_tower

    try:
        model = load_two_tower(path)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        return Verdict(False, f"cannot load {path}: {exc}", {})
    problems = []
    vocab = model.vocab_track_ids
    catalogue = model.catalogue or {}
    if any(len(catalogue.get(c, ())) != vocab.size for c in ("track_uri", "track_name", "artist_name")):
        problems.append("catalogue does not match the vocabulary")
    ids, scores = model.rank(list(names), np.full((len(names), 1), -1), k)
    kk = min(k, vocab.size)
    if (ids[:, :kk] < 0).any() or any(np.unique(row[:kk]).size != kk for row in ids):
        problems.append("name-only queries did not get distinct full lists")
    if not np.isin(ids[ids >= 0], vocab).all():
        problems.append("tracks outside the vocabulary")
    if len(names) > 1 and all((ids[0] == row).all() for row in ids[1:]):
        problems.append("every name got the same list")
    details = {"vocabulary": int(vocab.size), "best_epoch": model.epoch,
               "val_ndcg": round(model.val_ndcg, 4) if np.isfinite(model.val_ndcg) else "n/a"}
    return Verdict(not problems, "; ".join(problems) or f"loads and ranks {k} tracks from a name alone", details)
