"""Output plumbing: atomic (optionally gzip) file writers, TSV/CSV encoding, stale-file removal."""

from __future__ import annotations

import gzip as _gzip
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from spotify_assets.atomic import atomic_write


@contextmanager
def _atomic_file(path: Path, gzip_level: int | None = None) -> Iterator[IO[bytes]]:
    """A binary handle (gzip-compressing with ``gzip_level``) whose bytes replace ``path``
    atomically when the ``with`` block ends normally and are discarded if it raises."""
    with atomic_write(path) as tmp, open(tmp, "wb") as raw:
        if gzip_level is None:
            yield raw
        else:
            # mtime=0 and no file name: the same data gives the same bytes.
            with _gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=gzip_level, mtime=0) as gz:
                yield gz


def _write_bytes(path: Path, data: bytes, gzip_level: int | None = None) -> Path:
    with _atomic_file(path, gzip_level) as out:
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
