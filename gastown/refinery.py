"""The refinery: merges approved beads into the integration branch one at a time, then CI."""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gastown import git, spawn, worktrees
from gastown.bead import Bead

TRAILER = "Gas-Bead"
FINGERPRINT_TRAILER = "Gas-Fingerprint"
WORKTREE = "_refinery"


@dataclass
class MergeResult:
    ok: bool
    commit: str | None = None
    reason: str | None = None
    ci_seconds: float = 0.0


class Refinery:
    """Owns the integration branch: it alone moves `into`, with compare-and-swap."""

    def __init__(self, root: Path, into: str, *, strategy: str, ci: str | None,
                 env: dict[str, str], logs: Path, say: Callable[[str, str], None]) -> None:
        self.root, self.into, self.strategy, self.ci = root, into, strategy, ci
        self.env = {**env, **worktrees.identity_env(root)}
        self.logs, self.say = logs, say
        self.lock = threading.Lock()
        self.path: Path | None = None

    def tip(self) -> str:
        tip = git.rev(f"refs/heads/{self.into}", cwd=self.root)
        assert tip is not None, f"integration branch {self.into} vanished"
        return tip

    def merge(self, bead: Bead, branch: str) -> MergeResult:
        with self.lock:
            return self._merge(bead, branch)

    def _merge(self, bead: Bead, branch: str) -> MergeResult:
        tip = self.tip()
        path = self._worktree(tip)
        conflict = self._combine(path, bead, branch)
        if conflict:
            self._reset(path, tip)
            return MergeResult(False, reason=conflict)
        ci = self._ci(path, bead)
        if ci is not None and not ci.ok:
            self._reset(path, tip)
            return MergeResult(False, reason=_ci_reason(self.ci or "", ci), ci_seconds=ci.duration)
        return self._advance(path, tip, ci.duration if ci else 0.0)

    def _worktree(self, tip: str) -> Path:
        if self.path is None or not self.path.exists():
            self.path = worktrees.add(self.root, WORKTREE, tip, branch=None)
        self._reset(self.path, tip)
        return self.path

    def _reset(self, path: Path, tip: str) -> None:
        for args in (("merge", "--abort"), ("rebase", "--abort"), ("cherry-pick", "--abort")):
            git.run(*args, cwd=path, check=False)
        git.run("checkout", "--quiet", "--force", "--detach", tip, cwd=path)
        worktrees.reset(path, tip)

    def _combine(self, path: Path, bead: Bead, branch: str) -> str | None:
        """Put the bead's work on top of the tip; a conflict comes back as a reason."""
        merged, single = merge_message(bead, "Merge "), merge_message(bead, "")
        steps: dict[str, list[tuple[str, ...]]] = {
            "merge": [("merge", "--no-ff", "--no-verify", "-q", "-m", merged, branch)],
            "squash": [("merge", "--squash", "-q", branch),
                       ("commit", "--no-verify", "-q", "-m", single)],
            "rebase": [("cherry-pick", "--allow-empty", f"HEAD..{branch}"),
                       ("commit", "--amend", "--no-verify", "-q", "-m", single)],
        }
        for args in steps[self.strategy]:
            proc = git.run(*args, cwd=path, env=self.env, check=False)
            if proc.returncode != 0:
                return self._conflict_reason(path, proc.stdout + proc.stderr)
        return None

    def _conflict_reason(self, path: Path, output: str) -> str:
        files = git.run("diff", "--name-only", "--diff-filter=U", cwd=path, check=False)
        names = files.stdout.split()
        if names:
            return f"merge conflict with {self.into} in {', '.join(names[:5])}"
        return f"merge into {self.into} failed: {output.strip().splitlines()[-1:]}"

    def _ci(self, path: Path, bead: Bead) -> spawn.ProcResult | None:
        if not self.ci:
            return None
        self.say("Refinery", f"RUN CI {self.ci} on {self.into} + {bead.id}")
        env = {**self.env, **bead.env(), "GAS_INTO": self.into}
        return spawn.run(self.ci, cwd=path, env=env, log_file=self.logs / f"{bead.id}.log")

    def _advance(self, path: Path, old: str, ci_seconds: float) -> MergeResult:
        new = git.out("rev-parse", "HEAD", cwd=path)
        moved = git.run("update-ref", "-m", "gas: refinery merge", f"refs/heads/{self.into}",
                        new, old, cwd=self.root, check=False)
        if moved.returncode != 0 and self.tip() != old:
            return MergeResult(False, reason=f"{self.into} moved during the merge; not merged")
        if moved.returncode != 0:
            why = (moved.stderr.strip().splitlines() or ["update-ref failed"])[0]
            return MergeResult(False, reason=f"could not move {self.into}: {why}")
        if not git.ok("merge-base", "--is-ancestor", new, f"refs/heads/{self.into}", cwd=self.root):
            return MergeResult(False, reason=f"merge commit {new[:12]} is not on {self.into}")
        return MergeResult(True, commit=new, ci_seconds=ci_seconds)

    def close(self) -> None:
        if self.path is not None:
            worktrees.remove(self.root, self.path)
            self.path = None


def merge_message(bead: Bead, verb: str) -> str:
    return (f"{verb}{bead.id}: {bead.title}\n\n"
            f"{TRAILER}: {bead.id}\n{FINGERPRINT_TRAILER}: {bead.fingerprint}\n")


def _ci_reason(command: str, proc: spawn.ProcResult) -> str:
    last = proc.tail.strip().splitlines()[-1:] or [""]
    return f"CI failed: `{command}` exit {proc.exit_code}: {last[0][:200]}"


def merged_trailers(root: Path, into: str) -> dict[str, tuple[str, str]]:
    """bead id -> (fingerprint, commit) for every Gas-Bead trailer on the integration branch
    (the newest commit of a bead merged more than once)."""
    if git.rev(f"refs/heads/{into}", cwd=root) is None:
        return {}
    fmt = (f"%H%x00%(trailers:key={TRAILER},valueonly,separator=%x1f)%x00"
           f"%(trailers:key={FINGERPRINT_TRAILER},valueonly,separator=%x1f)%x1e")
    out = git.out("log", "--first-parent", f"--format={fmt}", f"refs/heads/{into}", cwd=root)
    found: dict[str, tuple[str, str]] = {}
    for entry in out.split("\x1e"):
        commit, _, rest = entry.strip().partition("\x00")
        ids, _, prints = rest.partition("\x00")
        if ids.strip():
            found.setdefault(ids.strip(), (prints.strip(), commit))
    return found
