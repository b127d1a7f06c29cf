"""gastown.git: refs read from their files agree with git, and git is asked otherwise."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from gastown import git as gitmod
from tests.conftest import git, git_calls, git_command, make_repo


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


def _commit_in_17(repo: Path, count: int, tag: str = "") -> None:
    """`count` new files committed (named and filled after `tag`), each a blob git keeps
    loose in objects/17."""
    made, n = 0, 0
    while made < count:
        text = f"{tag}{n}\n"
        n += 1
        if gitmod.object_id("blob", text.encode()).startswith("17"):
            (repo / f"in17-{tag}{made}.txt").write_text(text)
            made += 1
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "loose objects")


def _in_17(repo: Path) -> int:
    fanout = repo / ".git" / "objects" / "17"
    return len(os.listdir(fanout)) if fanout.exists() else 0


def _gc_runs(repo: Path, calls: Path) -> bool:
    """Whether maintain() ran `git gc` (settings read first, as a build does)."""
    before = calls.read_text()
    gitmod.read_settings(repo)
    gitmod.maintain(repo)
    return any(git_command(line) == "gc" for line in calls.read_text()[len(before):].splitlines())


def test_gc_runs_when_git_finds_too_many_loose_objects(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """git gcs when objects/17 holds more than gc.auto/256 (rounded up) loose objects; only
    then does maintain() start it."""
    repo = make_repo(tmp_path / "repo")
    _commit_in_17(repo, 3)
    calls = git_calls(tmp_path, monkeypatch)
    assert not _gc_runs(repo, calls)  # the default: 6700 (27 in objects/17)
    loose = _in_17(repo)
    git(repo, "config", "gc.auto", str(256 * (loose - 1) + 1))  # rounded up: `loose`
    assert not _gc_runs(repo, calls)
    git(repo, "-c", "gc.autoDetach=false", "gc", "--auto", "--quiet")  # git agrees: nothing
    assert _in_17(repo) == loose
    git(repo, "config", "gc.auto", str(256 * (loose - 1)))
    assert _gc_runs(repo, calls)
    assert _in_17(repo) == 0  # packed
    git(repo, "config", "gc.auto", "0")  # off
    _commit_in_17(repo, 3, "more")
    assert not _gc_runs(repo, calls)


def test_gc_runs_when_git_finds_too_many_packs(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """More packs than gc.autoPackLimit, those with a .keep file aside."""
    repo = make_repo(tmp_path / "repo")
    for n in range(2):
        (repo / f"f{n}").write_text(f"{n}\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", str(n))
        git(repo, "repack", "-d", "-q")
    packs = sorted((repo / ".git" / "objects" / "pack").glob("*.pack"))
    assert len(packs) == 2
    calls = git_calls(tmp_path, monkeypatch)
    git(repo, "config", "gc.autoPackLimit", "1")
    packs[0].with_suffix(".keep").write_text("")
    assert not _gc_runs(repo, calls)
    git(repo, "-c", "gc.autoDetach=false", "gc", "--auto", "--quiet")  # git agrees: nothing
    assert sorted((repo / ".git" / "objects" / "pack").glob("*.pack")) == packs
    packs[0].with_suffix(".keep").unlink()
    assert _gc_runs(repo, calls)
    assert len(list((repo / ".git" / "objects" / "pack").glob("*.pack"))) == 1


@pytest.mark.parametrize("value", ["10x", "0x10", " 5", "99999999999", ""])
def test_a_gc_setting_not_read_here_leaves_gc_to_git(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "config", "gc.auto", value)
    assert _gc_runs(repo, git_calls(tmp_path, monkeypatch))


def test_settings_read_in_the_background_are_git_configs(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / ".git" / "config").write_text((repo / ".git" / "config").read_text() + (
        "[user]\n\tname = A\n\tname = B\n\temail\n[gc]\n\tautoPackLimit = 7\n"
        "[other]\n\tauto = 1\n"))
    gitmod.read_settings(repo)
    assert gitmod.settings(repo).entries == (
        ("core.hookspath", "/dev/null"),  # the tests' global config
        ("user.name", "A"), ("user.name", "B"), ("user.email", None), ("gc.autopacklimit", "7"))
    assert gitmod.settings(repo).returncode == 0


def test_soon_returns_or_raises_what_the_call_did() -> None:
    assert gitmod.Soon(sorted, [3, 1, 2]).get() == [1, 2, 3]
    failed = gitmod.Soon(int, "x")
    with pytest.raises(ValueError):
        failed.get()


@pytest.mark.parametrize("object_format", ["sha1", "sha256"])
def test_objects_stored_here_are_what_git_reads(tmp_path: Path, object_format: str) -> None:
    """store() writes loose objects git reads (their fan-out directories made as needed), with
    the ids git gives them; one that is there already is left as it is."""
    repo = tmp_path / "repo"
    git(tmp_path, "init", "-q", f"--object-format={object_format}", str(repo))
    size = 64 if object_format == "sha256" else 40
    into = repo / ".git" / "objects"
    [blob] = gitmod.store([("blob", b"hello\n")], into=into, hex_size=size)
    assert blob == gitmod.out("hash-object", "--stdin", cwd=repo, input="hello\n")
    tree = b"100644 hello.txt\0" + bytes.fromhex(blob)
    assert gitmod.store([("tree", tree), ("blob", b"hello\n")], into=str(into),
                        hex_size=size) == [gitmod.object_id("tree", tree, size), blob]
    assert git(repo, "cat-file", "-p", blob) == "hello"
    assert git(repo, "ls-tree", gitmod.object_id("tree", tree, size)) == \
        f"100644 blob {blob}\thello.txt"
    stored = into / blob[:2] / blob[2:]
    inode = stored.stat().st_ino
    gitmod.store([("blob", b"hello\n")], into=into, hex_size=size)
    assert stored.stat().st_ino == inode
    assert list(into.rglob("tmp_obj_*")) == []
    git(repo, "fsck", "--strict", "--no-dangling")


@pytest.mark.parametrize("data", [b"", b"ref: refs/heads/main\n", b"a\r\nb\rc\r\n",
                                  "gitdir: /tmp/\u00fcn\u00ef\n".encode(), b"x" * 70000])
def test_files_are_read_as_pathlib_reads_them(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "file"
    path.write_bytes(data)
    assert gitmod.read_text(path) == path.read_text()
    if data.isascii():
        assert gitmod.read_text(str(path), "ascii") == path.read_text("ascii")
    else:
        with pytest.raises(UnicodeDecodeError):
            gitmod.read_text(path, "ascii")


# -- refs moved and deleted without a process --------------------------------------------------

def _reflog_lines(repo: Path, ref: str) -> list[str]:
    return (repo / ".git" / "logs" / ref).read_text().splitlines()


def test_a_logged_move_writes_what_update_ref_writes(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    first = git(repo, "rev-parse", "HEAD")
    git(repo, "commit", "-q", "--allow-empty", "-m", "second")
    second = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "--detach")
    git(repo, "update-ref", "-m", "made", "refs/heads/side", first)  # with a reflog
    git(repo, "update-ref", "-m", "by git", "refs/heads/side", second, first)
    by_git = _reflog_lines(repo, "refs/heads/side")[-1]
    ident = by_git.split("\t")[0].split(" ", 2)[2].rsplit(" ", 2)[0]  # "name <email>"
    log = f"{ident} 1700000000 +0000\tby gastown"
    assert not gitmod.write_loose_ref(repo / ".git", "refs/heads/side", first, first, log=log)
    assert gitmod.write_loose_ref(repo / ".git", "refs/heads/side", first, second, log=log)
    assert git(repo, "rev-parse", "side") == first
    ours = _reflog_lines(repo, "refs/heads/side")[-1]
    assert ours == f"{second} {first} {log}"
    assert git(repo, "reflog", "show", "--format=%gs", "side").splitlines()[:2] == \
        ["by gastown", "by git"]
    assert git(repo, "fsck", "--no-dangling") == ""


def test_a_logged_move_is_left_to_git_where_git_logs_more(tmp_path: Path) -> None:
    """HEAD on the branch (git logs HEAD too), no reflog to append to, a packed branch."""
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "commit", "-q", "--allow-empty", "-m", "second")
    new = git(repo, "rev-parse", "HEAD")
    log = "someone <someone@localhost> 1700000000 +0000\tmoved"
    common = repo / ".git"
    assert not gitmod.write_loose_ref(common, "refs/heads/main", head, new, log=log)  # HEAD
    git(repo, "checkout", "-q", "--detach")
    git(repo, "-c", "core.logAllRefUpdates=false", "branch", "quiet", head)
    assert not gitmod.write_loose_ref(common, "refs/heads/quiet", new, head, log=log)
    git(repo, "pack-refs", "--all")
    assert not gitmod.write_loose_ref(common, "refs/heads/main", head, new, log=log)
    assert git(repo, "rev-parse", "main", "quiet").split() == [new, head]
    assert not list((common / "refs" / "heads").rglob("*.lock"))


def test_branches_locked_for_deletion_go_or_stay_together(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    common = repo / ".git"
    for name in ("gas/b1", "gas/b2", "other"):
        git(repo, "-c", "core.logAllRefUpdates=false", "branch", name)
    end = gitmod.locked_for_deletion(common, ["refs/heads/gas/b1", "refs/heads/gas/b2"])
    assert end is not None
    assert gitmod.locked_for_deletion(common, ["refs/heads/gas/b1"]) is None, "locked twice"
    end(False)
    assert git(repo, "branch", "--list", "gas/*").split() == ["gas/b1", "gas/b2"]
    end = gitmod.locked_for_deletion(common, ["refs/heads/gas/b1", "refs/heads/gas/b2"])
    assert end is not None
    end(True)
    assert git(repo, "branch", "--list", "gas/*") == ""
    assert not (common / "refs" / "heads" / "gas").exists(), "an empty directory left"
    git(repo, "-c", "core.logAllRefUpdates=false", "branch", "gas/b3")
    git(repo, "pack-refs", "--all")
    git(repo, "-c", "core.logAllRefUpdates=false", "branch", "-f", "gas/b3", "HEAD")
    assert gitmod.locked_for_deletion(common, ["refs/heads/gas/b3"]) is None, "packed too"
    git(repo, "branch", "logged")  # with a reflog (the main worktree logs branches)
    assert gitmod.locked_for_deletion(common, ["refs/heads/logged"]) is None
    assert not list((common / "refs" / "heads").rglob("*.lock"))
