"""The BPR SGD kernel in C (``bpr_kernel.c``), built for this machine's CPU and loaded with ctypes.

Why C and not torch ops: a BPR step is random row fetches from tables far bigger than the
caches. The torch ops (``FusedBPRStep``) make separate passes (gather, elementwise,
``index_add_``) with a per-row dispatch in ``index_add_``; TorchInductor fuses the
arithmetic but still gathers and scatters through generic loops and gave nothing on AVX2
CPUs. The C loop fetches each row once, writes it once, prefetches the rows of the next
triplets, and is compiled with ``-O3 -march=native`` by the machine's own compiler, so it
uses whatever vector unit the CPU has.

Build: ``cc -O3 -march=native -shared -fPIC`` (``-march=native`` dropped where the compiler
does not know it; ``$SPOTIFY_ASSETS_KERNEL_MARCH`` names another target, e.g. ``x86-64-v3``
to measure what an AVX2-only CPU gets), ~0.3 s, once per (source, compiler, CPU, target) into
``$SPOTIFY_ASSETS_KERNEL_CACHE`` (default ``~/.cache/spotify_assets/kernels``; the temp
folder when that is not writable), written atomically so concurrent processes can share it.
No compiler, or a failed build: :func:`load_bpr_kernel` returns None with the reason in
:func:`build_error`, and callers fall back to the torch step (and
``InteractionSet.contains`` to ``np.searchsorted``).

Also here: the membership test of the negative draws (``csr_contains``) and hard-negative
mining (``mine_rows``), which the kernel runs before each minibatch it steps.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SOURCE = Path(__file__).with_name("bpr_kernel.c")
_FLAGS = ("-O3", "-fPIC", "-shared", "-fno-math-errno")
_lock = threading.Lock()
_loaded: dict[str, object] = {}


def kernel_cache_dir() -> Path:
    """Folder the built kernels are kept in (``$SPOTIFY_ASSETS_KERNEL_CACHE`` or
    ``~/.cache/spotify_assets/kernels``)."""
    env = os.environ.get("SPOTIFY_ASSETS_KERNEL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "spotify_assets" / "kernels"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_signature() -> str:
    """Model name and flags of this CPU: a kernel built with -march=native only runs here."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [line for line in text.splitlines() if line.split(":")[0].strip() in ("model name", "flags", "Features")]
    return "\n".join(dict.fromkeys(keep))


@dataclass(frozen=True)
class HardMining:
    """What the kernel's hard-negative mining reads: the training interactions as
    ``keys`` int64 (nnz,) sorted ``user * n_playlists + playlist`` and ``indptr`` int64
    (n_users + 1,) (an :class:`~spotify_assets.train.negatives.InteractionSet`), ``top``
    candidates checked best first, ``buffer`` int64 of at least 3 * batch elements."""

    keys: np.ndarray
    indptr: np.ndarray
    top: int
    buffer: torch.Tensor


class BPRKernel:
    """ctypes handle of ``bpr_sgd_minibatches`` (see ``bpr_kernel.c``)."""

    def __init__(self, path: Path, flags: tuple[str, ...]):
        self.path = path
        self.flags = flags
        lib = ctypes.CDLL(str(path))  # ctypes releases the GIL during the call
        fn = lib.bpr_sgd_minibatches
        fn.restype = ctypes.c_double
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
                       ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_float, ctypes.c_float,
                       ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                       ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        contains = lib.csr_contains
        contains.restype = None
        contains.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                             ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
        self._fn = fn
        self._contains = contains
        self._lib = lib

    def contains(self, keys: np.ndarray, indptr: np.ndarray, n_playlists: int, users: np.ndarray,
                 playlists: np.ndarray) -> np.ndarray:
        """bool array (broadcast shape of users and playlists): is (user, playlist) one of the
        interactions? ``keys`` int64 (nnz,) sorted ``user * n_playlists + playlist``,
        ``indptr`` int64 (n_users + 1,) each user's range in ``keys`` (an
        :class:`~spotify_assets.train.negatives.InteractionSet`). Ids out of range: False."""
        users, playlists = np.broadcast_arrays(np.asarray(users, np.int64), np.asarray(playlists, np.int64))
        users, playlists = np.ascontiguousarray(users), np.ascontiguousarray(playlists)
        keys, indptr = np.ascontiguousarray(keys, np.int64), np.ascontiguousarray(indptr, np.int64)
        out = np.empty(users.shape, np.uint8)
        if out.size:
            self._contains(keys.ctypes.data, indptr.ctypes.data, indptr.size - 1, n_playlists, users.ctypes.data,
                           playlists.ctypes.data, out.size, out.ctypes.data)
        return out.view(bool)

    def minibatches(self, W: torch.Tensor, H: torch.Tensor, b: torch.Tensor, rows: torch.Tensor, batch: int,
                    lr: float, reg: float, scratch: torch.Tensor, mine: HardMining | None = None) -> float:
        """Apply consecutive minibatch SGD updates, in place.

        Parameters
        ----------
        W : float32 (n_users, d), H : float32 (n_playlists, d), b : float32 (n_playlists,);
            C-contiguous CPU tensors (``b`` may be the column view ``bias.weight[:, 0]``).
        rows : int64 (n, c >= 3) C-contiguous CPU tensor; columns 0-2 are (user, positive,
            negative), further columns are ignored.
        batch : minibatch size; the rows are taken ``batch`` at a time, the last minibatch may
            be shorter; each minibatch's gradients are taken at its starting parameters.
        lr, reg : SGD step and L2 weight.
        scratch : float32 CPU tensor of at least ``3 * batch * d + batch`` elements.
        mine : hard mining (:class:`HardMining`): ``rows`` are (user, positive, fallback, K
            candidates), and before each minibatch its negatives are mined with the weights
            as they are then (``BPRModule.mine``'s rule); None: the rows are triplets.

        Returns
        -------
        float: the summed BPR loss ``softplus(-x)`` over the rows (at each minibatch's
        starting parameters). IndexError on an id out of range (minibatches before it are
        applied).
        """
        d = W.shape[1]
        for name, t in (("W", W), ("H", H)):
            if t.dtype != torch.float32 or t.device.type != "cpu" or not t.is_contiguous():
                raise ValueError(f"{name} must be a contiguous float32 CPU tensor")
        if H.shape[1] != d or b.dtype != torch.float32 or b.stride() != (1,) or b.shape[0] != H.shape[0]:
            raise ValueError("b must be float32 (n_playlists,) with stride 1, H (n_playlists, d)")
        if rows.dtype != torch.int64 or rows.ndim != 2 or rows.shape[1] < 3 or not rows.is_contiguous():
            raise ValueError("rows must be a contiguous int64 (n, >= 3) tensor")
        if scratch.dtype != torch.float32 or scratch.numel() < 3 * batch * d + batch:
            raise ValueError("scratch too small")
        n = rows.shape[0]
        if n == 0:
            return 0.0
        k, top, keys, indptr, mined = 0, 0, None, None, None
        if mine is not None:
            k, top = rows.shape[1] - 3, mine.top
            if k < 1 or k > 256 or mine.keys.dtype != np.int64 or mine.indptr.dtype != np.int64 \
                    or mine.indptr.size != W.shape[0] + 1 or not (mine.keys.flags.c_contiguous
                                                                   and mine.indptr.flags.c_contiguous):
                raise ValueError("hard mining needs 1-256 candidate columns and int64 contiguous keys/indptr "
                                 "of n_users + 1 rows")
            if mine.buffer.dtype != torch.int64 or mine.buffer.numel() < 3 * batch:
                raise ValueError("mining buffer too small")
            keys, indptr, mined = mine.keys.ctypes.data, mine.indptr.ctypes.data, mine.buffer.data_ptr()
        result = self._fn(W.data_ptr(), H.data_ptr(), b.data_ptr(), d, rows.data_ptr(), rows.shape[1], n, batch,
                          lr, reg, scratch.data_ptr(), W.shape[0], H.shape[0], k, top, keys, indptr, mined)
        if result < 0:
            bad = int(-1 - result)
            raise IndexError(f"row {bad} of the minibatches has an id out of range: {rows[bad, :3].tolist()} "
                             f"(users < {W.shape[0]}, playlists < {H.shape[0]})")
        return result


def _march() -> str:
    """``-march`` value: ``$SPOTIFY_ASSETS_KERNEL_MARCH`` (e.g. ``x86-64-v3`` to build as for an
    AVX2-only CPU, ``x86-64`` for SSE2 only) or ``native``."""
    return os.environ.get("SPOTIFY_ASSETS_KERNEL_MARCH", "").strip() or "native"


def _build(cc: str, out: Path) -> tuple[str, ...]:
    errors = []
    for arch in ((f"-march={_march()}",), ()):
        flags = (*_FLAGS, *arch)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            target = Path(tmp) / out.name
            proc = subprocess.run([cc, *flags, str(SOURCE), "-o", str(target), "-lm"], capture_output=True,
                                  text=True, timeout=120)
            if proc.returncode == 0:
                out.with_suffix(".flags").write_text(" ".join(flags))  # before the .so appears
                os.replace(target, out)
                return flags
            errors.append(proc.stderr.strip()[-400:])
    raise RuntimeError("; ".join(errors))


_error: str | None = None


def build_error() -> str | None:
    """Why the last :func:`load_bpr_kernel` returned None (None when it did not)."""
    return _error


def load_bpr_kernel() -> BPRKernel | None:
    """The kernel, built on first use (cached on disk per source, compiler and CPU); None
    when it cannot be built here (no C compiler, not an OS that loads ``.so`` files, a
    failed build), see :func:`build_error`."""
    global _error
    with _lock:
        if "kernel" in _loaded:
            return _loaded["kernel"]  # type: ignore[return-value]
        kernel = None
        try:
            cc = _compiler()
            if cc is None:
                raise RuntimeError("no C compiler (cc, gcc or clang) on PATH")
            version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
            key = hashlib.sha256("\0".join((SOURCE.read_text(), cc, version, _cpu_signature(), *_FLAGS, _march()))
                                 .encode()).hexdigest()[:16]
            folder = kernel_cache_dir()
            try:
                folder.mkdir(parents=True, exist_ok=True)
                if not os.access(folder, os.W_OK):
                    raise PermissionError(folder)
            except OSError:  # a read-only home (containers): the temp folder
                folder = Path(tempfile.gettempdir()) / f"spotify_assets_kernels_{os.getuid()}"
                folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"bpr_kernel-{key}.so"
            flags_file = path.with_suffix(".flags")
            if not path.exists():
                _build(cc, path)
            flags = tuple(flags_file.read_text().split()) if flags_file.exists() else _FLAGS
            kernel = BPRKernel(path, flags)
            _error = None
        except Exception as exc:  # any failure means: use the torch step
            _error = f"{type(exc).__name__}: {exc}"[:600]
        _loaded["kernel"] = kernel
        return kernel
