"""Safety (issue 10): no unsafe deserialization in the source tree, data never becomes SQL,
secrets never reach event logs or metadata, servers bind to 127.0.0.1, and failing writes
(disk full, unwritable target) error clearly and keep the previous artifact.

Covered elsewhere, not repeated here:
* idempotence of loading one partition twice: test_ingest.py
  ``test_reloading_a_slice_replaces_exactly_its_rows`` (and the CLI's full-pipeline rerun);
* a small memory budget processing in more blocks with identical results: test_labeling.py
  ``test_blocked_labeler_equals_dense_reference`` (block_size 1..1000) and
  ``test_results_do_not_depend_on_block_size_or_sharding``.
"""

from __future__ import annotations

import ast
import errno
import json
import os
import re
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pytest
import torch

from spotify_assets.defs.ingest.assets import entp_listens, mpd_slice_tables, msd_songs
from spotify_assets.defs.ingest.partitions import mpd_slices
from spotify_assets.defs.resources import build_resources
from spotify_assets.defs.sql.assets import sql_model_assets
from spotify_assets.ingest import list_mpd_slices
from spotify_assets.train.bpr import BPRNet, read_checkpoint, save_checkpoint
from spotify_assets.resources import PROJECT_ROOT, ArtifactStore, ExperimentTracker

SOURCE = PROJECT_ROOT / "spotify_assets"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}

# --------------------------------------------------------------------------------------
# unsafe deserialization
# --------------------------------------------------------------------------------------

# module -> functions that run pickled code when given a file or bytes
PICKLE_LOADERS = {
    "pickle": {"load", "loads", "Unpickler"}, "_pickle": {"load", "loads", "Unpickler"},
    "cPickle": {"load", "loads"}, "dill": {"load", "loads"}, "cloudpickle": {"load", "loads"},
    "joblib": {"load"}, "pandas": {"read_pickle"}, "shelve": {"open"}, "marshal": {"load", "loads"},
}


def _is_const(node: ast.AST | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


class UnsafeLoads(ast.NodeVisitor):
    """Finds pickle-style loads, ``np.load`` without ``allow_pickle=False`` and
    ``torch.load`` without ``weights_only=True``, following import aliases."""

    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}  # local name -> dotted origin
        self.problems: list[tuple[int, str]] = []

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def _origin(self, func: ast.AST) -> str:
        parts = []
        while isinstance(func, ast.Attribute):
            parts.append(func.attr)
            func = func.value
        if not isinstance(func, ast.Name):
            return ""
        parts.append(self.aliases.get(func.id, func.id))
        return ".".join(reversed(parts))

    def visit_Call(self, node: ast.Call) -> None:
        origin = self._origin(node.func)
        module, _, name = origin.rpartition(".")
        keywords = {k.arg: k.value for k in node.keywords}
        if name in PICKLE_LOADERS.get(module.split(".")[0], set()) and module.split(".")[0] in PICKLE_LOADERS:
            self.problems.append((node.lineno, f"{origin}(): unpickles"))
        elif origin in ("numpy.load", "np.load"):
            if not _is_const(keywords.get("allow_pickle"), False):
                self.problems.append((node.lineno, "numpy.load() without allow_pickle=False"))
        elif origin == "torch.load":
            if not _is_const(keywords.get("weights_only"), True):
                self.problems.append((node.lineno, "torch.load() without weights_only=True"))
        self.generic_visit(node)


def unsafe_loads(source: str) -> list[tuple[int, str]]:
    visitor = UnsafeLoads()
    visitor.visit(ast.parse(source))
    return visitor.problems


def test_scanner_finds_every_unsafe_form() -> None:
    bad = """
import pickle, numpy as np, torch
import pickle as pk
from pickle import loads
from torch import load as tload
from numpy import load
import pandas as pd
pickle.load(f); pk.loads(b); loads(b); np.load(p); np.load(p, allow_pickle=True); load(p)
torch.load(p); tload(p); torch.load(p, weights_only=False); pd.read_pickle(p)
"""
    assert len(unsafe_loads(bad)) == 10
    good = "import numpy as np, torch\nnp.load(p, allow_pickle=False)\ntorch.load(p, weights_only=True, map_location='cpu')\n"
    assert unsafe_loads(good) == []


def test_source_tree_has_no_unsafe_deserialization() -> None:
    files = sorted(SOURCE.rglob("*.py"))
    assert len(files) > 20
    problems = [f"{path.relative_to(PROJECT_ROOT)}:{line}: {what}"
                for path in files for line, what in unsafe_loads(path.read_text(encoding="utf-8"))]
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------
# bind addresses
# --------------------------------------------------------------------------------------

_SERVER_COMMAND = re.compile(r"(dagster(-webserver)?\s+dev|dagster-webserver|serving\s+serve|uvicorn|gunicorn|http\.server)")


def test_makefile_servers_bind_loopback() -> None:
    lines = (PROJECT_ROOT / "Makefile").read_text().splitlines()
    servers = [line for line in lines if _SERVER_COMMAND.search(line) and not line.lstrip().startswith("#")]
    assert any("dagster dev" in line for line in servers), "the dev target is gone: update this test"
    for line in servers:
        host = re.search(r"(?:--host|-h)[ =](\S+)", line)
        assert host and host.group(1) in LOOPBACK, f"server without a loopback --host: {line.strip()}"


class BindAddresses(ast.NodeVisitor):
    """String constants that bind every interface, and host/--host defaults that are not
    loopback."""

    def __init__(self) -> None:
        self.problems: list[tuple[int, str]] = []

    def visit_Constant(self, node: ast.Constant) -> None:
        if node.value in ("0.0.0.0", "::", "[::]"):
            self.problems.append((node.lineno, f"binds all interfaces: {node.value!r}"))

    def visit_Call(self, node: ast.Call) -> None:
        keywords = {k.arg: k.value for k in node.keywords}
        host = keywords.get("host")
        if isinstance(host, ast.Constant) and isinstance(host.value, str) and host.value not in LOOPBACK:
            self.problems.append((node.lineno, f"host={host.value!r}"))
        names = [a.value for a in node.args if isinstance(a, ast.Constant)]
        if "--host" in names and "default" in keywords:
            default = keywords["default"]
            if not (isinstance(default, ast.Constant) and default.value in LOOPBACK):
                self.problems.append((node.lineno, f"--host default {ast.unparse(default)}"))
        self.generic_visit(node)


def test_server_code_binds_loopback_by_default() -> None:
    probe = BindAddresses()
    probe.visit(ast.parse("uvicorn.run(app, host='0.0.0.0')\np.add_argument('--host', default=HOST)\n"))
    assert len(probe.problems) == 3  # the scanner itself can fail
    problems = []
    for path in [*sorted(SOURCE.rglob("*.py")), PROJECT_ROOT / "spotify_assets_tests" / "servers.py"]:
        visitor = BindAddresses()
        visitor.visit(ast.parse(path.read_text(encoding="utf-8")))
        problems += [f"{path.relative_to(PROJECT_ROOT)}:{line}: {what}" for line, what in visitor.problems]
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------
# SQL injection
# --------------------------------------------------------------------------------------

INJECTIONS = [
    "'); DROP TABLE x; --",
    '"); DROP TABLE mpd_playlists; --',
    "Robert'); DELETE FROM mpd_playlists WHERE ('1'='1",
    "' OR '1'='1",
    "$$; DROP TABLE x; $$",
    "?; -- ? $1 %s {name}",
    "\\'; DROP TABLE x; --",
]


def test_sql_injection_in_names_is_stored_verbatim(data_dir: Path) -> None:
    """Playlist, track and artist names that are SQL go through the ingest asset and every
    SQL model as data: stored verbatim, nothing dropped or deleted."""
    first = list_mpd_slices(data_dir / "raw" / "mpd")[0]
    document = json.loads(first.read_text(encoding="utf-8"))
    for i, text in enumerate(INJECTIONS):
        playlist = document["playlists"][i]
        playlist["name"] = text
        playlist["description"] = text
        playlist["tracks"][0]["track_name"] = text
        playlist["tracks"][0]["artist_name"] = text
    first.write_text(json.dumps(document, indent=4), encoding="utf-8")
    db = data_dir / "warehouse" / "spotify.duckdb"
    db.parent.mkdir(parents=True)
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE x AS SELECT 42 AS canary")

    keys = [p.name for p in list_mpd_slices(data_dir / "raw" / "mpd")]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(mpd_slices.name, keys)
        result = dg.materialize(
            [mpd_slice_tables, entp_listens, msd_songs, *sql_model_assets], resources=build_resources(data_dir),
            instance=instance,
            tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
        )
        assert result.success
    expected_playlists = sum(len(json.loads(p.read_text())["playlists"]) for p in list_mpd_slices(data_dir / "raw" / "mpd"))
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT canary FROM x").fetchall() == [(42,)]
        assert con.execute("SELECT count(*) FROM mpd_playlists").fetchall()[0][0] == expected_playlists
        for i, text in enumerate(INJECTIONS):
            pid = document["playlists"][i]["pid"]
            assert con.execute("SELECT name, description FROM mpd_playlists WHERE pid = ?", [pid]).fetchall() == [(text, text)]
            assert con.execute("SELECT name FROM stg_playlists WHERE pid = ?", [pid]).fetchall() == [(text,)]
            uri = document["playlists"][i]["tracks"][0]["track_uri"]
            names = con.execute("SELECT track_name, artist_name FROM stg_playlist_tracks WHERE pid = ? AND track_uri = ?",
                                [pid, uri]).fetchall()
            assert (text, text) in names
            assert con.execute("SELECT count(*) FROM track_dictionary WHERE track_uri = ?", [uri]).fetchall() == [(1,)]


# --------------------------------------------------------------------------------------
# secrets
# --------------------------------------------------------------------------------------

SECRET = "wandb-test-secret-" + "7f3c9a1e5b2d4c6a8e0f1a2b3c4d5e6f7a8b9c0d"


@dg.asset
def tracked_probe(tracker: ExperimentTracker) -> dg.MaterializeResult:
    """The smallest asset that uses the experiment tracker the way the training assets do."""
    with tracker.run("probe", {"lr": 0.1, "dim": 8}, group="probe") as run:
        run.log({"loss": 1.0})
        run.summary(val_mrr=0.5)
        location = run.location
    return dg.MaterializeResult(metadata={"wandb_run": dg.MetadataValue.path(location),
                                          "mode": tracker.effective_mode()})


def test_wandb_api_key_never_reaches_events_or_metadata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    tracker = ExperimentTracker(dir=str(tmp_path / "wandb"), mode="offline")
    with dg.instance_for_test() as instance:
        result = dg.materialize([tracked_probe], resources={"tracker": tracker}, instance=instance)
        assert result.success
        records = instance.all_logs(result.run_id)
        run = instance.get_run_by_id(result.run_id)
        dumped = "\n".join(dg.serialize_value(r) for r in records) + dg.serialize_value(run)
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["mode"].value == "offline" and Path(metadata["wandb_run"].value).exists()
    assert len(records) > 5 and "tracked_probe" in dumped  # the logs were really searched
    assert SECRET not in dumped
    assert SECRET not in json.dumps({k: str(v.value) for k, v in metadata.items()})
    # nor in the resource config Dagster records, nor in the offline run files
    assert SECRET not in repr(tracker)
    leaked = [p for p in (tmp_path / "wandb").rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert not leaked, f"the API key was written to {leaked}"


# --------------------------------------------------------------------------------------
# failing writes
# --------------------------------------------------------------------------------------


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture()
def store(tmp_path: Path) -> ArtifactStore:
    store = ArtifactStore(root=str(tmp_path / "artifacts"))
    store.save_arrays("m", "a.npz", x=np.arange(5))
    return store


def _only_the_artifact(folder: Path, name: str) -> None:
    assert sorted(p.name for p in folder.iterdir()) == [name], "a temp file was left behind"


def test_failed_rename_keeps_the_old_artifact(store: ArtifactStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "replace", _disk_full)
    with pytest.raises(OSError, match="No space left") as err:
        store.save_arrays("m", "a.npz", x=np.arange(7))
    assert err.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert store.load_arrays("m", "a.npz")["x"].tolist() == list(range(5))
    _only_the_artifact(store.path("m", "a.npz").parent, "a.npz")


def test_disk_full_mid_write_keeps_the_old_artifact(store: ArtifactStore, monkeypatch: pytest.MonkeyPatch) -> None:
    real_savez = np.savez

    def half_then_full(handle, **arrays):
        real_savez(handle, **arrays)
        handle.truncate(handle.tell() // 2)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", half_then_full)
    with pytest.raises(OSError, match="No space left"):
        store.save_arrays("m", "a.npz", x=np.arange(100_000))
    monkeypatch.undo()
    assert store.load_arrays("m", "a.npz")["x"].tolist() == list(range(5))
    _only_the_artifact(store.path("m", "a.npz").parent, "a.npz")


def test_artifact_root_under_a_file_errors_clearly(tmp_path: Path) -> None:
    """Not writable even as root: the root's parent is a regular file."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    store = ArtifactStore(root=str(blocker / "artifacts"))
    with pytest.raises((NotADirectoryError, FileExistsError)) as err:
        store.save_arrays("m", "a.npz", x=np.arange(3))
    assert "blocker" in str(err.value)
    assert blocker.read_text() == "a file, not a folder"


def test_read_only_folder_when_not_root(store: ArtifactStore) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores folder permissions; the os.replace and file-parent tests cover this")
    folder = store.path("m", "a.npz").parent
    folder.chmod(0o500)
    try:
        with pytest.raises(PermissionError):
            store.save_arrays("m", "a.npz", x=np.arange(7))
    finally:
        folder.chmod(0o700)
    assert store.load_arrays("m", "a.npz")["x"].tolist() == list(range(5))


def _net(value: float) -> BPRNet:
    net = BPRNet(4, 3, 2)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.fill_(value)
    return net


HPARAMS = {"n_users": 4, "n_playlists": 3, "dim": 2, "init_std": 0.1}


def test_checkpoint_write_failure_keeps_the_old_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "models" / "bpr.ckpt"
    save_checkpoint(path, _net(1.0), HPARAMS, epoch=1, val_recall=0.1)
    for target, fail in ((os, "replace"), (torch, "save")):
        with monkeypatch.context() as patch:
            patch.setattr(target, fail, _disk_full)
            with pytest.raises(OSError, match="No space left"):
                save_checkpoint(path, _net(2.0), HPARAMS, epoch=2, val_recall=0.2)
        checkpoint = read_checkpoint(path)
        assert checkpoint.epoch == 1 and torch.all(checkpoint.net.users.weight == 1.0)
        _only_the_artifact(path.parent, "bpr.ckpt")
