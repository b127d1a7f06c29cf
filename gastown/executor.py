"""doit, embedded as a library: one doit task per bead, thread-parallel up to the cap."""
from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gastown.bead import Bead


def _no_entry_points(**_: Any) -> tuple[()]:
    return ()


@contextmanager
def _without_importlib_metadata() -> Iterator[None]:
    """While doit loads, `importlib.metadata` is a stand-in: doit imports it only to look up
    plugins, which gastown turns off below, and the real import costs every build 40-65 ms
    on the 2-core machine of README's Performance section."""
    if "importlib.metadata" in sys.modules:
        yield  # already paid for
        return
    stand_in = types.ModuleType("importlib.metadata", "gastown: no plugins for doit")
    stand_in.entry_points = _no_entry_points  # type: ignore[attr-defined]
    sys.modules["importlib.metadata"] = stand_in
    try:
        yield
    finally:
        del sys.modules["importlib.metadata"]  # anyone else importing it gets the real one


with _without_importlib_metadata():
    import doit.plugin
    from doit.cmd_base import TaskLoader2
    from doit.doit_cmd import DoitMain
    from doit.reporter import ZeroReporter
    from doit.task import Task

# doit as gastown embeds it takes no plugins: the doit.COMMAND, doit.BACKEND and
# doit.REPORTER entry points of whatever else is installed must not change how beads run (nor
# cost three readings of every installed package's metadata per build).
doit.plugin.entry_points_impl = lambda: _no_entry_points


MAX_THREADS = 256


class _Reporter(ZeroReporter):
    """doit prints nothing: gastown's own console tells the story. Keeps errors for the caller."""

    errors: list[str] = []

    def add_failure(self, task: Task, fail: Any) -> None:
        if type(fail).__name__ not in ("TaskFailed", "UnmetDependency"):
            _Reporter.errors.append(f"{task.name}: {fail.get_msg()}")

    def runtime_error(self, msg: str) -> None:
        _Reporter.errors.append(msg)


class BeadLoader(TaskLoader2):
    """Hands doit one task per bead to run; needs that also run become task_dep."""

    def __init__(self, beads: Sequence[Bead], action: Callable[[Bead], bool], *, cap: int,
                 dep_file: Path) -> None:
        super().__init__()
        self.beads = list(beads)
        self.action = action
        self.cap = cap
        self.dep_file = dep_file

    def setup(self, opt_values: dict[str, Any]) -> None:
        pass

    def load_doit_config(self) -> dict[str, Any]:
        return {
            "reporter": _Reporter,
            "par_type": "thread",
            # More threads than the cap: every ready bead reaches gastown's priority gate
            # (floor.Slots), which lets `cap` of them work, longest remaining path first.
            "num_process": max(1, min(len(self.beads), max(self.cap, MAX_THREADS))),
            "continue": True,
            "dep_file": str(self.dep_file),
            "backend": "json",
            "verbosity": 2,
        }

    def load_tasks(self, cmd: Any, pos_args: list[str]) -> list[Task]:
        running = {bead.id for bead in self.beads}
        return [self._task(bead, running) for bead in self.beads]

    def _task(self, bead: Bead, running: set[str]) -> Task:
        return Task(
            name=bead.id,
            actions=[(self.action, (bead,))],
            task_dep=[need for need in bead.needs if need in running],
            io={"capture": False},
            verbosity=2,
        )


def execute(beads: Sequence[Bead], action: Callable[[Bead], bool], *, cap: int,
            dep_file: Path) -> list[str]:
    """Run the beads (in the given priority order); returns doit's own errors, if any."""
    if not beads:
        return []
    dep_file.parent.mkdir(parents=True, exist_ok=True)
    # gastown decides what runs from the ledger, never from doit's cache; doit rewrites this
    # file in place, so a build killed mid-write leaves JSON that doit refuses to load.
    dep_file.unlink(missing_ok=True)
    _Reporter.errors = []
    loader = BeadLoader(beads, action, cap=cap, dep_file=dep_file)
    DoitMain(loader, config_filenames=()).run(["run"])
    return list(_Reporter.errors)
