"""A step's peak memory, as one line in the run's event log (no Dagster here).

Every job's steps end with a hook (``defs/jobs.py``) that logs :func:`peak_rss_message`; the run
report (``python -m benchmarks.run_report``) finds those lines again with
:func:`parse_peak_rss_message`. With the multiprocess executor each step runs in its own
process, so the value is that step's peak; a step forked from the executor's forkserver starts
with the server's resident pages (the preloaded modules), which are counted in it.
"""

from __future__ import annotations

import re

#: The log line a step's hook writes; ``{mb}`` is the peak in MB with one decimal.
PEAK_RSS_MESSAGE = "step peak RSS {mb:.1f} MB (ru_maxrss of the step's process, {outcome})"
_PEAK_RSS_PATTERN = re.compile(r"^step peak RSS (?P<mb>\d+(?:\.\d+)?) MB \(ru_maxrss of the step's process")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports ``ru_maxrss`` in KiB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def peak_rss_message(mb: float, outcome: str) -> str:
    """The log line for a step that ended with ``outcome`` ('success' or 'failure') at ``mb``."""
    return PEAK_RSS_MESSAGE.format(mb=mb, outcome=outcome)


def parse_peak_rss_message(message: str) -> float | None:
    """The MB value of a :func:`peak_rss_message` line, or None for any other message."""
    match = _PEAK_RSS_PATTERN.match(message or "")
    return float(match["mb"]) if match else None
