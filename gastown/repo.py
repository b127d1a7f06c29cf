"""Finding the repository a command works on, and refusing the ones gastown cannot use."""
from __future__ import annotations

import os
import re
from pathlib import Path
from stat import S_ISREG

from gastown import git
from gastown.errors import GasError

MIN_GIT = (2, 30)


def find_root(cwd: Path) -> Path:
    """The top of the git work tree containing `cwd`, checked to be usable."""
    version = git.Soon(git.version)  # asked while git looks for the top
    proc = git.run("rev-parse", "--show-toplevel", cwd=cwd, check=False)
    _check_git_version(version.get())
    if proc.returncode != 0:
        raise GasError(f"not a git repository: {cwd}", hint="run gas inside a git repository "
                       "(`git init` and commit first)")
    root = Path(proc.stdout.strip())
    if git.rev("HEAD", cwd=root) is None:
        raise GasError(f"the repository at {root} has no commits yet",
                       hint="commit something first: the integration branch starts from it")
    return root


def _check_git_version(found: tuple[int, ...]) -> None:
    if found < MIN_GIT:
        shown = ".".join(map(str, found))
        raise GasError(f"git {shown} is too old; gastown needs git >= 2.30",
                       hint="upgrade git (worktree and update-ref features are needed)")


# Branch names git certainly accepts (it is asked about any other): slash-separated words of
# letters, digits, `.`, `_` and `-`, each starting with a letter or digit, no `..`, no `.lock`.
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")


def _plain_branch(name: str) -> bool:
    return bool(_PLAIN.fullmatch(name)) and ".." not in name and name != "HEAD" and \
        not any(part.endswith((".lock", ".")) for part in name.split("/"))


def check_branches(root: Path, base: str, into: str, ledger: str, *, file: str) -> None:
    """`base` must exist; `into` must not be checked out anywhere (gas moves it by ref)."""
    for key, name in (("into", into), ("ledger", ledger)):
        if not _plain_branch(name) and not git.ok("check-ref-format", "--branch", name,
                                                   cwd=root):
            raise GasError(f"project.{key}: {name!r} is not a valid branch name", file=file,
                           hint="see `git help check-ref-format`")
    if into == ledger:
        raise GasError(f"project.into and project.ledger are both {into!r}", file=file,
                       hint="the ledger needs a branch of its own (default gt-ledger)")
    if git.rev(f"refs/heads/{base}", cwd=root) is None and git.rev(base, cwd=root) is None:
        raise GasError(f"project.base: branch {base!r} does not exist", file=file,
                       hint="set project.base to an existing branch (e.g. main or master)")
    if not _maybe_checked_out(root, into):
        return
    from gastown.worktrees import checked_out_branches

    where = checked_out_branches(root).get(into)
    if where is not None:
        raise GasError(f"project.into: integration branch {into!r} is checked out in {where}",
                       file=file, hint=f"switch that checkout to another branch; gas moves "
                       f"{into!r} itself and never touches your working tree")


_HEAD_BRANCH = re.compile(rb"ref: refs/heads/(\S+)\n?")
_HEAD_DETACHED = re.compile(rb"([0-9a-f]{40}|[0-9a-f]{64})\n?")


def _maybe_checked_out(root: Path, branch: str) -> bool:
    """False when certainly no worktree of the repository has `branch` checked out, as their
    HEAD files say (no process: `git worktree list` costs one); True when git must say."""
    found = git.dirs(root)
    if found is None or (found[1] / "reftable").exists():
        return True
    common = found[1]
    try:
        linked = os.listdir(common / "worktrees")
    except FileNotFoundError:
        linked = []
    except OSError:
        return True
    heads = [common / "HEAD", *(common / "worktrees" / name / "HEAD" for name in linked)]
    return any(_head_may_name(head, common, branch) for head in heads)


def _head_may_name(head: Path, common: Path, branch: str) -> bool:
    """Whether the HEAD file `head` may name `branch` as git reads it: False when it holds a
    commit id, or names another plain branch that is no symbolic ref (git would follow it)."""
    text = _regular_file(head)
    if text is not None and _HEAD_DETACHED.fullmatch(text):
        return False
    named = _HEAD_BRANCH.fullmatch(text or b"")
    name = named[1].decode("ascii", "replace") if named else ""
    if name == branch or not _plain_branch(name):
        return True
    target = _regular_file(common / "refs" / "heads" / name, missing=b"")
    return target is None or target.startswith(b"ref:")


def _regular_file(path: Path, missing: bytes | None = None) -> bytes | None:
    """The bytes of `path` when it is a regular file; `missing` when there is nothing there;
    None for anything else."""
    try:
        if not S_ISREG(os.lstat(path).st_mode):
            return None
        return path.read_bytes()
    except FileNotFoundError:
        return missing
    except OSError:
        return None
