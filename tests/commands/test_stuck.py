"""Stuck work: a role's `timeout` and `stall` kill the attempt, which is retried, then failed."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from gastown.ledger import record_path
from tests.conftest import git, make_repo, trailers

# Prints once, then goes silent: hangs on the first attempt, works on the second.
STUCK = '''
import os, pathlib, sys, time
print("working", flush=True)
if os.environ["GAS_ATTEMPT"] == "1" or os.environ.get("ALWAYS_STUCK"):
    while True:
        time.sleep(1)  # the stuck agent, not test synchronisation
pathlib.Path("done.txt").write_text("done")
'''


@pytest.mark.parametrize("limit", ["timeout: 1", "stall: 1"])
def test_stuck_attempt_is_killed_retried_and_recorded(tmp_path: Path, gas, limit: str) -> None:
    gasfile = f'''\
version: 1
roles:
  polecat: {{runner: command, max_attempts: 2, {limit}}}
backlogs:
  work:
    items: [{{id: w, run: "{sys.executable} stuck.py"}}]
'''
    repo = make_repo(tmp_path / "repo", {"stuck.py": STUCK, "Gasfile.yaml": gasfile})
    result = gas(repo, "build")
    assert result.code == 0, result
    assert trailers(repo) == ["w"]
    record = json.loads(git(repo, "show", f"gt-ledger:{record_path('w')}"))
    kind = limit.split(":")[0]
    assert record["attempts"][0]["outcome"] == "failed"
    assert record["attempts"][0]["reason"] == f"{sys.executable} stuck.py: killed after {kind}"
    assert "RETRY w (attempt 2/2)" in result.out


def test_always_stuck_fails_after_max_attempts(tmp_path: Path, gas,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALWAYS_STUCK", "1")
    gasfile = f'''\
version: 1
roles:
  polecat: {{runner: command, max_attempts: 2, timeout: 0.5}}
backlogs:
  work:
    items: [{{id: w, run: "{sys.executable} stuck.py"}}]
'''
    repo = make_repo(tmp_path / "repo", {"stuck.py": STUCK, "Gasfile.yaml": gasfile})
    result = gas(repo, "build")
    assert result.code == 1
    record = json.loads(git(repo, "show", f"gt-ledger:{record_path('w')}"))
    assert record["state"] == "failed"
    assert record["reason"] == \
        f"gave up after 2 attempt(s): {sys.executable} stuck.py: killed after timeout"
