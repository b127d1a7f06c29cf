"""Build the bead DAG with networkx; cycles, selection and dispatch priority."""
from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping

import networkx as nx

from gastown.bead import Bead
from gastown.errors import GasError


def build(beads: Mapping[str, Bead]) -> nx.DiGraph:
    """Nodes are bead ids (attribute `bead`); an edge (a, b) means b needs a."""
    graph = nx.DiGraph()
    for bead in beads.values():
        graph.add_node(bead.id, bead=bead)
    for bead in beads.values():
        graph.add_edges_from((need, bead.id) for need in bead.needs)
    return graph


def check_acyclic(graph: nx.DiGraph, *, file: str) -> None:
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return
    path = [edge[0] for edge in cycle] + [cycle[0][0]]
    first = graph.nodes[path[0]]["bead"]
    raise GasError(f"dependency cycle: {' -> '.join(path)}", file=file, line=first.line,
                   hint="remove one of these needs so the beads can run in order")


def select(graph: nx.DiGraph, patterns: Iterable[str], *, file: str) -> set[str]:
    """Beads matching any tag, backlog name or id glob, plus everything they need."""
    chosen: set[str] = set()
    for pattern in patterns:
        matched = _match(graph, pattern)
        if not matched:
            raise GasError(f"--only {pattern!r} matches no tag, backlog or bead id", file=file,
                           hint=_hint(graph, pattern))
        chosen |= matched
    for node in list(chosen):
        chosen |= nx.ancestors(graph, node)
    return chosen


def _match(graph: nx.DiGraph, pattern: str) -> set[str]:
    found = set()
    for node, data in graph.nodes(data=True):
        bead: Bead = data["bead"]
        if pattern == bead.backlog or pattern in bead.tags or fnmatch.fnmatchcase(node, pattern):
            found.add(node)
    return found


def _hint(graph: nx.DiGraph, pattern: str) -> str:
    import difflib

    names = set(graph.nodes)
    for _, data in graph.nodes(data=True):
        names.add(data["bead"].backlog)
        names.update(data["bead"].tags)
    close = difflib.get_close_matches(pattern, sorted(names), n=3)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    return "see `gas graph --format ascii` for the beads, backlogs and tags"


def remaining_path(graph: nx.DiGraph, weight: Mapping[str, float] | None = None
                   ) -> dict[str, float]:
    """For each bead, the longest chain of work from it to the end (itself included)."""
    lengths: dict[str, float] = {}
    for node in reversed(list(nx.topological_sort(graph))):
        own = weight.get(node, 1.0) if weight else 1.0
        lengths[node] = own + max((lengths[s] for s in graph.successors(node)), default=0.0)
    return lengths


def dispatch_order(graph: nx.DiGraph, nodes: Iterable[str]) -> list[str]:
    """Topological order that prefers the longest remaining path among ready beads."""
    keep = set(nodes)
    priority = remaining_path(graph)
    sub = graph.subgraph(keep)
    return list(nx.lexicographical_topological_sort(sub, key=lambda n: (-priority[n], n)))
