"""Per-bead git worktrees under .gastown/worktrees/, and the .gastown/ working area."""
from __future__ import annotations

import shutil
import threading
from functools import cache
from pathlib import Path

from gastown import git

STATE_DIR = ".gastown"

# `git worktree add/remove/prune` edit shared admin files under .git/worktrees; a prune that
# runs while another add is half done deletes the new worktree's admin dir.
_admin_lock = threading.Lock()


def state_dir(root: Path) -> Path:
    return root / STATE_DIR


def worktree_dir(root: Path, name: str) -> Path:
    return state_dir(root) / "worktrees" / name


def branch_name(bead_id: str) -> str:
    return f"gas/{bead_id}"


def common_dir(root: Path) -> Path:
    path = Path(git.out("rev-parse", "--git-common-dir", cwd=root))
    return path if path.is_absolute() else (root / path).resolve()


def ensure_excluded(root: Path) -> None:
    """Keep .gastown/ out of `git status` without touching the user's .gitignore."""
    exclude = common_dir(root) / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    if f"/{STATE_DIR}/" not in lines and f"{STATE_DIR}/" not in lines:
        exclude.write_text("\n".join([*lines, f"/{STATE_DIR}/"]) + "\n")


@cache
def identity_env(root: Path) -> dict[str, str]:
    """A committer identity for repos (and CI machines) that have none configured."""
    env: dict[str, str] = {}
    if not git.run("config", "user.name", cwd=root, check=False).stdout.strip():
        env.update(GIT_AUTHOR_NAME="gastown", GIT_COMMITTER_NAME="gastown")
    if not git.run("config", "user.email", cwd=root, check=False).stdout.strip():
        env.update(GIT_AUTHOR_EMAIL="gastown@localhost", GIT_COMMITTER_EMAIL="gastown@localhost")
    return env


def add(root: Path, name: str, start: str, *, branch: str | None) -> Path:
    """A fresh worktree at `start` (on `branch`, reset there, or detached)."""
    path = worktree_dir(root, name)
    remove(root, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    target = ["-B", branch, str(path), start] if branch else ["--detach", str(path), start]
    with _admin_lock:
        git.run("worktree", "add", "-f", "--quiet", *target, cwd=root)
    return path


def remove(root: Path, path: Path) -> None:
    if not path.exists():
        return
    with _admin_lock:
        git.run("worktree", "remove", "--force", "--force", str(path), cwd=root, check=False)
    shutil.rmtree(path, ignore_errors=True)


def leftovers(root: Path) -> list[str]:
    """Names of the worktree directories under .gastown/worktrees/."""
    parent = state_dir(root) / "worktrees"
    return sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []


def bead_branches(root: Path) -> list[str]:
    """Bead ids that have a gas/<id> branch."""
    out = git.out("for-each-ref", "--format=%(refname)", "refs/heads/gas/", cwd=root)
    return [ref.removeprefix("refs/heads/gas/") for ref in out.split()]


def clear_ref_locks(root: Path, branches: list[str]) -> list[str]:
    """Remove the `<ref>.lock` files a killed git left on branches only gastown moves
    (`branches` and every gas/ bead branch): git refuses to move a ref while its lock is there.
    Only for a caller that holds the build lock, so that no gastown git can be holding one."""
    common = common_dir(root)
    heads = common / "refs" / "heads"
    locks = [heads / f"{branch}.lock" for branch in branches]
    locks += sorted((heads / "gas").rglob("*.lock")) if (heads / "gas").is_dir() else []
    removed = []
    for lock in locks:
        if lock.is_file():
            lock.unlink(missing_ok=True)
            removed.append(str(lock.relative_to(common)))
    return removed


def prune(root: Path) -> None:
    """Forget worktrees whose directories are gone (a crashed build, a user's rm -rf)."""
    with _admin_lock:
        git.run("worktree", "prune", cwd=root, check=False)


def reset(worktree: Path, commit: str, *, keep_ignored: bool = False) -> None:
    """Back to `commit`: tracked and untracked changes gone (ignored files too, unless kept)."""
    git.run("reset", "--quiet", "--hard", commit, cwd=worktree)
    git.run("clean", "-fdq" if keep_ignored else "-fdxq", cwd=worktree)


def commit_all(worktree: Path, message: str) -> str | None:
    """Commit everything the polecat changed; None when there was nothing to commit."""
    git.run("add", "-A", cwd=worktree)
    if git.ok("diff", "--cached", "--quiet", cwd=worktree):
        return None
    git.run("commit", "--quiet", "--no-verify", "-m", message, cwd=worktree,
            env=identity_env(_top(worktree)))
    return git.out("rev-parse", "HEAD", cwd=worktree)


def _top(worktree: Path) -> Path:
    return common_dir(worktree).parent


def diff_stat(worktree: Path, base: str) -> tuple[int, int, int]:
    """(files, insertions, deletions) between `base` and the worktree's HEAD."""
    out = git.out("diff", "--numstat", base, "HEAD", cwd=worktree)
    files = ins = dels = 0
    for row in out.splitlines():
        added, deleted, _ = row.split("\t", 2)
        files += 1
        ins += int(added) if added.isdigit() else 0
        dels += int(deleted) if deleted.isdigit() else 0
    return files, ins, dels


def checked_out_branches(root: Path) -> dict[str, str]:
    """branch name -> worktree path, for every worktree of the repo."""
    out = git.out("worktree", "list", "--porcelain", cwd=root)
    result: dict[str, str] = {}
    path = ""
    for line in out.splitlines():
        if line.startswith("worktree "):
            path = line[len("worktree "):]
        elif line.startswith("branch refs/heads/"):
            result[line[len("branch refs/heads/"):]] = path
    return result
