"""The stage contract: every artifact declared once, checked on write, read array by array."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from spotify_assets import contract
from spotify_assets.contract import LABEL_SHARDS, OWNERSHIP, SONG_COUNTS, SPLITS, USER_SONG, Artifact, deps
from spotify_assets.definitions import defs
from spotify_assets.resources import ArtifactStore


def test_every_artifact_names_an_asset_of_the_project_and_a_unique_path() -> None:
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    for name, artifact in contract.ALL.items():
        assert artifact.asset in keys, f"{name}: no asset {artifact.asset!r}"
    paths = [a.path for a in contract.ALL.values()]
    assert len(paths) == len(set(paths)), "two declarations of one file"


def test_asset_dependencies_come_from_the_artifacts_they_read() -> None:
    graph = defs.resolve_asset_graph()

    def upstream(key: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey(key)).parent_keys}

    assert {"liked_playlists", "song_counts"} <= upstream("user_splits")
    assert {"liked_playlists", "user_splits", "playlist_ownership", "feedback_positives"} <= upstream(
        "training_interactions")
    assert deps(SPLITS, OWNERSHIP, SPLITS) == ["user_splits", "playlist_ownership"]


def test_write_checks_names_and_dtypes_and_read_loads_only_what_is_asked(tmp_path: Path) -> None:
    store = ArtifactStore(root=str(tmp_path))
    with pytest.raises(ValueError, match=r"needs arrays \['cold'\]"):
        store.write(SPLITS, split=np.zeros(3, np.int8))
    with pytest.raises(ValueError, match="'split' is int64, declared int8"):
        store.write(SPLITS, split=np.zeros(3, np.int64), cold=np.zeros(2, bool))
    with pytest.raises(KeyError, match="declares no arrays"):
        store.write(SPLITS, split=np.zeros(3, np.int8), cold=np.zeros(2, bool), extra=np.zeros(1))
    assert not store.has(SPLITS)  # nothing was written by a refused call
    store.write(SPLITS, split=np.array([0, 1, 2], np.int8), cold=np.array([True, False]))
    assert store.read(SPLITS, "cold")["cold"].tolist() == [True, False]
    assert set(store.read(SPLITS, "cold")) == {"cold"}
    with pytest.raises(KeyError, match="declares no arrays"):
        store.read(SPLITS, "owner")
    # "int" accepts any integer width (ownership is int32 at one scale, int64 at another)
    store.write(OWNERSHIP, owner=np.array([-1, 0], np.int32), owned_counts=np.array([1], np.int64))
    with pytest.raises(ValueError, match="not named arrays"):
        store.read(USER_SONG)
    with pytest.raises(ValueError, match="one file, not a folder"):
        SONG_COUNTS.piece("x.npz")
    assert LABEL_SHARDS.piece("000-010.npz") == ("label", "shards", "000-010.npz")


def test_a_declaration_rejects_arrays_for_a_non_npz_file() -> None:
    with pytest.raises(ValueError, match="csr file"):
        Artifact("user_song_matrix", ("prepare", "x.npz"), "csr").check_arrays({"a": np.zeros(1)})
