"""Finding the repository a command works on, and refusing the ones gastown cannot use."""
from __future__ import annotations

import re
from pathlib import Path

from gastown import git
from gastown.errors import GasError

MIN_GIT = (2, 30)


def find_root(cwd: Path) -> Path:
    """The top of the git work tree containing `cwd`, checked to be usable."""
    _check_git_version()
    proc = git.run("rev-parse", "--show-toplevel", cwd=cwd, check=False)
    if proc.returncode != 0:
        raise GasError(f"not a git repository: {cwd}", hint="run gas inside a git repository "
                       "(`git init` and commit first)")
    root = Path(proc.stdout.strip())
    if git.rev("HEAD", cwd=root) is None:
        raise GasError(f"the repository at {root} has no commits yet",
                       hint="commit something first: the integration branch starts from it")
    return root


def _check_git_version() -> None:
    found = git.version()
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
    from gastown.worktrees import checked_out_branches

    where = checked_out_branches(root).get(into)
    if where is not None:
        raise GasError(f"project.into: integration branch {into!r} is checked out in {where}",
                       file=file, hint=f"switch that checkout to another branch; gas moves "
                       f"{into!r} itself and never touches your working tree")
