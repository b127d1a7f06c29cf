"""gastown.objects against git itself: the same trees, commits, stats and merges."""
from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest

from gastown import objects, worktrees
from tests.conftest import git, make_repo

FILES = {"README.md": "r\n", "src/app.py": "a\nb\n", "src/lib/x.py": "x\n", "a.b": "1\n",
         "a-b/c": "2\n", "a0": "3\n", "docs/img.bin": "\0\1\2"}


def index_of(repo: Path) -> list[tuple[bytes, int, bytes]] | None:
    return objects.read_index(repo / ".git" / "index", 20)


def test_the_index_tree_is_what_git_writes(tmp_path: Path) -> None:
    """Nested directories, names that sort differently as files and as trees, an executable,
    a symlink and a submodule: the same tree id as `git write-tree`, fsck-clean."""
    repo = make_repo(tmp_path / "repo", FILES)
    (repo / "run.sh").write_text("#!/bin/sh\n")
    (repo / "run.sh").chmod(0o755)
    os.symlink("src/app.py", repo / "link")
    (repo / "a").mkdir()
    (repo / "a" / "b").write_text("sorts after a-b and a.b, before a0\n")
    git(repo, "add", "-A")
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{head},vendor/sub")
    entries = index_of(repo)
    assert entries is not None
    ours = objects.write_index_tree(entries, repo / ".git" / "objects", 40)
    assert ours == git(repo, "write-tree")
    assert git(repo, "fsck", "--strict", "--no-dangling") == ""


@pytest.mark.parametrize("setup", [
    ["update-index", "--skip-worktree", "README.md"],
    ["update-index", "--assume-unchanged", "README.md"],
    ["add", "-N", "new.txt"],
    ["update-index", "--split-index"],
    ["update-index", "--index-version", "4"],
], ids=["skip-worktree", "assume-unchanged", "intent-to-add", "split", "v4"])
def test_an_index_git_must_read_is_left_to_git(tmp_path: Path, setup: list[str]) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    (repo / "new.txt").write_text("n\n")
    assert index_of(repo) is not None
    git(repo, *setup)
    assert index_of(repo) is None


def test_a_conflicted_index_is_left_to_git(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    blob = git(repo, "rev-parse", "HEAD:README.md")
    subprocess.run(["git", "update-index", "--index-info"], cwd=repo, check=True, text=True,
                   input=f"0 {'0' * 40}\tREADME.md\n100644 {blob} 2\tREADME.md\n")
    assert index_of(repo) is None


def test_the_commit_is_what_git_commit_makes(tmp_path: Path) -> None:
    """commit_all without a git commit: the tree git would write, the message as `git commit
    -m` cleans it up, the identity git gives, the branch moved; the stat git's, renames and
    binary files included."""
    root = make_repo(tmp_path / "repo", {**FILES, "old.txt": "".join(f"{n}\n" for n in range(30))})
    base = git(root, "rev-parse", "HEAD")
    tree = worktrees.add(root, "bead", base, branch="gas/bead")
    (tree / "old.txt").rename(tree / "moved.txt")
    (tree / "src" / "app.py").write_text("a\nB\nc\n")
    (tree / "docs" / "img.bin").write_bytes(b"\0\3")
    (tree / "new" / "deep").mkdir(parents=True)
    (tree / "new" / "deep" / "n.txt").write_text("1\n2\n3")
    stat = worktrees.commit_all(tree, "bead: title  \n\n\n\nbody\n\n", base)
    head = git(root, "rev-parse", "gas/bead")
    assert git(tree, "rev-parse", "HEAD") == head
    assert git(root, "rev-parse", "gas/bead^") == base
    assert git(root, "rev-parse", "gas/bead^{tree}") == git(tree, "write-tree")
    assert git(root, "cat-file", "-p", "gas/bead").endswith("\n\nbead: title\n\nbody")
    assert git(root, "log", "-1", "--format=%an <%ae>|%cn <%ce>", "gas/bead") == \
        "Test Author <author@example.com>|Test Committer <committer@example.com>"
    numstat = git(root, "diff", "-M", "--numstat", base, head)
    assert stat == worktrees.numstat(numstat) == (4, 5, 1)
    assert git(root, "fsck", "--strict", "--no-dangling") == ""
    assert objects.made(head) is not None


def test_a_commit_hook_makes_git_commit(tmp_path: Path) -> None:
    """A hook `git commit --no-verify` runs (post-commit here) still runs: git commits."""
    root = make_repo(tmp_path / "repo", FILES)
    base = git(root, "rev-parse", "HEAD")
    hook = root / ".git" / "hooks" / "post-commit"
    git(root, "config", "core.hooksPath", str(hook.parent))
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(f"#!/bin/sh\necho ran >> {tmp_path / 'hook.log'}\n")
    hook.chmod(0o755)
    tree = worktrees.add(root, "bead", base, branch="gas/bead")
    (tree / "n.txt").write_text("n\n")
    assert worktrees.commit_all(tree, "work", base) == (1, 1, 0)
    assert (tmp_path / "hook.log").read_text() == "ran\n"
    assert objects.made(git(root, "rev-parse", "gas/bead")) is None


def test_the_branch_moves_only_from_where_it_was(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", FILES)
    base = git(root, "rev-parse", "HEAD")
    tree = worktrees.add(root, "bead", base, branch="gas/bead")
    other = git(root, "commit-tree", "HEAD^{tree}", "-p", base, "-m", "x")
    lock = root / ".git" / "refs" / "heads" / "gas" / "bead.lock"
    lock.write_text("")
    assert not objects.move_branch(tree, base, other)  # another git holds the ref
    lock.unlink()
    assert not objects.move_branch(tree, other, other)  # not where it was said to be
    assert objects.move_branch(tree, base, other)
    assert git(root, "rev-parse", "gas/bead") == other
    git(root, "pack-refs", "--all")
    assert not objects.move_branch(tree, other, base)  # packed: git moves it
    assert not lock.exists()


def test_the_differ_answers_many_questions_in_one_process(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    first = git(repo, "rev-parse", "HEAD")
    (repo / "README.md").write_text("r\ns\n")
    git(repo, "commit", "-qam", "two")
    second = git(repo, "rev-parse", "HEAD")
    differ = objects.Differ(repo)
    try:
        for _ in range(3):
            diff = differ.diff(first, second)
            assert diff is not None
            assert diff.stat == (1, 1, 0)
            assert [(c.status, c.path) for c in diff.changes] == [("M", b"README.md")]
        assert differ.diff(second, second) == objects.NONE
        assert differ.diff(first, "0" * 40) is None  # not understood: None, not a hang
        assert differ.diff(first, second) is not None  # and it starts again
    finally:
        differ.close()


def change(status: str, path: str) -> objects.Change:
    return objects.Change(status, path.encode(), 0o100644, "0" * 40)


@pytest.mark.parametrize(("ours", "theirs", "apart"), [
    ([("A", "x/new")], [("M", "README.md")], True),
    ([("M", "a")], [("M", "a")], False),
    ([("A", "x")], [("A", "x/y")], False),
    ([("A", "x/y/z")], [("A", "x/y")], False),
    ([("A", "x/y")], [("A", "x/yz")], True),
    ([("A", "a")], [("D", "b")], False),
    ([("R", "a")], [("A", "b")], False),
], ids=["apart", "same", "file-dir", "deep-file-dir", "prefix-not-dir", "delete", "rename"])
def test_disjoint(ours: list[tuple[str, str]], theirs: list[tuple[str, str]],
                  apart: bool) -> None:
    assert objects.disjoint([change(*c) for c in ours], [change(*c) for c in theirs]) is apart
    assert objects.disjoint([change(*c) for c in theirs], [change(*c) for c in ours]) is apart


@pytest.mark.parametrize("seed", range(6))
def test_a_disjoint_merge_is_what_merge_tree_writes(tmp_path: Path, seed: int) -> None:
    """Two branches from one base adding and changing different files (new directories,
    deep ones, executables): the tip's tree with the other side's files in it is the tree
    `git merge-tree --write-tree` writes."""
    rng = random.Random(seed)
    files = {f"d{rng.randrange(4)}/s{rng.randrange(3)}/f{n}.txt": f"{n}\n" for n in range(40)}
    repo = make_repo(tmp_path / "repo", files)
    base = git(repo, "rev-parse", "HEAD")
    paths = sorted(files)
    rng.shuffle(paths)
    sides = []
    for name, part in (("ours", paths[:10]), ("theirs", paths[10:20])):
        git(repo, "checkout", "-q", "-b", name, base)
        for path in part[:5]:
            (repo / path).write_text(f"changed by {name}\n")
        (repo / part[5]).chmod(0o755)
        for n in range(3):
            new = repo / f"{name}{n}" / f"d{rng.randrange(4)}" / "new.txt"
            new.parent.mkdir(parents=True, exist_ok=True)
            new.write_text(name)
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", name)
        sides.append(git(repo, "rev-parse", "HEAD"))
    differ = objects.Differ(repo)
    try:
        ours, theirs = (differ.diff(base, side) for side in sides)
    finally:
        differ.close()
    assert ours is not None and theirs is not None
    assert objects.disjoint(ours.changes, theirs.changes)
    reader = objects.Reader(repo)
    try:
        def read(oid: bytes) -> objects.Tree | None:
            found = reader.read(oid.hex())
            return objects.parse_tree(found[1], 20) if found else None

        tip = git(repo, "rev-parse", f"{sides[1]}^{{tree}}")
        merged = objects.apply(read, bytes.fromhex(tip), ours.changes, repo / ".git" / "objects",
                               40)
    finally:
        reader.close()
    assert merged == git(repo, "merge-tree", "--write-tree", sides[1], sides[0])
    assert git(repo, "fsck", "--strict", "--no-dangling") == ""


def test_the_reader_answers_missing_objects_with_none(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "a.txt").write_text("a\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a")
    blob = git(repo, "rev-parse", "HEAD:a.txt")
    reader = objects.Reader(repo)
    try:
        found = reader.contents(["HEAD:a.txt", "0" * 40, "HEAD:nothing-here", blob])
        assert found == [("blob", b"a\n"), None, None, ("blob", b"a\n")]
        assert reader.read("HEAD:nothing-here") is None
        reader.proc.kill()  # type: ignore[union-attr]
        reader.proc.wait()  # type: ignore[union-attr]
        assert reader.contents(["HEAD:a.txt"]) == [("blob", b"a\n")], "not started again"
    finally:
        reader.close()
