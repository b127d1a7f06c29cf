"""The runner registry: built-ins plus any installed `gastown.runners` entry points.

Built-ins are imported only when used, so `gas status` never pays for agent code.
"""
from __future__ import annotations

import importlib
from functools import cache

from gastown.runners.base import Runner

BUILTIN = {
    "command": "gastown.runners.command",
    "claude": "gastown.runners.claude",
    "codex": "gastown.runners.codex",
    "aider": "gastown.runners.aider",
}
ENTRY_POINT_GROUP = "gastown.runners"


@cache
def _plugins() -> dict[str, object]:
    from importlib.metadata import entry_points  # ~10 ms: only when a plugin is looked up

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in BUILTIN}


def runner_names() -> list[str]:
    return sorted({*BUILTIN, *_plugins()})


@cache
def get(name: str) -> Runner:
    """The runner called `name`; plugins cannot shadow a built-in."""
    if name in BUILTIN:
        module = importlib.import_module(BUILTIN[name])
        return _instance(next(obj for obj in vars(module).values()
                              if isinstance(obj, type) and getattr(obj, "name", None) == name))
    return _instance(_plugins()[name].load())  # type: ignore[attr-defined]


def _instance(obj: object) -> Runner:
    runner = obj() if isinstance(obj, type) else obj
    if not isinstance(runner, Runner):
        raise TypeError(f"{obj!r} does not implement gastown.runners.base.Runner")
    return runner
