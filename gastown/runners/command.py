"""The `command` runner: a shell command of the Gasfile's run in the bead's worktree, no model."""
from __future__ import annotations

from gastown import spawn
from gastown.bead import RoleSpec
from gastown.runners.base import AttemptContext, Event, Outcome, RunResult


class CommandRunner:
    name = "command"
    needs_model = False
    keeps_work = False

    def check(self, role: RoleSpec) -> str | None:
        return None

    def run(self, ctx: AttemptContext) -> RunResult:
        command = ctx.bead.run
        if not command:
            return RunResult(Outcome.ERROR, f"bead {ctx.bead.id} has no `run` command")
        ctx.on_event(Event("run", command))
        proc = spawn.run(command, cwd=ctx.worktree, env=ctx.env, log_file=ctx.log_file,
                         timeout=ctx.role.timeout, stall=ctx.role.stall)
        if proc.killed == "stopped":
            return RunResult(Outcome.ERROR, "stopped: the build was interrupted", proc.exit_code,
                             proc.duration, proc.tail)
        if proc.killed:
            return RunResult(Outcome.TIMEOUT, f"{command}: killed after {proc.killed}",
                             proc.exit_code, proc.duration, proc.tail)
        if proc.exit_code != 0:
            return RunResult(Outcome.FAILED, f"{command}: exit {proc.exit_code}",
                             proc.exit_code, proc.duration, proc.tail)
        return RunResult(Outcome.OK, None, 0, proc.duration, proc.tail)
