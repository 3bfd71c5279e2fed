"""ArtifactStore and JsonIOManager at an fsspec URL: what one writer publishes, another
process's cache sees, stale caches are refreshed, and a local root behaves as before."""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg
import fsspec
import numpy as np
import pytest

from spotify_assets.resources import ArtifactStore, JsonIOManager


@pytest.fixture(params=["memory", "file"])
def store_url(request, tmp_path: Path) -> str:
    if request.param == "memory":
        return f"memory://artifacts-{uuid.uuid4().hex}"
    return (tmp_path / "store").as_uri()


def _pair(url: str, tmp_path: Path) -> tuple[ArtifactStore, ArtifactStore]:
    """Two stores on one URL with separate caches: two machines of a cluster."""
    return (ArtifactStore(root=url, cache_dir=str(tmp_path / "cache_a")),
            ArtifactStore(root=url, cache_dir=str(tmp_path / "cache_b")))


def test_arrays_written_by_one_cache_are_read_by_another(store_url: str, tmp_path: Path) -> None:
    writer, reader = _pair(store_url, tmp_path)
    assert writer.is_remote
    assert not reader.exists("label", "labels.npz")
    with pytest.raises(FileNotFoundError, match="materialize its asset first"):
        reader.load_arrays("label", "labels.npz")

    writer.save_arrays("label", "labels.npz", liked=np.arange(5, dtype=np.int32))
    assert reader.exists("label", "labels.npz")
    np.testing.assert_array_equal(reader.load_arrays("label", "labels.npz")["liked"], np.arange(5))
    # the object is in the store, not only in the writer's cache
    fs, base = fsspec.core.url_to_fs(store_url)
    assert fs.exists(f"{base}/label/labels.npz")
    assert writer.url("label", "labels.npz") == f"{store_url}/label/labels.npz"

    # a rewrite (another size) reaches the reader's stale cached copy
    writer.save_arrays("label", "labels.npz", liked=np.arange(9, dtype=np.int32))
    np.testing.assert_array_equal(reader.load_arrays("label", "labels.npz")["liked"], np.arange(9))
    # same bytes twice: served from the cache without a download
    cached = reader.path("label", "labels.npz")
    before = cached.stat().st_mtime_ns
    assert reader.path("label", "labels.npz") == cached and cached.stat().st_mtime_ns == before


def test_files_written_through_path_need_publish(store_url: str, tmp_path: Path) -> None:
    writer, reader = _pair(store_url, tmp_path)
    checkpoint = writer.path("train", "bpr.pt")
    checkpoint.write_bytes(b"weights-1")
    assert not reader.exists("train", "bpr.pt")  # written locally only
    assert writer.publish("train", "bpr.pt") == f"{store_url}/train/bpr.pt"
    assert reader.path("train", "bpr.pt").read_bytes() == b"weights-1"

    with writer.atomic_path("serve", "serving_model.json") as tmp:
        tmp.write_text("{}")
    writer.path("serve", "index.ann").write_bytes(b"\x00" * 10)
    writer.publish("serve", "index.ann")
    folder = reader.sync_down("serve")
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["index.ann",
                                                                                      "serving_model.json"]
    assert folder == reader.local_root() / "serve"


def test_local_root_is_unchanged(tmp_path: Path) -> None:
    store = ArtifactStore(root=str(tmp_path / "artifacts"))
    assert not store.is_remote
    path = store.save_arrays("split", "x.npz", a=np.ones(3))
    assert path == tmp_path / "artifacts" / "split" / "x.npz" and path.exists()
    assert store.publish("split", "x.npz") == str(path)
    assert store.url("split", "x.npz") == str(path)
    assert store.sync_down("split") == tmp_path / "artifacts" / "split"
    assert not list((tmp_path / "artifacts" / "split").glob(".*"))  # no temp or stamp files left


def test_json_hand_offs_at_a_url(store_url: str) -> None:
    manager = JsonIOManager(root=f"{store_url}/_op_outputs")
    output = dg.build_output_context(step_key="label_shard", name="result", run_id="r1")
    manager.handle_output(output, {"start": 0, "stop": 7})
    loaded = manager.load_input(dg.build_input_context(upstream_output=output))
    assert loaded == {"start": 0, "stop": 7}
    fs, base = fsspec.core.url_to_fs(store_url)
    assert len(fs.glob(f"{base}/_op_outputs/*.json")) == 1


def test_load_only_the_named_arrays(tmp_path: Path) -> None:
    store = ArtifactStore(root=str(tmp_path / "artifacts"))
    store.save_arrays("label", "labels.npz", liked=np.arange(4), scores=np.ones(4), hard=np.zeros(2))
    assert sorted(store.load_arrays("label", "labels.npz")) == ["hard", "liked", "scores"]
    picked = store.load_arrays("label", "labels.npz", names=("liked", "hard"))
    assert list(picked) == ["liked", "hard"]
    np.testing.assert_array_equal(picked["liked"], np.arange(4))
    with pytest.raises(KeyError, match="ownership_users"):
        store.load_arrays("label", "labels.npz", names=("liked", "ownership_users"))
