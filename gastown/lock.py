"""One build per repository: an flock the kernel releases when the holder dies."""
from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gastown.errors import LockHeld
from gastown.spawn import started_at


@contextmanager
def build_lock(path: Path, build: str = "") -> Iterator[dict[str, object]]:
    """Hold the repository's build lock; yields what the previous holder wrote (its pid, build
    id and start, and `ended` when it got to the end of its build: none of its processes can
    be left), so a build can clean up after one that was killed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _held(path) from None
        previous = _read(path)
        holder = _holder(build)
        _write(fd, holder)
        yield previous
        _write(fd, {**holder, "ended": True})
    finally:
        os.close(fd)


def _write(fd: int, holder: dict[str, object]) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)


def _holder(build: str) -> dict[str, object]:
    return {"pid": os.getpid(), "host": os.uname().nodename, "build": build,
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "started": started_at(os.getpid())}


def _read(path: Path) -> dict[str, object]:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _held(path: Path) -> LockHeld:
    info = _read(path)
    who = f"pid {info.get('pid', '?')} on {info.get('host', '?')} since {info.get('since', '?')}"
    return LockHeld(f"another `gas build` holds the lock ({who})", file=str(path),
                    hint="wait for it to finish, or stop it; a dead holder's lock is taken over")
