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


# --------------------------------------------------------------------------------------
# nothing outside the contract: no file path declared elsewhere, no artifact dep as a string
# --------------------------------------------------------------------------------------

PACKAGE = Path(contract.__file__).parent
#: the top-level folders of the artifact store (prepare, label, ..., serve, online)
STORE_FOLDERS = {a.path[0] for a in contract.ALL.values()}
#: the declared files' names (not the folders of partitioned ones: "shards", "sweep" are words too)
FILE_NAMES = {a.name for a in (*contract.ALL.values(), *contract.MODEL_SUMMARIES.values()) if "." in a.name}
WRITERS = {a.asset for a in contract.ALL.values()} | {a.asset for a in contract.MODEL_SUMMARIES.values()}
#: (asset, dep) pairs where the dep names an artifact writer but the asset reads its DuckDB
#: tables, not its files: these stay table names
TABLE_DEPS = {
    ("serving_model", "model_leaderboard"),  # the model_leaderboard table picks the model
    ("canary_decision", "online_metrics"),  # a decision follows the online tables
}


def _modules(root: Path, skip: Path | None = None):
    import ast

    for path in sorted(root.rglob("*.py")):
        if path != skip:
            yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _is_path(parts: list) -> bool:
    """``("serve", "x.json")`` style: a store folder first, a file name (with a dot) last."""
    import ast

    strings = [p.value for p in parts if isinstance(p, ast.Constant) and isinstance(p.value, str)]
    return (len(parts) >= 2 and len(strings) == len(parts) and strings[0] in STORE_FOLDERS
            and "." in strings[-1])


def test_no_artifact_path_is_declared_outside_the_contract() -> None:
    """The package names an artifact's file only through its declaration: no path tuple such as
    ``("tracks", "two_tower.pt")``, no store path as call arguments, no bare declared file name."""
    import ast

    found = []
    for path, tree in _modules(PACKAGE, skip=PACKAGE / "contract.py"):
        where = path.relative_to(PACKAGE.parent)
        for node in ast.walk(tree):
            if isinstance(node, ast.Tuple) and _is_path(node.elts):
                found.append(f"{where}:{node.lineno}: tuple {ast.unparse(node)}")
            elif isinstance(node, ast.Call) and _is_path(node.args[:2]):
                found.append(f"{where}:{node.lineno}: call {ast.unparse(node)[:80]}")
            elif isinstance(node, ast.Constant) and node.value in FILE_NAMES:
                found.append(f"{where}:{node.lineno}: file name {node.value!r}")
    assert not found, "declare these in spotify_assets/contract.py and use the Artifact:\n" + "\n".join(found)


def _deps_literals():
    """(file, line, asset, dep) for each string in a literal ``deps=[...]`` of an asset or spec."""
    import ast

    for path, tree in _modules(PACKAGE / "defs"):
        owner_of = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                for decorator in node.decorator_list:
                    if isinstance(decorator, ast.Call):
                        names = [k.value.value for k in decorator.keywords
                                 if k.arg == "name" and isinstance(k.value, ast.Constant)]
                        owner_of[id(decorator)] = names[0] if names else node.name
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            owner = owner_of.get(id(node))
            if owner is None and node.args and isinstance(node.args[0], ast.Constant):
                owner = node.args[0].value  # dg.AssetSpec("key", ...)
            for keyword in node.keywords:
                if keyword.arg == "deps" and isinstance(keyword.value, ast.List):
                    for item in keyword.value.elts:
                        if isinstance(item, ast.Constant) and isinstance(item.value, str):
                            yield path.relative_to(PACKAGE.parent), item.lineno, owner, item.value


def test_artifact_dependencies_come_from_the_contract_not_strings() -> None:
    """A dependency on an asset that writes a declared artifact is ``deps(ARTIFACT, ...)``; a
    string in ``deps`` names a DuckDB table (or is listed in TABLE_DEPS with why)."""
    literals = list(_deps_literals())
    assert any(dep == "stg_playlists" for *_, dep in literals)  # the scan sees the table deps
    found = [f"{where}:{line}: {owner} deps on {dep!r}" for where, line, owner, dep in literals
             if dep in WRITERS and (owner, dep) not in TABLE_DEPS]
    assert not found, "use contract.deps(ARTIFACT) for these:\n" + "\n".join(found)
    unused = TABLE_DEPS - {(owner, dep) for _, _, owner, dep in literals}
    assert not unused, f"TABLE_DEPS lists pairs no asset declares any more: {sorted(unused)}"


def test_serving_and_track_readers_depend_on_the_writers_of_what_they_read() -> None:
    graph = defs.resolve_asset_graph()

    def upstream(key: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey(key)).parent_keys}

    read_by_serving_model = deps(contract.BPR_CHECKPOINT, contract.ALS, contract.SONG_RANKER, contract.POPULARITY,
                                 contract.INTERACTIONS, contract.NEIGHBORS, USER_SONG, contract.PLAYLIST_SONG)
    assert upstream("serving_model") & WRITERS == {*read_by_serving_model, "model_leaderboard"}
    assert upstream("playlist_index") == upstream("user_index") == {"serving_model"}
    assert upstream("recommendations") == {"playlist_index"}  # through the index's .json, written last
    assert upstream("track_index") == {"track_embeddings"}
    assert {"track_embeddings", "two_tower_model"} <= upstream("playlist_continuation_eval")
    assert {"track_embeddings", "track_index"} <= upstream("similar_tracks")


def test_a_serving_bundle_is_one_folder_and_the_service_reads_it_through_the_declarations(tmp_path: Path) -> None:
    assert {a.path[:-1] for a in contract.BUNDLE_FILES} == {contract.BUNDLE_DIR}
    assert contract.BUNDLE_FILES[-1] is contract.PLAYLIST_INDEX_INFO  # written last: the service reloads on it
    assert contract.DEPLOYED.under(tmp_path, piece="b1") == tmp_path / "serve" / "deployed" / "b1"
    # the ranker's weights in a bundle are the song ranker's arrays, prefixed
    assert {n for n in contract.BUNDLE.optional if n.startswith(contract.RANKER_PREFIX)} == {
        contract.RANKER_PREFIX + n for n in contract.SONG_RANKER.arrays}
    store = ArtifactStore(root=str(tmp_path))
    store.write(contract.TRACK_EMBEDDINGS, vectors=np.eye(3, dtype=np.float32), track_ids=np.arange(3))
    loaded = contract.TRACK_EMBEDDINGS.load(contract.TRACK_EMBEDDINGS.under(tmp_path), "track_ids")
    assert set(loaded) == {"track_ids"} and loaded["track_ids"].tolist() == [0, 1, 2]
    with pytest.raises(KeyError, match="declares no arrays"):
        contract.TRACK_EMBEDDINGS.load(contract.TRACK_EMBEDDINGS.under(tmp_path), "scores")
    with pytest.raises(FileNotFoundError, match="materialize its asset first"):
        contract.BUNDLE.load(contract.BUNDLE.under(tmp_path))
    with pytest.raises(ValueError, match="'vectors' is float64, declared float32"):
        store.write(contract.TRACK_EMBEDDINGS, vectors=np.eye(3), track_ids=np.arange(3))
