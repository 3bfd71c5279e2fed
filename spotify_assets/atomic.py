"""Atomic-write housekeeping shared by every writer (no Dagster here).

Writers put their bytes in ``.<name>.<pid>.tmp`` beside the target and rename it into place.
A writer killed before the rename leaves that temp file behind; the next write of the same
target removes temp files whose process is gone.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(target: Path) -> list[Path]:
    """Delete ``.<target name>.<pid>.tmp`` files next to ``target`` left by writers that died
    (SIGKILL, OOM) before their rename; a live writer's temp file is left alone."""
    removed = []
    for candidate in target.parent.glob(f".{target.name}.*.tmp"):
        match = _TEMP_NAME.match(candidate.name)
        if match and match["name"] == target.name and not _pid_alive(int(match["pid"])):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (the directory entry, not just the file data)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
