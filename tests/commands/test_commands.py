"""init, demo, graph, status and validate as a user runs them."""
from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import TWO_BEADS, git, make_repo, trailers


def test_init_then_build_on_a_fresh_repo(repo: Path, gas) -> None:
    result = gas(repo, "init")
    assert result.code == 0, result
    assert result.out.splitlines()[:3] == ["wrote Gasfile.yaml",
                                           "wrote templates/prompts/polecat.md.j2",
                                           "wrote templates/prompts/witness.md.j2"]
    assert git(repo, "branch", "--list", "gt-ledger").strip() == "gt-ledger"
    again = gas(repo, "init")
    assert again.code == 2 and "Gasfile.yaml already exists" in again.err
    build = gas(repo, "build")
    assert build.code == 0, build
    assert trailers(repo) == ["hello"]
    prompt = (repo / ".gastown" / "prompts" / "hello" / "polecat-1.md").read_text()
    assert "# Bead hello: Add a HELLO file" in prompt


def test_prompt_edit_makes_its_beads_out_of_date(repo: Path, gas) -> None:
    assert gas(repo, "init").code == 0
    assert gas(repo, "build").code == 0
    prompt = repo / "templates" / "prompts" / "polecat.md.j2"
    prompt.write_text(prompt.read_text() + "\nBe brief.\n")
    dry = gas(repo, "build", "--dry-run")
    assert "would run hello" in dry.out and "definition changed" in dry.out


def test_demo_builds_everything(tmp_path: Path, gas) -> None:
    target = tmp_path / "demo"
    result = gas(tmp_path, "demo", "--dir", str(target))
    assert result.code == 0, result
    assert "Beads merged: 9 (100.0%)" in result.out
    assert "Beads retried: 1 attempts" in result.out
    assert len(trailers(target)) == 9
    changelog = git(target, "show", "staging:CHANGELOG.md")
    assert "legacy/format.ts" in changelog
    status = json.loads(gas(target, "status", "--json").out)
    assert {b["state"] for b in status["beads"]} == {"merged"}


def test_graph_formats(tmp_path: Path, gas) -> None:
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": TWO_BEADS})
    dot = gas(repo, "graph")
    assert dot.code == 0 and dot.out.startswith("digraph gastown {")
    assert '"a1" -> "a2"' in dot.out
    graph = json.loads(gas(repo, "graph", "--format", "json").out)
    assert graph["edges"] == [{"from": "a1", "to": "a2"}]
    ascii_ = gas(repo, "graph", "--format", "ascii").out
    assert "2 beads, 1 dependency, 2 waves" in ascii_
    assert "flowchart LR" in gas(repo, "graph", "--format", "mermaid").out
    only = json.loads(gas(repo, "graph", "--format", "json", "--only", "a1").out)
    assert [n["id"] for n in only["nodes"]] == ["a1"]


def test_status_and_validate(tmp_path: Path, gas) -> None:
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": TWO_BEADS})
    valid = gas(repo, "validate")
    assert valid.out == "Gasfile.yaml is valid: 2 beads (a: 2), 1 dependencies\n"
    before = gas(repo, "status")
    assert before.out.splitlines()[-1] == "2 pending"
    assert gas(repo, "build").code == 0
    rows = json.loads(gas(repo, "status", "--json").out)["beads"]
    assert [(r["id"], r["state"], r["up_to_date"]) for r in rows] == [
        ("a1", "merged", True), ("a2", "merged", True)]
    assert all(len(r["merge_commit"]) == 40 for r in rows)



def test_build_json(tmp_path: Path, gas) -> None:
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": TWO_BEADS})
    dry = json.loads(gas(repo, "build", "--dry-run", "--json").out)
    assert dry["would_run"] == [{"id": "a1", "why": "never built"},
                                {"id": "a2", "why": "never built"}]
    result = gas(repo, "build", "--json")
    assert result.code == 0
    assert "[Refinery] MERGE gas/a1 -> staging" in result.err
    report = json.loads(result.out)
    assert (report["exit_code"], report["merged"], report["failed"]) == (0, ["a1", "a2"], {})
