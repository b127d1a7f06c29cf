"""Pooled worktrees on real repos: nothing of one bead reaches the next, threads, crashes."""
from __future__ import annotations

import os
import random
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gastown import git as gitmod
from gastown import objects, worktrees
from tests.conftest import git, git_calls, git_command, make_repo

BASE_FILES = {
    ".gitignore": "build/\n__pycache__/\n*.log\n",
    "README.md": "base\n",
    "src/app.py": "print('app')\n",
    "src/util.py": "X = 1\n",
    "run.sh": "echo run\n",
    "data": "a file where a bead makes a directory\n",
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "repo", BASE_FILES)
    worktrees.ensure_excluded(repo)
    return repo


def commit_on_main(root: Path, files: dict[str, str], message: str = "merged bead") -> str:
    """A new integration tip changing `files` (what a merged bead does), made without a
    checkout."""
    index = root / ".git" / "tmp-index"
    env = {"GIT_INDEX_FILE": str(index)}
    gitmod.run("read-tree", "main", cwd=root, env=env)
    for name, text in files.items():
        blob = gitmod.out("hash-object", "-w", "--stdin", cwd=root, input=text)
        gitmod.run("update-index", "--add", "--cacheinfo", f"100644,{blob},{name}", cwd=root,
                   env=env)
    tree = gitmod.out("write-tree", cwd=root, env=env)
    commit = gitmod.out("commit-tree", tree, "-p", "main", "-m", message, cwd=root)
    git(root, "update-ref", "refs/heads/main", commit)
    index.unlink()
    return commit


def files_on_disk(path: Path) -> set[str]:
    found = set()
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) == path and d == ".git")]
        rel = Path(dirpath).relative_to(path)
        found |= {str(rel / name) for name in filenames if not (rel == Path() and name == ".git")}
        found |= {str(rel / d) + "/" for d in dirnames
                  if not os.listdir(Path(dirpath) / d)}  # empty directories too
    return found


def assert_exactly(path: Path, commit: str, branch: str | None) -> None:
    """The worktree holds `commit`'s tree and nothing else, on `branch`."""
    assert git(path, "rev-parse", "HEAD") == commit
    assert (git(path, "branch", "--show-current") or None) == branch
    assert git(path, "status", "--porcelain", "--ignored", "--untracked-files=all") == ""
    tracked = set(git(path, "ls-tree", "-r", "--name-only", commit).splitlines())
    assert files_on_disk(path) == tracked
    for name in tracked:
        assert (path / name).read_bytes() == gitmod.run(
            "cat-file", "blob", f"{commit}:{name}", cwd=path).stdout.encode()


def pooled(root: Path) -> list[Path]:
    pool = worktrees.pool_dir(root)
    return sorted(p for p in pool.iterdir() if p.is_dir()) if pool.is_dir() else []


def registered(root: Path) -> list[str]:
    out = git(root, "worktree", "list", "--porcelain")
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("worktree ")]


def dirty_everything(tree: Path) -> None:
    """Every kind of leftover a bead can leave: tracked edits and deletions, staged and
    committed files, untracked and ignored files, nested dirs and repositories, a file made a
    directory, a mode change, a symlink."""
    (tree / "src" / "app.py").write_text("print('changed')\n")
    (tree / "README.md").unlink()
    (tree / "committed.txt").write_text("bead work\n")
    git(tree, "add", "committed.txt")
    git(tree, "commit", "-q", "-m", "bead work")
    (tree / "staged.txt").write_text("staged\n")
    git(tree, "add", "staged.txt")
    (tree / "untracked.txt").write_text("untracked\n")
    (tree / "src" / "__pycache__").mkdir()
    (tree / "src" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0pyc")
    (tree / "build" / "deep" / "er").mkdir(parents=True)
    (tree / "build" / "deep" / "er" / "out.o").write_bytes(b"\0obj")
    (tree / "notes" / "a" / "b").mkdir(parents=True)
    (tree / "notes" / "a" / "b" / "todo.txt").write_text("nested untracked\n")
    (tree / "empty" / "dir").mkdir(parents=True)
    (tree / "debug.log").write_text("ignored\n")
    git(tree, "init", "-q", "vendored")
    (tree / "vendored" / "lib.c").write_text("int x;\n")
    (tree / "data").unlink()
    (tree / "data" / "inside").mkdir(parents=True)
    (tree / "src" / "new_in_base.py").write_text("the bead's version\n")
    (tree / "run.sh").chmod(0o755)
    (tree / "src" / "util.py").unlink()
    (tree / "src" / "util.py").symlink_to("/etc/hostname")


def test_a_pooled_worktree_has_exactly_the_next_beads_base(root: Path) -> None:
    base = git(root, "rev-parse", "main")
    first = worktrees.add(root, "one", base, branch="gas/one")
    assert_exactly(first, base, "gas/one")
    dirty_everything(first)
    inode = first.stat().st_ino
    worktrees.remove(root, first)
    assert not first.exists()
    assert len(pooled(root)) == 1
    git(root, "branch", "-D", "gas/one")  # the pooled worktree is detached: nothing blocks it
    new_base = commit_on_main(root, {"src/new_in_base.py": "the base's version\n",
                                     "src/app.py": "print('merged')\n"})

    second = worktrees.add(root, "two", new_base, branch="gas/two")

    assert second.stat().st_ino == inode, "the pooled worktree was reused"
    assert pooled(root) == []
    assert_exactly(second, new_base, "gas/two")
    assert os.stat(second / "run.sh").st_mode & 0o111 == 0
    assert worktrees.leftovers(root) == ["two"]


def test_a_worktree_prepared_at_the_base_needs_no_git_process(
        root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """prepare() checks pooled worktrees out at the base ahead of their beads: a bead
    starting there gets one on its branch with no git process, exactly at its base; a bead
    starting elsewhere gets one checked out as always."""
    base = git(root, "rev-parse", "main")
    for name in ("one", "two"):
        tree = worktrees.add(root, name, base, branch=f"gas/{name}")
        dirty_everything(tree)
        worktrees.remove(root, tree)
        git(root, "branch", "-D", f"gas/{name}")
    new_base = commit_on_main(root, {"src/app.py": "print('merged')\n"})
    worktrees.prepare(root, new_base, 5).join()
    calls = git_calls(tmp_path, monkeypatch)
    ready = worktrees.add(root, "ready", new_base, branch="gas/ready")
    assert [git_command(line) for line in calls.read_text().splitlines()] == []
    monkeypatch.undo()
    assert_exactly(ready, new_base, "gas/ready")
    assert git(ready, "symbolic-ref", "HEAD") == "refs/heads/gas/ready"
    newer = commit_on_main(root, {"src/app.py": "print('newer')\n"})
    other = worktrees.add(root, "other", newer, branch="gas/other")
    assert_exactly(other, newer, "gas/other")


def test_no_worktree_is_prepared_when_a_checkout_hook_would_run(root: Path,
                                                                tmp_path: Path) -> None:
    """A post-checkout hook runs at every checkout git makes: prepare() leaves the pool."""
    base = git(root, "rev-parse", "main")
    tree = worktrees.add(root, "one", base, branch="gas/one")
    worktrees.remove(root, tree)
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "post-checkout").write_text("#!/bin/sh\n")
    (hooks / "post-checkout").chmod(0o755)
    git(root, "config", "core.hooksPath", str(hooks))
    gitmod.read_settings(root)
    worktrees.prepare(root, base, 5).join()
    admins = [gitmod.dirs(p) for p in pooled(root)]
    assert admins and all(worktrees._ready_at(os.path.realpath(found[0])) is None
                          for found in admins if found)


def test_a_detached_add_from_the_pool(root: Path) -> None:
    tree = worktrees.add(root, "one", "main", branch="gas/one")
    dirty_everything(tree)
    worktrees.remove(root, tree)
    tip = commit_on_main(root, {"z.txt": "z\n"})
    refinery = worktrees.add(root, "_refinery", tip, branch=None)
    assert_exactly(refinery, tip, None)


def test_an_operation_in_progress_does_not_follow_the_worktree(root: Path) -> None:
    tree = worktrees.add(root, "one", "main", branch="gas/one")
    (tree / "README.md").write_text("ours\n")
    git(tree, "commit", "-qam", "ours")
    git(tree, "checkout", "-q", "-b", "side", "main")
    (tree / "README.md").write_text("theirs\n")
    git(tree, "commit", "-qam", "theirs")
    proc = gitmod.run("rebase", "gas/one", cwd=tree, check=False)
    assert proc.returncode != 0  # a conflicted rebase, left in progress
    admin = Path(git(tree, "rev-parse", "--absolute-git-dir"))
    assert (admin / "rebase-merge").is_dir()
    worktrees.remove(root, tree)
    git(root, "branch", "-D", "side")

    again = worktrees.add(root, "two", "main", branch="gas/two")

    assert_exactly(again, git(root, "rev-parse", "main"), "gas/two")
    assert "rebase" not in git(again, "status")
    assert not list(admin.glob("*rebase*"))


def test_a_retired_worktree_is_scrubbed_once_and_claimed_by_one_checkout(
        root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An approved bead on its branch: detached (without git: HEAD and the branch are loose
    ref files), scrubbed (index flags checked, untracked and ignored files deleted) and
    pooled; its branch is deleted (by the refinery, as it merges; here by hand) with no
    worktree holding it, and the next owner's checkout is that owner's one git call. A
    worktree holding nothing but what its index lists needs no `git clean`."""
    tree = worktrees.add(root, "one", "main", branch="gas/one")
    (tree / "work.txt").write_text("work\n")
    assert worktrees.commit_all(tree, "one") == (1, 1, 0)
    (tree / "debug.log").write_text("ignored output\n")
    other = worktrees.add(root, "other", "main", branch="gas/other")
    inodes = {tree.stat().st_ino, other.stat().st_ino}
    calls = git_calls(tmp_path, monkeypatch)
    worktrees.remove(root, tree)
    worktrees.remove(root, other)
    worktrees.delete_branches(root, ["gas/one", "gas/other"])
    again = worktrees.add(root, "two", "main", branch="gas/two")
    assert [git_command(line) for line in calls.read_text().splitlines()] == \
        ["clean", "update-ref", "checkout"]  # a small index is checked without git
    monkeypatch.undo()
    assert gitmod.rev("refs/heads/gas/one", cwd=root) is None
    assert gitmod.rev("refs/heads/gas/other", cwd=root) is None
    assert again.stat().st_ino in inodes, "a pooled worktree was reused"
    assert_exactly(again, git(root, "rev-parse", "main"), "gas/two")
    [left] = pooled(root)
    listing = git(root, "worktree", "list", "--porcelain").split("\n\n")
    assert [entry.splitlines()[-1] for entry in listing
            if entry.startswith(f"worktree {left}\n")] == ["detached"]
    worktrees.add(root, "one", "main", branch="gas/one")  # the bead again: its branch is free


def test_retiring_a_worktree_whose_branch_is_packed(root: Path) -> None:
    """HEAD names a branch git packed: git detaches it (no loose file to read it from)."""
    tree = worktrees.add(root, "one", "main", branch="gas/one")
    (tree / "work.txt").write_text("work\n")
    worktrees.commit_all(tree, "one")
    git(root, "pack-refs", "--all")
    worktrees.remove(root, tree)
    [entry] = pooled(root)
    assert git(entry, "rev-parse", "HEAD") == git(root, "rev-parse", "gas/one")
    git(root, "branch", "-D", "gas/one")  # no worktree holds it


def test_a_pooled_worktree_without_the_clean_mark_is_scrubbed_when_claimed(root: Path) -> None:
    """A pool entry from a build killed between its scrub and its mark (or an older gastown)
    is scrubbed by its next owner."""
    tree = worktrees.add(root, "one", "main", branch="gas/one")
    worktrees.remove(root, tree)
    [entry] = pooled(root)
    admin = Path(git(entry, "rev-parse", "--absolute-git-dir"))
    (admin / worktrees.CLEAN).unlink()
    dirty_everything(entry)
    again = worktrees.add(root, "two", "main", branch="gas/two")
    assert_exactly(again, git(root, "rev-parse", "main"), "gas/two")


def test_retiring_a_worktree_the_agent_moved_to_another_branch(root: Path) -> None:
    tree = worktrees.add(root, "one", "main", branch="gas/one")
    git(tree, "checkout", "-q", "-b", "side")
    worktrees.remove(root, tree)
    git(root, "branch", "-D", "side")  # the pooled worktree was detached: nothing holds it
    worktrees.delete_branches(root, ["gas/one"])
    assert gitmod.rev("refs/heads/gas/one", cwd=root) is None
    assert len(pooled(root)) == 1


def test_a_moved_worktree_stays_registered_where_it_is(root: Path) -> None:
    """Moves are our own (a rename and the admin dir's `gitdir`): git must see the worktree at
    its new path, and `git worktree prune` must keep it."""
    tree = worktrees.add(root, "one", "main", branch="gas/one")
    inode = tree.stat().st_ino
    worktrees.remove(root, tree)
    [entry] = pooled(root)
    git(root, "worktree", "prune")
    assert str(entry) in registered(root)
    again = worktrees.add(root, "two", "main", branch="gas/two")
    assert again.stat().st_ino == inode, "the pooled worktree was reused"
    git(root, "worktree", "prune")
    assert registered(root)[1:] == [str(again)]
    assert git(again, "rev-parse", "--show-toplevel") == str(again)
    assert_exactly(again, git(root, "rev-parse", "main"), "gas/two")


def test_relative_worktree_links_survive_moves_to_another_depth(root: Path) -> None:
    """Newer git can write the links between a worktree and its admin dir as relative paths
    (worktree.useRelativePaths); the pool is one level deeper than a bead's path."""
    tree = worktrees.add(root, "one", "main", branch="gas/one")
    admin = Path(git(tree, "rev-parse", "--absolute-git-dir"))
    (tree / ".git").write_text(f"gitdir: {os.path.relpath(admin, tree)}\n")
    (admin / "gitdir").write_text(os.path.relpath(tree / ".git", admin) + "\n")
    inode = tree.stat().st_ino
    worktrees.remove(root, tree)
    [entry] = pooled(root)
    assert not os.path.isabs((entry / ".git").read_text().removeprefix("gitdir: ").strip())
    assert git(entry, "rev-parse", "--absolute-git-dir") == str(admin)

    again = worktrees.add(root, "two", "main", branch="gas/two")

    assert again.stat().st_ino == inode, "the pooled worktree was reused"
    assert git(again, "rev-parse", "--absolute-git-dir") == str(admin)
    assert (admin / (admin / "gitdir").read_text().strip()).resolve() == again / ".git"
    assert_exactly(again, git(root, "rev-parse", "main"), "gas/two")


@pytest.mark.parametrize("object_format", ["sha1", "sha256"])
def test_the_index_read_here_agrees_with_git(tmp_path: Path, object_format: str) -> None:
    """The index is read here when it is small: it must see the flags `git ls-files -v` and
    the paths `git ls-files` see."""
    repo = tmp_path / "repo"
    git(tmp_path, "init", "-q", f"--object-format={object_format}", str(repo))
    for n in range(30):
        (repo / "d" / f"{'x' * n}.txt").parent.mkdir(exist_ok=True)
        (repo / "d" / f"{'x' * n}.txt").write_text(str(n))
    (repo / "e" / "f g").mkdir(parents=True)
    (repo / "e" / "f g" / "ünï cødé").write_text("x")
    git(repo, "add", "-A")
    index = repo / ".git" / "index"

    def read() -> tuple[bool, set[bytes]] | None:
        found = objects.parse_index(index)
        return (found.flagged, found.paths) if found else None

    listed = set(git(repo, "-c", "core.quotePath=false", "ls-files").encode().splitlines())
    assert len(listed) == 31
    assert read() == (False, listed)
    git(repo, "update-index", "--assume-unchanged", "d/xxx.txt")
    assert read() == (True, listed)
    git(repo, "update-index", "--no-assume-unchanged", "d/xxx.txt")
    assert read() == (False, listed)
    git(repo, "update-index", "--skip-worktree", "d/x.txt")  # makes it a version 3 index
    assert read() == (True, listed)
    git(repo, "update-index", "--index-version", "4")
    assert read() is None  # git is asked


@pytest.mark.parametrize("leftover", ["nothing", "untracked", "ignored", "empty-dir",
                                      "nested-repo", "dir-for-file", "symlink-for-dir"])
def test_what_git_clean_would_delete_is_seen_here(root: Path, leftover: str) -> None:
    """A pooled worktree skips `git clean` only when it holds nothing but its index's files:
    the look here must find whatever `git clean -ffdx` would delete."""
    tree = worktrees.add(root, "one", "main", branch="gas/one")
    (tree / ".gitignore").write_text("*.log\n")
    git(tree, "add", ".gitignore")
    make = {
        "nothing": lambda: None,
        "untracked": lambda: (tree / "src" / "new.py").write_text("x"),
        "ignored": lambda: (tree / "src" / "debug.log").write_text("x"),
        "empty-dir": lambda: (tree / "src" / "empty").mkdir(),
        "nested-repo": lambda: git(tree, "init", "-q", "src/vendored"),
        "dir-for-file": lambda: ((tree / "README.md").unlink(), (tree / "README.md").mkdir(),
                                 (tree / "README.md" / "x").write_text("x")),
        "symlink-for-dir": lambda: (shutil.move(tree / "src", tree / "elsewhere"),
                                    (tree / "src").symlink_to("elsewhere")),
    }
    make[leftover]()
    index = objects.parse_index(Path(git(tree, "rev-parse", "--absolute-git-dir")) / "index")
    assert index is not None
    seen = worktrees._untracked(tree, index.paths)
    assert seen == (leftover != "nothing")
    # git clean leaves a directory where the index has a file (the checkout replaces it):
    # seen here all the same, the worktree is cleaned for nothing
    assert (git(tree, "clean", "-ndffx") != "") == (seen and leftover != "dir-for-file")


def test_a_flagged_index_is_not_trusted(root: Path) -> None:
    """A bead that marks files skip-worktree or assume-unchanged would hide its edits from the
    checkout: that worktree is deleted, and the next bead gets a fresh one."""
    tree = worktrees.add(root, "one", "main", branch="gas/one")
    git(tree, "update-index", "--skip-worktree", "src/app.py")
    git(tree, "update-index", "--assume-unchanged", "README.md")
    (tree / "src" / "app.py").write_text("hidden edit\n")
    (tree / "README.md").write_text("hidden edit\n")
    worktrees.remove(root, tree)

    again = worktrees.add(root, "two", "main", branch="gas/two")

    assert_exactly(again, git(root, "rev-parse", "main"), "gas/two")
    assert git(again, "ls-files", "-v", "src/app.py", "README.md").split() == \
        ["H", "README.md", "H", "src/app.py"]
    assert len(registered(root)) == 2


def test_the_pool_is_bounded(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worktrees, "POOL_SIZE", 2)
    trees = [worktrees.add(root, f"b{n}", "main", branch=f"gas/b{n}") for n in range(4)]
    for tree in trees:
        worktrees.remove(root, tree)
    assert len(pooled(root)) == 2
    assert len(registered(root)) == 3  # the main checkout and the two pooled
    assert not (root / ".gastown" / "trash").exists() or \
        not any((root / ".gastown" / "trash").iterdir())
    for n in range(4):
        git(root, "branch", "-D", f"gas/b{n}")


def test_a_return_to_a_full_pool_is_not_scrubbed(root: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A worktree the pool has no room for is deleted without being scrubbed first (its pool
    slot is taken before the scrub)."""
    monkeypatch.setattr(worktrees, "POOL_SIZE", 1)
    first, second = (worktrees.add(root, f"b{n}", "main", branch=None) for n in range(2))
    worktrees.remove(root, first)
    (second / "untracked.txt").write_text("a git clean would delete this\n")
    calls = git_calls(tmp_path, monkeypatch)
    worktrees.remove(root, second)
    assert "clean" not in [git_command(line) for line in calls.read_text().splitlines()]
    assert not second.exists()
    assert len(pooled(root)) == 1
    assert len(registered(root)) == 2


def test_a_stale_bead_worktree_is_replaced(root: Path) -> None:
    """add() over a worktree a stopped build left at the bead's path starts clean."""
    tree = worktrees.add(root, "one", "main", branch="gas/one")
    dirty_everything(tree)
    tip = commit_on_main(root, {"z.txt": "z\n"})
    again = worktrees.add(root, "one", tip, branch="gas/one")
    assert again == tree
    assert_exactly(again, tip, "gas/one")


def test_eight_threads_adding_and_removing(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight beads at a time, four each: every worktree comes back to a pool of eight (none
    deleted because another thread's return was counted twice), none is handed out twice."""
    monkeypatch.setattr(worktrees, "POOL_SIZE", 8)
    bases = [git(root, "rev-parse", "main")]
    bases += [commit_on_main(root, {f"src/m{n}.py": f"N = {n}\n"}) for n in range(3)]
    errors: list[BaseException] = []

    def bead(name: str, base: str) -> None:
        tree = worktrees.add(root, name, base, branch=f"gas/{name}")
        assert_exactly(tree, base, f"gas/{name}")
        (tree / "build").mkdir()
        (tree / "build" / name).write_text(name)
        (tree / f"{name}.txt").write_text(name)
        assert worktrees.commit_all(tree, name) == (1, 1, 0)  # build/ is ignored
        (tree / "junk.txt").write_text(name)
        worktrees.remove(root, tree)
        git(root, "branch", "-D", f"gas/{name}")

    def worker(n: int) -> None:
        rng = random.Random(n)
        try:
            for k in range(4):
                bead(f"t{n}-{k}", rng.choice(bases))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    pool = pooled(root)
    assert len(pool) == 8
    assert sorted(registered(root)) == sorted([str(root), *(str(p) for p in pool)])
    assert worktrees.leftovers(root) == []
    assert git(root, "for-each-ref", "refs/heads/gas/") == ""
    for entry in pool:
        assert git(entry, "branch", "--show-current") == ""
    git(root, "worktree", "prune")
    assert len(registered(root)) == 1 + len(pool)


@pytest.fixture
def crashed(root: Path) -> Iterator[tuple[Path, list[Path]]]:
    """A pool as a kill -9 (or an older gastown) can leave it: an entry whose `.git` is gone,
    one renamed without git (killed inside a move), a stale index lock, one pooled without
    the scrub (no CLEAN mark) and with build output in it, half-deleted trash; and an
    untracked file in the main checkout that must survive whatever gastown does."""
    trees = [worktrees.add(root, f"b{n}", "main", branch=f"gas/b{n}") for n in range(4)]
    for tree in trees:
        (tree / "build").mkdir()
        (tree / "build" / "leak").write_text(tree.name)
        worktrees.remove(root, tree)
    one, two, three, four = pooled(root)
    (one / ".git").unlink()
    (one / "stray").write_text("stray\n")
    two.rename(two.parent / "renamed")
    admin = Path(git(three, "rev-parse", "--absolute-git-dir"))
    (admin / "index.lock").write_text("")
    (Path(git(four, "rev-parse", "--absolute-git-dir")) / worktrees.CLEAN).unlink()
    (four / "build").mkdir()
    (four / "build" / "leak").write_text("four")
    trash = root / ".gastown" / "trash" / "left"
    trash.mkdir(parents=True)
    (trash / "file").write_text("x")
    (root / "precious.txt").write_text("the user's\n")
    yield root, [three, four]


def test_unsound_pool_entries_are_never_used(crashed: tuple[Path, list[Path]]) -> None:
    root, _ = crashed
    tip = git(root, "rev-parse", "main")
    trees = [worktrees.add(root, f"c{n}", tip, branch=f"gas/c{n}") for n in range(4)]
    for tree in trees:
        assert_exactly(tree, tip, f"gas/{tree.name}")
    assert (root / "precious.txt").read_text() == "the user's\n"
    assert git(root, "status", "--porcelain") == "?? precious.txt"


def test_prune_drops_what_a_crash_left(crashed: tuple[Path, list[Path]]) -> None:
    root, sound = crashed
    worktrees.prune(root)
    assert pooled(root) == sound
    assert list((root / ".gastown" / "trash").iterdir()) == []
    assert sorted(registered(root)) == sorted([str(root), *(str(p) for p in pooled(root))])
    assert (root / "precious.txt").exists()


def test_an_add_killed_midway_does_not_block_the_path(root: Path, tmp_path: Path) -> None:
    """`git worktree add` killed while it made a bead's worktree leaves a locked registration
    of a missing directory; the next build's prune clears it (a user's locked worktree
    elsewhere stays locked)."""
    tree = worktrees.add(root, "b3", "main", branch="gas/b3")
    git(root, "worktree", "lock", "--reason", "initializing", str(tree))
    shutil.rmtree(tree)
    theirs = tmp_path / "theirs"
    git(root, "worktree", "add", "-q", "--detach", str(theirs), "main")
    git(root, "worktree", "lock", str(theirs))
    shutil.rmtree(theirs)

    worktrees.prune(root)

    again = worktrees.add(root, "b3", "main", branch="gas/b3")
    assert_exactly(again, git(root, "rev-parse", "main"), "gas/b3")
    assert str(theirs) in registered(root)


def test_an_add_killed_before_it_wrote_where_the_worktree_is(root: Path) -> None:
    """git writes a new registration's lock before its `gitdir`: a kill in between leaves a
    locked registration that names no directory, which prune keeps; the next build's prune
    clears it and the path can be added again."""
    tree = worktrees.add(root, "_refinery", "main", branch=None)
    admin = Path(git(tree, "rev-parse", "--absolute-git-dir"))
    (admin / "locked").write_text("initializing")
    (admin / "gitdir").unlink()
    shutil.rmtree(tree)

    worktrees.prune(root)

    assert not admin.exists()
    again = worktrees.add(root, "_refinery", "main", branch=None)
    assert git(again, "rev-parse", "HEAD") == git(root, "rev-parse", "main")


def test_an_add_killed_after_it_made_the_directory(root: Path) -> None:
    """Killed once the directory was made but before git unlocked the registration: the
    next add of that path (in the same build, after the start's prune) discards the
    half-made directory and unlocks the registration it leaves missing."""
    tree = worktrees.add(root, "_refinery", "main", branch=None)
    git(root, "worktree", "lock", "--reason", "initializing", str(tree))
    (tree / ".git").unlink()  # git had not written it yet

    again = worktrees.add(root, "_refinery", "main", branch=None)

    assert again == tree
    assert git(again, "rev-parse", "HEAD") == git(root, "rev-parse", "main")


def test_git_in_a_worktree_without_its_git_file_stops(root: Path) -> None:
    """Without `.git`, git would walk up to the main checkout and reset and clean that."""
    tree = worktrees.add(root, "one", "main", branch="gas/one")
    (tree / ".git").unlink()
    (root / "precious.txt").write_text("the user's\n")
    with pytest.raises(gitmod.GitError):
        worktrees.reset(tree, "main")
    with pytest.raises(gitmod.GitError):
        worktrees.commit_all(tree, "oops")
    assert (root / "precious.txt").exists()
    worktrees.remove(root, tree)
    assert not tree.exists()
    assert (root / "precious.txt").exists()


# -- gas build with pooling ---------------------------------------------------------------------

# Each bead fails its own run when anything an earlier bead left (ignored build output, a
# __pycache__, an untracked log) is in its worktree.
RUN = ("test ! -e build && test ! -e __pycache__ && test ! -e debug.log && "
       "mkdir -p build __pycache__ && echo {id} > build/out && echo {id} > __pycache__/x.pyc && "
       "echo {id} > debug.log && echo {id} > {id}.txt")


def gasfile(ids: list[str], then: list[str] | None = None) -> str:
    """`ids` at once, then `then` once all of them have merged."""
    def items(names: list[str], needs: str = "") -> str:
        return "\n".join(f'      - {{id: {i}, run: "{RUN.format(id=i)}"{needs}}}'
                         for i in names)
    text = ("version: 1\nproject: {base: main, into: staging, parallel: 3}\n"
            "roles:\n  polecat: {runner: command, max_attempts: 1}\n"
            f"backlogs:\n  first:\n    items:\n{items(ids)}\n")
    if then:
        text += f"  then:\n    items:\n{items(then, ', needs: [first]')}\n"
    return text


def test_gas_build_reuses_worktrees_and_leaks_nothing(tmp_path: Path, gas,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    first, then = [f"b{n}" for n in range(8)], ["c1", "c2", "c3"]
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": gasfile(first, then),
                                         ".gitignore": "build/\n__pycache__/\n*.log\n"})
    fresh: list[str] = []
    real_fresh = worktrees._fresh

    def counting(root: Path, path: Path, start: str, branch: str | None) -> None:
        fresh.append(path.name)
        real_fresh(root, path, start, branch)

    monkeypatch.setattr(worktrees, "_fresh", counting)
    result = gas(repo, "build", "--plain")
    assert result.code == 0, result
    for bead in first + then:
        assert git(repo, "show", f"staging:{bead}.txt") == bead
    assert not set(fresh) & set(then), fresh  # all of them came from the pool
    assert len(fresh) <= len(first)
    assert worktrees.leftovers(repo) == []
    assert sorted(registered(repo)) == sorted([str(repo), *(str(p) for p in pooled(repo))])
    assert git(repo, "for-each-ref", "refs/heads/gas/") == ""


def test_gas_build_after_a_crash_left_pool(tmp_path: Path, gas) -> None:
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": gasfile(["a1", "a2", "a3"]),
                                         ".gitignore": "build/\n__pycache__/\n*.log\n"})
    assert gas(repo, "build", "--plain").code == 0
    trees = [worktrees.add(repo, f"x{n}", "staging", branch=None) for n in range(4)]
    for tree in trees:
        (tree / "build").mkdir()
        (tree / "debug.log").write_text("left\n")
        worktrees.remove(repo, tree)
    one, two, three, *_ = pooled(repo)
    (one / ".git").unlink()
    two.rename(worktrees.worktree_dir(repo, "b1"))  # killed while moving to a bead's path
    (Path(git(three, "rev-parse", "--absolute-git-dir")) / "index.lock").write_text("")
    (repo / "precious.txt").write_text("the user's\n")

    (repo / "Gasfile.yaml").write_text(gasfile([f"b{n}" for n in range(6)]))
    result = gas(repo, "build", "--plain")

    assert result.code == 0, result
    assert (repo / "precious.txt").read_text() == "the user's\n"
    assert worktrees.leftovers(repo) == []
    assert sorted(registered(repo)) == sorted([str(repo), *(str(p) for p in pooled(repo))])
    for entry in pooled(repo):
        assert (entry / ".git").is_file()


def test_a_stale_packed_refs_lock_is_cleared(root: Path) -> None:
    """A git killed while deleting a branch leaves packed-refs.lock, and every later branch
    deletion fails; one a live git holds (gone within the wait) is left alone."""
    lock = root / ".git" / "packed-refs.lock"
    lock.write_text("")
    os.utime(lock, (1, 1))
    assert worktrees.clear_ref_locks(root, []) == ["packed-refs.lock"]
    assert not lock.exists()
    lock.write_text("")
    threading.Timer(0.2, lock.unlink).start()
    assert worktrees.clear_ref_locks(root, []) == []


def test_the_bench_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.worktrees import main

    main(["--files", "300", "--beads", "2", "--parallel", "2", "--rounds", "1"])
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("pool vs fresh: sequential "), last
    assert last.endswith("x") and ", 2 at once " in last, last


def test_a_worktree_with_a_submodule_checked_out_is_not_pooled(tmp_path: Path) -> None:
    """`git clean` does not empty a checked-out submodule: such a worktree is deleted."""
    lib = make_repo(tmp_path / "lib", {"lib.c": "int lib;\n"})
    root = make_repo(tmp_path / "repo", BASE_FILES)
    git(root, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib")
    git(root, "commit", "-qm", "a submodule")
    tree = worktrees.add(root, "one", "main", branch="gas/one")
    assert list((tree / "lib").iterdir()) == []
    git(tree, "-c", "protocol.file.allow=always", "submodule", "update", "-q", "--init")
    assert (tree / "lib" / "lib.c").exists()
    worktrees.remove(root, tree)
    assert pooled(root) == []
    assert registered(root) == [str(root)]

    again = worktrees.add(root, "two", "main", branch="gas/two")

    assert list((again / "lib").iterdir()) == []


def test_the_work_stat_is_the_diff_from_the_base(root: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """commit_all says what changed from the base: when the commit sits right on the base,
    gastown.objects commits and the long-lived `git diff-tree` gives the stat (no `git commit`,
    no `git diff`); when the polecat committed itself, git commits and `git diff` says (the
    summary `git commit` prints, when it speaks English)."""
    base = git(root, "rev-parse", "main")
    fresh = worktrees.add(root, "fresh", base, branch="gas/fresh")
    (fresh / "src" / "app.py").write_text("a\nb\nc\n")
    (fresh / "README.md").unlink()
    (fresh / "new.txt").write_text("1\n2\n")
    calls = git_calls(tmp_path, monkeypatch)
    stat = worktrees.commit_all(fresh, "work", base)
    used = [git_command(line) for line in calls.read_text().splitlines()]
    assert [c for c in used if c not in ("config", "var")] == ["add", "diff-tree"]
    monkeypatch.undo()
    assert stat == worktrees.numstat(git(root, "diff", "--numstat", base, "gas/fresh"))
    assert stat[0] == 3

    tree = worktrees.add(root, "one", base, branch="gas/one")
    assert worktrees.commit_all(tree, "nothing", base) == (0, 0, 0)
    (tree / "src" / "app.py").write_text("a\nb\nc\n")
    (tree / "README.md").unlink()
    git(tree, "add", "-A")
    git(tree, "commit", "-qm", "the agent's own commit")
    assert worktrees.commit_all(tree, "nothing more", base) == \
        worktrees.numstat(git(root, "diff", "--numstat", base, "gas/one"))
    (tree / "new.txt").write_text("1\n2\n")
    stat = worktrees.commit_all(tree, "more", base)
    assert stat == worktrees.numstat(git(root, "diff", "--numstat", base, "gas/one"))
    assert stat[0] == 3
    assert worktrees._summary("[x 1a2b3c] s\n 1 file changed, 2 insertions(+)\n") == (1, 2, 0)
    assert worktrees._summary("[x 1a2b3c] s\n Author: A <a>\n 2 files changed, 1 insertion(+),"
                              " 3 deletions(-)\n create mode 100644 a\n") == (2, 1, 3)
    assert worktrees._summary("[x 1a2b3c] s\n 1 Datei geändert, 1 Zeile hinzugefügt(+)\n") \
        is None


def test_a_return_whose_move_is_ending_counts_once(root: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A slot held for a move into the pool counts against the bound until the move ends,
    and once only when it is in the pool already: the next return still fits."""
    monkeypatch.setattr(worktrees, "POOL_SIZE", 1)
    tree = worktrees.add(root, "one", "main", branch=None)
    slot = worktrees._free_slot(root, keep=2)
    assert slot is not None
    assert worktrees._free_slot(root, keep=None) is None  # held: the pool of one is full
    assert worktrees._move(root, tree, slot)  # moved; the slot not released yet
    try:
        second = worktrees._free_slot(root, keep=2)
        assert second is not None and second != slot
        assert worktrees._free_slot(root, keep=2) is None
    finally:
        worktrees._arriving.clear()


def _git_would_prune(root: Path) -> bool:
    return git(root, "worktree", "prune", "--dry-run", "--verbose") != ""


def _stale_by(root: Path, tmp_path: Path, how: str) -> None:
    """A registration of a user's worktree `theirs` left stale (or in a shape git's prune keeps)
    in one of the ways `how` names."""
    theirs = tmp_path / "theirs"
    git(root, "worktree", "add", "-q", "--detach", str(theirs), "main")
    admin = Path(git(theirs, "rev-parse", "--absolute-git-dir"))
    if how == "directory gone":
        shutil.rmtree(theirs)
    elif how == "gitdir empty":
        (admin / "gitdir").write_text("\n")
    elif how == "gitdir missing":
        (admin / "gitdir").unlink()
    elif how == "gitdir names a directory":
        (admin / "gitdir").write_text(f"{theirs}\n")  # there, though not the `.git` file
    elif how == "gitdir relative":
        (admin / "gitdir").write_text(os.path.relpath(theirs / ".git", admin) + "\n")
    elif how == "duplicate":
        shutil.copytree(admin, admin.with_name("theirs-again"))
    elif how == "not a directory":
        (admin.parent / "stray").write_text("x\n")
    elif how == "locked and gone":
        git(root, "worktree", "lock", str(theirs))
        shutil.rmtree(theirs)


@pytest.mark.parametrize("how", ["sound", "directory gone", "gitdir empty", "gitdir missing",
                                 "gitdir names a directory", "gitdir relative", "duplicate",
                                 "not a directory", "locked and gone"])
def test_git_prunes_worktrees_whenever_it_has_anything_to_prune(
        root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """prune() runs `git worktree prune` only when git may have something to do: whenever
    git's own dry run would prune a registration, and in every case not plainly sound (a
    `gitdir` naming a directory, or a relative path, say); a pooled worktree and sound (or
    locked) registrations cost no process."""
    worktrees.remove(root, worktrees.add(root, "one", "main", branch="gas/one"))
    _stale_by(root, tmp_path, how)
    would = _git_would_prune(root)
    calls = git_calls(tmp_path, monkeypatch)
    worktrees.prune(root)
    ran = "worktree" in [git_command(line) for line in calls.read_text().splitlines()]
    assert ran == (how not in ("sound", "locked and gone")), how
    assert ran or not would
    assert not _git_would_prune(root)
    assert [str(p) for p in pooled(root)] == registered(root)[1:2]


def test_an_empty_worktrees_dir_is_left_to_git(root: Path) -> None:
    """git's prune removes an empty worktrees/ directory: prune() has git do it."""
    admins = root / ".git" / "worktrees"
    admins.mkdir()
    worktrees.prune(root)
    assert not admins.exists()


def test_bead_branches_agree_with_git(root: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Read from the ref files when each is a plain loose ref naming a loose object; git
    lists them (and leaves out what it does not list) otherwise."""
    def listed() -> list[str]:
        out = git(root, "for-each-ref", "--format=%(refname)", "refs/heads/gas/")
        return [ref.removeprefix("refs/heads/gas/") for ref in out.split()]

    assert worktrees.bead_branches(root) == [] == listed()
    for name in ("b-2", "b1", "nested/b.3", "b1.x"):
        git(root, "branch", f"gas/{name}", "main")
    calls = git_calls(tmp_path, monkeypatch)
    assert worktrees.bead_branches(root) == listed()
    heads = root / ".git" / "refs" / "heads" / "gas"
    (heads / "b9.lock").write_text("a ref being written\n")
    assert worktrees.bead_branches(root) == listed()
    assert calls.read_text().count("for-each-ref") == 2  # the two listed() above
    (heads / "broken").write_text("not an id\n")  # left out
    (heads / "gone").write_text("1" * 40 + "\n")  # no such object: some gits list it
    assert worktrees.bead_branches(root) == listed()
    assert "broken" not in listed()
    (heads / "broken").unlink()
    (heads / "gone").unlink()
    git(root, "pack-refs", "--all")
    git(root, "branch", "gas/later", "main")
    assert worktrees.bead_branches(root) == listed()
    assert "later" in listed() and "b1" in listed()


def test_identity_fallbacks_only_for_what_is_not_configured(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AUTHOR", "COMMITTER"):
        for part in ("NAME", "EMAIL"):
            monkeypatch.delenv(f"GIT_{key}_{part}")
    git(root, "config", "user.name", "Someone")
    git(root, "config", "user.email", "")
    gitmod.read_settings(root)
    assert worktrees.identity_env(root) == {"GIT_AUTHOR_EMAIL": "gastown@localhost",
                                            "GIT_COMMITTER_EMAIL": "gastown@localhost"}
