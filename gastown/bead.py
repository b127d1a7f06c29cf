"""A bead: one unit of work compiled from one backlog item, and the states it moves through."""
from __future__ import annotations

import enum
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gastown.digests import sha256


class State(enum.StrEnum):
    """Where a bead stands. The ledger stores the value string."""

    PENDING = "pending"  # known, never started (no ledger record yet)
    RUNNING = "running"  # polecat at work
    REVIEW = "review"  # witness checking
    MERGING = "merging"  # refinery merging and running CI
    MERGED = "merged"
    REJECTED = "rejected"  # witness said no; goes back to the polecat if attempts remain
    FAILED = "failed"
    BLOCKED = "blocked"  # a need did not merge
    INTERRUPTED = "interrupted"

    def __str__(self) -> str:
        return self.value


FINAL_STATES = frozenset({State.MERGED, State.FAILED, State.BLOCKED})


@dataclass(frozen=True)
class RoleSpec:
    """One role's settings for one bead, after per-backlog overrides."""

    name: str
    runner: str | None = None
    model: str | None = None
    prompt: str | None = None  # path of the Jinja2 template, relative to the repo
    checks: tuple[str, ...] = ()
    max_attempts: int = 1
    ci: str | None = None
    strategy: str = "merge"
    env: tuple[tuple[str, str], ...] = ()
    timeout: float | None = None
    stall: float | None = None
    max_turns: int | None = None  # agent runners: the CLI's own turn limit
    args: tuple[str, ...] = ()  # agent runners: extra command-line arguments for the CLI

    def definition(self) -> dict[str, Any]:
        """What of this role shapes the bead's work (goes into the fingerprint)."""
        return {
            "runner": self.runner,
            "model": self.model,
            "checks": list(self.checks),
            "max_attempts": self.max_attempts,
            "env": dict(self.env),
            "max_turns": self.max_turns,
            "args": list(self.args),
        }


@dataclass
class Bead:
    id: str
    title: str
    backlog: str
    item: Any
    run: str | None = None  # the command runner's command, already shell-safe
    path: str | None = None  # the matched file for glob backlogs
    tags: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()  # resolved bead ids
    roles: dict[str, RoleSpec] = field(default_factory=dict)
    rendered: dict[str, str] | None = field(default=None, repr=False, compare=False)  # prompts
    index: int = 0  # position in its backlog
    line: int | None = None  # Gasfile line of its backlog or inline item
    fixed: str | None = None  # the fingerprint as compiled from the Gasfile
    # Renders the prompts when first asked for: a bead whose fingerprint the Mayor already
    # knew is not rendered at all unless it runs.
    prompter: Callable[[Bead], dict[str, str]] | None = field(default=None, repr=False,
                                                               compare=False)

    @property
    def prompts(self) -> dict[str, str]:
        """role -> its rendered prompt for the first attempt."""
        if self.rendered is None:
            self.rendered = self.prompter(self) if self.prompter else {}
        return self.rendered

    @property
    def fingerprint(self) -> str:
        return self.fixed or fingerprint(self.definition())

    def fix_fingerprint(self) -> None:
        """Freeze the definition's fingerprint: command-line overrides do not change it."""
        self.fixed = fingerprint(self.definition())

    def definition(self) -> dict[str, Any]:
        """Everything that decides what the bead does. Needs are ordering, not work."""
        return {
            "id": self.id,
            "title": self.title,
            "item": self.item,
            "run": self.run,
            "path": self.path,
            "roles": {n: r.definition() for n, r in sorted(self.roles.items())
                      if n in ("polecat", "witness")},
            "prompts": dict(sorted(self.prompts.items())),
        }

    def env(self) -> dict[str, str]:
        """Item data reaches commands only through these variables."""
        env = {
            "GAS_BEAD_ID": self.id,
            "GAS_BEAD_TITLE": self.title,
            "GAS_BEAD_BACKLOG": self.backlog,
            "GAS_BEAD_JSON": canonical_json(self.item),
            "GAS_BEAD_TAGS": ",".join(self.tags),
        }
        if self.path is not None:
            env["GAS_BEAD_PATH"] = self.path
        return env


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


def fingerprint(value: Any) -> str:
    return "sha256:" + sha256(canonical_json(value).encode()).hexdigest()
