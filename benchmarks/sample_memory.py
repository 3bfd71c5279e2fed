"""Run a command and sample the summed PSS of its whole process tree while it runs.

``ru_maxrss`` (what each step's hook logs) sees one process; a Dagster run is a launcher, an
executor, a forkserver and up to ``max_concurrent`` step processes at once. Their summed PSS
(pages shared by forked processes counted once) is the run's real footprint. This writes one
line per sample (``elapsed_s pss_mb``) and a last ``# peak`` line that
``python -m benchmarks.run_report --memory-log`` reads back.

    python -m benchmarks.sample_memory --out benchmarks/results/full_pipeline_memory.log -- \\
        dagster job execute -m spotify_assets.definitions -j full_pipeline -c deploy/full_scale.yaml ...
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from benchmarks.harness import _tree_pss_kb

PEAK_LINE = re.compile(r"^# peak (?P<mb>[0-9.]+) MB at (?P<at>[0-9.]+) s of (?P<wall>[0-9.]+) s")


@dataclass(frozen=True)
class MemoryPeak:
    """The largest summed PSS sampled (MB), when (seconds after start), and the command's wall seconds."""

    peak_mb: float
    at_seconds: float
    wall_seconds: float
    interval: float


def sample(command: Sequence[str], out: Path, interval: float = 2.0) -> tuple[int, MemoryPeak]:
    """Run ``command``; every ``interval`` s append the tree's summed PSS to ``out``. Returns the
    command's exit code and the peak (the log ends with the ``# peak`` line)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    peak_kb, peak_at = 0, 0.0
    with out.open("w", encoding="utf-8") as log:
        log.write(f"# summed PSS of the process tree of: {' '.join(command)}\n# elapsed_s pss_mb\n")
        child = subprocess.Popen(list(command))
        while True:
            try:
                code = child.wait(timeout=interval)
                break
            except subprocess.TimeoutExpired:
                pass
            except KeyboardInterrupt:
                child.terminate()  # the run is stopped cleanly; the log keeps what was sampled
                code = child.wait()
                break
            pss = _tree_pss_kb(child.pid)
            elapsed = time.monotonic() - started
            if pss is not None:
                log.write(f"{elapsed:.0f} {pss / 1024:.0f}\n")
                log.flush()
                if pss > peak_kb:
                    peak_kb, peak_at = pss, elapsed
        wall = time.monotonic() - started
        peak = MemoryPeak(peak_kb / 1024, peak_at, wall, interval)
        log.write(f"# peak {peak.peak_mb:.0f} MB at {peak.at_seconds:.0f} s of {peak.wall_seconds:.0f} s "
                  f"(sampled every {interval:g} s); exit code {code}\n")
    return code, peak


def read_peak(path: Path) -> MemoryPeak | None:
    """The ``# peak`` line of a log written by :func:`sample` (None when the run never finished)."""
    for line in reversed(path.read_text(encoding="utf-8").splitlines()):
        match = PEAK_LINE.match(line)
        if match:
            interval = re.search(r"every ([0-9.]+) s", line)
            return MemoryPeak(float(match["mb"]), float(match["at"]), float(match["wall"]),
                              float(interval[1]) if interval else float("nan"))
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sample_memory", description=__doc__.split("\n\n")[0],
                                     epilog="Everything after -- is the command.")
    parser.add_argument("--out", type=Path, required=True, metavar="LOG", help="where the samples go")
    parser.add_argument("--interval", type=float, default=2.0, metavar="S", help="seconds between samples (2)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    if args.interval <= 0:
        parser.error("--interval must be positive")
    code, peak = sample(command, args.out, args.interval)
    print(f"summed PSS peak {peak.peak_mb:,.0f} MB at {peak.at_seconds:,.0f} s of {peak.wall_seconds:,.0f} s "
          f"-> {args.out}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
