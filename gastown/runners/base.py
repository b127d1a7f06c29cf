"""The one small protocol every agent runner implements, and the values it trades in."""
from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from gastown.bead import Bead, RoleSpec


class Outcome(enum.StrEnum):
    OK = "ok"  # the runner finished its turn (the work may still fail checks)
    FAILED = "failed"  # the agent or command failed: exit code, model error...
    ERROR = "error"  # gastown could not run it at all (missing CLI, bad spawn)
    TIMEOUT = "timeout"

    def __str__(self) -> str:
        return self.value


EVENT_KINDS = ("read", "write", "run", "result", "text", "usage", "retry", "error")


@dataclass(frozen=True)
class Event:
    """One thing an agent did, as the log lines and the ledger see it.

    read/write: a file path; run: a command line; result: a command's outcome (`6/6 passing`,
    `exit 1`); text: the agent's own words (one line); usage: tokens/cost so far;
    retry: the model API asked to wait (rate limit, overload); error: an API or tool error.
    """

    kind: str
    text: str


@dataclass
class AttemptContext:
    """What a runner gets for one attempt of one role on one bead."""

    bead: Bead
    role: RoleSpec
    worktree: Path
    prompt_file: Path | None
    log_file: Path
    attempt: int
    env: dict[str, str]  # the full environment for the subprocess
    on_event: Callable[[Event], None] = lambda event: None


@dataclass
class RunResult:
    outcome: Outcome
    reason: str | None = None
    exit_code: int | None = None
    duration: float = 0.0
    output_tail: str = ""
    # input_tokens, output_tokens, usd; usd only when the CLI reports cost itself
    usage: dict[str, float] = field(default_factory=dict)
    text: str = ""  # the agent's final answer (a reviewer's verdict is parsed from it)

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


RATE_LIMIT = re.compile(r"\b(?:429|529)\b|overloaded|rate.?limit|usage limit|too many requests",
                        re.IGNORECASE)


def rate_limited(result: RunResult) -> bool:
    """The model said "not now" (429, 529, a usage limit): wait and ask again, not a failure."""
    return result.outcome is Outcome.FAILED and bool(RATE_LIMIT.search(result.reason or ""))


@runtime_checkable
class Runner(Protocol):
    """An agent (or command) that edits a bead's worktree.

    `check` returns None when the runner can run here, else a one-line reason with a hint.
    `run` does one attempt and reports its outcome as a value, never by raising.
    `keeps_work`: a retry continues from the previous attempt's worktree (an agent fixing
    its own change) rather than from a clean base (a deterministic command rerun).
    """

    name: str
    needs_model: bool
    keeps_work: bool

    def check(self, role: RoleSpec) -> str | None: ...

    def run(self, ctx: AttemptContext) -> RunResult: ...
