"""One build per repository: an flock the kernel releases when the holder dies."""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gastown.errors import LockHeld


@contextmanager
def build_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _held(path) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(_holder()).encode())
        yield
    finally:
        os.close(fd)


def _holder() -> dict[str, object]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _held(path: Path) -> LockHeld:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    who = f"pid {info.get('pid', '?')} on {info.get('host', '?')} since {info.get('since', '?')}"
    return LockHeld(f"another `gas build` holds the lock ({who})", file=str(path),
                    hint="wait for it to finish, or stop it; a dead holder's lock is taken over")
