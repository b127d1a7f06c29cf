"""The refinery's merge strategies on a real repo: one trailer per bead, first-parent history."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import git, make_repo, trailers

GASFILE = '''\
version: 1
project: {{base: main, into: staging}}
roles:
  refinery: {{strategy: {strategy}, ci: "test -e a.txt"}}
backlogs:
  work:
    items:
      - {{id: one, run: "echo one > a.txt && echo more > b.txt"}}
      - {{id: two, run: "echo two > c.txt", needs: [one]}}
'''


@pytest.mark.parametrize("strategy", ["merge", "squash", "rebase"])
def test_strategy_lands_each_bead_once(tmp_path: Path, gas, strategy: str) -> None:
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": GASFILE.format(strategy=strategy)})
    result = gas(repo, "build")
    assert result.code == 0, result
    assert trailers(repo) == ["two", "one"]
    assert git(repo, "show", "staging:c.txt") == "two"
    parents = git(repo, "log", "--format=%P", "-1", "staging").split()
    assert len(parents) == (2 if strategy == "merge" else 1)
    status = json.loads(gas(repo, "status", "--json").out)
    assert {b["id"]: b["state"] for b in status["beads"]} == {"one": "merged", "two": "merged"}
