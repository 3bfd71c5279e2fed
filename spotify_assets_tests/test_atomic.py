"""Tests of :func:`spotify_assets.atomic.atomic_write` and the stale-temp clean-up it relies on."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spotify_assets.atomic import atomic_write, remove_stale_temps


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    return int(child.stdout)


def test_file_appears_whole_and_only_on_exit(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "model.bin"  # the folder is created
    with atomic_write(target) as tmp:
        assert tmp.parent == target.parent and tmp.name == f".model.bin.{os.getpid()}.tmp"
        with open(tmp, "wb") as handle:
            handle.write(b"first half ")
            assert not target.exists(), "the target must not appear before the block ends"
            handle.write(b"second half")
    assert target.read_bytes() == b"first half second half"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.bin"]


def test_replaces_previous_content(tmp_path: Path) -> None:
    target = tmp_path / "rollout.json"
    target.write_text("old")
    with atomic_write(target) as tmp:
        tmp.write_text("new")
        assert target.read_text() == "old"
    assert target.read_text() == "new"


def test_failure_inside_the_block_keeps_the_previous_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "m.npz"
    target.write_bytes(b"complete old version")
    with pytest.raises(RuntimeError, match="writer crashed"):
        with atomic_write(target) as tmp:
            tmp.write_bytes(b"torn new ver")
            raise RuntimeError("writer crashed")
    assert target.read_bytes() == b"complete old version"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def test_failure_without_a_previous_file_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "index.ann"
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(target) as tmp:
            tmp.write_bytes(b"partial")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_failed_rename_removes_the_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a.json"
    target.write_text("old")

    def disk_full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        with atomic_write(target) as tmp:
            tmp.write_text("new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_block_that_writes_nothing_fails_and_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    target.write_text("old")
    with pytest.raises(FileNotFoundError):
        with atomic_write(target):
            pass
    assert target.read_text() == "old"


def test_stale_temps_of_dead_writers_are_removed_live_ones_kept(tmp_path: Path) -> None:
    target = tmp_path / "bpr.ckpt"
    dead = tmp_path / f".bpr.ckpt.{_dead_pid()}.tmp"
    dead.write_bytes(b"left by a killed writer")
    dead_dir = tmp_path / f".bpr.ckpt.{_dead_pid()}.tmp"
    if dead_dir != dead:  # a folder left by a killed directory writer is removed too
        dead_dir.mkdir()
        (dead_dir / "part").write_bytes(b"x")
    live = tmp_path / f".bpr.ckpt.{os.getppid()}.tmp"  # our parent is alive
    live.write_bytes(b"someone is writing")
    other = tmp_path / f".other.{_dead_pid()}.tmp"  # another target's temp
    other.write_bytes(b"not ours")
    with atomic_write(target) as tmp:
        tmp.write_bytes(b"new")
    assert not dead.exists() and not dead_dir.exists()
    assert live.exists() and other.exists()
    assert target.read_bytes() == b"new"
    assert remove_stale_temps(target) == []


def test_directory_variant(tmp_path: Path) -> None:
    target = tmp_path / "deployed" / "bundle-1"
    with atomic_write(target, directory=True) as tmp:
        assert tmp.is_dir() and list(tmp.iterdir()) == []
        (tmp / "model.npz").write_bytes(b"weights")
        (tmp / "info.json").write_text("{}")
        assert not target.exists()
    assert sorted(p.name for p in target.iterdir()) == ["info.json", "model.npz"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["bundle-1"]


def test_directory_variant_failure_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "bundle-2"
    with pytest.raises(ValueError, match="wrong bundle"):
        with atomic_write(target, directory=True) as tmp:
            (tmp / "model.npz").write_bytes(b"weights")
            raise ValueError("wrong bundle")
    assert list(tmp_path.iterdir()) == []


def test_directory_variant_cannot_replace_a_non_empty_folder(tmp_path: Path) -> None:
    target = tmp_path / "bundle-3"
    target.mkdir()
    (target / "keep").write_text("complete")
    with pytest.raises(OSError):
        with atomic_write(target, directory=True) as tmp:
            (tmp / "new").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle-3"]
    assert (target / "keep").read_text() == "complete"


def test_leftover_temp_of_our_own_pid_is_replaced(tmp_path: Path) -> None:
    """A temp with our pid (pid reuse, or an earlier crash of this process) never leaks into
    the new version: the block starts from a fresh temp."""
    target = tmp_path / "shards"
    leftover = tmp_path / f".shards.{os.getpid()}.tmp"
    leftover.mkdir()
    (leftover / "stale_part").write_text("old")
    with atomic_write(target, directory=True) as tmp:
        assert list(tmp.iterdir()) == []
        (tmp / "part").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["part"]
