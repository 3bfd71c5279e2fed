"""Writers that test_kill.py runs in a subprocess and SIGKILLs mid-write.

Each writer produces one kind of output the platform persists. The subprocess does the
writer's initial rounds (the "previous good output"), prints ``ready``, then rewrites the
output forever, printing ``begin <k>`` / ``end <k>`` around each round, until killed:

    python -m spotify_assets_tests.kill_writers <writer> <out_dir> [--once]

``--once`` does the initial rounds and exits (the re-run after a kill).

To cover another output kind (e.g. the serving engineer's Annoy index), subclass
:class:`Writer` and add it to :data:`WRITERS`; test_kill.py parametrizes over that dict.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


class Writer:
    """One output kind. ``initial_rounds`` rounds make the good output; ``write`` does one
    complete (atomic) round; ``read`` returns a comparable summary of the output on disk
    and raises if it is unreadable or torn; ``progress`` changes while a write is under way
    (the test kills when it moves, to land inside a write)."""

    name = ""
    initial_rounds = 1
    # the output can be read while the writer process is alive (DuckDB: the file is locked)
    readable_while_writing = True

    def setup(self, out: Path) -> None:
        """Prepare inputs under ``out`` (called in the test process, before any run)."""

    def write(self, out: Path, round_: int) -> None:
        raise NotImplementedError

    def read(self, out: Path) -> object:
        raise NotImplementedError

    def progress(self, out: Path) -> tuple:
        return tuple(_sizes(self.temp_files(out)))

    def temp_files(self, out: Path) -> list[Path]:
        """Files a killed write may leave behind (never the output itself)."""
        return []


class NpzWriter(Writer):
    """ArtifactStore.save_arrays: an uncompressed .npz written to a temp name and renamed."""

    name = "npz_artifact"
    n = 6_000_000  # 48 MB of float64: a write takes long enough to be killed inside

    def _store(self, out: Path):
        from spotify_assets.resources import ArtifactStore

        return ArtifactStore(root=str(out / "artifacts"))

    def write(self, out: Path, round_: int) -> None:
        import numpy as np

        self._store(out).save_arrays("matrices", "m.npz", x=np.full(self.n, float(round_)),
                                     round=np.array([round_]))

    def read(self, out: Path) -> object:
        import numpy as np

        arrays = self._store(out).load_arrays("matrices", "m.npz")
        round_ = int(arrays["round"][0])
        x = arrays["x"]
        if x.shape != (self.n,) or not np.all(x == round_):
            raise AssertionError(f"torn npz: round {round_}, shape {x.shape}")
        return round_

    def temp_files(self, out: Path) -> list[Path]:
        return sorted((out / "artifacts" / "matrices").glob(".m.npz.*.tmp"))


class CheckpointWriter(Writer):
    """models.bpr.save_checkpoint: torch.save to a temp name, then os.replace."""

    name = "bpr_checkpoint"
    n_users, n_playlists, dim = 60_000, 10_000, 128  # ~36 MB of float32

    def _path(self, out: Path) -> Path:
        return out / "models" / "bpr.ckpt"

    def write(self, out: Path, round_: int) -> None:
        import torch

        from spotify_assets.train.bpr import BPRNet, save_checkpoint

        net = BPRNet(self.n_users, self.n_playlists, self.dim)
        with torch.no_grad():
            for parameter in net.parameters():
                parameter.fill_(float(round_))
        hparams = {"n_users": self.n_users, "n_playlists": self.n_playlists, "dim": self.dim, "init_std": 0.1}
        save_checkpoint(self._path(out), net, hparams, epoch=round_, val_recall=0.5)

    def read(self, out: Path) -> object:
        import torch

        from spotify_assets.train.bpr import read_checkpoint

        checkpoint = read_checkpoint(self._path(out))
        for name, parameter in checkpoint.net.state_dict().items():
            if not torch.all(parameter == float(checkpoint.epoch)):
                raise AssertionError(f"torn checkpoint: {name} does not match epoch {checkpoint.epoch}")
        return checkpoint.epoch

    def temp_files(self, out: Path) -> list[Path]:
        return sorted(self._path(out).parent.glob(".bpr.ckpt.*.tmp"))


class DuckDBSliceWriter(Writer):
    """ingest.load_mpd_slice: each round replaces one MPD slice partition in one transaction.
    The initial rounds load every slice once; later rounds reload them in turn, so every
    complete state equals a clean load of all slices."""

    name = "duckdb_mpd_partition"
    readable_while_writing = False

    def _slices(self, out: Path) -> list[Path]:
        from spotify_assets.ingest import list_mpd_slices

        return list_mpd_slices(out / "mpd")

    def setup(self, out: Path) -> None:
        from spotify_assets.synth import generate

        generate(out / "synth", scale="tiny", seed=0)
        (out / "mpd").mkdir()
        for path in self._slices(out / "synth"):
            (out / "mpd" / path.name).write_bytes(path.read_bytes())

    @property
    def initial_rounds(self) -> int:  # one per slice; tiny data has two
        return 2

    def write(self, out: Path, round_: int) -> None:
        import duckdb

        from spotify_assets.ingest import load_mpd_slice

        slices = self._slices(out)
        with duckdb.connect(str(out / "warehouse.duckdb")) as con:
            load_mpd_slice(con, slices[round_ % len(slices)])

    def read(self, out: Path) -> object:
        import duckdb

        with duckdb.connect(str(out / "warehouse.duckdb"), read_only=True) as con:
            return tuple(
                tuple(con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall())
                for table in ("mpd_playlists", "mpd_playlist_tracks")
            )

    def progress(self, out: Path) -> tuple:
        return tuple(_sizes([out / "warehouse.duckdb.wal", out / "warehouse.duckdb"]))

    def temp_files(self, out: Path) -> list[Path]:
        wal = out / "warehouse.duckdb.wal"
        return [wal] if wal.exists() else []


def _sizes(paths: list[Path]) -> list[tuple[str, int]]:
    sizes = []
    for path in paths:
        try:
            sizes.append((path.name, path.stat().st_size))
        except FileNotFoundError:  # renamed away between the listing and the stat
            pass
    return sizes


class AnnoyIndexWriter(Writer):
    """serving.index.build_annoy: the index is saved to a temp name and renamed into place."""

    name = "annoy_index"
    n, dim = 60_000, 32  # ~10 MB index with 20 trees: a save takes long enough to be killed inside

    def _vectors(self, round_: int):
        import numpy as np

        rng = np.random.default_rng(round_)
        vectors = rng.normal(size=(self.n, self.dim)).astype(np.float32)
        vectors[:, 0] = round_  # the round is readable back from any item
        return vectors

    def write(self, out: Path, round_: int) -> None:
        from spotify_assets.serving.index import build_annoy

        build_annoy(self._vectors(round_), out / "serve" / "index.ann", metric="euclidean", n_trees=20, seed=0)

    def read(self, out: Path) -> object:
        from spotify_assets.serving.index import load_annoy

        index = load_annoy(out / "serve" / "index.ann", self.dim, "euclidean")
        try:
            if index.get_n_items() != self.n:
                raise AssertionError(f"torn index: {index.get_n_items()} items")
            first, last = index.get_item_vector(0)[0], index.get_item_vector(self.n - 1)[0]
            if first != last:
                raise AssertionError(f"items from two rounds: {first} vs {last}")
            return int(first)
        finally:
            index.unload()

    def temp_files(self, out: Path) -> list[Path]:
        return sorted((out / "serve").glob(".index.ann.*.tmp"))


WRITERS: dict[str, Writer] = {w.name: w for w in (DuckDBSliceWriter(), NpzWriter(), CheckpointWriter(),
                                                  AnnoyIndexWriter())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("writer", choices=sorted(WRITERS))
    parser.add_argument("out", type=Path)
    parser.add_argument("--once", action="store_true", help="only the initial rounds, then exit")
    args = parser.parse_args(argv)
    writer = WRITERS[args.writer]
    for round_ in range(writer.initial_rounds):
        writer.write(args.out, round_)
    print("ready", flush=True)
    if args.once:
        return 0
    round_ = writer.initial_rounds
    while True:
        print(f"begin {round_}", flush=True)
        writer.write(args.out, round_)
        print(f"end {round_}", flush=True)
        round_ += 1


if __name__ == "__main__":
    sys.exit(main())
