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


class _Unused:
    """In a stand-in, what gastown's embedding of doit never calls."""

    def __init__(self, *_: Any, **__: Any) -> None:
        raise RuntimeError("gastown runs doit's tasks on threads, with no debugger, no "
                           "config files and no file dependencies")


class _NoPickling(Exception):
    """What the stand-in for pickle raises: doit's thread runner never pickles a task."""


def _no_pickling(*_: Any, **__: Any) -> Any:
    raise _NoPickling("gastown runs doit's tasks on threads, which are never pickled")


# Modules doit imports for what gastown turns off: plugins (below), its process runner
# (par_type is "thread": multiprocessing, and pickle to send tasks to it), its post-mortem
# debugger (no --pdb), its config files (config_filenames=()) and the md5 of file
# dependencies (a bead's task has none). Real, they cost every build 40-65 ms
# (importlib.metadata), 5-8 ms (multiprocessing, with socket and more), 2-5 ms (pickle), 3 ms
# (pdb), 1.5 ms (configparser) and 2-9 ms (hashlib, which loads OpenSSL's libcrypto) on the
# 2-core machine of README's Performance section.
_STAND_INS: dict[str, dict[str, Any]] = {
    "importlib.metadata": {"entry_points": _no_entry_points},
    "multiprocessing": {"Process": _Unused, "Queue": _Unused},
    "pickle": {"dumps": _no_pickling, "loads": _no_pickling, "PicklingError": _NoPickling},
    "pdb": {"Pdb": _Unused},
    "configparser": {"ConfigParser": _Unused},
    "hashlib": {"md5": _Unused},
}


@contextmanager
def _stand_ins() -> Iterator[None]:
    """While doit loads, each of _STAND_INS not imported yet is a stand-in; then anyone
    importing one gets the real module."""
    added = [name for name in _STAND_INS if name not in sys.modules]
    for name in added:
        stand_in = types.ModuleType(name, "gastown: a stand-in while doit loads")
        vars(stand_in).update(_STAND_INS[name])
        sys.modules[name] = stand_in
    try:
        yield
    finally:
        for name in added:
            del sys.modules[name]


with _stand_ins():
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
