"""Read-ahead: the files of the modules the last `gas build` in this repository imported, read
by a `cat` of them all as the next build starts, while the build imports them.

A build imports some 110 modules before its first agent starts. Where the page cache gives up
files left unused for a while (this project's machine, a VM that pages cold memory out, does it
within a minute), each of those files is read from the disk when its import asks for it, one
after the other. A reader running beside the interpreter reads them ahead of the imports: its
first agent started 25 ms sooner (medians) in builds run 40 s apart, alternated with the code
without it, and the build was faster in 6 of 8 rounds (README, Performance). It is a process,
not a thread: the same read-ahead by posix_fadvise on a thread measured no better than none
(its system calls may hand the GIL to and fro with the importing thread).
Where the files are cached, `cat` reads them from memory, on the other core.

The list is kept under `.gastown/cache/`: a union of what builds imported (a build that parses
its Gasfile imports PyYAML, one that finds the parse kept does not), rewritten only when a
build imported a module none before it did, regular files only. The reader never outlives the
build: `stop()` ends it.
"""
from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
from pathlib import Path

LIST = Path(".gastown", "cache", "readahead.txt")
_reader: int | None = None  # the pid of this process's reader, until stop()
_enabled = True


def disable() -> None:
    """No read-ahead in this process: a build server's child has its modules in memory."""
    global _enabled
    _enabled = False


def start(top: Path = Path()) -> None:
    """Start reading ahead the files listed in `top` (by default the current directory, where
    `gas` usually runs: the working tree's top), if there is a list."""
    global _reader
    if not _enabled:
        return
    try:
        paths = (top / LIST).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return
    quiet = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    try:
        _reader = os.posix_spawnp("cat", ["cat", "--", *paths], dict(os.environ),
                                  file_actions=quiet)
    except OSError:  # no cat: the imports read for themselves
        _reader = None


def stop() -> None:
    """The reader, if it still runs, killed (a file that cannot be read through, such as a FIFO
    put where a module was, holds it), and reaped."""
    global _reader
    if _reader is None:
        return
    pid, _reader = _reader, None
    with contextlib.suppress(ProcessLookupError):  # our child: its pid is not reused unreaped
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def remember(top: Path) -> None:
    """Add the files of the modules this process imported to `top`'s list (only the modules
    it does not list yet are looked at on disk: a build that imported nothing new costs no
    system call but the list's read). Not in a build server's child, which holds what the
    server imported for every command."""
    if not _enabled:
        return
    path = top / LIST
    try:
        known = set(path.read_text(encoding="utf-8").splitlines())
    except (OSError, UnicodeDecodeError):
        known = set()
    if not (files := _loaded(known)):
        return
    from gastown.git import write_atomically  # git is the build's: no import for the others

    write_atomically(path, "".join(f"{name}\n" for name in sorted(files | known)))


def _loaded(known: set[str]) -> set[str]:
    """The files this process's modules were loaded from, but for those of `known`: their
    bytecode (their source where it has none), or the extension module itself; regular files
    only."""
    files = set()
    for module in list(sys.modules.values()):
        spec = getattr(module, "__spec__", None)
        if spec is None or not spec.has_location:
            continue
        names = [n for n in (spec.cached, spec.origin)
                 if isinstance(n, str) and os.path.isabs(n) and "\n" not in n]
        if names and not known.intersection(names):
            files.update(next(([n] for n in names if _regular(n)), []))
    return files


def _regular(name: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(name).st_mode)
    except OSError:
        return False
