"""Atomic writes shared by every writer (no Dagster here).

:func:`atomic_write` is the one way a file (or a folder) is replaced: the new content goes to
``.<name>.<pid>.tmp`` beside the target and is renamed into place, so a reader sees the
previous complete version or the new complete one, never a torn one. A writer killed before
the rename leaves that temp behind; the next write of the same target removes temps whose
process is gone (:func:`remove_stale_temps`).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
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


def _remove(path: Path) -> None:
    """Delete a temp file or temp folder if it is there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale_temps(target: Path) -> list[Path]:
    """Delete ``.<target name>.<pid>.tmp`` files (or folders) next to ``target`` left by writers
    that died (SIGKILL, OOM) before their rename; a live writer's temp is left alone."""
    removed = []
    for candidate in target.parent.glob(f".{target.name}.*.tmp"):
        match = _TEMP_NAME.match(candidate.name)
        if match and match["name"] == target.name and not _pid_alive(int(match["pid"])):
            _remove(candidate)
            removed.append(candidate)
    return removed


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (the directory entry, not just the file data)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: Path | str, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write the new content to; on normal exit it
    replaces ``path`` atomically.

    The temp is ``.<name>.<pid>.tmp`` in the same folder (so the rename never crosses file
    systems and :func:`remove_stale_temps` recognises it); the folder is created if needed
    and stale temps of dead writers of ``path`` are removed first. The block writes the temp
    however it likes (``open``, ``np.savez``, ``torch.save``, a library's ``save``); it must
    create it. On normal exit the temp is fsynced, ``os.replace``\\ d over ``path`` and the
    folder fsynced, so the new version survives a crash. If the block raises, the temp is
    removed and ``path`` keeps its previous content (or stays absent).

    ``directory=True``: the temp is an empty folder, created before the block, for the
    block to fill; it is renamed into place the same way. ``os.replace`` cannot put a folder
    over a non-empty one, so ``path`` must then be absent (or an empty folder).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    _remove(tmp)  # an earlier process with our pid may have left one
    try:
        if directory:
            tmp.mkdir()
        yield tmp
        if directory:
            fsync_dir(tmp)
        else:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        _remove(tmp)  # nothing there after a successful rename
