"""Output plumbing: atomic (optionally gzip) file writers, TSV/CSV encoding, stale-file removal."""

from __future__ import annotations

import gzip as _gzip
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO


class _AtomicWriter:
    """Binary file written to a hidden temporary name in the same folder, renamed on close."""

    def __init__(self, path: Path, gzip_level: int | None = None):
        self.path = path
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._raw = open(self.tmp, "wb")
        self._gz: _gzip.GzipFile | None = None
        if gzip_level is not None:
            # mtime=0 and no file name: the same data gives the same bytes.
            self._gz = _gzip.GzipFile(filename="", mode="wb", fileobj=self._raw,
                                      compresslevel=gzip_level, mtime=0)
        self.handle: IO[bytes] = self._gz if self._gz is not None else self._raw

    def write(self, data: bytes) -> None:
        self.handle.write(data)

    def commit(self) -> Path:
        if self._gz is not None:
            self._gz.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            if self._gz is not None:
                self._gz.close()
            self._raw.close()
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "_AtomicWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def _write_bytes(path: Path, data: bytes, gzip_level: int | None = None) -> Path:
    with _AtomicWriter(path, gzip_level) as out:
        out.write(data)
    return path


def _tsv_rows(rows: Iterable[Sequence[object]]) -> bytes:
    return "".join("\t".join(str(v) for v in row) + "\n" for row in rows).encode("utf-8")


def _tsv(rows: Iterable[Sequence[object]], header: Sequence[str]) -> bytes:
    return ("\t".join(header) + "\n").encode("utf-8") + _tsv_rows(rows)


def _csv_field(value: str) -> str:
    if any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


_STALE_PATTERNS = ("mpd/mpd.slice.*.json", "mpd/mpd.slice.*.json.gz", "entp/train_triplets.txt",
                   "entp/train_triplets.txt.gz")


def _remove_stale(out: Path, paths: dict[str, list[Path]]) -> None:
    keep = {p.resolve() for v in paths.values() for p in v}
    for pattern in _STALE_PATTERNS:
        for p in out.glob(pattern):
            if p.resolve() not in keep:
                p.unlink()
