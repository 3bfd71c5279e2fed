"""The leaderboard as rows, a markdown table and a plot (no Dagster imports).

One row per (model, split, segment): full-ranking Recall@10/50 and NDCG@10, the share of the
popularity-to-oracle gap the model closes, the sampled MRR / Hit@10 (test rows; the original
system's metric), train seconds and whether the model's training is leak-free.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from spotify_assets.evaluate.tasks import SEGMENTS

COLUMNS = ("model", "split", "segment", "users", "recall@10", "recall@50", "ndcg@10", "oracle_gap_closed",
           "sampled_mrr", "sampled_hit@10", "train_seconds", "leak_free")


def _gap_closed(value: float, floor: float, ceiling: float) -> float | None:
    """(value - floor) / (ceiling - floor), None when undefined."""
    if not all(math.isfinite(x) for x in (value, floor, ceiling)) or ceiling - floor <= 1e-12:
        return None
    return (value - floor) / (ceiling - floor)


def leaderboard_rows(full: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]],
                     sampled: Mapping[str, Mapping[str, Mapping[str, float]]],
                     summaries: Mapping[str, Mapping[str, object]]) -> list[dict]:
    """Rows of the leaderboard table.

    Parameters
    ----------
    full : model -> split ("val"/"test") -> segment -> {"recall@10", "recall@50", "ndcg@10", "users"}.
    sampled : model -> segment -> {"mrr", "hit@10", ...} on the test eval batches.
    summaries : model -> its training summary ({"train_seconds", "leak_free"}; {} for the
        baselines that train nothing).
    """
    rows = []
    for model, by_split in full.items():
        summary = summaries.get(model, {})
        for split, by_segment in by_split.items():
            for segment, metrics in by_segment.items():
                floor = full.get("popularity", {}).get(split, {}).get(segment, {}).get("recall@10", math.nan)
                ceiling = full.get("oracle", {}).get(split, {}).get(segment, {}).get("recall@10", math.nan)
                sample = sampled.get(model, {}).get(segment, {}) if split == "test" else {}
                rows.append({
                    "model": model, "split": split, "segment": segment, "users": int(metrics["users"]),
                    "recall@10": _finite(metrics["recall@10"]), "recall@50": _finite(metrics["recall@50"]),
                    "ndcg@10": _finite(metrics["ndcg@10"]),
                    "oracle_gap_closed": _gap_closed(metrics["recall@10"], floor, ceiling),
                    "sampled_mrr": _finite(sample.get("mrr")), "sampled_hit@10": _finite(sample.get("hit@10")),
                    "train_seconds": summary.get("train_seconds"),
                    "leak_free": bool(summary.get("leak_free", True)),
                })
    return rows


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _fmt(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "**no (leaky)**"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def markdown_leaderboard(rows: Sequence[Mapping[str, object]], split: str = "test") -> str:
    """Models x segments for one split: ``R@10 / NDCG@10`` per segment, then R@50, the oracle
    gap closed, sampled MRR (all users), train seconds and leak-freedom."""
    chosen = [r for r in rows if r["split"] == split]
    models = list(dict.fromkeys(r["model"] for r in chosen))
    by = {(r["model"], r["segment"]): r for r in chosen}
    segments = [s for s in SEGMENTS if any((m, s) in by for m in models)]
    users = {s: next((by[(m, s)]["users"] for m in models if (m, s) in by), 0) for s in segments}
    header = (["model"] + [f"R@10 / NDCG@10 {s} ({users[s]:,})" for s in segments]
              + ["R@50 all", "oracle gap closed", "sampled MRR" if split == "test" else "", "train s", "leak-free"])
    header = [h for h in header if h]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for model in models:
        cells = [model]
        for s in segments:
            row = by.get((model, s), {})
            cells.append(f"{_fmt(row.get('recall@10'))} / {_fmt(row.get('ndcg@10'))}")
        overall = by.get((model, "all"), {})
        cells += [_fmt(overall.get("recall@50")), _fmt(overall.get("oracle_gap_closed"))]
        if split == "test":
            cells.append(_fmt(overall.get("sampled_mrr")))
        cells += [_fmt(overall.get("train_seconds")), _fmt(overall.get("leak_free"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def leaderboard_plot(rows: Sequence[Mapping[str, object]], path: Path | str, split: str = "test") -> Path:
    """A PNG of Recall@10 (bars) and NDCG@10 (dots) per model and segment for one split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [r for r in rows if r["split"] == split]
    models = list(dict.fromkeys(r["model"] for r in chosen))
    segments = [s for s in SEGMENTS if any(r["segment"] == s for r in chosen)]
    by = {(r["model"], r["segment"]): r for r in chosen}
    width = 0.8 / max(len(segments), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(models)), 3.6), dpi=110)
    for k, segment in enumerate(segments):
        xs = [i + (k - (len(segments) - 1) / 2) * width for i in range(len(models))]
        recall = [by.get((m, segment), {}).get("recall@10") or 0.0 for m in models]
        ndcg = [by.get((m, segment), {}).get("ndcg@10") or 0.0 for m in models]
        ax.bar(xs, recall, width=width * 0.95, label=f"Recall@10 {segment}")
        ax.scatter(xs, ndcg, color="black", s=10, zorder=3, label="NDCG@10" if k == 0 else None)
    ax.set_xticks(range(len(models)), models)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"{split} full ranking")
    ax.legend(fontsize=7, ncol=min(len(segments) + 1, 5), loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def quality_gate(model: Mapping[str, float], baseline: Mapping[str, float], min_users: int,
                 metric: str = "recall@10") -> tuple[bool, str]:
    """The blocking quality check: ``model`` beats ``baseline`` on the validation ``metric``.

    model, baseline : validation metrics of the same users ({metric: float, "users": int}).
    min_users : below this many validation users the comparison is noise; the gate then
        passes and says it did not judge (tiny test data has one or two such users).

    Returns (passed, description).
    """
    users = int(model.get("users", 0))
    if users < min_users:
        return True, f"not judged: {users} validation users (fewer than {min_users})"
    ours, theirs = float(model[metric]), float(baseline[metric])
    verdict = ours > theirs
    return verdict, f"validation {metric} {ours:.4f} vs {theirs:.4f} on {users} users"
