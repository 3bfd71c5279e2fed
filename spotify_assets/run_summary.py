"""What a finished pipeline run produced, in a dozen lines: the test leaderboard, the model the
service will load, where the tables and files are, and what to run next.

``make run`` prints it after the job; ``python -m spotify_assets.run_summary [--data-dir D]``
prints it for any data folder. Reads the warehouse read-only and the serving bundle's JSON;
no Dagster.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import duckdb

from spotify_assets.contract import BUNDLE_INFO
from spotify_assets.paths import default_data_dir, local_artifacts_dir

# the leaderboard's test rows over all users, best first: what a reader compares
LEADERBOARD_SQL = """
    SELECT model, users, "recall@10", "recall@50", "ndcg@10", sampled_mrr, train_seconds
    FROM model_leaderboard WHERE split = 'test' AND segment = 'all'
    ORDER BY "recall@10" DESC NULLS LAST, model
"""
COLUMNS = ("model", "users", "recall@10", "recall@50", "ndcg@10", "sampled MRR", "train s")


def _cell(value: object, column: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.1f}" if column == "train s" else f"{value:.3f}"
    return str(value)


def leaderboard_rows(database: Path) -> list[tuple]:
    """The test/all rows of ``model_leaderboard`` (empty when the table is missing)."""
    with duckdb.connect(str(database), read_only=True) as con:
        if not con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'model_leaderboard'"
                           ).fetchall()[0][0]:
            return []
        return con.execute(LEADERBOARD_SQL).fetchall()


def summary_lines(data_dir: Path) -> list[str]:
    """The summary as lines of text (a markdown table, then plain lines)."""
    database = data_dir / "warehouse" / "spotify.duckdb"
    if not database.exists():
        return [f"no warehouse at {database}: the run did not get as far as loading data"]
    lines = []
    rows = leaderboard_rows(database)
    if rows:
        lines += ["Leaderboard (test users, full-ranking over every playlist they have not interacted with):", "",
                  "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(_cell(v, c) for v, c in zip(row, COLUMNS)) + " |" for row in rows]
        lines.append("")
    else:
        lines.append("no model_leaderboard table yet (the run stopped before evaluation)")
    try:
        artifacts = local_artifacts_dir(data_dir)
    except ValueError:
        artifacts = None
    info_path = BUNDLE_INFO.under(artifacts) if artifacts else None
    if info_path is not None and info_path.exists():
        info = json.loads(info_path.read_text())
        lines.append(f"Serving model: {info['model']} ({info.get('chosen_by', '')}), "
                     f"{info['n_users']:,} users x {info['n_playlists']:,} playlists")
    lines += [
        f"Tables:    {database} (duckdb {database} -c 'SHOW TABLES')",
        f"Files:     {artifacts if artifacts else 'the artifact store URL'}",
        f"Tracking:  {data_dir / 'wandb'} (offline wandb runs)",
        "Next:      make serve (API + page on http://127.0.0.1:8000), make dev (Dagster UI on :3000)",
    ]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spotify_assets.run_summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(default_data_dir()),
                        help="the pipeline's data folder (default: $SPOTIFY_ASSETS_DATA_DIR or <project>/data)")
    args = parser.parse_args(argv)
    print("\n".join(summary_lines(Path(args.data_dir))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
