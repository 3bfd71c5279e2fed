"""Deterministic ids: Spotify URIs, MSD song/track ids and ENTP user ids.

Each id is a bijective hash of a dense index (keyed by the seed), so ids are unique by
construction and the same index always gets the same id, whatever file it is written to.
"""

from __future__ import annotations

import numpy as np

from spotify_assets.synth.params import _S_IDS


_BASE62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8)
_HEX = np.frombuffer(b"0123456789ABCDEF", np.uint8)
_HEX_LOWER = np.frombuffer(b"0123456789abcdef", np.uint8)
_UPPER = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", np.uint8)


def _keys(seed: int, kind: int, n: int = 4) -> np.ndarray:
    return np.random.SeedSequence(seed, spawn_key=(_S_IDS, kind)).generate_state(n, np.uint64)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: a bijection of uint64 that looks random."""
    x = x.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _digits(x: np.ndarray, base: int, width: int) -> np.ndarray:
    """(n, width) most-significant-first digits of uint64 ``x`` in ``base``."""
    out = np.empty((x.shape[0], width), np.uint8)
    x = x.copy()
    b = np.uint64(base)
    for k in range(width - 1, -1, -1):
        out[:, k] = (x % b).astype(np.uint8)
        x //= b
    return out


def _as_str(codes: np.ndarray) -> list[str]:
    """Rows of an (n, w) uint8 ASCII array as Python strings."""
    codes = np.ascontiguousarray(codes)
    return codes.view(f"S{codes.shape[1]}").ravel().astype(f"U{codes.shape[1]}").tolist()


def _prefixed(prefix: bytes, body: np.ndarray) -> list[str]:
    head = np.broadcast_to(np.frombuffer(prefix, np.uint8), (body.shape[0], len(prefix)))
    return _as_str(np.hstack([head, body]))


def spotify_ids(index: np.ndarray, seed: int, kind: int) -> np.ndarray:
    """(n, 22) base62 codes of Spotify-like ids for dense ``index`` (unique per ``kind``)."""
    k = _keys(seed, kind)
    idx = index.astype(np.uint64)
    hi = _mix64(idx ^ k[0])
    lo = _mix64(idx ^ k[1])  # bijective in idx, so ids are unique
    return _BASE62[np.hstack([_digits(hi, 62, 11), _digits(lo, 62, 11)])]


def spotify_uris(kind: str, index: np.ndarray, seed: int) -> list[str]:
    """``spotify:<kind>:<22 base62>`` for each dense index."""
    code = {"track": 1, "artist": 2, "album": 3}[kind]
    return _prefixed(f"spotify:{kind}:".encode(), spotify_ids(index, seed, code))


def msd_ids(prefix: str, index: np.ndarray, seed: int) -> list[str]:
    """MSD-style ids (``SOAKIMP12A8C130995``): prefix + 5 letters + ``12`` + 9 hex digits.

    The hex part is an affine bijection of the index modulo 16**9, so ids are unique.
    """
    k = _keys(seed, 10 if prefix == "SO" else 11)
    idx = index.astype(np.uint64)
    mod = np.uint64(16**9)
    body = (idx * np.uint64(0x9E3779B1) + (k[0] % mod)) % mod  # odd multiplier: bijective
    letters = _UPPER[_digits(_mix64(idx ^ k[1]), 26, 5)]
    hexpart = _HEX[_digits(body, 16, 9)]
    mid = np.broadcast_to(np.frombuffer(b"12", np.uint8), (idx.shape[0], 2))
    return _prefixed(prefix.encode(), np.hstack([letters, mid, hexpart]))


def user_ids(index: np.ndarray, seed: int) -> list[str]:
    """40 lowercase hex characters per user (like the real ENTP ids), unique by construction."""
    k = _keys(seed, 12)
    idx = index.astype(np.uint64)
    a = _mix64(idx ^ k[0])  # bijective
    b = _mix64(idx ^ k[1])
    c = _mix64(idx ^ k[2]) >> np.uint64(32)
    return _as_str(_HEX_LOWER[np.hstack([_digits(a, 16, 16), _digits(b, 16, 16), _digits(c, 16, 8)])])
