"""Runners from other packages: found through the entry point, used as polecat and reviewer;
the review loop, cost accounting and budgets, with a scripted runner and no model."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gastown import runners
from tests.conftest import git, make_repo, trailers
from tests.runners.conftest import record

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugin"


@pytest.fixture
def scripted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install tests/plugin/scripted_runner.py as a distribution with a gastown.runners entry."""
    site = tmp_path / "site"
    dist = site / "gas_scripted-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: gas-scripted\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[gastown.runners]\nscripted = scripted_runner:ScriptedRunner\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    runners._plugins.cache_clear()
    runners.get.cache_clear()
    folder = tmp_path / "script"
    folder.mkdir()
    monkeypatch.setenv("SCRIPTED_DIR", str(folder))
    yield folder
    runners._plugins.cache_clear()
    runners.get.cache_clear()
    sys.modules.pop("scripted_runner", None)


GASFILE = '''\
version: 1
{budget}
roles:
  polecat: {{runner: scripted, model: claude-haiku-4-5, max_attempts: 2}}
  witness: {{runner: scripted, model: claude-sonnet-4-5}}
backlogs:
  fix:
    items:
      - {{id: one, title: First fix}}
      - {{id: two, title: Second fix, needs: [one]}}
'''


def repo_with(tmp_path: Path, budget: str = "") -> Path:
    return make_repo(tmp_path / "repo", {"Gasfile.yaml": GASFILE.format(budget=budget)})


def test_plugin_runner_is_found_and_used(tmp_path: Path, gas, scripted: Path) -> None:
    assert "scripted" in runners.runner_names()
    repo = repo_with(tmp_path)
    result = gas(repo, "build")
    assert result.code == 0, result
    assert trailers(repo) == ["two", "one"]
    assert "[Polecat-01] WRITE work.txt" in result.out
    assert "# Bead one: First fix" in git(repo, "show", "staging:work.txt") or \
        "# Bead two: Second fix" in git(repo, "show", "staging:work.txt")


def test_reject_reason_reaches_the_next_prompt(tmp_path: Path, gas, scripted: Path) -> None:
    (scripted / "verdicts").write_text("I looked.\nVERDICT: REJECT add a docstring\n"
                                       "no verdict here\nVERDICT: APPROVE\nVERDICT: APPROVE\n")
    repo = repo_with(tmp_path)
    result = gas(repo, "build")
    assert result.code == 0, result
    assert '[Witness] REJECT one "add a docstring"' in result.out
    prompts = (scripted / "prompts.log").read_text().split("--- ")
    second = next(p for p in prompts if p.startswith("polecat one attempt 2"))
    assert "The witness rejected your work: add a docstring" in second
    rec = record(repo, "one")
    assert [(a["n"], a["outcome"], a["reason"]) for a in rec["attempts"]] == [
        (1, "rejected", "add a docstring"), (2, "approved", None)]
    assert "Beads rejected: 1 (50.0%) (all returned for retry, 1 subsequently fixed)" \
        in result.out


def test_unparseable_verdict_twice_is_a_rejection(tmp_path: Path, gas, scripted: Path) -> None:
    (scripted / "verdicts").write_text("looks fine\nstill fine\n" * 2)
    repo = repo_with(tmp_path)
    result = gas(repo, "build", "--only", "one")
    assert result.code == 1
    rec = record(repo, "one")
    assert rec["attempts"][0]["reason"] == "the witness gave no verdict: still fine"
    assert rec["cost"]["witness"]["calls"] == 4


def test_cost_per_role_in_ledger_and_summary(tmp_path: Path, gas, scripted: Path) -> None:
    repo = repo_with(tmp_path)
    result = gas(repo, "build")
    assert result.code == 0, result
    cost = record(repo, "one")["cost"]
    assert cost["polecat"] == {"runner": "scripted", "model": "claude-haiku-4-5", "usd": 0.0015,
                               "input_tokens": 1000, "output_tokens": 100, "calls": 1}
    assert cost["witness"]["usd"] == 0.0045  # 1000 x $3/MTok + 100 x $15/MTok
    for line in ("Total API cost: $0.0120", "Polecat (claude-haiku-4-5): $0.0030",
                 "Witness (claude-sonnet-4-5): $0.0090", "Cost per merged bead: $0.0060"):
        assert line in result.out.splitlines()
    dry = gas(repo, "build", "--dry-run", "--force")
    assert "Estimated cost: ~$0.0120 for 2 of 2 beads" in dry.out


def test_model_override_changes_the_model_not_the_fingerprint(tmp_path: Path, gas,
                                                               scripted: Path) -> None:
    repo = repo_with(tmp_path)
    result = gas(repo, "build", "--only", "one", "--polecat-model", "gpt-5-mini")
    assert result.code == 0, result
    assert record(repo, "one")["cost"]["polecat"]["model"] == "gpt-5-mini"
    assert "Up to date: 1 Beads" in gas(repo, "build").out


def test_budget_spent_stops_dispatch(tmp_path: Path, gas, scripted: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIPTED_USD", "0.6")
    repo = repo_with(tmp_path, "budget: {usd: 1.0}")
    result = gas(repo, "build")
    assert result.code == 1
    assert trailers(repo) == ["one"]
    assert "[Mayor] BUDGET spent: two not dispatched" in result.out
    assert "Budget: $1.20 of $1.00 spent" in result.out


def test_bead_over_its_budget_fails(tmp_path: Path, gas, scripted: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIPTED_USD", "0.6")
    repo = repo_with(tmp_path, "budget: {per_bead_usd: 1.0}")
    result = gas(repo, "build", "--only", "one")
    assert result.code == 1
    rec = record(repo, "one")
    assert rec["state"] == "failed"
    assert rec["reason"] == "over the per-bead budget: $1.20 > $1.00"


def test_rate_limit_waits_and_resumes_without_using_an_attempt(
        tmp_path: Path, gas, scripted: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAS_RATE_LIMIT_BACKOFF", "0.01")
    (scripted / "rate-limits-polecat").write_text("2")
    (scripted / "rate-limits-witness").write_text("1")
    repo = repo_with(tmp_path)
    result = gas(repo, "build", "--only", "one")
    assert result.code == 0, result
    waits = [line for line in result.out.splitlines() if "WAIT one: rate limited" in line]
    assert len(waits) == 3
    assert "trying again in 0.01s" in waits[0] and "trying again in 0.02s" in waits[1]
    assert "[Witness] WAIT one" in waits[2]
    assert len(record(repo, "one")["attempts"]) == 1


def test_rate_limit_ends_at_the_roles_timeout(tmp_path: Path, gas, scripted: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAS_RATE_LIMIT_BACKOFF", "5")
    (scripted / "rate-limits-polecat").write_text("100")
    text = GASFILE.format(budget="").replace("max_attempts: 2}", "max_attempts: 1, timeout: 1}")
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": text})
    result = gas(repo, "build", "--only", "one")
    assert result.code == 1
    assert record(repo, "one")["reason"] == \
        "gave up after 1 attempt(s): scripted: model API error 429: slow down"
