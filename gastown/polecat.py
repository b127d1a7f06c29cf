"""The polecat step: a runner edits the bead's worktree, then self-checks; the work is committed."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gastown import costs, runners, spawn, worktrees
from gastown.bead import Bead
from gastown.floor import Floor
from gastown.mayor import render_prompt
from gastown.runners.base import AttemptContext, Event, rate_limited


@dataclass
class PolecatResult:
    ok: bool
    reason: str | None = None
    feedback: str | None = None  # what the next attempt is told
    usage: dict[str, Any] | None = None  # the agent's tokens and cost (None for commands)
    rate_limited: bool = False  # the model said "not now": wait and try the same attempt again
    stat: tuple[int, int, int] = (0, 0, 0)  # the work from the base: files, +lines, -lines


def work(floor: Floor, bead: Bead, worktree: Path, base: str, attempt: int,
         feedback: str | None, actor: str) -> PolecatResult:
    role = bead.roles["polecat"]
    ctx = AttemptContext(
        bead=bead, role=role, worktree=worktree,
        prompt_file=_prompt_file(floor, bead, attempt, feedback),
        log_file=floor.log_file(bead), attempt=attempt,
        env=_env(floor, bead, worktree, base, attempt, feedback),
        on_event=lambda event: _show(floor, actor, event),
    )
    if ctx.prompt_file is not None:
        ctx.env["GAS_PROMPT_FILE"] = str(ctx.prompt_file)
    runner = runners.get(role.runner or "command")
    result = runner.run(ctx)
    usage = costs.entry(result, role, floor.plan.gasfile.prices) if runner.needs_model else None
    if rate_limited(result):
        return PolecatResult(False, result.reason, None, usage, rate_limited=True)
    if not result.ok:
        floor.console.say(actor, f"FAIL {bead.id}: {result.reason}")
        return PolecatResult(False, result.reason, _feedback(result.reason, result.output_tail),
                             usage)
    checked = _checks(floor, bead, worktree, ctx.env, actor)
    if checked is not None:
        return PolecatResult(False, checked.reason, checked.feedback, usage)
    stat = worktrees.commit_all(worktree, f"{bead.id}: {bead.title}\n\nattempt {attempt}\n", base)
    return PolecatResult(True, usage=usage, stat=stat)


def _checks(floor: Floor, bead: Bead, worktree: Path, env: dict[str, str],
            actor: str) -> PolecatResult | None:
    for check in bead.roles["polecat"].checks:
        proc = spawn.run(check, cwd=worktree, env=env, log_file=floor.log_file(bead),
                         timeout=bead.roles["polecat"].timeout)
        verdict = "pass" if proc.ok else f"FAIL (exit {proc.exit_code})"
        floor.console.say(actor, f"RUN {check} -> {verdict}")
        if not proc.ok:
            reason = f"check `{check}` failed (exit {proc.exit_code})"
            return PolecatResult(False, reason, _feedback(reason, proc.tail))
    return None


def _feedback(reason: str | None, tail: str) -> str:
    return f"{reason}\n\n{tail}".strip()


def _env(floor: Floor, bead: Bead, worktree: Path, base: str, attempt: int,
         feedback: str | None) -> dict[str, str]:
    env = {**floor.env, **dict(bead.roles["polecat"].env), **bead.env(),
           "GAS_ROLE": "polecat", "GAS_ATTEMPT": str(attempt), "GAS_WORKTREE": str(worktree),
           "GAS_BASE_COMMIT": base, "GAS_INTO": floor.plan.gasfile.project.into}
    if feedback:
        path = floor.prompt_dir(bead) / f"feedback-{attempt}.txt"
        path.write_text(feedback)
        env["GAS_FEEDBACK_FILE"] = str(path)
    return env


def _prompt_file(floor: Floor, bead: Bead, attempt: int, feedback: str | None) -> Path | None:
    text = render_prompt(floor.root, bead, "polecat", attempt, feedback)
    if text is None:
        return None
    path = floor.prompt_dir(bead) / f"polecat-{attempt}.md"
    path.write_text(text)
    return path


def _show(floor: Floor, actor: str, event: Event) -> None:
    floor.console.say(actor, f"{event.kind.upper()} {event.text}")
