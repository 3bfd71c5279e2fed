"""The contract between stages: every artifact one stage hands to another, declared once.

An :class:`Artifact` says which asset writes it, where it lives under the artifact store,
its format, and for ``.npz`` files the arrays it holds with their dtypes. Writers call
``store.write(ARTIFACT, **arrays)`` (checked against the declaration: nothing missing,
nothing undeclared, the declared dtypes), readers ``store.read(ARTIFACT, "name", ...)``,
which loads only the arrays asked for; asset dependencies come from :func:`deps` on the
artifacts an asset reads, so a dependency and the file it stands for cannot drift apart.

No Dagster here: the service, the CLIs and the benchmarks use the same declarations
through :class:`~spotify_assets.paths`' store root (:meth:`Artifact.under` for a local
folder, :meth:`Artifact.load` for an ``.npz`` file in it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: dtype specs: a numpy dtype name, or "int" / "float" for any width of that kind
_KINDS = {"int": "iu", "float": "f"}


@dataclass(frozen=True)
class Artifact:
    """One hand-off file.

    Attributes
    ----------
    asset : the asset (key) that writes it.
    path : its place under the artifact store, e.g. ``("label", "labels.npz")``.
    format : "npz" (named arrays), "csr" (a scipy CSR matrix), "pt" (a torch weights file),
        "json", "png", "ann" (an Annoy index), "parquet", "folder" (pieces that are folders).
    arrays : for "npz": array name -> dtype spec (a numpy dtype name, or "int"/"float" for
        any width); the arrays every writer must provide.
    optional : "npz" arrays a writer may leave out.
    partitioned : one file per piece (a label shard, a sweep trial): ``path`` is the folder
        and :meth:`piece` names a file in it.
    description : what it holds, for people.
    """

    asset: str
    path: tuple[str, ...]
    format: str = "npz"
    arrays: Mapping[str, str] = field(default_factory=dict)
    optional: Mapping[str, str] = field(default_factory=dict)
    partitioned: bool = False
    description: str = ""

    @property
    def name(self) -> str:
        """The file's name: where it lies in any folder holding a copy (a deployed serving bundle)."""
        return self.path[-1]

    def piece(self, name: str) -> tuple[str, ...]:
        """The path of one piece of a partitioned artifact."""
        if not self.partitioned:
            raise ValueError(f"{self.asset}'s {'/'.join(self.path)} is one file, not a folder of pieces")
        return (*self.path, name)

    def under(self, root: Path | str, piece: str | None = None) -> Path:
        """Its path under a local artifacts folder ``root`` (readers without an artifact store:
        the service, the CLIs, tests)."""
        return Path(root).joinpath(*(self.piece(piece) if piece is not None else self.path))

    def load(self, path: Path | str, *names: str) -> dict[str, np.ndarray]:
        """The arrays ``names`` (every stored one when none is named) of this ``.npz`` artifact
        from the local file ``path`` (pickle disabled); the others are never read."""
        if self.format != "npz":
            raise ValueError(f"{'/'.join(self.path)} is a {self.format} file, not named arrays")
        self.check_names(names)
        return load_npz(path, names or None)

    def check_names(self, names: tuple[str, ...]) -> None:
        """KeyError naming the artifact for array names it does not declare."""
        unknown = sorted(set(names) - set(self.arrays) - set(self.optional))
        if unknown:
            raise KeyError(f"{'/'.join(self.path)} (from {self.asset}) declares no arrays {unknown}; "
                           f"it has {sorted({**self.arrays, **self.optional})}")

    def check_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """ValueError when ``arrays`` miss a declared array, add an undeclared one or have
        another dtype than declared."""
        if self.format != "npz":
            raise ValueError(f"{'/'.join(self.path)} is a {self.format} file, not named arrays")
        missing = sorted(set(self.arrays) - set(arrays))
        if missing:
            raise ValueError(f"{'/'.join(self.path)} (from {self.asset}) needs arrays {missing}")
        self.check_names(tuple(arrays))
        specs = {**self.arrays, **self.optional}
        for name, value in arrays.items():
            if not _dtype_matches(np.asarray(value).dtype, specs[name]):
                raise ValueError(f"{'/'.join(self.path)}: array {name!r} is {np.asarray(value).dtype}, "
                                 f"declared {specs[name]}")


def load_npz(path: Path | str, names: tuple[str, ...] | None = None, where: str | None = None
             ) -> dict[str, np.ndarray]:
    """Read an uncompressed ``.npz`` (pickle disabled): every array, or only ``names`` (members
    load lazily, so at full scale a step reading a third of labels.npz reads a third of it).
    FileNotFoundError / KeyError name ``where`` (default: the path)."""
    where = where or str(path)
    if not Path(path).exists():
        raise FileNotFoundError(f"artifact {where} is missing: materialize its asset first")
    with np.load(path, allow_pickle=False) as data:
        missing = sorted(set(names or ()) - set(data.files))
        if missing:
            raise KeyError(f"artifact {where} has no arrays {missing}: re-materialize its asset")
        return {name: data[name] for name in (names if names is not None else data.files)}


def _dtype_matches(dtype: np.dtype, spec: str) -> bool:
    if spec in _KINDS:
        return dtype.kind in _KINDS[spec]
    return dtype == np.dtype(spec)


def deps(*artifacts: Artifact) -> list[str]:
    """The asset keys of the artifacts an asset reads (its ``deps``), in order, no repeats."""
    return list(dict.fromkeys(a.asset for a in artifacts))


# --------------------------------------------------------------------------------------
# prepare
# --------------------------------------------------------------------------------------

USER_SONG = Artifact("user_song_matrix", ("prepare", "user_song.npz"), "csr",
                     description="binary float32 CSR (n_users x n_songs): matched songs per user")
PLAYLIST_SONG = Artifact("playlist_song_matrix", ("prepare", "playlist_song.npz"), "csr",
                         description="binary float32 CSR (n_playlists x n_songs): matched songs per playlist")
SONG_COUNTS = Artifact("song_counts", ("prepare", "song_counts.npz"), arrays={"s": "int32", "p": "int32"},
                       description="s(u) songs per user, p(j) songs per playlist")

# --------------------------------------------------------------------------------------
# label
# --------------------------------------------------------------------------------------

EXPLORATION = Artifact("exploration_coefficients", ("label", "exploration.npz"), arrays={"e": "float64"},
                       description="e(u) ~ Beta(1.3, 3.3), one per user, in user-id order")
_LABEL_ARRAYS = {"n_scored": "int", "liked_indptr": "int64", "liked_playlists": "int", "liked_scores": "float",
                 "hard_indptr": "int64", "hard_playlists": "int"}
_LABEL_OPTIONAL = {"hard_pool_sizes": "int", "ownership_users": "int", "ownership_priorities": "float"}
LABELS = Artifact("liked_playlists", ("label", "labels.npz"), arrays=_LABEL_ARRAYS, optional=_LABEL_OPTIONAL,
                  description="per user the liked playlists (CSR, score order) and the hard-negative pool; per "
                              "playlist its ownership candidates")
LABEL_SHARDS = Artifact("liked_playlists", ("label", "shards"), arrays=_LABEL_ARRAYS, optional=_LABEL_OPTIONAL,
                        partitioned=True, description="one labels file per user shard, merged into labels.npz")

# --------------------------------------------------------------------------------------
# split
# --------------------------------------------------------------------------------------

SPLITS = Artifact("user_splits", ("split", "user_splits.npz"), arrays={"split": "int8", "cold": "bool"},
                  description="split code per liked pair (0 train, 1 val, 2 test); cold flag per user")
OWNERSHIP = Artifact("playlist_ownership", ("split", "ownership.npz"), arrays={"owner": "int", "owned_counts": "int"},
                     description="owning user per playlist (-1 none); playlists owned per user")
INTERACTIONS = Artifact("training_interactions", ("split", "training_interactions.npz"),
                        arrays={"indptr": "int64", "indices": "int32", "shape": "int64"},
                        description="binary CSR of train likes, feedback likes and owned playlists: all any "
                                    "model learns from")
_EVAL = {f"{which}_{name}": dtype for which in ("val", "test")
         for name, dtype in (("users", "int64"), ("positives", "int64"), ("negatives", "int64"), ("cold", "bool"))}
EVAL_BATCHES = Artifact("eval_batches", ("split", "eval_batches.npz"), arrays=_EVAL,
                        description="1 held-out positive + 50 sampled negatives per row (the sampled metric)")
FEEDBACK_POSITIVES = Artifact("feedback_positives", ("split", "feedback_positives.npz"),
                              arrays={"users": "int64", "playlists": "int64", "negative_indptr": "int64",
                                      "negatives": "int64", "up_to_feedback_id": "int64"},
                              description="likes from the service as dense (user, playlist) pairs, shown-not-"
                                          "liked playlists as their negatives")

# --------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------

BPR_SWEEP_TRIALS = Artifact("bpr_sweep", ("train", "sweep"), "pt", partitioned=True,
                            description="one BPR checkpoint per sweep trial")
BPR_SWEEP_BEST = Artifact("bpr_sweep", ("train", "bpr_sweep_best.json"), "json",
                          description="the best trial's settings and checkpoint name")
BPR_CHECKPOINT = Artifact("bpr_model", ("train", "bpr.pt"), "pt",
                          description="BPR weights + hyperparameters (torch.load(weights_only=True))")
NEIGHBORS = Artifact("user_neighbors", ("train", "user_neighbors.npz"),
                     arrays={"neighbors": "int32", "similarities": "float32"},
                     description="top-k song-cosine neighbours per user (-1 pads)")
POPULARITY = Artifact("popularity_model", ("train", "popularity.npz"), arrays={"scores": "float32"},
                      description="interactions per playlist")
ALS = Artifact("als_model", ("train", "als.npz"), arrays={"user_factors": "float32", "item_factors": "float32"},
               description="ALS factors (users without interactions folded in)")
SONG_RANKER = Artifact("song_ranker", ("train", "song_ranker.npz"),
                       arrays={"feature_mean": "float32", "feature_std": "float32", "user_embeddings": "float32",
                               "w0": "float32", "b0": "float32", "w1": "float32", "b1": "float32",
                               "w2": "float32", "b2": "float32"},
                       description="the song ranker's MLP weights and per-user embeddings")
#: model name -> its training summary (train seconds, validation metric, leak-free)
MODEL_SUMMARIES = {model: Artifact(asset, ("train", f"{model}.json"), "json",
                                   description=f"{model}'s training summary")
                   for model, asset in (("popularity", "popularity_model"), ("als", "als_model"),
                                        ("knn", "user_neighbors"), ("bpr", "bpr_model"),
                                        ("song_ranker", "song_ranker"))}

# --------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------

LEADERBOARD_PLOT = Artifact("model_leaderboard", ("evaluate", "leaderboard.png"), "png",
                            description="test Recall@10 / NDCG@10 per model and segment")

# --------------------------------------------------------------------------------------
# tracks
# --------------------------------------------------------------------------------------

TRACK_EMBEDDINGS = Artifact("track_embeddings", ("tracks", "track_embeddings.npz"),
                            arrays={"vectors": "float32", "track_ids": "int64"},
                            description="item2vec (or PPMI + SVD) vectors, L2-normalised, one row per embedded "
                                        "track; track_ids are dense ids of track_dictionary")
TRACK_MAP_PLOT = Artifact("track_embedding_map", ("tracks", "track_embedding_map.png"), "png",
                          description="the most popular tracks on 2 principal components, by playlist-name genre")
TWO_TOWER = Artifact("two_tower_model", ("tracks", "two_tower.pt"), "pt",
                     description="two-tower weights, vocabulary, track features and names "
                                 "(torch.load(weights_only=True)); served by POST /api/playlist/continue")

# --------------------------------------------------------------------------------------
# serve: the serving bundle (one folder: serve/, or a deployed copy), the indexes, the rollout
# --------------------------------------------------------------------------------------

_VECTOR_ARRAYS = {"user_vectors": "float32", "playlist_vectors": "float32", "indexed_playlists": "int64"}
#: prefix of the song ranker's weight arrays inside the serving bundle
RANKER_PREFIX = "ranker_"
_RANKER_ARRAYS = {**{f"{RANKER_PREFIX}{name}": dtype for name, dtype in SONG_RANKER.arrays.items()},
                  "neighbors": "int32", "similarities": "float32"}
_SONG_ARRAYS = {f"{which}_song_{part}": dtype for which in ("user", "playlist")
                for part, dtype in (("indptr", "int64"), ("indices", "int32"))}
BUNDLE = Artifact("serving_model", ("serve", "serving_model.npz"),
                  arrays={"excluded_indptr": "int64", "excluded": "int64", "cold_start": "bool",
                          "popular": "int64", "popular_scores": "float32"},
                  optional={**_VECTOR_ARRAYS, **_RANKER_ARRAYS, **_SONG_ARRAYS},
                  description="what the service scores with: per-user exclusions (CSR), cold-start flag, popularity "
                              "list; vectors with the bias folded in (kind vectors) or the song ranker's weights "
                              "and neighbours (kind song_ranker); the user-song / playlist-song matrices")
BUNDLE_INFO = Artifact("serving_model", ("serve", "serving_model.json"), "json",
                       description="the bundle's model, kind, bundle id, version and sizes")
BUNDLE_PLAYLISTS = Artifact("serving_model", ("serve", "playlists.parquet"), "parquet",
                            description="pid and name per playlist, dense order")
BUNDLE_USERS = Artifact("serving_model", ("serve", "users.parquet"), "parquet",
                        description="user_id per user, dense order")
BUNDLE_PLAYLIST_TRACKS = Artifact("serving_model", ("serve", "playlist_tracks.parquet"), "parquet",
                                  description="the first tracks of each playlist (what the page shows)")
BUNDLE_SONGS = Artifact("serving_model", ("serve", "songs.parquet"), "parquet",
                        description="name per song column of the song matrices")


def _annoy_index(asset: str, over: str, info: str = "") -> tuple[Artifact, Artifact]:
    """An index asset's ``serve/<asset>.ann`` and the ``.json`` it writes after it."""
    return (Artifact(asset, ("serve", f"{asset}.ann"), "ann", description=f"Annoy {over}"),
            Artifact(asset, ("serve", f"{asset}.json"), "json",
                     description=f"metric, settings, measured recall and speeds{info}"))


PLAYLIST_INDEX, PLAYLIST_INDEX_INFO = _annoy_index(
    "playlist_index", "(dot) over the bundle's indexed playlist vectors",
    "; the bundle id it was built for; written last (the service reloads on it)")
USER_INDEX, USER_INDEX_INFO = _annoy_index("user_index", "(angular) over the bundle's user vectors",
                                           "; the bundle id it was built for")
TRACK_INDEX, TRACK_INDEX_INFO = _annoy_index("track_index", "(angular) over the track embeddings, item i = row i")
ROLLOUT = Artifact("serving_rollout", ("serve", "rollout.json"), "json",
                   description="champion, canary candidate and its share of users, history; canary_decision "
                               "rewrites it")
DEPLOYED = Artifact("serving_rollout", ("serve", "deployed"), "folder", partitioned=True,
                    description="one immutable copy of the bundle's files per bundle id")
#: the files of one serving bundle, in the folder they share (``serve/`` or a deployed copy), the index last
BUNDLE_FILES = (BUNDLE, BUNDLE_INFO, BUNDLE_PLAYLISTS, BUNDLE_USERS, BUNDLE_PLAYLIST_TRACKS, BUNDLE_SONGS,
                PLAYLIST_INDEX, PLAYLIST_INDEX_INFO)
#: the folder of the flat serving bundle under the artifact store
BUNDLE_DIR = BUNDLE.path[:-1]

# --------------------------------------------------------------------------------------
# online
# --------------------------------------------------------------------------------------

ONLINE_PLOT = Artifact("online_metrics", ("online", "online_metrics.png"), "png",
                       description="like-rate per version and day, feedback volume (the UI's dashboard)")

#: every declared artifact, by its module-level name (documentation, tests)
ALL: dict[str, Artifact] = {name: value for name, value in dict(globals()).items() if isinstance(value, Artifact)}
