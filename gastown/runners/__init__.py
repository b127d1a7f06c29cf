"""The runner registry: built-ins plus any installed `gastown.runners` entry points."""
from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from gastown.runners.base import Runner
from gastown.runners.command import CommandRunner

BUILTIN: dict[str, Runner] = {"command": CommandRunner()}
ENTRY_POINT_GROUP = "gastown.runners"


@cache
def registry() -> dict[str, Runner]:
    """Every runner by name; plugins cannot shadow a built-in."""
    runners = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in runners:
            runners[ep.name] = _plugin(ep.load())
    return runners


def _plugin(obj: object) -> Runner:
    runner = obj() if isinstance(obj, type) else obj
    if not isinstance(runner, Runner):
        raise TypeError(f"{obj!r} does not implement gastown.runners.base.Runner")
    return runner


def runner_names() -> list[str]:
    return sorted(registry())


def get(name: str) -> Runner:
    return registry()[name]
