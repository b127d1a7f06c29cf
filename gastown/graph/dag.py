"""The bead DAG: cycles, selection and dispatch priority, computed from the beads' needs in
plain Python (a no-op build of 10,000 beads should not pay for networkx); the networkx graph
that rendering uses is built only when asked for."""
from __future__ import annotations

import fnmatch
import heapq
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from gastown.bead import Bead
from gastown.errors import GasError

if TYPE_CHECKING:
    import networkx as nx

Beads = Mapping[str, Bead]


def build(beads: Beads) -> nx.DiGraph:
    """Nodes are bead ids (attribute `bead`); an edge (a, b) means b needs a."""
    import networkx as nx

    graph = nx.DiGraph()
    for bead in beads.values():
        graph.add_node(bead.id, bead=bead)
    for bead in beads.values():
        graph.add_edges_from((need, bead.id) for need in bead.needs)
    return graph


def successors(beads: Beads) -> dict[str, list[str]]:
    """bead id -> the beads that need it, in the order the graph's edges would have."""
    found: dict[str, list[str]] = {bead_id: [] for bead_id in beads}
    for bead in beads.values():
        for need in bead.needs:
            found[need].append(bead.id)
    return found


def topological_order(beads: Beads) -> list[str]:
    """Every bead after all it needs; shorter than `beads` when there is a cycle."""
    after = successors(beads)
    waiting = {bead_id: len(bead.needs) for bead_id, bead in beads.items()}
    order = [bead_id for bead_id, count in waiting.items() if count == 0]
    for bead_id in order:  # grows while it is walked
        for user in after[bead_id]:
            waiting[user] -= 1
            if waiting[user] == 0:
                order.append(user)
    return order


def check_acyclic(beads: Beads, *, file: str) -> None:
    if len(topological_order(beads)) == len(beads):
        return
    import networkx as nx  # only to name the cycle, exactly as before

    graph = build(beads)
    cycle = nx.find_cycle(graph)
    path = [edge[0] for edge in cycle] + [cycle[0][0]]
    first = beads[path[0]]
    raise GasError(f"dependency cycle: {' -> '.join(path)}", file=file, line=first.line,
                   hint="remove one of these needs so the beads can run in order")


def select(graph: nx.DiGraph, patterns: Iterable[str], *, file: str) -> set[str]:
    """select_beads() for the beads of a graph built by build()."""
    return select_beads({node: data["bead"] for node, data in graph.nodes(data=True)},
                        patterns, file=file)


def select_beads(beads: Beads, patterns: Iterable[str], *, file: str) -> set[str]:
    """Beads matching any tag, backlog name or id glob, plus everything they need."""
    chosen: set[str] = set()
    for pattern in patterns:
        matched = _match(beads, pattern)
        if not matched:
            raise GasError(f"--only {pattern!r} matches no tag, backlog or bead id", file=file,
                           hint=_hint(beads, pattern))
        chosen |= matched
    return chosen | _ancestors(beads, chosen)


def _ancestors(beads: Beads, nodes: Iterable[str]) -> set[str]:
    found: set[str] = set()
    stack = [need for node in nodes for need in beads[node].needs]
    while stack:
        node = stack.pop()
        if node not in found:
            found.add(node)
            stack.extend(beads[node].needs)
    return found


def _match(beads: Beads, pattern: str) -> set[str]:
    return {node for node, bead in beads.items()
            if pattern == bead.backlog or pattern in bead.tags
            or fnmatch.fnmatchcase(node, pattern)}


def _hint(beads: Beads, pattern: str) -> str:
    import difflib

    names = set(beads)
    for bead in beads.values():
        names.add(bead.backlog)
        names.update(bead.tags)
    close = difflib.get_close_matches(pattern, sorted(names), n=3)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    return "see `gas graph --format ascii` for the beads, backlogs and tags"


def remaining_path(graph: nx.DiGraph, weight: Mapping[str, float] | None = None
                   ) -> dict[str, float]:
    """For each bead, the longest chain of work from it to the end (itself included)."""
    import networkx as nx

    return _longest(reversed(list(nx.topological_sort(graph))), graph.successors, weight)


def remaining_paths(beads: Beads, keep: Iterable[str],
                    weight: Mapping[str, float] | None = None) -> dict[str, float]:
    """remaining_path() of the beads `keep` (needs outside it ignored), in plain Python: a
    build's dispatch priorities should not cost a networkx import."""
    nodes = set(keep)
    after: dict[str, list[str]] = {n: [] for n in nodes}
    for node in nodes:
        for need in beads[node].needs:
            if need in nodes:
                after[need].append(node)
    order = [n for n in topological_order(beads) if n in nodes]
    return _longest(reversed(order), after.__getitem__, weight)


def _longest(backwards: Iterable[str], after: Callable[[str], Iterable[str]],
             weight: Mapping[str, float] | None) -> dict[str, float]:
    lengths: dict[str, float] = {}
    for node in backwards:
        own = weight.get(node, 1.0) if weight else 1.0
        lengths[node] = own + max((lengths[s] for s in after(node)), default=0.0)
    return lengths


def dispatch_order(beads: Beads, nodes: Iterable[str]) -> list[str]:
    """Topological order of `nodes` that prefers the longest remaining path (through all the
    beads) among ready beads, then the id: networkx's lexicographical topological sort."""
    keep = set(nodes)
    if not keep:
        return []
    after = successors(beads)
    priority = _longest(reversed(topological_order(beads)), after.__getitem__, None)
    waiting = {n: sum(1 for need in beads[n].needs if need in keep) for n in keep}
    ready = [(-priority[n], n) for n, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, node = heapq.heappop(ready)
        order.append(node)
        for user in after[node]:
            if user in keep:
                waiting[user] -= 1
                if waiting[user] == 0:
                    heapq.heappush(ready, (-priority[user], user))
    return order
