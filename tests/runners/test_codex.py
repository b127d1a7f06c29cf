"""The codex runner: the real Codex CLI against the fake Responses API, through `gas build`."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import git, make_repo, trailers
from tests.fake_model import FakeModel
from tests.runners.conftest import record, with_cli_on_path

POLECAT = "gpt-5.5"  # slugs codex 0.169 knows: no "model metadata not found" warning
WITNESS = "gpt-5.6-terra"
FILES = {
    "calc.py": "def add(a, b):\n    return a - b\n",
    "test_calc.py": "import unittest\n\nfrom calc import add\n\n\n"
                    "class T(unittest.TestCase):\n    def test_add(self):\n"
                    "        self.assertEqual(add(2, 3), 5)\n",
    ".gitignore": "__pycache__/\n",
}
FIX = {"patch": "*** Begin Patch\n*** Update File: calc.py\n@@\n def add(a, b):\n"
                "-    return a - b\n+    return a + b\n*** End Patch\n"}
DOCSTRING = {"patch": "*** Begin Patch\n*** Update File: calc.py\n@@\n def add(a, b):\n"
                      '+    """The sum of a and b."""\n     return a + b\n*** End Patch\n'}
TEST = {"shell": "python3 -m unittest -q"}
APPROVE = [[{"text": "The change is right.\nVERDICT: APPROVE"}]]


def gasfile(url: str, timeout: int = 120, attempts: int = 2) -> str:
    env = json.dumps({"OPENAI_BASE_URL": f"{url}/v1", "OPENAI_API_KEY": "fake-key",
                      "CODEX_REQUEST_MAX_RETRIES": "0", "CODEX_STREAM_MAX_RETRIES": "0",
                      "CODEX_STREAM_IDLE_TIMEOUT_MS": "5000"})
    return f"""\
version: 1
project: {{parallel: 1}}
roles:
  polecat:
    runner: codex
    model: {POLECAT}
    checks: ["python3 -m unittest -q"]
    max_attempts: {attempts}
    timeout: {timeout}
    env: {env}
  witness:
    runner: codex
    model: {WITNESS}
    timeout: 120
    env: {env}
backlogs:
  fix:
    items:
      - {{id: add, title: "Make add() add", file: calc.py}}
"""


@pytest.fixture
def setup(tmp_path: Path, fake_model: FakeModel, agent_home: Path,
          monkeypatch: pytest.MonkeyPatch) -> Path:
    with_cli_on_path(monkeypatch, "codex")
    return make_repo(tmp_path / "repo", {**FILES, "Gasfile.yaml": gasfile(fake_model.url)})


def test_edit_is_merged(setup: Path, fake_model: FakeModel, gas: Any) -> None:
    fake_model.scripts = {POLECAT: [[FIX, TEST, {"text": "Fixed add(); tests pass."}]],
                          WITNESS: APPROVE}
    result = gas(setup, "build")
    assert result.code == 0, result
    assert trailers(setup) == ["add"]
    assert "return a + b" in git(setup, "show", "staging:calc.py")
    assert "WRITE calc.py" in result.out
    assert "RUN python3 -m unittest -q -> OK" in result.out
    assert "TEXT Fixed add(); tests pass." in result.out
    assert "Make add() add" in fake_model.prompts(model=POLECAT)[0]
    logs = setup / ".gastown" / "logs"
    assert "fake-key" not in (logs / "add.log").read_text()
    assert "fake-key" not in (logs / "codex-home-add" / "config.toml").read_text()


def test_witness_reason_reaches_the_polecat(setup: Path, fake_model: FakeModel,
                                            gas: Any) -> None:
    fake_model.scripts = {
        POLECAT: [[FIX, {"text": "Fixed."}], [DOCSTRING, {"text": "Added a docstring."}]],
        WITNESS: [[{"text": "VERDICT: REJECT add a docstring"}], [{"text": "VERDICT: APPROVE"}]],
    }
    result = gas(setup, "build")
    assert result.code == 0, result
    second = [r for r in fake_model.requests if r["model"] == POLECAT and r["conversation"] == 1]
    assert "add a docstring" in fake_model.prompts(model=POLECAT)[2] == second[0]["prompt"]
    assert trailers(setup) == ["add"]
    assert '"""The sum of a and b."""' in git(setup, "show", "staging:calc.py")
    attempts = record(setup)["attempts"]
    assert len(attempts) == 2
    assert (attempts[0]["outcome"], attempts[0]["reason"]) == ("rejected", "add a docstring")


def test_tokens_and_cost_per_role(setup: Path, fake_model: FakeModel, gas: Any) -> None:
    fake_model.usage_in, fake_model.usage_out = 1200, 80
    fake_model.scripts = {POLECAT: [[FIX, {"text": "Fixed."}]], WITNESS: APPROVE}
    result = gas(setup, "build")
    assert result.code == 0, result
    cost = record(setup)["cost"]
    for role, model in (("polecat", POLECAT), ("witness", WITNESS)):
        calls = len([r for r in fake_model.requests if r["model"] == model])
        assert calls > 0
        assert cost[role]["runner"] == "codex" and cost[role]["model"] == model
        assert (cost[role]["input_tokens"], cost[role]["output_tokens"]) == (1200 * calls,
                                                                            80 * calls)
        assert cost[role]["usd"] > 0 and cost[role]["calls"] >= 1
    assert f"Polecat ({POLECAT}): $" in result.out
    assert f"Witness ({WITNESS}): $" in result.out
    assert "Total API cost: $" in result.out


@pytest.mark.parametrize(("status", "words"), [(500, "model API error 500"),
                                               (401, "not logged in or bad API key (401)")])
def test_model_error_fails_with_the_status(setup: Path, fake_model: FakeModel, gas: Any,
                                           status: int, words: str) -> None:
    fake_model.fail(status, count=100, message="Incorrect API key provided")
    result = gas(setup, "build")
    assert result.code == 1, result
    reason = record(setup)["reason"]
    assert f"codex: {words}" in reason, reason
    assert len(fake_model.requests) == 2  # one call per attempt: no retries
    assert trailers(setup) == []


def test_check_names_the_missing_cli(setup: Path, gas: Any,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    result = gas(setup, "build")
    assert result.code == 2, result
    assert "codex not found on PATH; install it: npm install -g @openai/codex" in result.err


def test_check_wants_credentials(tmp_path: Path, agent_home: Path, gas: Any,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with_cli_on_path(monkeypatch, "codex")
    text = gasfile("http://127.0.0.1:9").replace('"OPENAI_API_KEY": "fake-key", ', "")
    repo = make_repo(tmp_path / "repo", {**FILES, "Gasfile.yaml": text})
    result = gas(repo, "build")
    assert result.code == 2, result
    assert "set OPENAI_API_KEY" in result.err and "codex login" in result.err


def test_timeout_kills_codex_and_its_commands(setup: Path, fake_model: FakeModel,
                                              gas: Any) -> None:
    (setup / "Gasfile.yaml").write_text(gasfile(fake_model.url, timeout=2, attempts=1))
    fake_model.scripts = {POLECAT: [[{"shell": "sleep 37.5"}, {"text": "Slept."}]]}
    started = time.monotonic()
    result = gas(setup, "build")
    assert result.code == 1, result
    assert "codex: killed after timeout" in record(setup)["reason"]
    assert time.monotonic() - started < 15
    log = (setup / ".gastown" / "logs" / "add.log").read_text()
    assert '"command":"/bin/bash -lc \'sleep 37.5\'"' in log  # it was running when killed
    assert not [pid for pid in os.listdir("/proc") if _cmdline(pid) == "sleep 37.5"]


def _cmdline(pid: str) -> str:
    if not pid.isdigit():
        return ""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def test_huge_prompt_goes_by_file(setup: Path, fake_model: FakeModel, gas: Any) -> None:
    text = (setup / "Gasfile.yaml").read_text().replace("file: calc.py", f"notes: {'x' * 120_000}")
    (setup / "Gasfile.yaml").write_text(text)
    fake_model.scripts = {POLECAT: [[FIX, {"text": "Fixed."}]], WITNESS: APPROVE}
    result = gas(setup, "build")
    assert result.code == 0, result
    prompt = fake_model.prompts(model=POLECAT)[0]
    assert "Your instructions are in the file " in prompt and "xxxxxxxx" not in prompt
