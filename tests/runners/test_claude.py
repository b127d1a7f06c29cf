"""The claude runner: the real Claude Code CLI against the fake Messages API, via `gas build`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gastown.runners.claude import command_outcome
from tests.conftest import git, make_repo, trailers
from tests.fake_model import FakeModel
from tests.runners.conftest import record, rewrite_gasfile, with_cli_on_path

POLECAT = "claude-sonnet-4-5"
WITNESS = "claude-haiku-4-5"
FILES = {
    "calc.py": "def add(a, b):\n    return a - b\n",
    "test_calc.py": "import unittest\n\nfrom calc import add\n\n\n"
                    "class T(unittest.TestCase):\n    def test_add(self):\n"
                    "        self.assertEqual(add(2, 3), 5)\n",
    ".gitignore": "__pycache__/\n",
}
READ = {"tool": "Read", "input": {"file_path": "{cwd}/calc.py"}}
FIX = {"tool": "Edit", "input": {"file_path": "{cwd}/calc.py", "old_string": "a - b",
                                 "new_string": "a + b"}}
# Write over an existing file: Claude Code wants a Read of it first in the session.
DOCSTRING = {"tool": "Write", "input": {"file_path": "{cwd}/calc.py", "content":
                                        'def add(a, b):\n    """The sum of a and b."""\n'
                                        "    return a + b\n"}}
TEST = {"tool": "Bash", "input": {"command": "python3 -m unittest -q"}}
APPROVE = [[{"text": "The change is right.\nVERDICT: APPROVE"}]]
ENV = {"ANTHROPIC_API_KEY": "fake-key", "CLAUDE_CODE_MAX_RETRIES": "0",
       "API_TIMEOUT_MS": "10000", "PYTHONDONTWRITEBYTECODE": "1"}


def gasfile(url: str, *, attempts: int = 2, polecat: str = "", **env: str) -> str:
    role_env = json.dumps({"ANTHROPIC_BASE_URL": url, **ENV, **env})
    return f"""\
version: 1
project: {{parallel: 1}}
roles:
  polecat:
    runner: claude
    model: {POLECAT}
    checks: ["python3 -m unittest -q"]
    max_attempts: {attempts}
    timeout: 120
    env: {role_env}{polecat}
  witness:
    runner: claude
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
    with_cli_on_path(monkeypatch, "claude")
    return make_repo(tmp_path / "repo", {**FILES, "Gasfile.yaml": gasfile(fake_model.url)})


def test_edit_is_merged(setup: Path, fake_model: FakeModel, gas: Any) -> None:
    fake_model.scripts = {POLECAT: [[READ, FIX, TEST, {"text": "Fixed add(); tests pass."}]],
                          WITNESS: APPROVE}
    result = gas(setup, "build")
    assert result.code == 0, result
    assert trailers(setup) == ["add"]
    assert "return a + b" in git(setup, "show", "staging:calc.py")
    for line in ("READ calc.py", "WRITE calc.py", "RUN python3 -m unittest -q -> OK",
                 "TEXT Fixed add(); tests pass.", "[Witness] TEXT The change is right."):
        assert line in result.out, line
    assert "Make add() add" in fake_model.prompts(model=POLECAT)[0]
    assert [r["turn"] for r in fake_model.requests] == [0, 1, 2, 3, 0]  # no side calls


def test_witness_reason_reaches_the_polecat(setup: Path, fake_model: FakeModel,
                                            gas: Any) -> None:
    fake_model.scripts = {
        POLECAT: [[READ, FIX, {"text": "Fixed."}],
                  [READ, DOCSTRING, {"text": "Added a docstring."}]],
        WITNESS: [[{"text": "VERDICT: REJECT add a docstring"}], [{"text": "VERDICT: APPROVE"}]],
    }
    result = gas(setup, "build")
    assert result.code == 0, result
    second = [r for r in fake_model.requests if r["model"] == POLECAT and r["conversation"] == 1]
    assert "add a docstring" in fake_model.prompts(model=POLECAT)[3] == second[0]["prompt"]
    assert trailers(setup) == ["add"]
    assert '"""The sum of a and b."""' in git(setup, "show", "staging:calc.py")
    attempts = record(setup)["attempts"]
    assert len(attempts) == 2
    assert (attempts[0]["outcome"], attempts[0]["reason"]) == ("rejected", "add a docstring")


def test_tokens_and_cost_per_role(setup: Path, fake_model: FakeModel, gas: Any) -> None:
    fake_model.usage_in, fake_model.usage_out = 1200, 80
    fake_model.scripts = {POLECAT: [[READ, FIX, {"text": "Fixed."}]], WITNESS: APPROVE}
    result = gas(setup, "build")
    assert result.code == 0, result
    cost = record(setup)["cost"]
    for role, model, calls in (("polecat", POLECAT, 3), ("witness", WITNESS, 1)):
        assert len([r for r in fake_model.requests if r["model"] == model]) == calls
        assert cost[role]["runner"] == "claude" and cost[role]["model"] == model
        assert (cost[role]["input_tokens"], cost[role]["output_tokens"]) == (1200 * calls,
                                                                            80 * calls)
        assert cost[role]["usd"] > 0 and cost[role]["calls"] == 1
    # Claude Code prices the calls itself: sonnet 4.5 at $3 / $15 per million tokens.
    assert cost["polecat"]["usd"] == pytest.approx(3 * (1200 * 3 + 80 * 15) / 1e6)
    assert f"Polecat ({POLECAT}): $" in result.out
    assert f"Witness ({WITNESS}): $" in result.out
    assert "Total API cost: $" in result.out


@pytest.mark.parametrize(("status", "words"), [(500, "model API error 500: injected failure"),
                                               (401, "not logged in or bad API key (401)")])
def test_model_error_fails_with_the_status(setup: Path, fake_model: FakeModel, gas: Any,
                                           status: int, words: str) -> None:
    rewrite_gasfile(setup, gasfile(fake_model.url, CLAUDE_CODE_MAX_RETRIES="2"))
    fake_model.fail(status, count=100)
    result = gas(setup, "build")
    assert result.code == 1, result
    reason = record(setup)["reason"]
    assert f"claude: {words}" in reason, reason
    assert len(fake_model.requests) == 2  # x-should-retry: false: one call per attempt
    assert [line for line in result.out.splitlines()
            if "ERROR " in line and f"API Error: {status}" in line]
    assert trailers(setup) == []


def test_api_retry_is_shown_and_recovers(setup: Path, fake_model: FakeModel, gas: Any) -> None:
    rewrite_gasfile(setup, gasfile(fake_model.url, CLAUDE_CODE_MAX_RETRIES="1"))
    fake_model.scripts = {POLECAT: [[READ, DOCSTRING, {"text": "Fixed."}]], WITNESS: APPROVE}
    fake_model.fail(529, count=1, retry=True, message="Overloaded")
    result = gas(setup, "build")
    assert result.code == 0, result
    assert "RETRY model API error 529: retry 1/1" in result.out


@pytest.mark.parametrize(("script", "polecat", "words"), [
    ([READ, FIX, {"text": "Fixed."}], "\n    max_turns: 1",
     "claude: Reached maximum number of turns (1)"),
    ([{"tool": "Write", "input": {"file_path": "{cwd}/../outside.txt", "content": "x"}},
      {"text": "Wrote it."}], "", "claude: permission denied: Write "),
])
def test_agent_failures(setup: Path, fake_model: FakeModel, gas: Any, script: list[Any],
                        polecat: str, words: str) -> None:
    rewrite_gasfile(setup, gasfile(fake_model.url, attempts=1, polecat=polecat))
    fake_model.scripts = {POLECAT: [script], WITNESS: APPROVE}
    result = gas(setup, "build")
    assert result.code == 1, result
    assert words in record(setup)["reason"]
    assert not list(setup.parent.rglob("outside.txt"))


def test_stall_kill_leaves_no_tool_process(setup: Path, fake_model: FakeModel, gas: Any,
                                           tmp_path: Path) -> None:
    """Claude Code runs a Bash command in a session of its own and, killed in the first
    seconds of it (before it tracks the command as a task), leaves it running: the runner
    finds it by its environment. The stall kill comes 1.5 s after the tool call is printed."""
    probe = f"claude-orphan-probe-{tmp_path.name}"
    rewrite_gasfile(setup, gasfile(fake_model.url, attempts=1, polecat="\n    stall: 1.5",
                                   GAS_TEST_PROBE=probe))
    sleeper = {"tool": "Bash", "input": {"command": "python3 -c 'import time; time.sleep(60)'"}}
    fake_model.scripts = {POLECAT: [[sleeper, {"text": "Done."}]], WITNESS: APPROVE}
    result = gas(setup, "build")
    assert result.code == 1, result
    assert "claude: killed after stall" in record(setup)["reason"]
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
    assert ("claude not found on PATH; install it: npm install -g @anthropic-ai/claude-code"
            in result.err)


def test_check_wants_credentials(setup: Path, agent_home: Path, gas: Any) -> None:
    text = gasfile("http://127.0.0.1:9").replace('"ANTHROPIC_API_KEY": "fake-key", ', "")
    rewrite_gasfile(setup, text)
    result = gas(setup, "build")
    assert result.code == 2, result
    assert "claude has no credentials: set ANTHROPIC_API_KEY" in result.err
    assert "claude auth login" in result.err
    (agent_home / ".claude").mkdir()
    (agent_home / ".claude" / ".credentials.json").write_text("{}")
    assert gas(setup, "build", "--dry-run").code == 0


@pytest.mark.parametrize(("output", "failed", "shown"), [
    ("\n----\nRan 1 test in 0.000s\n\nOK", False, "OK"),
    ("(Bash completed with no output)", False, "exit 0"),
    ("Exit code 1\nF\n----\nFAILED (failures=1)", True, "FAILED (failures=1) (exit 1)"),
    ("Exit code 2", True, "exit 2"),
    ("a\nShell cwd was reset to /x", False, "a"),
])
def test_command_outcome(output: str, failed: bool, shown: str) -> None:
    assert command_outcome(output, failed) == shown


def test_rate_limit_is_waited_out(setup: Path, fake_model: FakeModel, gas: Any,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAS_RATE_LIMIT_BACKOFF", "0.01")
    rewrite_gasfile(setup, gasfile(fake_model.url, attempts=1))
    fake_model.scripts = {POLECAT: [[READ, FIX, {"text": "Fixed."}]], WITNESS: APPROVE}
    fake_model.fail(429, count=1, message="rate limited, slow down")
    result = gas(setup, "build")
    assert result.code == 0, result
    assert "WAIT add: rate limited (claude: model API error 429" in result.out
    assert trailers(setup) == ["add"]
    assert len(record(setup)["attempts"]) == 1
