"""The witness step: reviews a polecat's diff. An empty diff or a failed check is a rejection;
then, when the role has a runner, a reviewer agent reads the diff and gives a verdict."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gastown import costs, git, runners, spawn, worktrees
from gastown.bead import Bead
from gastown.floor import Floor
from gastown.mayor import render_prompt
from gastown.runners.base import AttemptContext, Event, RunResult, rate_limited

VERDICT = re.compile(r"VERDICT:\s*(APPROVE|REJECT)\b[\s:.-]*(.*)", re.IGNORECASE)
MAX_DIFF = 60_000


@dataclass
class Verdict:
    approved: bool
    reason: str | None = None
    files: int = 0
    insertions: int = 0
    deletions: int = 0
    usage: dict[str, Any] | None = None  # the reviewer's calls, summed
    error: bool = False  # gastown could not get a review (not the same as a rejection)

    def stat(self) -> str:
        return f"+{self.insertions} -{self.deletions} in {self.files} file(s)"


def review(floor: Floor, bead: Bead, worktree: Path, base: str, attempt: int,
           stat: tuple[int, int, int]) -> Verdict:
    """The verdict on the work committed from `base`, whose diff `stat` the commit gave."""
    files, ins, dels = stat
    floor.console.say("Witness", f"DIFF {bead.id} (+{ins} lines, -{dels} lines, {files} files)")
    if files == 0:
        return Verdict(False, "empty diff: the polecat changed nothing")
    env = {**floor.env, **dict(bead.roles["witness"].env), **bead.env(),
           "GAS_ROLE": "witness", "GAS_WORKTREE": str(worktree), "GAS_BASE_COMMIT": base}
    failed = _checks(floor, bead, worktree, env)
    if failed:
        return Verdict(False, failed, files, ins, dels)
    if not bead.roles["witness"].runner:
        return Verdict(True, None, files, ins, dels)
    verdict = _reviewer(floor, bead, worktree, base, attempt, env)
    verdict.files, verdict.insertions, verdict.deletions = files, ins, dels
    return verdict


def _checks(floor: Floor, bead: Bead, worktree: Path, env: dict[str, str]) -> str | None:
    for check in bead.roles["witness"].checks:
        proc = spawn.run(check, cwd=worktree, env=env, log_file=floor.log_file(bead),
                         timeout=bead.roles["witness"].timeout)
        if not proc.ok:
            last = (proc.tail.strip().splitlines() or [""])[-1][:200]
            return f"check `{check}` failed (exit {proc.exit_code})" + (f": {last}" if last else "")
        floor.console.say("Witness", f"CHECK {check} ✓")
    return None


def _reviewer(floor: Floor, bead: Bead, worktree: Path, base: str, attempt: int,
              env: dict[str, str]) -> Verdict:
    """Ask the reviewer agent; an answer without a verdict is asked once more."""
    usage: dict[str, Any] | None = None
    answer = ""
    for _ in range(2):
        result, spent = _ask_patiently(floor, bead, worktree, base, attempt, env)
        usage = costs.combine(usage, spent)
        if not result.ok:
            return Verdict(False, f"witness: {result.reason}", usage=usage, error=True)
        answer = result.text
        found = parse_verdict(answer)
        if found is not None:
            return Verdict(found[0], found[1], usage=usage)
    last = (answer.strip().splitlines() or ["(no answer)"])[-1][:200]
    return Verdict(False, f"the witness gave no verdict: {last}", usage=usage)


def _ask_patiently(floor: Floor, bead: Bead, worktree: Path, base: str, attempt: int,
                   env: dict[str, str]) -> tuple[RunResult, dict[str, Any]]:
    """Ask the reviewer, waiting out rate limits; returns the answer and what all asks cost."""
    role, started, waited = bead.roles["witness"], time.monotonic(), 0
    spent: dict[str, Any] | None = None
    while True:
        result = _ask(floor, bead, worktree, base, attempt, env)
        spent = costs.combine(spent, costs.entry(result, role, floor.plan.gasfile.prices))
        if not rate_limited(result) or not floor.wait_out_rate_limit(
                bead, "Witness", result.reason, waited, started, role.timeout):
            return result, spent
        waited += 1


def _ask(floor: Floor, bead: Bead, worktree: Path, base: str, attempt: int,
         env: dict[str, str]) -> RunResult:
    role = bead.roles["witness"]
    diff = git.out("diff", base, "HEAD", cwd=worktree)[:MAX_DIFF]
    text = render_prompt(floor.root, bead, "witness", attempt, None, diff) or ""
    prompt = floor.prompt_dir(bead) / f"witness-{attempt}.md"
    prompt.write_text(text)
    ctx = AttemptContext(bead=bead, role=role, worktree=worktree, prompt_file=prompt,
                         log_file=floor.log_file(bead), attempt=attempt,
                         env={**env, "GAS_PROMPT_FILE": str(prompt)},
                         on_event=lambda e: _show(floor, e))
    result = runners.get(role.runner or "command").run(ctx)
    worktrees.reset(worktree, "HEAD", keep_ignored=True)  # a reviewer only reads
    return result


def parse_verdict(text: str) -> tuple[bool, str | None] | None:
    """(approved, reason) from the last `VERDICT: APPROVE|REJECT reason` line, if any."""
    matches = [VERDICT.search(line) for line in text.splitlines()]
    found = [m for m in matches if m]
    if not found:
        return None
    kind, reason = found[-1].group(1).upper(), found[-1].group(2).strip().strip('"')
    if kind == "APPROVE":
        return True, None
    return False, reason or "rejected without a reason"


def _show(floor: Floor, event: Event) -> None:
    if event.kind in ("read", "run", "text", "error", "retry"):
        floor.console.say("Witness", f"{event.kind.upper()} {event.text}")

