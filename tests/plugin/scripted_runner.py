"""A third-party runner, installed through the `gastown.runners` entry point in tests.

It plays an agent from files: the polecat writes `work.txt` (the prompt it was given, so tests
can see the feedback) and the witness answers with the next line of $SCRIPTED_DIR/verdicts.
Each call reports 1000 input and 100 output tokens, and, when $SCRIPTED_USD is set, that cost.
While $SCRIPTED_DIR/rate-limits-<role> holds a number above 0, that role's call answers as a
rate-limited model would, and counts it down.
"""
from __future__ import annotations

import os
from pathlib import Path

from gastown.bead import RoleSpec
from gastown.runners.base import AttemptContext, Event, Outcome, RunResult


class ScriptedRunner:
    name = "scripted"
    needs_model = True
    keeps_work = True

    def check(self, role: RoleSpec) -> str | None:
        if "SCRIPTED_DIR" not in {**os.environ, **dict(role.env)}:
            return "SCRIPTED_DIR is not set; point it at the script directory"
        return None

    def run(self, ctx: AttemptContext) -> RunResult:
        folder = Path(ctx.env["SCRIPTED_DIR"])
        prompt = ctx.prompt_file.read_text() if ctx.prompt_file else ""
        with (folder / "prompts.log").open("a") as log:
            log.write(f"--- {ctx.env['GAS_ROLE']} {ctx.bead.id} attempt {ctx.attempt}\n{prompt}\n")
        if _rate_limited(folder / f"rate-limits-{ctx.env['GAS_ROLE']}"):
            return RunResult(Outcome.FAILED, "scripted: model API error 429: slow down")
        usage: dict[str, float] = {"input_tokens": 1000, "output_tokens": 100}
        if "SCRIPTED_USD" in ctx.env:
            usage["usd"] = float(ctx.env["SCRIPTED_USD"])
        if ctx.env["GAS_ROLE"] == "witness":
            return RunResult(Outcome.OK, text=_next_verdict(folder), usage=usage)
        (ctx.worktree / "work.txt").write_text(prompt)
        ctx.on_event(Event("write", "work.txt"))
        return RunResult(Outcome.OK, text="done", usage=usage)


def _next_verdict(folder: Path) -> str:
    script = folder / "verdicts"
    lines = script.read_text().splitlines() if script.exists() else []
    script.write_text("\n".join(lines[1:]))
    return lines[0] if lines else "VERDICT: APPROVE"


def _rate_limited(counter: Path) -> bool:
    left = int(counter.read_text()) if counter.exists() else 0
    if left > 0:
        counter.write_text(str(left - 1))
    return left > 0
