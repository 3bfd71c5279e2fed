"""The labels of all users: concatenation, merge of shards, and the streamed merge of shard files."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np
from spotify_assets.label.ownership import OwnershipCandidates
from spotify_assets.label.kernel import LabelBlock


# --------------------------------------------------------------------------------------
# all users
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Labels:
    """Labels for all users, concatenated from blocks (same fields as :class:`LabelBlock`),
    plus the merged per-playlist ownership candidates (None when not computed)."""

    n_scored: np.ndarray
    liked_indptr: np.ndarray
    liked_playlists: np.ndarray
    liked_scores: np.ndarray
    hard_indptr: np.ndarray
    hard_playlists: np.ndarray
    scored_pairs: int
    seconds: float
    hard_pool_sizes: np.ndarray | None = None
    ownership: OwnershipCandidates | None = field(default=None, repr=False)

    @property
    def n_users(self) -> int:
        return int(self.n_scored.size)

    def liked_users(self) -> np.ndarray:
        """User id of every liked pair (int32, aligned with liked_playlists)."""
        return np.repeat(np.arange(self.n_users, dtype=np.int32), np.diff(self.liked_indptr))

    def arrays(self, include_optional: bool = False) -> dict[str, np.ndarray]:
        """The label arrays by name (for ``np.savez``). ``include_optional`` adds
        ``hard_pool_sizes`` and the ownership candidates (``ownership_users``,
        ``ownership_priorities``) when present."""
        out = {
            "n_scored": self.n_scored,
            "liked_indptr": self.liked_indptr,
            "liked_playlists": self.liked_playlists,
            "liked_scores": self.liked_scores,
            "hard_indptr": self.hard_indptr,
            "hard_playlists": self.hard_playlists,
        }
        if include_optional and self.hard_pool_sizes is not None:
            out["hard_pool_sizes"] = self.hard_pool_sizes
        if include_optional and self.ownership is not None:
            out.update(self.ownership.arrays())
        return out


def concat_blocks(blocks: list[LabelBlock], seconds: float = 0.0,
                  ownership: OwnershipCandidates | None = None) -> Labels:
    """Join consecutive blocks (sorted by start) into one :class:`Labels`."""
    blocks = sorted(blocks, key=lambda blk: blk.start)
    for previous, current in zip(blocks, blocks[1:]):
        if previous.stop != current.start:
            raise ValueError(f"blocks are not contiguous: {previous.stop} != {current.start}")

    def indptr(parts: list[np.ndarray]) -> np.ndarray:
        out = [np.zeros(1, dtype=np.int64)]
        offset = 0
        for part in parts:
            out.append(part[1:] + offset)
            offset += int(part[-1])
        return np.concatenate(out)

    def cat(name: str, dtype) -> np.ndarray:
        return np.concatenate([getattr(blk, name) for blk in blocks]) if blocks else np.zeros(0, dtype)

    pools = [blk.hard_pool_sizes for blk in blocks]
    return Labels(
        n_scored=cat("n_scored", np.int32),
        liked_indptr=indptr([blk.liked_indptr for blk in blocks]),
        liked_playlists=cat("liked_playlists", np.int32),
        liked_scores=cat("liked_scores", np.float64),
        hard_indptr=indptr([blk.hard_indptr for blk in blocks]),
        hard_playlists=cat("hard_playlists", np.int32),
        scored_pairs=sum(blk.scored_pairs for blk in blocks),
        seconds=seconds,
        hard_pool_sizes=None if any(pool is None for pool in pools) else cat("hard_pool_sizes", np.int32),
        ownership=ownership,
    )


def merge_labels(parts: list[Labels]) -> Labels:
    """Join :func:`label_users` results of consecutive user ranges (shards), given in user
    order: rows concatenate, ownership candidates merge (exact top k of the union), scored
    pairs and seconds add up."""
    blocks, start = [], 0
    for part in parts:
        blocks.append(LabelBlock(start=start, stop=start + part.n_users, n_scored=part.n_scored,
                                 liked_indptr=part.liked_indptr, liked_playlists=part.liked_playlists,
                                 liked_scores=part.liked_scores, hard_indptr=part.hard_indptr,
                                 hard_playlists=part.hard_playlists, scored_pairs=part.scored_pairs,
                                 hard_pool_sizes=part.hard_pool_sizes))
        start += part.n_users
    owned = [part.ownership for part in parts if part.ownership is not None]
    if owned and len(owned) != len(parts):
        raise ValueError("either every shard or none carries ownership candidates")
    ownership = None
    if owned:
        ownership = OwnershipCandidates.from_arrays(owned[0].users, owned[0].priorities)
        for other in owned[1:]:
            ownership.merge(other)
    return concat_blocks(blocks, seconds=sum(part.seconds for part in parts), ownership=ownership)


_INDPTR_ARRAYS = ("liked_indptr", "hard_indptr")
_OWNERSHIP_ARRAYS = ("ownership_users", "ownership_priorities")


def _merged_ownership(readers: list, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Shards' ownership candidates merged as :func:`merge_labels` merges them (exact top k
    of the union per playlist, shard after shard), ``chunk`` playlists at a time: every step
    of the merge is row-wise, so the chunked result is the same, with transients bounded
    by the chunk."""
    users = [r["ownership_users"] for r in readers]
    priorities = [r["ownership_priorities"] for r in readers]
    out_users, out_priorities = np.empty_like(users[0]), np.empty_like(priorities[0])
    for lo in range(0, users[0].shape[0], chunk):
        hi = min(lo + chunk, users[0].shape[0])
        merged = OwnershipCandidates.from_arrays(users[0][lo:hi], priorities[0][lo:hi])
        for u, p in zip(users[1:], priorities[1:]):
            merged.merge(OwnershipCandidates.from_arrays(u[lo:hi], p[lo:hi]))
        out_users[lo:hi], out_priorities[lo:hi] = merged.users, merged.priorities
    return out_users, out_priorities


def merge_label_files(shards: Sequence[Path | str], out: Path | str, chunk_playlists: int = 1 << 16) -> dict:
    """Merge label shard files (``np.savez`` of :meth:`Labels.arrays`, consecutive user ranges
    given in user order) into ``out``, array by array.

    ``out`` is byte for byte the ``np.savez`` of ``merge_labels(shards).arrays(...)`` with the
    shards' optional arrays, but memory holds one array at a time (its shard parts and the
    result) instead of every shard plus the merged copy: at full scale (1M users, 365M liked
    pairs) that is ~3 GB instead of ~13 GB.

    Returns the summary a merge step reports: users, users_with_liked, liked_pairs,
    hard_pool_entries, n_scored_median, ownership_k (0 without ownership arrays).
    """
    if not shards:
        raise ValueError("no label shards to merge")
    readers = [np.load(path, allow_pickle=False) for path in shards]
    try:
        names = list(readers[0].files)
        for path, reader in zip(shards, readers):
            if list(reader.files) != names:
                raise ValueError(f"label shard {path} has arrays {reader.files}, expected {names}")
        summary: dict = {"ownership_k": 0}
        ownership = _merged_ownership(readers, chunk_playlists) if _OWNERSHIP_ARRAYS[0] in names else None
        # the layout np.savez writes: stored (uncompressed) zip64 members "<name>.npy"
        with zipfile.ZipFile(out, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name in names:
                if name in _OWNERSHIP_ARRAYS:
                    array = ownership[_OWNERSHIP_ARRAYS.index(name)]
                    summary["ownership_k"] = int(array.shape[1])
                elif name in _INDPTR_ARRAYS:
                    parts, offset = [np.zeros(1, dtype=np.int64)], 0
                    for reader in readers:
                        part = reader[name]
                        parts.append(part[1:] + offset)
                        offset += int(part[-1])
                    array = np.concatenate(parts)
                    if name == "liked_indptr":
                        summary["users_with_liked"] = int((np.diff(array) > 0).sum())
                else:
                    array = np.concatenate([reader[name] for reader in readers])
                    if name == "n_scored":
                        summary["users"] = int(array.size)
                        summary["n_scored_median"] = float(np.median(array)) if array.size else 0.0
                    elif name == "liked_playlists":
                        summary["liked_pairs"] = int(array.size)
                    elif name == "hard_playlists":
                        summary["hard_pool_entries"] = int(array.size)
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)
                del array
    finally:
        for reader in readers:
            reader.close()
    return summary


