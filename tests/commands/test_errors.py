"""Bad input: one clear message (file, line, what, hint), exit 2, and nothing run or written."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gastown.lock import build_lock
from tests.conftest import git, make_repo

ITEMS = "version: 1\nbacklogs:\n  a:\n    items:\n"


def items(*rows: str) -> str:
    return ITEMS + "".join(f"      - {row}\n" for row in rows)


CASES: list[tuple[str, dict[str, str], list[str], str]] = [
    ("cycle", {"Gasfile.yaml": items('{id: a1, run: "true", needs: [a3]}',
                                     '{id: a2, run: "true", needs: [a1]}',
                                     '{id: a3, run: "true", needs: [a2]}')}, ["build"],
     "gas: error: Gasfile.yaml:5: dependency cycle: a1 -> a2 -> a3 -> a1\n"
     "  hint: remove one of these needs so the beads can run in order"),
    ("unknown need", {"Gasfile.yaml": items('{id: a1, run: "true", needs: [a33]}',
                                            '{id: a3, run: "true"}')}, ["build"],
     "gas: error: Gasfile.yaml:5: bead 'a1' needs 'a33', which is no bead, backlog or tag\n"
     "  hint: did you mean 'a3'?"),
    ("duplicate id", {"Gasfile.yaml": items('{id: a1, run: "true"}', '{id: a1, run: "true"}')},
     ["build"],
     "gas: error: Gasfile.yaml:6: duplicate bead id 'a1': backlog 'a' item 1 and backlog 'a' "
     "item 2\n  hint: make the `id` template unique per item, e.g. add {{ index }}"),
    ("unknown key", {"Gasfile.yaml": "version: 1\nbacklogs:\n  a:\n    form: x.json\n"},
     ["build"],
     "gas: error: Gasfile.yaml:4: unknown key 'backlogs.a.form'\n  hint: did you mean 'from'?"),
    ("malformed yaml", {"Gasfile.yaml": "version: 1\nbacklogs:\n  a: [\n"}, ["build"],
     "gas: error: Gasfile.yaml:4: invalid YAML: expected the node content, "
     "but found '<stream end>'"),
    ("malformed toml", {"Gasfile.toml": "version = 1\n[backlogs.a\n"}, ["build"],
     "gas: error: Gasfile.toml:2: invalid TOML: Expected ']' at the end of a table declaration"),
    ("missing backlog file", {"Gasfile.yaml": "version: 1\nbacklogs:\n  a:\n    from: x.json\n"},
     ["build"],
     "gas: error: Gasfile.yaml:3: backlog 'a': file 'x.json' not found\n"
     "  hint: 'from' paths are relative to the repository root"),
    ("backlog not a list", {"Gasfile.yaml": "version: 1\nbacklogs:\n  a:\n    from: x.json\n",
                            "x.json": '{"id": 1}'}, ["build"],
     "gas: error: Gasfile.yaml:3: backlog 'a': x.json holds a dict, not a list\n"
     "  hint: give a list, or {\"items\": [...]}"),
    ("unsafe id", {"Gasfile.yaml": "version: 1\nbacklogs:\n  a:\n    from: x.json\n"
                                   "    id: \"{{ item.name }}\"\n",
                   "x.json": '[{"name": "../etc"}]'}, ["build"],
     "gas: error: Gasfile.yaml:3: backlog 'a' item 1: bead id '../etc' is not a safe name\n"
     "  hint: ids may use letters, digits, '.', '_' and '-'; use `| slug` in the id template, "
     "e.g. \"x-{{ item.file | slug }}\""),
    ("missing field in template", {"Gasfile.yaml": "version: 1\nbacklogs:\n  a:\n"
                                                   "    from: x.json\n    id: \"{{ item.nme }}\"\n",
                                    "x.json": '[{"name": "one"}]'}, ["build"],
     "gas: error: Gasfile.yaml:3: backlog 'a' item 1: id: 'dict object' has no attribute 'nme'\n"
     "  hint: check the field names against the backlog item"),
    ("prompt template error", {"Gasfile.yaml": "version: 1\nroles:\n  polecat: {prompt: p.j2}\n"
                                               + items('{id: a1, run: "true"}')[11:],
                               "p.j2": "line one\n{{ bead.id }\n"}, ["build"],
     "gas: error: p.j2:2: template error: unexpected '}'\n"
     "  hint: Gasfile templates are Jinja2: {{ item.field }}, filters | slug, | shquote"),
    ("missing base", {"Gasfile.yaml": "version: 1\nproject: {base: trunk}\n"
                                      + items('{id: a1, run: "true"}')[11:]}, ["build"],
     "gas: error: Gasfile.yaml: project.base: branch 'trunk' does not exist\n"
     "  hint: set project.base to an existing branch (e.g. main or master)"),
    ("into checked out", {"Gasfile.yaml": "version: 1\nproject: {into: main}\n"
                                          + items('{id: a1, run: "true"}')[11:]}, ["build"],
     "gas: error: Gasfile.yaml: project.into: integration branch 'main' is checked out in "
     "{repo}\n  hint: switch that checkout to another branch; gas moves 'main' itself and never "
     "touches your working tree"),
    ("into is the ledger", {"Gasfile.yaml": "version: 1\nproject: {into: gt-ledger}\n"
                                            + items('{id: a1, run: "true"}')[11:]}, ["build"],
     "gas: error: Gasfile.yaml: project.into and project.ledger are both 'gt-ledger'\n"
     "  hint: the ledger needs a branch of its own (default gt-ledger)"),
    ("bad branch name", {"Gasfile.yaml": "version: 1\nproject: {into: 'a..b'}\n"
                                         + items('{id: a1, run: "true"}')[11:]}, ["build"],
     "gas: error: Gasfile.yaml: project.into: 'a..b' is not a valid branch name\n"
     "  hint: see `git help check-ref-format`"),
    ("wrong type", {"Gasfile.yaml": "version: 1\nproject: {parallel: many}\n"
                                    + items('{id: a1, run: "true"}')[11:]}, ["build"],
     "gas: error: Gasfile.yaml:2: project.parallel: expected an integer >= 1, got str"),
    ("only matches nothing", {"Gasfile.yaml": items('{id: a1, run: "true"}')},
     ["build", "--only", "a2"],
     "gas: error: Gasfile.yaml: --only 'a2' matches no tag, backlog or bead id\n"
     "  hint: did you mean 'a'?"),
    ("no gasfile", {"README": "x"}, ["build"],
     "gas: error: no Gasfile in {repo} (looked for Gasfile.yaml, Gasfile.yml, Gasfile.toml)\n"
     "  hint: run `gas init` to create one"),
]


@pytest.mark.parametrize(("files", "args", "message"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path, gas, files: dict[str, str],
                                              args: list[str], message: str) -> None:
    repo = make_repo(tmp_path / "repo", files)
    result = gas(repo, *args)
    expected = message.replace("{repo}", str(repo))
    assert (result.code, result.err.rstrip("\n")) == (2, expected), result
    assert result.out == ""
    _assert_nothing_written(repo)


def _assert_nothing_written(repo: Path) -> None:
    assert git(repo, "branch", "--format=%(refname:short)") == "main"
    assert not (repo / ".gastown").exists()


def _empty_repo(path: Path) -> None:
    path.mkdir()
    git(path, "init", "-q")


REPO_CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("not a git repo", lambda p: p.mkdir(),
     "gas: error: not a git repository: {repo}\n"
     "  hint: run gas inside a git repository (`git init` and commit first)"),
    ("no commits", lambda p: _empty_repo(p),
     "gas: error: the repository at {repo} has no commits yet\n"
     "  hint: commit something first: the integration branch starts from it"),
]


@pytest.mark.parametrize(("setup", "message"), [c[1:] for c in REPO_CASES],
                         ids=[c[0] for c in REPO_CASES])
def test_unusable_repository(tmp_path: Path, gas, setup: Callable[[Path], None],
                             message: str) -> None:
    repo = tmp_path / "repo"
    setup(repo)
    result = gas(repo, "build")
    assert (result.code, result.err.rstrip("\n")) == (2, message.replace("{repo}", str(repo)))


def test_second_build_while_one_holds_the_lock_exits_3(tmp_path: Path, gas) -> None:
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": items('{id: a1, run: "touch a"}')})
    with build_lock(repo / ".gastown" / "build.lock"):
        result = gas(repo, "build")
    assert result.code == 3
    assert result.err.startswith("gas: error: ")
    assert "another `gas build` holds the lock (pid " in result.err
    assert git(repo, "branch", "--list", "staging") == ""
    assert gas(repo, "build").code == 0


def test_gas_entry_point_runs_as_a_subprocess(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": items('{id: a1, run: "touch a"}')})
    proc = subprocess.run([sys.executable, "-m", "gastown", "build"], cwd=repo,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "[Refinery] MERGE gas/a1 -> staging" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "gastown", "graph", "--format", "nope"],
                          cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 2


def test_git_older_than_2_30_is_refused(tmp_path: Path, gas,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": items('{id: a1, run: "touch a"}')})
    old = tmp_path / "old-git"
    old.mkdir()
    real = shutil.which("git")
    (old / "git").write_text(f'#!/bin/sh\n[ "$1" = --version ] && echo "git version 2.20.1" '
                             f'&& exit 0\nexec {real} "$@"\n')
    (old / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{old}{os.pathsep}{os.environ['PATH']}")
    result = gas(repo, "build")
    assert (result.code, result.err.strip()) == (
        2, "gas: error: git 2.20.1 is too old; gastown needs git >= 2.30\n"
           "  hint: upgrade git (worktree and update-ref features are needed)")
    _assert_nothing_written(repo)


def test_output_piped_into_a_reader_that_stops_early(tmp_path: Path) -> None:
    """`gas status | head -1`: the reader closes the pipe; gas stops quietly (no traceback,
    no crash log) with exit 1."""
    lines = "".join(f"      - {{id: b{n}, run: \"true\"}}\n" for n in range(300))
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": ITEMS + lines})
    read, write = os.pipe()
    os.close(read)  # the reader is gone before gas writes anything
    proc = subprocess.run([sys.executable, "-m", "gastown", "status"], cwd=repo, stdout=write,
                          stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    os.close(write)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == ""
    assert not (repo / ".gastown" / "logs").exists()
