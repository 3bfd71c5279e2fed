"""Pure check logic on the warehouse: each function returns a verdict and details.

Dagster ``@asset_check`` wrappers in ``defs/*/checks.py`` turn these into check results;
tests call them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb


@dataclass(frozen=True)
class Verdict:
    passed: bool
    description: str
    details: dict[str, int | float | str] = field(default_factory=dict)


def _quote(identifier: str) -> str:
    if not identifier.replace("_", "").isalnum():
        raise ValueError(f"unsafe SQL identifier {identifier!r}")
    return f'"{identifier}"'


def unique_key(con: duckdb.DuckDBPyConnection, table: str, columns: list[str]) -> Verdict:
    """No two rows share ``columns``."""
    cols = ", ".join(_quote(c) for c in columns)
    dupes, example = con.execute(
        f"SELECT count(*), any_value(k) FROM (SELECT ({cols})::VARCHAR AS k FROM {_quote(table)} "
        f"GROUP BY {cols} HAVING count(*) > 1)"
    ).fetchall()[0]
    return Verdict(
        dupes == 0,
        f"{dupes} duplicated keys ({', '.join(columns)})" + (f", e.g. {example}" if dupes else ""),
        {"duplicated_keys": int(dupes)},
    )


def not_null(con: duckdb.DuckDBPyConnection, table: str, columns: list[str]) -> Verdict:
    """None of ``columns`` is NULL."""
    counts = {
        c: con.execute(f"SELECT count(*) FROM {_quote(table)} WHERE {_quote(c)} IS NULL").fetchall()[0][0]
        for c in columns
    }
    bad = {c: int(n) for c, n in counts.items() if n}
    return Verdict(not bad, "no NULLs" if not bad else f"NULLs in {bad}", {f"nulls_{c}": int(n) for c, n in counts.items()})


def dense_id(con: duckdb.DuckDBPyConnection, table: str, column: str) -> Verdict:
    """``column`` takes exactly the values 0..n-1 once each (n = row count)."""
    n, lo, hi, distinct = con.execute(
        f"SELECT count(*), min({_quote(column)}), max({_quote(column)}), count(DISTINCT {_quote(column)}) FROM {_quote(table)}"
    ).fetchall()[0]
    ok = n == 0 or (lo == 0 and hi == n - 1 and distinct == n)
    return Verdict(
        ok,
        f"{column} spans {lo}..{hi} with {distinct} distinct values over {n} rows",
        {"rows": int(n), "min": int(lo if lo is not None else -1), "max": int(hi if hi is not None else -1), "distinct": int(distinct)},
    )


def no_rows(con: duckdb.DuckDBPyConnection, sql: str, what: str, params: list | None = None) -> Verdict:
    """Passes when ``sql`` (a count query) returns 0; ``what`` names the offending rows."""
    count = con.execute(sql, params or []).fetchall()[0][0]
    return Verdict(count == 0, f"{count} {what}", {"offending_rows": int(count)})
