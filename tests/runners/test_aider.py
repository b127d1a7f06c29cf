"""The aider runner: the real Aider CLI against the fake Chat Completions API, via `gas build`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import git, make_repo, trailers
from tests.fake_model import FakeModel
from tests.runners.conftest import record, rewrite_gasfile, with_cli_on_path

POLECAT, WITNESS = "openai/fake-polecat", "openai/fake-witness"
FILES = {
    "calc.py": "def add(a, b):\n    return a - b\n",
    "test_calc.py": "import unittest\n\nfrom calc import add\n\n\n"
                    "class T(unittest.TestCase):\n    def test_add(self):\n"
                    "        self.assertEqual(add(2, 3), 5)\n",
    ".gitignore": "__pycache__/\n",
}
FIXED = "def add(a, b):\n    return a + b\n"
FIX = {"text": "Fixing add().", "files": {"calc.py": FIXED}}
WRONG = {"text": "Multiplying.", "files": {"calc.py": "def add(a, b):\n    return a * b\n"}}
APPROVE = [[{"text": "The change is right.\nVERDICT: APPROVE"}]]
ENV = {"OPENAI_API_KEY": "fake-key", "GAS_AIDER_MAX_RETRIES": "0",
       "PYTHONDONTWRITEBYTECODE": "1"}


def gasfile(url: str, *, attempts: int = 2, polecat: str = "", checks: str = "",
            model: str = POLECAT, **env: str) -> str:
    role_env = json.dumps({"OPENAI_API_BASE": f"{url}/v1", **ENV, **env})
    return f"""\
version: 1
project: {{parallel: 1}}
prices:
  {POLECAT}: {{input: 2, output: 8}}
  {WITNESS}: {{input: 1, output: 4}}
roles:
  polecat:
    runner: aider
    model: {model}
    checks: [{checks or '"python3 -m unittest -q"'}]
    max_attempts: {attempts}
    timeout: 120
    env: {role_env}{polecat}
  witness:
    runner: aider
    model: {WITNESS}
    timeout: 120
    env: {role_env}
backlogs:
  fix:
    items:
      - {{id: add, title: "Make add() add", file: calc.py}}
"""


@pytest.fixture
def setup(tmp_path: Path, fake_model: FakeModel, agent_home: Path,
          monkeypatch: pytest.MonkeyPatch) -> Path:
    with_cli_on_path(monkeypatch, "aider")
    return make_repo(tmp_path / "repo", {**FILES, "Gasfile.yaml": gasfile(fake_model.url)})


def served(model: str) -> str:
    return model.split("/", 1)[1]  # litellm sends the name after the provider prefix


def test_edit_is_merged_after_aider_runs_the_checks(setup: Path, fake_model: FakeModel,
                                                    gas: Any) -> None:
    """The first edit fails the checks; aider sends their output back and the fix passes."""
    fake_model.scripts = {served(POLECAT): [[WRONG, FIX]], served(WITNESS): APPROVE}
    result = gas(setup, "build")
    assert result.code == 0, result
    assert trailers(setup) == ["add"]
    assert git(setup, "show", "staging:calc.py") == FIXED.strip()
    for line in ("READ calc.py", "TEXT Multiplying.", "WRITE calc.py",
                 "RUN python3 -m unittest -q -> FAILED (failures=1)", "TEXT Fixing add().",
                 "RUN python3 -m unittest -q -> OK", "[Witness] READ calc.py",
                 "[Witness] TEXT The change is right."):
        assert line in result.out, line
    assert [(r["model"], r["turn"]) for r in fake_model.requests] == [
        (served(POLECAT), 0), (served(POLECAT), 1), (served(WITNESS), 0)]
    assert "Make add() add" in fake_model.prompts(model=served(POLECAT))[0]
    assert "AssertionError: 6 != 5" in fake_model.prompts(model=served(POLECAT))[1]
    # aider left nothing behind: no commits of its own, no side files, no identity written
    assert git(setup, "log", "--format=%s", "-1", "staging^2").startswith("add: Make add() add")
    assert git(setup, "show", "--name-only", "--format=", "staging^2") == "calc.py"
    assert "Your Name" not in (setup / ".git" / "config").read_text()


def test_witness_reason_reaches_the_polecat(setup: Path, fake_model: FakeModel,
                                            gas: Any) -> None:
    docstring = {"path": "calc.py", "search": "def add(a, b):\n",
                 "replace": 'def add(a, b):\n    """The sum of a and b."""\n'}
    rewrite_gasfile(setup, gasfile(fake_model.url,
                                   polecat='\n    args: ["--edit-format", "diff"]'))
    fake_model.scripts = {
        served(POLECAT): [[{"edits": [{"path": "calc.py", "search": "    return a - b\n",
                                       "replace": "    return a + b\n"}]}],
                          [{"text": "Adding it.", "edits": [docstring]}]],
        served(WITNESS): [[{"text": "VERDICT: REJECT add a docstring"}],
                          [{"text": "VERDICT: APPROVE"}]],
    }
    result = gas(setup, "build")
    assert result.code == 0, result
    second = [r for r in fake_model.requests
              if r["model"] == served(POLECAT) and r["conversation"] == 1]
    assert "add a docstring" in second[0]["prompt"]
    assert "[Polecat-01] TEXT Adding it." in result.out
    assert second[0]["prompt"] == fake_model.prompts(model=served(POLECAT))[1]
    assert trailers(setup) == ["add"]
    assert '"""The sum of a and b."""' in git(setup, "show", "staging:calc.py")
    attempts = record(setup)["attempts"]
    assert len(attempts) == 2
    assert (attempts[0]["outcome"], attempts[0]["reason"]) == ("rejected", "add a docstring")


def test_tokens_and_cost_per_role(setup: Path, fake_model: FakeModel, gas: Any) -> None:
    """A model litellm knows is priced by aider itself (its price wins over the Gasfile's);
    an unknown one is priced by gastown from the Gasfile's `prices`."""
    known = "openai/gpt-4o-mini"
    rewrite_gasfile(setup, gasfile(fake_model.url, model=known).replace(
        "prices:\n", f"prices:\n  {known}: {{input: 100, output: 100}}\n"))
    fake_model.usage_in, fake_model.usage_out = 1200, 80
    fake_model.scripts = {served(known): [[FIX]], served(WITNESS): APPROVE}
    result = gas(setup, "build")
    assert result.code == 0, result
    cost = record(setup)["cost"]
    for role, model in (("polecat", known), ("witness", WITNESS)):
        assert len([r for r in fake_model.requests if r["model"] == served(model)]) == 1
        assert cost[role]["runner"] == "aider" and cost[role]["model"] == model
        assert (cost[role]["input_tokens"], cost[role]["output_tokens"]) == (1200, 80)
        assert cost[role]["usd"] > 0 and cost[role]["calls"] == 1
    assert cost["polecat"]["usd"] == pytest.approx((1200 * 0.15 + 80 * 0.6) / 1e6)
    assert cost["witness"]["usd"] == pytest.approx((1200 * 1 + 80 * 4) / 1e6)
    assert f"Polecat ({known}): $" in result.out
    assert f"Witness ({WITNESS}): $" in result.out
    assert "Total API cost: $" in result.out


@pytest.mark.parametrize(("status", "words"), [(500, "model API error 500: injected failure"),
                                               (401, "bad API key (401): injected failure")])
def test_model_error_fails_with_the_status(setup: Path, fake_model: FakeModel, gas: Any,
                                           status: int, words: str) -> None:
    """aider retries a 500 for about a minute; GAS_AIDER_MAX_RETRIES=0 stops it at once."""
    rewrite_gasfile(setup, gasfile(fake_model.url, attempts=1))
    fake_model.fail(status, count=100)
    result = gas(setup, "build")
    assert result.code == 1, result
    reason = record(setup)["reason"]
    assert f"aider: {words}" in reason, reason
    assert len(fake_model.requests) == 1  # x-should-retry: false, and no aider retry
    assert f"ERROR {words}" in result.out
    assert trailers(setup) == []


def test_api_retry_is_shown_and_recovers(setup: Path, fake_model: FakeModel, gas: Any) -> None:
    rewrite_gasfile(setup, gasfile(fake_model.url, GAS_AIDER_MAX_RETRIES="1"))
    fake_model.scripts = {served(POLECAT): [[FIX]], served(WITNESS): APPROVE}
    fake_model.fail(500, count=1)
    result = gas(setup, "build")
    assert result.code == 0, result
    assert "RETRY model API error 500, retrying in 0.2s" in result.out
    assert trailers(setup) == ["add"]


def test_aider_giving_up_on_the_checks_fails_the_attempt(setup: Path, fake_model: FakeModel,
                                                         gas: Any) -> None:
    rewrite_gasfile(setup, gasfile(fake_model.url, attempts=1))
    fake_model.scripts = {served(POLECAT): [[WRONG]], served(WITNESS): APPROVE}
    result = gas(setup, "build")
    assert result.code == 1, result
    assert record(setup)["reason"].endswith("aider: gave up after 3 retries: the tests still fail")
    assert len(fake_model.requests) == 4  # the edit and aider's 3 retries


def test_stall_kills_aider_and_its_test_command(setup: Path, fake_model: FakeModel, gas: Any,
                                                tmp_path: Path) -> None:
    probe = f"aider-orphan-probe-{tmp_path.name}"
    rewrite_gasfile(setup, gasfile(fake_model.url, attempts=1, polecat="\n    stall: 2",
                                   checks='"sleep 60"', GAS_TEST_PROBE=probe))
    fake_model.scripts = {served(POLECAT): [[FIX]], served(WITNESS): APPROVE}
    result = gas(setup, "build")
    assert result.code == 1, result
    assert record(setup)["reason"].endswith("aider: killed after stall")
    assert processes_with(f"GAS_TEST_PROBE={probe}") == []


def processes_with(variable: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and variable.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_check_names_the_missing_cli(setup: Path, gas: Any,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    result = gas(setup, "build")
    assert result.code == 2, result
    assert ("aider not found on PATH; install it: pipx install aider-chat "
            "(or python -m pip install aider-chat)") in result.err


def test_check_wants_the_providers_key(setup: Path, gas: Any) -> None:
    rewrite_gasfile(setup, gasfile("http://127.0.0.1:9").replace(
        '"OPENAI_API_KEY": "fake-key", ', ""))
    result = gas(setup, "build")
    assert result.code == 2, result
    assert f"OPENAI_API_KEY is not set (model {POLECAT})" in result.err


def test_check_wants_a_recent_aider(setup: Path, gas: Any, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    old = tmp_path / "old-aider"
    old.mkdir()
    (old / "aider").write_text("#!/bin/sh\necho aider 0.79.1\n")
    (old / "aider").chmod(0o755)
    monkeypatch.setenv("PATH", f"{old}:/usr/bin:/bin")
    result = gas(setup, "build")
    assert result.code == 2, result
    assert "aider 0.79.1 is older than 0.80; upgrade: pipx upgrade aider-chat" in result.err
