"""The witness step: reviews a polecat's diff; an empty diff or a failed check is a rejection."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gastown import spawn, worktrees
from gastown.bead import Bead
from gastown.floor import Floor


@dataclass
class Verdict:
    approved: bool
    reason: str | None = None
    files: int = 0
    insertions: int = 0
    deletions: int = 0

    def stat(self) -> str:
        return f"+{self.insertions} -{self.deletions} in {self.files} file(s)"


def review(floor: Floor, bead: Bead, worktree: Path, base: str) -> Verdict:
    files, ins, dels = worktrees.diff_stat(worktree, base)
    floor.console.say("Witness", f"DIFF {bead.id} (+{ins} lines, -{dels} lines, {files} files)")
    if files == 0:
        return Verdict(False, "empty diff: the polecat changed nothing")
    env = {**floor.env, **dict(bead.roles["witness"].env), **bead.env(),
           "GAS_ROLE": "witness", "GAS_WORKTREE": str(worktree), "GAS_BASE_COMMIT": base}
    for check in bead.roles["witness"].checks:
        proc = spawn.run(check, cwd=worktree, env=env, log_file=floor.log_file(bead),
                         timeout=bead.roles["witness"].timeout)
        if not proc.ok:
            last = (proc.tail.strip().splitlines() or [""])[-1][:200]
            return Verdict(False, f"check `{check}` failed (exit {proc.exit_code}): {last}",
                           files, ins, dels)
        floor.console.say("Witness", f"CHECK {check} ✓")
    return Verdict(True, None, files, ins, dels)
