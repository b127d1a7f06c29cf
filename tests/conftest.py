"""Real git repositories in temp dirs, with a pinned, hermetic git environment."""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from gastown import objects

HERMETIC_GIT = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Committer",
    "GIT_COMMITTER_EMAIL": "committer@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@pytest.fixture(autouse=True)
def hermetic_git(tmp_path_factory: pytest.TempPathFactory,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test reads or writes the user's git config or $HOME."""
    home = tmp_path_factory.mktemp("home")
    (home / ".gitconfig").write_text(
        "[init]\n\tdefaultBranch = main\n[commit]\n\tgpgsign = false\n"
        "[tag]\n\tgpgsign = false\n[core]\n\thooksPath = /dev/null\n"
    )
    templates = home / "git-template"
    templates.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("GIT_TEMPLATE_DIR", str(templates))
    for key, value in HERMETIC_GIT.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("GAS_SERVER", raising=False)  # tests/test_server.py asks for one
    for key in [k for k in os.environ if k.startswith("GIT_") and k not in HERMETIC_GIT
                and k not in ("GIT_CONFIG_GLOBAL", "GIT_TEMPLATE_DIR")]:
        monkeypatch.delenv(key)
    yield
    objects.close_all()  # the long-lived git processes a test's commits started


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def make_repo(path: Path, files: Mapping[str, str] | None = None, *,
              branch: str = "main") -> Path:
    """A real git repository at `path` with `files` committed on `branch`."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", branch)
    for name, text in (files or {"README.md": "test repo\n"}).items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


class GasRun:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"GasRun(code={self.code}, out=...{self.out[-2000:]!r}, err={self.err!r})"


@pytest.fixture
def gas(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run `gas ARGS...` in-process in a repo, as the CLI would (real git, doit, subprocesses)."""
    from gastown.main import main

    def run(repo: Path, *args: str) -> GasRun:
        monkeypatch.chdir(repo)
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return GasRun(code, out, err)

    return run


def trailers(repo: Path, branch: str = "staging") -> list[str]:
    """Every Gas-Bead trailer on the integration branch's first-parent history."""
    out = git(repo, "log", "--first-parent", "--format=%(trailers:key=Gas-Bead,valueonly)",
              branch)
    return [line.strip() for line in out.splitlines() if line.strip()]


TWO_BEADS = """\
version: 1
backlogs:
  a:
    items:
      - {id: a1, run: "echo 1 > one"}
      - {id: a2, run: "echo 2 > two", needs: [a1]}
"""


def git_command(line: str) -> str:
    """The git command of a line git_calls() logged (after any `-c key=value`)."""
    words = line.split()
    while words and words[0].startswith("-"):
        words = words[2:] if words[0] == "-c" else words[1:]
    return words[0] if words else ""


def git_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every git process from now on appends its arguments to the returned file."""
    calls = tmp_path / "git-calls.log"
    calls.write_text("")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "git"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\nexec "{shutil.which("git")}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls
