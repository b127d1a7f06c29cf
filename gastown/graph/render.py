"""Draw the bead graph as Graphviz DOT, Mermaid, a terminal wave view, or JSON.

Ids, titles and backlog names come from users' backlog files: every format escapes them
as data, so none of them can change the structure of the output.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import networkx as nx
from rich.cells import cell_len

from gastown.bead import Bead, State

FORMATS = ("dot", "mermaid", "ascii", "json")
TITLE_WIDTH = 40
NEEDS_SHOWN = 3

_YELLOW = "#fff3a3"
_ORANGE = "#fdd0a2"
STATE_COLOURS: dict[str, str] = {
    State.PENDING.value: "#ffffff",
    State.RUNNING.value: _YELLOW,
    State.REVIEW.value: _YELLOW,
    State.MERGING.value: _YELLOW,
    State.MERGED.value: "#b7e4a7",
    State.REJECTED.value: _ORANGE,
    State.FAILED.value: "#f4a5a5",
    State.BLOCKED.value: "#d3d3d3",
    State.INTERRUPTED.value: _ORANGE,
}

Renderer = Callable[[nx.DiGraph, Mapping[str, str]], str]


def render(graph: nx.DiGraph, fmt: str, states: Mapping[str, str] | None = None) -> str:
    """The graph in `fmt`; `states` maps bead id -> State value, missing ids are pending.

    The graph must be acyclic (dag.check_acyclic). The text has no trailing newline.
    """
    if fmt not in _RENDERERS:
        raise ValueError(f"unknown graph format {fmt!r}: expected one of {', '.join(FORMATS)}")
    return _RENDERERS[fmt](graph, states or {})


# --- shared -------------------------------------------------------------------------------

def _bead(graph: nx.DiGraph, node: str) -> Bead:
    bead: Bead = graph.nodes[node]["bead"]
    return bead


def _state(states: Mapping[str, str], node: str) -> str:
    return str(states.get(node, State.PENDING))


def _colour_key(state: str) -> str:
    """The palette entry for `state`; a state this version does not know draws as pending."""
    return state if state in STATE_COLOURS else State.PENDING.value


def _order(graph: nx.DiGraph) -> list[str]:
    """Topological, ties broken by id."""
    return list(nx.lexicographical_topological_sort(graph))


def _edges(graph: nx.DiGraph, order: list[str]) -> list[tuple[str, str]]:
    rank = {node: i for i, node in enumerate(order)}
    return sorted(graph.edges, key=lambda edge: (rank[edge[0]], rank[edge[1]]))


def _needs(graph: nx.DiGraph, node: str) -> list[str]:
    return sorted(graph.predecessors(node))


def _by_backlog(graph: nx.DiGraph, order: list[str]) -> list[tuple[str, list[str]]]:
    groups: dict[str, list[str]] = {}
    for node in order:
        groups.setdefault(_bead(graph, node).backlog, []).append(node)
    return sorted(groups.items())


def _visible(text: str) -> str:
    """Unprintable characters (newlines, terminal escapes, bidi controls) as `\\x1b`-style text."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _shorten(text: str, width: int = TITLE_WIDTH) -> str:
    """One line of at most `width` characters, ending in an ellipsis when cut."""
    text = _visible(" ".join(text.split()))
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


# --- dot ------------------------------------------------------------------------------------

# Backslashes are doubled so that \N, \G, \l ... in data stay literal in labels.
_DOT_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})


def _dot_escape(text: str) -> str:
    return _visible(text).translate(_DOT_ESCAPES)


def _dot_str(text: str) -> str:
    return f'"{_dot_escape(text)}"'


def _dot(graph: nx.DiGraph, states: Mapping[str, str]) -> str:
    order = _order(graph)
    lines = ["digraph gastown {", "  rankdir=LR;",
             '  node [shape=box, style="rounded,filled", fontname="Helvetica"];']
    for backlog, nodes in _by_backlog(graph, order):
        lines += _dot_cluster(graph, states, backlog, nodes)
    lines += [f"  {_dot_str(a)} -> {_dot_str(b)};" for a, b in _edges(graph, order)]
    return "\n".join([*lines, "}"])


def _dot_cluster(graph: nx.DiGraph, states: Mapping[str, str], backlog: str,
                 nodes: list[str]) -> list[str]:
    lines = [f"  subgraph {_dot_str('cluster_' + backlog)} {{",
             f"    label={_dot_str(backlog)};", '    style="rounded";']
    lines += [f"    {_dot_node(_bead(graph, n), n, _state(states, n))}" for n in nodes]
    return [*lines, "  }"]


def _dot_node(bead: Bead, node: str, state: str) -> str:
    label = f'"{_dot_escape(node)}\\n{_dot_escape(_shorten(bead.title))}"'
    fill = STATE_COLOURS[_colour_key(state)]
    return f'{_dot_str(node)} [label={label}, fillcolor="{fill}", tooltip={_dot_str(state)}];'


# --- mermaid --------------------------------------------------------------------------------

# Mermaid entity codes; `#` too, so data cannot spell an entity of its own.
_MERMAID_ESCAPES = str.maketrans({
    '"': "#quot;", "#": "#35;", "&": "#amp;", "<": "#lt;", ">": "#gt;", "`": "#96;",
})


def _mermaid_text(text: str) -> str:
    return _visible(text).translate(_MERMAID_ESCAPES)


def _mermaid(graph: nx.DiGraph, states: Mapping[str, str]) -> str:
    order = _order(graph)
    ids = {node: f"n{i}" for i, node in enumerate(order)}
    lines = ["flowchart LR"]
    for i, (backlog, nodes) in enumerate(_by_backlog(graph, order)):
        lines.append(f'  subgraph g{i}["{_mermaid_text(backlog)}"]')
        lines += [f"    {ids[n]}{_mermaid_label(_bead(graph, n), n)}" for n in nodes]
        lines.append("  end")
    lines += [f"  {ids[a]} --> {ids[b]}" for a, b in _edges(graph, order)]
    return "\n".join(lines + _mermaid_classes(states, ids))


def _mermaid_label(bead: Bead, node: str) -> str:
    return f'["{_mermaid_text(node)}<br/>{_mermaid_text(_shorten(bead.title))}"]'


def _mermaid_classes(states: Mapping[str, str], ids: Mapping[str, str]) -> list[str]:
    members: dict[str, list[str]] = {}
    for node, ident in ids.items():
        members.setdefault(_colour_key(_state(states, node)), []).append(ident)
    used = [state for state in STATE_COLOURS if state in members]
    lines = [f"  classDef {state} fill:{STATE_COLOURS[state]},stroke:#333" for state in used]
    return lines + [f"  class {','.join(members[state])} {state}" for state in used]


# --- ascii ----------------------------------------------------------------------------------

Row = tuple[str, str, str, str]  # id, [state], title, needs


def _ascii(graph: nx.DiGraph, states: Mapping[str, str]) -> str:
    waves = [sorted(generation) for generation in nx.topological_generations(graph)]
    rows = [[_ascii_row(graph, states, node) for node in wave] for wave in waves]
    widths = _widths(row for wave in rows for row in wave)
    lines: list[str] = []
    for number, wave_rows in enumerate(rows, 1):
        ready = ", ready now" if number == 1 else ""
        lines.append(f"Wave {number} ({_count(len(wave_rows), 'bead', 'beads')}{ready})")
        lines += ["  " + _ascii_line(row, widths) for row in wave_rows]
    counts = (_count(graph.number_of_nodes(), "bead", "beads"),
              _count(graph.number_of_edges(), "dependency", "dependencies"),
              _count(len(waves), "wave", "waves"))
    return "\n".join([*lines, ", ".join(counts)])


def _ascii_row(graph: nx.DiGraph, states: Mapping[str, str], node: str) -> Row:
    needs = [_visible(need) for need in _needs(graph, node)]
    more = len(needs) - NEEDS_SHOWN
    shown = ", ".join(needs[:NEEDS_SHOWN]) + (f" (+{more} more)" if more > 0 else "")
    title = _shorten(_bead(graph, node).title)
    return _visible(node), f"[{_visible(_state(states, node))}]", title, shown


def _widths(rows: Iterable[Row]) -> list[int]:
    widths = [0, 0, 0]
    for row in rows:
        widths = [max(w, cell_len(cell)) for w, cell in zip(widths, row[:3], strict=True)]
    return widths


def _ascii_line(row: Row, widths: list[int]) -> str:
    cells = [cell + " " * (width - cell_len(cell)) for cell, width in zip(row[:3], widths,
                                                                        strict=True)]
    needs = f"<- {row[3]}" if row[3] else ""
    return "  ".join([*cells, needs]).rstrip()


# --- json -----------------------------------------------------------------------------------

def _json(graph: nx.DiGraph, states: Mapping[str, str]) -> str:
    order = _order(graph)
    nodes = [_json_node(graph, states, node) for node in order]
    edges = [{"from": a, "to": b} for a, b in _edges(graph, order)]
    return json.dumps({"nodes": nodes, "edges": edges}, indent=2, ensure_ascii=False)


def _json_node(graph: nx.DiGraph, states: Mapping[str, str], node: str) -> dict[str, Any]:
    bead = _bead(graph, node)
    return {"id": node, "title": bead.title, "backlog": bead.backlog, "tags": list(bead.tags),
            "state": _state(states, node), "needs": _needs(graph, node)}


_RENDERERS: dict[str, Renderer] = {"dot": _dot, "mermaid": _mermaid, "ascii": _ascii,
                                   "json": _json}
