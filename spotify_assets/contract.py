"""The contract between stages: every artifact one stage hands to another, declared once.

An :class:`Artifact` says which asset writes it, where it lives under the artifact store,
its format, and for ``.npz`` files the arrays it holds with their dtypes. Writers call
``store.write(ARTIFACT, **arrays)`` (checked against the declaration: nothing missing,
nothing undeclared, the declared dtypes), readers ``store.read(ARTIFACT, "name", ...)``,
which loads only the arrays asked for; asset dependencies come from :func:`deps` on the
artifacts an asset reads, so a dependency and the file it stands for cannot drift apart.

No Dagster here: the service, the CLIs and the benchmarks use the same declarations
through :class:`~spotify_assets.paths`' store root.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

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
        "json", "png", "ann" (an Annoy index), "parquet".
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

    def piece(self, name: str) -> tuple[str, ...]:
        """The path of one piece of a partitioned artifact."""
        if not self.partitioned:
            raise ValueError(f"{self.asset}'s {'/'.join(self.path)} is one file, not a folder of pieces")
        return (*self.path, name)

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

#: every declared artifact, by its module-level name (documentation, tests)
ALL: dict[str, Artifact] = {name: value for name, value in dict(globals()).items() if isinstance(value, Artifact)}
