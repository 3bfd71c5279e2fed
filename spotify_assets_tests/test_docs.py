"""The documentation cannot go stale: its generated parts equal what the definitions give now.

``docs/asset_graph.md``, the generated blocks of ``docs/architecture.md`` and
``docs/asset_graph.png`` come from ``python -m spotify_assets.defs.graph --out docs``. A new or
renamed asset, check, job, sensor or contract artifact fails here until that command is run.
"""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import pytest

from spotify_assets.defs import graph

DOCS = Path(__file__).resolve().parents[1] / "docs"
REGENERATE = f"run `{graph.COMMAND}` and commit docs/"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def info() -> graph.GraphInfo:
    return graph.collect()


def _first_difference(expected: str, actual: str) -> str:
    for number, (want, got) in enumerate(zip(expected.splitlines(), actual.splitlines()), start=1):
        if want != got:
            return f"first difference at line {number}:\n  generated: {want}\n  committed: {got}"
    return f"the generated text has {len(expected.splitlines())} lines, the committed one {len(actual.splitlines())}"


def test_generated_text_equals_the_committed_docs(info: graph.GraphInfo, tmp_path: Path) -> None:
    shutil.copy(DOCS / graph.ARCHITECTURE_MD, tmp_path / graph.ARCHITECTURE_MD)  # its hand-written parts
    written = graph.write_docs(tmp_path, info, png=False)
    assert {p.name for p in written} == {graph.GRAPH_MD, graph.ARCHITECTURE_MD}
    for name in (graph.GRAPH_MD, graph.ARCHITECTURE_MD):
        generated = (tmp_path / name).read_text(encoding="utf-8")
        committed = (DOCS / name).read_text(encoding="utf-8")
        assert generated == committed, f"docs/{name} is stale: {REGENERATE}. {_first_difference(generated, committed)}"
    assert graph.stale_files(DOCS, info) == [], REGENERATE


def test_generated_text_covers_every_asset_check_and_artifact(info: graph.GraphInfo) -> None:
    from spotify_assets import contract

    text = (DOCS / graph.GRAPH_MD).read_text(encoding="utf-8")
    architecture = (DOCS / graph.ARCHITECTURE_MD).read_text(encoding="utf-8")
    assert "```mermaid\nflowchart LR\n" in text
    for node in info.nodes.values():
        assert f'        {node.key}["{node.key}"]' in text, node.key
        assert f"| `{node.key}` | {node.group} |" in text, node.key
        for check, _ in node.checks:
            assert f"`{check}`" in text, (node.key, check)
    for upstream, downstream in info.edges:
        assert f"\n{upstream} -> {downstream}\n" in text
        assert f"    {upstream} --> {downstream}\n" in text
    for name, artifact in contract.ALL.items():
        assert f"| `{name}` | `{artifact.asset}` |" in architecture, name
    for job in info.jobs:
        assert f"| `{job.name}` |" in architecture, job.name


def test_output_is_deterministic(info: graph.GraphInfo) -> None:
    again = graph.collect()
    assert graph.render_asset_graph_md(info) == graph.render_asset_graph_md(again)
    assert all(render(info) == render(again) for render in graph.BLOCKS.values())
    first, second = graph.layout(info), graph.layout(again)
    assert first.pos == second.pos


def test_layers_are_longest_paths_from_sources(info: graph.GraphInfo) -> None:
    layer = info.layers()
    for node in info.nodes.values():
        if node.parents:
            assert layer[node.key] == 1 + max(layer[p] for p in node.parents)
        else:
            assert layer[node.key] == 0


def test_splice_replaces_only_its_block_and_names_missing_markers() -> None:
    begin, end = graph._markers("contract")
    text = f"intro\n{begin}\nold\n{end}\noutro\n"
    assert graph.splice(text, "contract", "new table") == f"intro\n{begin}\nnew table\n{end}\noutro\n"
    with pytest.raises(ValueError, match="no generated block 'jobs'"):
        graph.splice(text, "jobs", "x")


def _png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR, after checking the signature and every chunk's CRC."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    offset, size, chunks = 8, None, []
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in chunk {kind!r}"
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        chunks.append(kind)
        offset += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND" and b"IDAT" in chunks
    assert size is not None
    return size


def test_committed_png_is_a_real_drawing(info: graph.GraphInfo) -> None:
    path = DOCS / graph.GRAPH_PNG
    assert path.exists(), f"docs/{graph.GRAPH_PNG} is missing: {REGENERATE}"
    data = path.read_bytes()
    width, height = _png_size(data)
    layers = max(info.layers().values()) + 1
    # a column per layer, wide enough for the names; a drawing, not a placeholder
    assert width >= 150 * layers and height >= 400, (width, height)
    assert len(data) > 50_000


def test_png_is_drawn_from_the_definitions(info: graph.GraphInfo, tmp_path: Path) -> None:
    path = graph.draw_png(info, tmp_path / graph.GRAPH_PNG)
    width, height = _png_size(path.read_bytes())
    assert (width, height) == _png_size((DOCS / graph.GRAPH_PNG).read_bytes()), \
        f"the drawing's size changed: the graph did; {REGENERATE}"


def test_cli_check_names_the_stale_files(info: graph.GraphInfo, tmp_path: Path, capsys) -> None:
    shutil.copy(DOCS / graph.ARCHITECTURE_MD, tmp_path / graph.ARCHITECTURE_MD)
    assert graph.main(["--out", str(tmp_path), "--check"]) == 1
    err = capsys.readouterr().err
    assert f"{graph.GRAPH_MD}, {graph.GRAPH_PNG}" in err and graph.COMMAND in err
    graph.write_docs(tmp_path, info, png=False)
    assert graph.stale_files(tmp_path, info) == [graph.GRAPH_PNG]
    assert graph.main(["--out", str(DOCS), "--check"]) == 0
