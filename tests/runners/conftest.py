"""Fixtures for driving the real agent CLIs against the fake model server.

The CLIs live in GAS_TEST_AGENTS_DIR (default: <repo>/.agents), installed by
`.ci/install-agents DIR`: DIR/npm/node_modules/.bin/{claude,codex} and DIR/aider/bin/aider.
Missing CLIs skip their tests on a developer machine and fail them under CI=true.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gastown.ledger import record_path
from tests.conftest import git
from tests.fake_model import FakeModel

ROOT = Path(__file__).resolve().parents[2]
AGENTS = Path(os.environ.get("GAS_TEST_AGENTS_DIR", ROOT / ".agents"))
CLI_DIRS = {"claude": AGENTS / "npm" / "node_modules" / ".bin",
            "codex": AGENTS / "npm" / "node_modules" / ".bin",
            "aider": AGENTS / "aider" / "bin"}


def cli_dir(name: str) -> Path:
    """The directory holding the `name` CLI; skips (or, under CI, fails) when it is missing."""
    folder = CLI_DIRS[name]
    if not (folder / name).exists():
        message = f"{name} CLI not installed in {folder}: run .ci/install-agents {AGENTS}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return folder


@pytest.fixture
def fake_model() -> Iterator[FakeModel]:
    with FakeModel() as server:
        yield server


@pytest.fixture
def agent_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME for the CLIs: they never read or write the real user's config."""
    home = tmp_path / "agent-home"
    home.mkdir()
    if (Path(os.environ["HOME"]) / ".gitconfig").exists():
        shutil.copy(Path(os.environ["HOME"]) / ".gitconfig", home / ".gitconfig")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    for key in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL",
                "OPENAI_API_KEY", "OPENAI_BASE_URL", "CLAUDECODE", "CODEX_HOME"):
        monkeypatch.delenv(key, raising=False)
    return home


def rewrite_gasfile(repo: Path, text: str) -> None:
    (repo / "Gasfile.yaml").write_text(text)
    git(repo, "commit", "-qam", "Gasfile")


def record(repo: Path, bead: str = "add") -> dict[str, Any]:
    """The bead's ledger record, read straight from the ledger branch."""
    return json.loads(git(repo, "show", f"gt-ledger:{record_path(bead)}"))


def with_cli_on_path(monkeypatch: pytest.MonkeyPatch, name: str) -> Path:
    folder = cli_dir(name)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder
