"""gastown.repo: the integration branch checked out anywhere is refused, as git lists it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from gastown import repo as repomod
from gastown import worktrees
from gastown.errors import GasError
from tests.conftest import git, git_calls, make_repo


def _scene(root: Path, tmp_path: Path, how: str) -> None:
    """Worktrees of `root` (whose integration branch is `staging`) set up as `how` says."""
    git(root, "branch", "staging")
    git(root, "branch", "other")
    tree = tmp_path / "tree"
    git(root, "worktree", "add", "-q", "--detach", str(tree), "main")
    admin = Path(git(tree, "rev-parse", "--absolute-git-dir"))
    if how == "in a linked worktree":
        git(tree, "checkout", "-q", "staging")
    elif how == "in the main worktree":
        git(root, "checkout", "-q", "staging")
    elif how == "through a symbolic ref":
        git(root, "symbolic-ref", "refs/heads/alias", "refs/heads/staging")
        (admin / "HEAD").write_text("ref: refs/heads/alias\n")
    elif how == "another branch":
        git(tree, "checkout", "-q", "other")
    elif how == "unborn branch":
        (admin / "HEAD").write_text("ref: refs/heads/not-yet\n")
    elif how == "packed branch":
        git(tree, "checkout", "-q", "other")
        git(root, "pack-refs", "--all")


@pytest.mark.parametrize("how", ["detached", "another branch", "unborn branch", "packed branch",
                                 "in a linked worktree", "in the main worktree",
                                 "through a symbolic ref"])
def test_the_integration_branch_checked_out_is_refused_as_git_lists_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """The worktrees' HEAD files are read here; git is asked (and names the worktree) when one
    may name the integration branch."""
    root = make_repo(tmp_path / "repo")
    _scene(root, tmp_path, how)
    where = worktrees.checked_out_branches(root).get("staging")
    calls = git_calls(tmp_path, monkeypatch)
    if where is None:
        repomod.check_branches(root, "main", "staging", "gt-ledger", file="Gasfile.yaml")
        assert "worktree" not in calls.read_text()
        return
    with pytest.raises(GasError, match=f"'staging' is checked out in {re.escape(where)}\n"):
        repomod.check_branches(root, "main", "staging", "gt-ledger", file="Gasfile.yaml")
