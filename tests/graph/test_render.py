"""Rendering the bead graph: structure, states, and user data that tries to break the syntax."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import networkx as nx
import pytest

from gastown.bead import Bead, State
from gastown.graph.render import FORMATS, STATE_COLOURS, TITLE_WIDTH, render

HOSTILE = 'say "hi" \\N \\ {{ x }}\n<b>#quot;`$(rm -rf /)` \x1b[2J end\\'


def bead(id: str, *needs: str, title: str = "", backlog: str = "main",
         tags: tuple[str, ...] = ()) -> Bead:
    return Bead(id=id, title=title or f"Title of {id}", backlog=backlog, item={"id": id},
                tags=tags, needs=needs)


def graph_of(*beads: Bead) -> nx.DiGraph:
    graph = nx.DiGraph()
    for b in beads:
        graph.add_node(b.id, bead=b)
    for b in beads:
        graph.add_edges_from((need, b.id) for need in b.needs)
    return graph


def diamond() -> nx.DiGraph:
    return graph_of(bead("a", backlog="base"), bead("b", "a"), bead("c", "a"),
                    bead("d", "b", "c", backlog="top"))


def hostile() -> nx.DiGraph:
    return graph_of(bead("sec-1", title="Fix SQL injection", backlog="sec"),
                    bead("odd.id-2", "sec-1", title=HOSTILE, backlog="sec"),
                    bead('we"ird\\', "odd.id-2", title="x", backlog=HOSTILE))


def without_dot_strings(line: str) -> str:
    """The line with its DOT quoted strings removed; fails on an unterminated one."""
    unescaped = re.sub(r"\\.", "", line)
    assert unescaped.count('"') % 2 == 0, f"unbalanced quotes: {line!r}"
    return re.sub(r'"[^"]*"', '""', unescaped)


# --- dot ------------------------------------------------------------------------------------

def test_dot_has_clusters_nodes_and_need_to_dependent_edges() -> None:
    out = render(diamond(), "dot")
    assert out.startswith("digraph gastown {\n  rankdir=LR;")
    assert out.endswith("}")
    assert 'subgraph "cluster_base" {' in out and 'label="base";' in out
    assert 'subgraph "cluster_main" {' in out and 'subgraph "cluster_top" {' in out
    assert '"a" [label="a\\nTitle of a"' in out
    edges = re.findall(r'^  "(\w)" -> "(\w)";$', out, re.MULTILINE)
    assert edges == [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]


def test_dot_fills_nodes_by_state() -> None:
    states = {"a": "merged", "b": "running", "c": State.FAILED}
    out = render(diamond(), "dot", states)
    fills = dict(re.findall(r'^    "(\w)" .*fillcolor="(#\w+)"', out, re.MULTILINE))
    assert fills == {"a": STATE_COLOURS["merged"], "b": STATE_COLOURS["running"],
                     "c": STATE_COLOURS["failed"], "d": STATE_COLOURS["pending"]}


def test_state_palette_groups_in_progress_and_tells_outcomes_apart() -> None:
    assert set(STATE_COLOURS) == {s.value for s in State}
    assert STATE_COLOURS["running"] == STATE_COLOURS["review"] == STATE_COLOURS["merging"]
    outcomes = ["merged", "failed", "blocked", "pending", "running"]
    assert len({STATE_COLOURS[s] for s in outcomes}) == len(outcomes)
    assert STATE_COLOURS["pending"] == "#ffffff"


def test_dot_shortens_titles_with_an_ellipsis() -> None:
    out = render(graph_of(bead("a", title="word " * 30)), "dot")
    label = re.search(r'label="a\\n([^"]*)"', out)
    assert label is not None
    assert label.group(1).endswith("…") and len(label.group(1)) <= TITLE_WIDTH


def test_dot_escapes_hostile_ids_titles_and_backlogs() -> None:
    out = render(hostile(), "dot")
    stripped = [without_dot_strings(line) for line in out.splitlines()]
    assert "".join(stripped).count("{") == "".join(stripped).count("}")
    assert "\x1b" not in out
    assert '"we\\"ird\\\\" [label=' in out
    assert '"odd.id-2" -> "we\\"ird\\\\";' in out
    # A line per statement: no raw newline from the data split one.
    assert len(out.splitlines()) == 17


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz `dot` is not installed")
def test_graphviz_reads_the_hostile_graph_as_three_nodes_in_two_clusters() -> None:
    svg = subprocess.run(["dot", "-Tsvg"], input=render(hostile(), "dot"), text=True,
                         capture_output=True, check=True).stdout
    root = ET.fromstring(svg)
    groups = [g.get("class") for g in root.iter("{http://www.w3.org/2000/svg}g")]
    assert groups.count("node") == 3 and groups.count("cluster") == 2
    assert groups.count("edge") == 2
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert 'we"ird\\' in texts
    assert 'say "hi" \\N \\ {{ x }} <b>#quot;`$(rm -r…' in texts
    assert 'say "hi" \\N \\ {{ x }}\\n<b>#quot;`$(rm -rf /)` \\x1b[2J end\\' in texts


# --- mermaid --------------------------------------------------------------------------------

MERMAID_LINE = re.compile("|".join([
    r"flowchart LR",
    r'  subgraph g\d+\["[^"]*"\]',
    r'    n\d+\["[^"]*<br/>[^"]*"\]',
    r"  end",
    r"  n\d+ --> n\d+",
    r"  classDef [a-z]+ fill:#[0-9a-f]{6},stroke:#333",
    r"  class n\d+(,n\d+)* [a-z]+",
]))


def test_mermaid_sanitises_ids_and_groups_by_backlog() -> None:
    out = render(diamond(), "mermaid").splitlines()
    assert out[0] == "flowchart LR"
    assert all(MERMAID_LINE.fullmatch(line) for line in out), out
    assert '  subgraph g0["base"]' in out and '    n0["a<br/>Title of a"]' in out
    assert [line for line in out if "-->" in line] == [
        "  n0 --> n1", "  n0 --> n2", "  n1 --> n3", "  n2 --> n3"]


def test_mermaid_escapes_hostile_text_as_entities() -> None:
    out = render(hostile(), "mermaid")
    assert all(MERMAID_LINE.fullmatch(line) for line in out.splitlines()), out
    title = "say #quot;hi#quot; \\N \\ {{ x }} #lt;b#gt;#35;quot;#96;$(rm -r…"
    assert f'["odd.id-2<br/>{title}"]' in out
    assert '["we#quot;ird\\<br/>x"]' in out
    assert "\x1b" not in out and "`" not in out
    assert "<b>" not in out


def test_mermaid_classes_follow_states() -> None:
    out = render(diamond(), "mermaid", {"a": "merged", "d": "blocked"}).splitlines()
    assert f"  classDef merged fill:{STATE_COLOURS['merged']},stroke:#333" in out
    assert "  class n0 merged" in out
    assert "  class n1,n2 pending" in out
    assert "  class n3 blocked" in out
    assert not any("classDef failed" in line for line in out)


# --- ascii ----------------------------------------------------------------------------------

def test_ascii_groups_a_diamond_into_three_waves() -> None:
    out = render(diamond(), "ascii", {"a": "merged"}).splitlines()
    assert [line for line in out if not line.startswith("  ")] == [
        "Wave 1 (1 bead, ready now)", "Wave 2 (2 beads)", "Wave 3 (1 bead)",
        "4 beads, 4 dependencies, 3 waves"]
    assert out[1] == "  a  [merged]   Title of a"
    assert out[3] == "  b  [pending]  Title of b  <- a"
    assert out[6] == "  d  [pending]  Title of d  <- b, c"


def test_ascii_aligns_columns_across_waves() -> None:
    graph = graph_of(bead("short", title="T"), bead("a-much-longer-id", "short", title="T"),
                     bead("z", "a-much-longer-id", title="A longer title"))
    rows = [line for line in render(graph, "ascii", {"z": "merging"}).splitlines()
            if line.startswith("  ")]
    assert len({row.index("[") for row in rows}) == 1
    assert len({row.index(" T") for row in rows[:2]} | {rows[2].index(" A")}) == 1
    assert rows[1].index("<-") == rows[2].index("<-")
    assert rows[1] == "  a-much-longer-id  [pending]  T               <- short"


def test_ascii_shortens_long_needs_and_titles() -> None:
    needs = [bead(f"n{i}") for i in range(6)]
    long = bead("z", *(b.id for b in needs), title="a rather long title " * 5)
    out = render(graph_of(*needs, long), "ascii").splitlines()
    row = next(line for line in out if line.startswith("  z"))
    assert row.endswith("…  <- n0, n1, n2 (+3 more)")
    assert out[-1] == "7 beads, 6 dependencies, 2 waves"


def test_ascii_shows_control_characters_instead_of_sending_them() -> None:
    graph = graph_of(bead("evil\x1b[2J\nid", title="red \x1b[31m\u202e\ttext"),
                     bead("b", "evil\x1b[2J\nid"))
    out = render(graph, "ascii").splitlines()
    assert out[1] == "  evil\\x1b[2J\\nid  [pending]  red \\x1b[31m\\u202e text"
    assert out[3].endswith("<- evil\\x1b[2J\\nid")
    assert len(out) == 5


# --- json -----------------------------------------------------------------------------------

def test_json_round_trips_nodes_edges_and_states() -> None:
    graph = graph_of(bead("b", "a", tags=("t1", "t2")), bead("a", backlog="base"),
                     bead("c", "a"), bead("d", "c", "b"))
    data = json.loads(render(graph, "json", {"a": "merged", "c": State.RUNNING}))
    assert [n["id"] for n in data["nodes"]] == ["a", "b", "c", "d"]
    assert data["nodes"][1] == {"id": "b", "title": "Title of b", "backlog": "main",
                                "tags": ["t1", "t2"], "state": "pending", "needs": ["a"]}
    assert [n["state"] for n in data["nodes"]] == ["merged", "pending", "running", "pending"]
    assert data["nodes"][3]["needs"] == ["b", "c"]
    assert data["edges"] == [{"from": "a", "to": "b"}, {"from": "a", "to": "c"},
                             {"from": "b", "to": "d"}, {"from": "c", "to": "d"}]


def test_json_keeps_hostile_text_verbatim() -> None:
    data = json.loads(render(hostile(), "json"))
    assert data["nodes"][1]["title"] == HOSTILE
    assert data["nodes"][2]["backlog"] == HOSTILE


# --- all formats ----------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_output_does_not_depend_on_insertion_order(fmt: str) -> None:
    beads = [bead("a", backlog="x"), bead("b", "a"), bead("c", "a", backlog="x"),
             bead("d", "c", "b")]
    states = {"b": "merged"}
    assert render(graph_of(*beads), fmt, states) == render(graph_of(*beads[::-1]), fmt, states)


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_graph_renders(fmt: str) -> None:
    assert render(nx.DiGraph(), fmt)


def test_unknown_format_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="dot, mermaid, ascii, json"):
        render(diamond(), "svg")
