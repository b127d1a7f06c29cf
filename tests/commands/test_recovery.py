"""The ledger and the integration branch agree after a crash; TOML Gasfiles; prompts as data."""
from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import TWO_BEADS, git, make_repo, trailers


def test_merge_landed_but_record_lost_is_recovered_not_redone(tmp_path: Path, gas) -> None:
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": TWO_BEADS})
    assert gas(repo, "build").code == 0
    first = git(repo, "rev-list", "--max-parents=0", "gt-ledger")
    git(repo, "update-ref", "refs/heads/gt-ledger", first)  # as if no record had been written
    staging = git(repo, "rev-parse", "staging")
    result = gas(repo, "build")
    assert result.code == 0, result
    assert "[Mayor] Recovered 2 merged bead(s) from staging" in result.out
    assert "Beads dispatched: 0" in result.out
    assert git(repo, "rev-parse", "staging") == staging
    assert trailers(repo) == ["a2", "a1"]
    status = json.loads(gas(repo, "status", "--json").out)
    assert [b["state"] for b in status["beads"]] == ["merged", "merged"]


def test_trailers_on_the_base_of_a_new_integration_branch_are_recovered(tmp_path: Path,
                                                                       gas) -> None:
    """The integration branch is made at the base when it is missing, and the merges the
    base carries count (read after it is made)."""
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": TWO_BEADS})
    assert gas(repo, "build").code == 0
    git(repo, "reset", "-q", "--hard", "staging")  # main takes the merges
    git(repo, "branch", "-D", "staging")
    first = git(repo, "rev-list", "--max-parents=0", "gt-ledger")
    git(repo, "update-ref", "refs/heads/gt-ledger", first)  # and no record of them
    result = gas(repo, "build")
    assert result.code == 0, result
    assert "[Mayor] Created integration branch staging at main" in result.out
    assert "[Mayor] Recovered 2 merged bead(s) from staging" in result.out
    assert "Beads dispatched: 0" in result.out


TOML = '''\
version = 1
[project]
into = "integration"
parallel = 2
[roles.refinery]
ci = "test -e one"
[backlogs.a]
items = [{id = "a1", run = "echo 1 > one"}, {id = "a2", run = "echo 2 > two", needs = ["a1"]}]
'''


def test_toml_gasfile_builds(tmp_path: Path, gas) -> None:
    repo = make_repo(tmp_path / "repo", {"Gasfile.toml": TOML})
    result = gas(repo, "build")
    assert result.code == 0, result
    assert trailers(repo, "integration") == ["a2", "a1"]


PROMPTED = '''\
version: 1
roles:
  polecat: {prompt: prompt.md.j2}
backlogs:
  a:
    from: items.json
    run: 'cp "$GAS_PROMPT_FILE" prompt.md'
'''


def test_prompt_reaches_the_command_and_item_text_stays_literal(tmp_path: Path, gas) -> None:
    items = [{"id": "x", "title": "{{ 7*7 }} {% raw %} $(whoami) `id`"}]
    repo = make_repo(tmp_path / "repo", {
        "Gasfile.yaml": PROMPTED, "items.json": json.dumps(items),
        "prompt.md.j2": "Fix {{ bead.id }}: {{ bead.item.title }} (attempt {{ attempt }})\n"})
    result = gas(repo, "build")
    assert result.code == 0, result
    assert git(repo, "show", "staging:prompt.md") == \
        "Fix a-x: {{ 7*7 }} {% raw %} $(whoami) `id` (attempt 1)"
