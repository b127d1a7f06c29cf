"""gastown.git: refs read from their files agree with git, and git is asked otherwise."""
from __future__ import annotations

from pathlib import Path

from gastown import git as gitmod
from tests.conftest import git, make_repo


def test_refs_read_here_agree_with_git(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n", "sub/a.txt": "a\n"})
    git(repo, "branch", "feature")
    git(repo, "branch", "gas/nested")
    git(repo, "worktree", "add", "-q", str(tmp_path / "wt"), "feature")
    tree = tmp_path / "wt"
    for cwd in (repo, tree):
        for ref in ("HEAD", "refs/heads/main", "refs/heads/feature", "refs/heads/gas/nested"):
            assert gitmod.read_ref(ref, cwd) == git(cwd, "rev-parse", ref), (cwd, ref)
    git(tree, "checkout", "-q", "--detach")
    assert gitmod.read_ref("HEAD", tree) == git(tree, "rev-parse", "HEAD")


def test_git_is_asked_for_what_is_not_read_here(tmp_path: Path) -> None:
    """Packed refs, other kinds of refs, names that are not plain paths, a directory that is
    not a worktree's top: read_ref says None, and rev() asks git."""
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n", "sub/a.txt": "a\n"})
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "branch", "packed")
    git(repo, "tag", "v1")
    git(repo, "pack-refs", "--all")
    asked = [("refs/heads/packed", repo), ("refs/tags/v1", repo), ("main", repo),
             ("refs/heads/main", repo / "sub"), ("refs/heads/../../HEAD", repo),
             ("refs/heads/a//b", repo)]
    for ref, cwd in asked:
        assert gitmod.read_ref(ref, cwd) is None, ref
    for ref, cwd in asked[:4]:
        assert gitmod.rev(ref, cwd=cwd) == head, ref
    assert gitmod.rev("refs/heads/missing", cwd=repo) is None


def test_an_unborn_head_is_no_commit(tmp_path: Path) -> None:
    repo = tmp_path / "empty"
    git(tmp_path, "init", "-q", str(repo))
    assert gitmod.read_ref("HEAD", repo) is None
    assert gitmod.rev("HEAD", cwd=repo) is None
