"""The generated parts of the documentation, drawn from the definitions themselves.

``python -m spotify_assets.defs.graph [--out docs] [--check] [--no-png]`` loads
``spotify_assets.definitions.defs``, walks the asset graph (keys, groups, dependencies,
asset checks, jobs, schedules, sensors) and the stage contract (:mod:`spotify_assets.contract`),
and writes:

* ``asset_graph.png``: the graph drawn left to right with matplotlib; a column is a layer
  (the longest path from a source asset), boxes are coloured by group, a bold outline marks an
  asset with blocking checks, a dashed one a partitioned asset;
* ``asset_graph.md``: the same graph as a mermaid ``flowchart LR`` (one subgraph per group),
  a table of the assets with their checks, and the plain edge list;
* the generated blocks of ``architecture.md`` (groups, jobs and automation, the contract
  table), between ``<!-- generated:NAME begin ... -->`` and ``<!-- generated:NAME end -->``
  markers; the rest of that file is written by hand and left as it is.

Every output is sorted, so regenerating unchanged definitions gives the same text
(``spotify_assets_tests/test_docs.py`` fails when the committed files are stale). ``--check``
writes nothing and exits 1 naming the stale files.

This module sits in ``defs/`` beside the definitions it documents but defines none; Dagster,
matplotlib and the definitions are imported only when a function needs them.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: where the docs live, relative to the repository root
DOCS = Path(__file__).resolve().parents[2] / "docs"
COMMAND = "python -m spotify_assets.defs.graph --out docs"
GRAPH_MD = "asset_graph.md"
GRAPH_PNG = "asset_graph.png"
ARCHITECTURE_MD = "architecture.md"

#: groups in pipeline order (legend, subgraphs, tables); a group not listed here follows, by name
GROUP_ORDER = ("ingest", "staging", "marts", "prepare", "label", "split", "feedback", "train", "evaluate",
               "tracks", "serve", "online")
#: (fill, outline) per group; a group without colours takes one from the spare list by its rank
GROUP_COLORS = {
    "ingest": ("#dbe8f7", "#2b6cb0"),
    "staging": ("#d9f2f7", "#0b7285"),
    "marts": ("#e2e6ec", "#4a5568"),
    "prepare": ("#e0f2dc", "#2f855a"),
    "label": ("#fcf0cf", "#b7791f"),
    "split": ("#fde3d0", "#c05621"),
    "feedback": ("#fbe0ee", "#b83280"),
    "train": ("#e9e2f8", "#6b46c1"),
    "evaluate": ("#f6dce6", "#8a1c4a"),
    "tracks": ("#efe5da", "#7b5430"),
    "serve": ("#d5efed", "#1d6f6a"),
    "online": ("#fadada", "#c53030"),
}
_SPARE_COLORS = (("#e2e8f0", "#2d3748"), ("#fefcbf", "#975a16"), ("#c6f6d5", "#22543d"), ("#fed7e2", "#97266d"))


# --------------------------------------------------------------------------------------
# what the definitions say
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AssetNode:
    """One asset: its group, direct upstream assets, kinds, checks ``(name, blocking)``."""

    key: str
    group: str
    parents: tuple[str, ...]
    kinds: tuple[str, ...]
    partitioned: bool
    checks: tuple[tuple[str, bool], ...]
    owners: tuple[str, ...]

    @property
    def blocking_checks(self) -> int:
        return sum(1 for _, blocking in self.checks if blocking)


@dataclass(frozen=True)
class JobInfo:
    name: str
    description: str
    assets: tuple[str, ...]  # the assets it materializes (empty for an op job)


@dataclass(frozen=True)
class TriggerInfo:
    """A schedule or sensor: what it launches."""

    name: str
    kind: str  # "schedule" | "sensor" | "automation sensor"
    target: str
    when: str  # the cron schedule, or "" for sensors
    default: str  # default status of a schedule, or "" (a sensor's may depend on the environment)


@dataclass(frozen=True)
class GraphInfo:
    nodes: Mapping[str, AssetNode]
    jobs: tuple[JobInfo, ...]
    triggers: tuple[TriggerInfo, ...]

    @property
    def edges(self) -> list[tuple[str, str]]:
        """(upstream, downstream), sorted."""
        return sorted((parent, node.key) for node in self.nodes.values() for parent in node.parents)

    def groups(self) -> list[str]:
        present = {node.group for node in self.nodes.values()}
        return [g for g in GROUP_ORDER if g in present] + sorted(present - set(GROUP_ORDER))

    def layers(self) -> dict[str, int]:
        """Asset -> its layer: the longest path (in edges) from an asset without parents."""
        layer: dict[str, int] = {}
        for key in sorted(self.nodes):
            stack = [key]
            while stack:  # iterative, so a deep graph cannot hit the recursion limit
                current = stack[-1]
                if current in layer:
                    stack.pop()
                    continue
                missing = [p for p in self.nodes[current].parents if p not in layer]
                if missing:
                    stack.extend(missing)
                    continue
                layer[current] = 1 + max((layer[p] for p in self.nodes[current].parents), default=-1)
                stack.pop()
        return layer


def _first_sentence(text: str | None) -> str:
    text = " ".join((text or "").split())
    match = re.match(r"(.+?[.!?])(\s|$)", text)
    return (match.group(1) if match else text).replace("|", "\\|")


def collect(defs=None) -> GraphInfo:
    """The asset graph, jobs, schedules and sensors of ``defs`` (default: the project's)."""
    import dagster as dg

    if defs is None:
        from spotify_assets.definitions import defs
    graph = defs.resolve_asset_graph()
    checks: dict[str, list[tuple[str, bool]]] = {}
    for check_key in graph.asset_check_keys:
        spec = graph.get_check_spec(check_key)
        checks.setdefault(check_key.asset_key.to_user_string(), []).append((check_key.name, bool(spec.blocking)))
    nodes = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        nodes[name] = AssetNode(
            key=name,
            group=node.group_name or "default",
            parents=tuple(sorted(parent.to_user_string() for parent in node.parent_keys)),
            kinds=tuple(sorted(node.kinds)),
            partitioned=node.partitions_def is not None,
            checks=tuple(sorted(checks.get(name, []))),
            owners=tuple(sorted(node.owners)),
        )
    jobs = []
    for name in sorted({job.name for job in defs.jobs or []}):
        job = defs.resolve_job_def(name)
        keys = job.asset_layer.executable_asset_keys if job.asset_layer is not None else set()
        jobs.append(JobInfo(name, _first_sentence(job.description), tuple(sorted(k.to_user_string() for k in keys))))
    all_keys = set(graph.get_all_asset_keys())
    triggers = []
    for schedule in defs.schedules or []:
        triggers.append(TriggerInfo(schedule.name, "schedule", f"job `{schedule.job_name}`", schedule.cron_schedule,
                                    schedule.default_status.value.lower()))
    for sensor in defs.sensors or []:
        jobs_targeted = sorted({t.job_name for t in getattr(sensor, "targets", []) if getattr(t, "job_name", None)})
        if isinstance(sensor, dg.AutomationConditionSensorDefinition):
            kind, target = "automation sensor", _selection(sensor.asset_selection, graph, all_keys)
        elif jobs_targeted:
            kind, target = "sensor", ", ".join(f"job `{j}`" for j in jobs_targeted)
        else:
            kind, target = "sensor", "(the runs it requests)"
            if sensor.asset_selection is not None:
                target = _selection(sensor.asset_selection, graph, all_keys)
        triggers.append(TriggerInfo(sensor.name, kind, target, "", ""))
    return GraphInfo(nodes=dict(sorted(nodes.items())), jobs=tuple(jobs),
                     triggers=tuple(sorted(triggers, key=lambda t: (t.kind, t.name))))


def _selection(selection, graph, all_keys: set) -> str:
    keys = selection.resolve(graph)
    if set(keys) == all_keys:
        return "every asset (their automation conditions)"
    return ", ".join(f"`{k.to_user_string()}`" for k in sorted(keys, key=lambda k: k.to_user_string()))


# --------------------------------------------------------------------------------------
# text
# --------------------------------------------------------------------------------------


def _header(what: str) -> str:
    return f"<!-- {what}: generated by `{COMMAND}` from the definitions; do not edit by hand -->"


def _checks_cell(node: AssetNode) -> str:
    if not node.checks:
        return ""
    return ", ".join(f"`{name}`" + (" (blocking)" if blocking else "") for name, blocking in node.checks)


def render_asset_graph_md(info: GraphInfo) -> str:
    """``asset_graph.md``: mermaid flowchart (one subgraph per group), asset table, edge list."""
    layer = info.layers()
    edges = info.edges
    n_checks = sum(len(n.checks) for n in info.nodes.values())
    n_blocking = sum(n.blocking_checks for n in info.nodes.values())
    lines = [
        _header("this file"),
        "",
        "# The asset graph",
        "",
        f"{len(info.nodes)} assets in {len(info.groups())} groups, {len(edges)} dependencies, {n_checks} asset checks "
        f"({n_blocking} blocking). The drawing is [`asset_graph.png`](asset_graph.png); what the stages mean is in "
        "[`architecture.md`](architecture.md). Regenerate both with "
        f"`{COMMAND}`.",
        "",
        "![the asset graph](asset_graph.png)",
        "",
        "```mermaid",
        "flowchart LR",
    ]
    for group in info.groups():
        members = sorted((n for n in info.nodes.values() if n.group == group), key=lambda n: (layer[n.key], n.key))
        lines.append(f'    subgraph g_{group}["{group}"]')
        lines.extend(f'        {n.key}["{n.key}"]' for n in members)
        lines.append("    end")
    lines.extend(f"    {a} --> {b}" for a, b in edges)
    for group in info.groups():
        fill, stroke = _colors(group, info.groups())
        members = ",".join(sorted(n.key for n in info.nodes.values() if n.group == group))
        lines.append(f"    classDef c_{group} fill:{fill},stroke:{stroke},color:#1a202c")
        lines.append(f"    class {members} c_{group}")
    lines += ["```", "", "## Assets", "",
              "Layer = the longest path from an asset without upstream assets (the column in the drawing).", "",
              "| asset | group | layer | upstream | kinds | checks |", "|---|---|---|---|---|---|"]
    for group in info.groups():
        for node in sorted((n for n in info.nodes.values() if n.group == group), key=lambda n: (layer[n.key], n.key)):
            upstream = ", ".join(f"`{p}`" for p in node.parents)
            kinds = ", ".join(node.kinds) + (" (partitioned)" if node.partitioned else "")
            lines.append(f"| `{node.key}` | {group} | {layer[node.key]} | {upstream} | {kinds} "
                         f"| {_checks_cell(node)} |")
    lines += ["", "## Edges", "", "Every dependency, `upstream -> downstream`, sorted.", "", "```text"]
    lines.extend(f"{a} -> {b}" for a, b in edges)
    lines += ["```", ""]
    return "\n".join(lines)


def render_groups_md(info: GraphInfo) -> str:
    """The groups table of ``architecture.md``."""
    rows = ["| group | owner | assets |", "|---|---|---|"]
    for group in info.groups():
        members = sorted((n for n in info.nodes.values() if n.group == group), key=lambda n: n.key)
        owners = sorted({o for n in members for o in n.owners})
        rows.append(f"| `{group}` | {', '.join(owners)} | {', '.join(f'`{n.key}`' for n in members)} |")
    return "\n".join(rows)


def render_jobs_md(info: GraphInfo) -> str:
    """The jobs, schedules and sensors tables of ``architecture.md``."""
    groups = info.groups()
    rows = ["| job | assets | groups (assets in each) | what it does |", "|---|---|---|---|"]
    for job in info.jobs:
        per_group = {g: sum(1 for a in job.assets if info.nodes[a].group == g) for g in groups}
        covered = ", ".join(f"{g} ({n})" for g, n in per_group.items() if n) or "an op job: no assets"
        rows.append(f"| `{job.name}` | {len(job.assets)} | {covered} | {job.description} |")
    rows += ["", "| schedule / sensor | kind | launches | when | default |", "|---|---|---|---|---|"]
    for trigger in info.triggers:
        when = f"`{trigger.when}` (UTC)" if trigger.when else "on each evaluation"
        rows.append(f"| `{trigger.name}` | {trigger.kind} | {trigger.target} | {when} | {trigger.default or '–'} |")
    return "\n".join(rows)


def _dtype_cell(arrays: Mapping[str, str]) -> str:
    return ", ".join(f"`{name}` {dtype}" for name, dtype in arrays.items())


def render_contract_md(artifacts: Iterable[tuple[str, object]] | None = None) -> str:
    """The stage contract as a markdown table, in declaration order (``contract.ALL``, then the
    model summaries); ``artifacts`` defaults to every declared artifact."""
    if artifacts is None:
        from spotify_assets import contract

        artifacts = [*contract.ALL.items(),
                     *((f'MODEL_SUMMARIES["{m}"]', a) for m, a in contract.MODEL_SUMMARIES.items())]
    rows = ["| artifact | written by | path under the artifact store | format | arrays (dtype) | holds |",
            "|---|---|---|---|---|---|"]
    for name, artifact in artifacts:
        path = "/".join(artifact.path) + ("/<piece>" if artifact.partitioned else "")
        form = (artifact.format if not artifact.partitioned else "one folder per piece"
                if artifact.format == "folder" else f"{artifact.format}, one file per piece")
        arrays = _dtype_cell(artifact.arrays)
        if artifact.optional:
            arrays += ("; " if arrays else "") + "optional: " + _dtype_cell(artifact.optional)
        holds = " ".join(artifact.description.split()).replace("|", "\\|")
        rows.append(f"| `{name}` | `{artifact.asset}` | `{path}` | {form} | {arrays or '–'} | {holds} |")
    return "\n".join(rows)


#: the generated blocks of architecture.md, by marker name
BLOCKS: dict[str, Callable[[GraphInfo], str]] = {
    "groups": render_groups_md,
    "jobs": render_jobs_md,
    "contract": lambda info: render_contract_md(),
}


def _markers(name: str) -> tuple[str, str]:
    return (f"<!-- generated:{name} begin (`{COMMAND}`; do not edit by hand) -->",
            f"<!-- generated:{name} end -->")


def splice(text: str, name: str, body: str) -> str:
    """``text`` with the block between the ``name`` markers replaced by ``body``.

    Raises ValueError when the markers are missing or out of order (a hand edit removed them)."""
    begin, end = _markers(name)
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise ValueError(f"{ARCHITECTURE_MD} has no generated block {name!r}: put\n{begin}\n{end}\nwhere it belongs")
    return text[: start + len(begin)] + "\n" + body.rstrip("\n") + "\n" + text[stop:]


def render_architecture(text: str, info: GraphInfo) -> str:
    """``architecture.md`` with every generated block brought up to date."""
    for name, render in BLOCKS.items():
        text = splice(text, name, render(info))
    return text


# --------------------------------------------------------------------------------------
# the drawing
# --------------------------------------------------------------------------------------


def _colors(group: str, groups: Sequence[str]) -> tuple[str, str]:
    if group in GROUP_COLORS:
        return GROUP_COLORS[group]
    return _SPARE_COLORS[list(groups).index(group) % len(_SPARE_COLORS)]


@dataclass(frozen=True)
class Layout:
    """Positions in inches: ``pos[item] = (x, y)`` for assets and the waypoints of long edges
    (items ``("edge", upstream, downstream, layer)``); ``routes[(a, b)]`` the items an edge
    passes through, ``a`` and ``b`` included."""

    pos: Mapping[object, tuple[float, float]]
    routes: Mapping[tuple[str, str], tuple[object, ...]]
    n_layers: int


def _isotonic(values: list[float]) -> list[float]:
    """Least-squares non-decreasing fit (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight]
    for v in values:
        blocks.append([v, 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2 = blocks.pop()
            m1, w1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2])
    out: list[float] = []
    for mean, weight in blocks:
        out.extend([mean] * int(weight))
    return out


def layout(info: GraphInfo, column: float = 2.45, row: float = 0.5, lane: float = 0.16,
           sweeps: int = 24) -> Layout:
    """A layered left-to-right layout: columns are layers, long edges get a waypoint in every
    layer they cross, rows are ordered by barycentre sweeps (the order with the fewest
    crossings is kept), then placed close to their neighbours with a minimum spacing."""
    layer = info.layers()
    n_layers = max(layer.values(), default=-1) + 1
    group_rank = {g: i for i, g in enumerate(info.groups())}
    columns: list[list[object]] = [[] for _ in range(n_layers)]
    for key in sorted(info.nodes, key=lambda k: (group_rank[info.nodes[k].group], k)):
        columns[layer[key]].append(key)
    routes: dict[tuple[str, str], tuple[object, ...]] = {}
    up: dict[object, list[object]] = {item: [] for col in columns for item in col}
    down: dict[object, list[object]] = {item: [] for col in columns for item in col}
    for a, b in info.edges:
        route: list[object] = [a]
        for mid in range(layer[a] + 1, layer[b]):
            waypoint = ("edge", a, b, mid)
            columns[mid].append(waypoint)
            up[waypoint], down[waypoint] = [], []
            route.append(waypoint)
        route.append(b)
        routes[(a, b)] = tuple(route)
        for u, v in zip(route[:-1], route[1:]):
            down[u].append(v)
            up[v].append(u)

    def crossings(cols: list[list[object]]) -> int:
        total = 0
        for left, right in zip(cols[:-1], cols[1:]):
            where = {item: i for i, item in enumerate(right)}
            pairs = sorted((i, where[v]) for i, u in enumerate(left) for v in down[u])
            total += sum(1 for x in range(len(pairs)) for y in range(x + 1, len(pairs))
                         if pairs[x][0] < pairs[y][0] and pairs[x][1] > pairs[y][1])
        return total

    def reorder(cols: list[list[object]], index: int, neighbours: dict, other: list[object]) -> None:
        where = {item: i for i, item in enumerate(other)}
        current = {item: i for i, item in enumerate(cols[index])}
        def key(item):
            near = [where[n] for n in neighbours[item]]
            return (sum(near) / len(near) if near else current[item], current[item])
        cols[index].sort(key=key)

    best, best_count = [list(c) for c in columns], crossings(columns)
    for sweep in range(sweeps):
        if sweep % 2 == 0:
            for i in range(1, n_layers):
                reorder(columns, i, up, columns[i - 1])
        else:
            for i in range(n_layers - 2, -1, -1):
                reorder(columns, i, down, columns[i + 1])
        count = crossings(columns)
        if count < best_count:
            best, best_count = [list(c) for c in columns], count
    columns = best

    def gap(a: object, b: object) -> float:
        real = sum(1 for item in (a, b) if isinstance(item, str))
        return {2: row, 1: (row + lane) / 2, 0: lane}[real]

    ys: dict[object, float] = {}
    for col in columns:  # start: each column stacked from 0, centred
        y = [0.0]
        for a, b in zip(col[:-1], col[1:]):
            y.append(y[-1] + gap(a, b))
        mid = (y[-1] if y else 0.0) / 2
        ys.update({item: value - mid for item, value in zip(col, y)})
    for sweep in range(2 * sweeps):  # pull towards neighbours, keep order and spacing
        order = range(n_layers) if sweep % 2 == 0 else range(n_layers - 1, -1, -1)
        for i in order:
            col = columns[i]
            if not col:
                continue
            wanted = []
            for item in col:
                near = [ys[n] for n in up[item] + down[item]]
                wanted.append(sum(near) / len(near) if near else ys[item])
            offsets = [0.0]
            for a, b in zip(col[:-1], col[1:]):
                offsets.append(offsets[-1] + gap(a, b))
            fitted = _isotonic([w - o for w, o in zip(wanted, offsets)])
            ys.update({item: f + o for item, f, o in zip(col, fitted, offsets)})
    pos = {item: (column * layer_of, ys[item]) for layer_of, col in enumerate(columns) for item in col}
    return Layout(pos=pos, routes=routes, n_layers=n_layers)


def draw_png(info: GraphInfo, path: Path | str, dpi: int = 100) -> Path:
    """Draw the asset graph (see the module docstring) into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyBboxPatch, Patch, PathPatch
    from matplotlib.path import Path as MplPath

    box_w, box_h, margin, legend_h = 2.0, 0.3, 0.5, 1.1
    placed = layout(info)
    groups = info.groups()
    xs = [x for x, _ in placed.pos.values()] or [0.0]
    ys = [y for _, y in placed.pos.values()] or [0.0]
    x0, x1 = min(xs) - box_w / 2 - margin, max(xs) + box_w / 2 + margin
    y0, y1 = min(ys) - box_h - margin, max(ys) + box_h + margin + legend_h
    fig = plt.figure(figsize=(x1 - x0, y1 - y0), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.axis("off")

    for (a, b), route in sorted(placed.routes.items()):
        points = [placed.pos[item] for item in route]
        points[0] = (points[0][0] + box_w / 2, points[0][1])
        points[-1] = (points[-1][0] - box_w / 2 - 0.03, points[-1][1])
        vertices, codes = [points[0]], [MplPath.MOVETO]
        for (px, py), (qx, qy) in zip(points[:-1], points[1:]):
            half = (qx - px) / 2
            vertices += [(px + half, py), (qx - half, qy), (qx, qy)]
            codes += [MplPath.CURVE4] * 3
        color = _colors(info.nodes[a].group, groups)[1]
        ax.add_patch(PathPatch(MplPath(vertices, codes), fill=False, edgecolor=color, linewidth=0.9, alpha=0.55,
                               zorder=1))
        tip = points[-1]
        ax.annotate("", xy=(tip[0] + 0.03, tip[1]), xytext=(tip[0] - 0.12, tip[1]), zorder=2,
                    arrowprops={"arrowstyle": "-|>", "color": color, "lw": 0.9, "alpha": 0.8, "mutation_scale": 9})

    for key, node in info.nodes.items():
        x, y = placed.pos[key]
        fill, stroke = _colors(node.group, groups)
        ax.add_patch(FancyBboxPatch((x - box_w / 2, y - box_h / 2), box_w, box_h,
                                    boxstyle="round,pad=0.0,rounding_size=0.07", facecolor=fill, edgecolor=stroke,
                                    linewidth=2.2 if node.blocking_checks else 0.9,
                                    linestyle="--" if node.partitioned else "-", zorder=3))
        ax.text(x, y, key, ha="center", va="center", fontsize=8.5, family="DejaVu Sans", color="#1a202c", zorder=4)

    n_checks = sum(len(n.checks) for n in info.nodes.values())
    ax.text(x0 + margin, y1 - 0.3, f"spotify_assets asset graph: {len(info.nodes)} assets, {len(info.edges)} "
            f"dependencies, {n_checks} asset checks; columns are layers (longest path from a source asset). "
            f"Generated by `{COMMAND}`.", ha="left", va="center", fontsize=11, color="#1a202c")
    handles = [Patch(facecolor=_colors(g, groups)[0], edgecolor=_colors(g, groups)[1], label=g) for g in groups]
    handles += [Line2D([], [], color="#4a5568", linewidth=2.2, label="bold outline: blocking checks"),
                Line2D([], [], color="#4a5568", linewidth=0.9, linestyle="--", label="dashed: partitioned")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=((margin) / (x1 - x0), 1 - 0.5 / (y1 - y0)),
              ncol=len(handles), frameon=False, fontsize=9, handlelength=1.6, columnspacing=1.2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    # a 128-colour palette: a third of the bytes, no visible loss on flat boxes and thin lines
    from PIL import Image

    buffer.seek(0)
    image = Image.open(buffer).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT,
                                                       dither=Image.Dither.NONE)
    image.save(path, format="PNG", optimize=True)
    return path


# --------------------------------------------------------------------------------------
# writing and checking
# --------------------------------------------------------------------------------------


def render_texts(info: GraphInfo, docs: Path) -> dict[str, str]:
    """File name -> up-to-date text of every generated text file (``architecture.md`` only when
    ``docs`` holds one: its hand-written parts come from there)."""
    texts = {GRAPH_MD: render_asset_graph_md(info)}
    architecture = Path(docs) / ARCHITECTURE_MD
    if architecture.exists():
        texts[ARCHITECTURE_MD] = render_architecture(architecture.read_text(encoding="utf-8"), info)
    return texts


def stale_files(docs: Path, info: GraphInfo | None = None) -> list[str]:
    """Names of the generated text files in ``docs`` that differ from what the definitions give
    (missing ones included); the PNG is not compared (only its presence)."""
    info = collect() if info is None else info
    docs = Path(docs)
    stale = [name for name, text in render_texts(info, docs).items()
             if not (docs / name).exists() or (docs / name).read_text(encoding="utf-8") != text]
    if not (docs / ARCHITECTURE_MD).exists():
        stale.append(ARCHITECTURE_MD)
    if not (docs / GRAPH_PNG).exists():
        stale.append(GRAPH_PNG)
    return sorted(stale)


def write_docs(out: Path, info: GraphInfo | None = None, png: bool = True) -> list[Path]:
    """Write the generated files into ``out`` (``architecture.md``'s blocks only if it exists
    there). Returns the paths written."""
    info = collect() if info is None else info
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_texts(info, out).items():
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    if png:
        written.append(draw_png(info, out / GRAPH_PNG))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spotify_assets.defs.graph", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DOCS, help="docs folder (default: the repository's docs/)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a generated file is stale")
    parser.add_argument("--no-png", action="store_true", help="skip the drawing (text files only)")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.out)
        if stale:
            print(f"stale in {args.out}: {', '.join(stale)}; run `{COMMAND}`", file=sys.stderr)
            return 1
        print(f"{args.out}: generated files are up to date")
        return 0
    for path in write_docs(args.out, png=not args.no_png):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
