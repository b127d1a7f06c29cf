"""One way to start a subprocess: stdin closed, own session, output to a log, group kill."""
from __future__ import annotations

import contextlib
import os
import re
import resource
import select
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from gastown import desk

GRACE_SECONDS = 3.0
TAIL_LINES = 40
# Every process gastown starts, and all it starts in turn, inherit this variable: agents'
# tools that escape into sessions of their own (Claude Code's Bash tool uses setsid) are still
# found, and killed, when the process that started them ends.
MARKER = "GAS_SPAWN_ID"
BUILD_MARKER = "GAS_BUILD_ID"  # the same for every process of one build: see sweep_build()
_build: dict[str, str] = {}
STOP = "stop"  # an `on_line` callback returns this to have the command stopped
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)
REDACTED = "[redacted]"

_live: set[subprocess.Popen[bytes]] = set()
_live_lock = threading.Lock()
_closed = threading.Event()  # set by stop_all: nothing new starts until reopen()


@dataclass
class ProcResult:
    exit_code: int
    duration: float
    tail: str
    killed: str | None = None  # timeout | stall | stopped (interrupt) | requested (on_line)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.killed is None


def run(
    cmd: str | Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_file: Path,
    timeout: float | None = None,
    stall: float | None = None,
    on_line: Callable[[str], object] | None = None,
) -> ProcResult:
    """Run `cmd` (a shell line when a str) to completion, streaming lines to `log_file`."""
    started = time.monotonic()
    if _closed.is_set():
        return ProcResult(-1, 0.0, "", "stopped")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        redact = redactor(env)
        log.write(f"$ {redact(_shown(cmd))}\n".encode())
        log.flush()
        marker = os.urandom(16).hex()
        proc = _start(cmd, cwd, {**env, **_build, MARKER: marker}, log)
        born = _stat(proc.pid)
        reader = _Reader(proc, log, on_line, redact)
        reader.start()
        try:
            with desk.away():  # the desk is for gastown's own work, not the wait for this
                killed = _wait(proc, reader, timeout, stall)
        finally:
            sweep(marker, since=born[1] if born else 0)
        reader.join()
        killed = killed or ("requested" if reader.stopped else None)
        log.write(f"[exit {proc.returncode}{' ' + killed if killed else ''}]\n".encode())
    return ProcResult(proc.returncode, time.monotonic() - started, reader.tail(), killed)


def redactor(env: Mapping[str, str]) -> Callable[[str], str]:
    """A function hiding the values of secret-looking variables (API keys, tokens) in text."""
    secrets = sorted({v for k, v in env.items() if len(v) >= 8 and _secret_name(k)},
                     key=len, reverse=True)
    if not secrets:
        return lambda text: text
    pattern = re.compile("|".join(re.escape(s) for s in secrets))
    return lambda text: pattern.sub(REDACTED, text)


@lru_cache(maxsize=4096)
def _secret_name(name: str) -> bool:
    """SECRET_NAME looked for once per variable name (every run has the whole environment)."""
    return SECRET_NAME.search(name) is not None


def _shown(cmd: str | Sequence[str], limit: int = 300) -> str:
    """The command for the log: long arguments (a whole prompt) are cut short."""
    parts = [cmd] if isinstance(cmd, str) else list(cmd)
    return " ".join(p if len(p) <= limit else p[:limit] + f"…[{len(p)} chars]" for p in parts)


def _start(cmd: str | Sequence[str], cwd: Path, env: Mapping[str, str],
           log: object) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        cmd, shell=isinstance(cmd, str), cwd=cwd, env=dict(env),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    with _live_lock:
        _live.add(proc)
    return proc


class _Reader(threading.Thread):
    """Copies the child's output to the log, keeps a tail and the time of the last line."""

    def __init__(self, proc: subprocess.Popen[bytes], log: object,
                 on_line: Callable[[str], object] | None, redact: Callable[[str], str]) -> None:
        super().__init__(daemon=True)
        self.proc, self.log, self.on_line, self.redact = proc, log, on_line, redact
        self.lines: deque[str] = deque(maxlen=TAIL_LINES)
        self.last_output = time.monotonic()
        self.stopped = False

    def run(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = self.redact(raw.decode(errors="replace").rstrip("\n"))
            self.log.write(line.encode() + b"\n")  # type: ignore[attr-defined]
            self.log.flush()  # type: ignore[attr-defined]
            self.lines.append(line)
            self.last_output = time.monotonic()
            if self.on_line and self.on_line(line) == STOP and not self.stopped:
                self.stopped = True
                _signal_group(self.proc, signal.SIGTERM)

    def tail(self) -> str:
        return "\n".join(self.lines)


def _wait(proc: subprocess.Popen[bytes], reader: _Reader, timeout: float | None,
          stall: float | None) -> str | None:
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            if _exited(proc, _next_check(deadline, reader, stall)):
                return None
            reason = _overdue(deadline, reader, stall)
            if reason:
                stop(proc)
                return reason
    finally:
        with _live_lock:
            _live.discard(proc)


def _exited(proc: subprocess.Popen[bytes], budget: float | None) -> bool:
    """Whether `proc` ended within `budget` seconds (reaped if so). Told by the kernel the
    moment it ends (a pidfd), where Popen.wait(timeout) would look every 50 ms: a bead with a
    timeout or stall limit would notice its agent's end up to 50 ms late."""
    if budget is None:
        proc.wait()
        return True
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # not Linux 5.3+, or already reaped
        pidfd = None
    if pidfd is not None:
        try:
            poller = select.poll()  # select() would fail on a descriptor past 1023
            poller.register(pidfd, select.POLLIN)
            poller.poll(budget * 1000)
        finally:
            os.close(pidfd)
        budget = 0.0  # ended, or out of time: the wait below only reaps
    try:
        proc.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        return False
    return True


def _next_check(deadline: float | None, reader: _Reader, stall: float | None) -> float | None:
    now = time.monotonic()
    waits = [w for w in (deadline and deadline - now,
                         stall and reader.last_output + stall - now) if w is not None]
    return max(0.05, min(waits)) if waits else None


def _overdue(deadline: float | None, reader: _Reader, stall: float | None) -> str | None:
    now = time.monotonic()
    if deadline is not None and now >= deadline:
        return "timeout"
    if stall is not None and now - reader.last_output >= stall:
        return "stall"
    return None


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, give it a grace period, then SIGKILL."""
    _signal_group(proc, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=GRACE_SECONDS)
    _signal_group(proc, signal.SIGKILL)
    proc.wait()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def sweep(marker: str, variable: str = MARKER, since: int = 0) -> int:
    """SIGKILL every process still carrying `variable=marker` in its environment (Linux /proc)
    among those started at or after `since` (clock ticks after boot, /proc/<pid>/stat's
    starttime: a process is never older than the one that started it, so the others' much
    larger environments need not be read); returns how many there were."""
    return _sweeper.sweep(_Sweep(f"{variable}={marker}".encode(), since))


@dataclass(eq=False)
class _Sweep:
    needle: bytes
    since: int
    killed: set[int] = field(default_factory=set)
    done: bool = False

    def carried_by(self, environ: bytes) -> bool:
        """Whether the needle is one whole entry of `environ` (a /proc/<pid>/environ with a
        NUL added at each end): a search, not a split into entries."""
        return b"\0" not in self.needle and b"\0" + self.needle + b"\0" in environ


class _Sweeper:
    """Sweeps asked for while one reads /proc wait, then share the next reading: a wave of
    beads ending together reads every process's stat once or twice, not once per bead (each
    reading is a few milliseconds of the GIL, and the wave's merges wait on it)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.asked: list[_Sweep] = []
        self.busy = False

    def sweep(self, request: _Sweep) -> int:
        with self.cond:
            self.asked.append(request)
            while self.busy and not request.done:
                self.cond.wait()
            if request.done:  # another thread's reading served it
                return len(request.killed)
            self.busy, batch, self.asked = True, self.asked, []
        try:
            _sweep_all(batch)
        finally:
            with self.cond:
                self.busy = False
                for served in batch:
                    served.done = True
                self.cond.notify_all()
        return len(request.killed)


_sweeper = _Sweeper()


def _sweep_all(requests: list[_Sweep]) -> None:
    for _ in range(3):  # a dying shell may fork once more
        found = _matching(requests)
        pids = sorted({pid for hits in found.values() for pid in hits})
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for request, hits in found.items():
            request.killed.update(hits)
        _await_death(pids)
        requests = [request for request in requests if request in found]
        if not requests:
            break


def _matching(requests: list[_Sweep]) -> dict[_Sweep, list[int]]:
    """request -> the live processes it has not killed yet that carry its needle."""
    oldest = min(request.since for request in requests)
    found: dict[_Sweep, list[int]] = {}
    for pid, start in _seen.starttimes(_pids()):
        if start < oldest:
            continue
        environ: bytes | None = None
        for request in requests:
            if start >= request.since and pid not in request.killed:
                environ = b"\0" + _settled_environ(pid) + b"\0" if environ is None else environ
                if request.carried_by(environ):
                    found.setdefault(request, []).append(pid)
    return found


class _Seen:
    """The processes earlier readings of /proc read the stat of, each held by a pidfd, so
    that a reading reads the stats of new processes only (each is three system calls, for
    every process on the machine). A pid goes to another process only once its process has
    ended, which makes its pidfd readable: while the pidfd is not, the pid is still that
    process, started when its stat said. Used by one reading at a time (_Sweeper)."""

    def __init__(self) -> None:
        self.held: dict[int, tuple[int, int]] = {}  # pid -> (pidfd, starttime)
        self.pids: dict[int, int] = {}  # pidfd -> pid
        self.poller = select.poll()
        self.room: int | None = None  # how many may be held (decided at the first reading)

    def starttimes(self, listed: list[int]) -> Iterator[tuple[int, int]]:
        """(pid, starttime) of each live process (not a zombie) among the pids `listed`,
        which were listed before this is called: a process held then, not ended since, was
        there all along."""
        self._forget_ended()
        for pid in listed:
            held = self.held.get(pid)
            start = held[1] if held is not None else self._look(pid)
            if start is not None:
                yield pid, start

    def _forget_ended(self) -> None:
        for fd, _ in self.poller.poll(0):
            self.poller.unregister(fd)
            del self.held[self.pids.pop(fd)]
            os.close(fd)

    def _look(self, pid: int) -> int | None:
        """The starttime in the stat of `pid` when it is a live process; held when there is
        room, by a pidfd opened first (its process, ending before the stat is read, would
        make it readable at once)."""
        fd = self._open(pid)
        stat = _stat(pid)
        start = stat[1] if stat is not None and stat[0] not in ("Z", "X") else None
        if fd is None:
            return start
        if start is None:
            os.close(fd)
        else:
            self.held[pid], self.pids[fd] = (fd, start), pid
            self.poller.register(fd, select.POLLIN)
        return start

    def _open(self, pid: int) -> int | None:
        if self.room is None:
            self.room = _pidfd_room()
        if len(self.held) >= self.room:
            return None
        try:
            return os.pidfd_open(pid)
        except OSError:  # gone, or no room in the file table after all
            return None


def _pidfd_room() -> int:
    """How many pidfds _Seen may hold: an eighth of the open files allowed, at most 1024;
    none without pidfd_open (Linux 5.3) or where /proc shows another pid namespace than
    this process's (whose pids pidfd_open takes)."""
    if not hasattr(os, "pidfd_open") or not _proc_is_ours():
        return 0
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 1024 if soft == resource.RLIM_INFINITY else max(0, min(1024, soft // 8))


def _proc_is_ours() -> bool:
    """Whether /proc counts pids in this process's namespace: its NSpid (our pid in each
    namespace from /proc's down to ours) names one, and it is our pid."""
    try:
        status = _read("/proc/self/status")
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith(b"NSpid:"):
            return line.split()[1:] == [str(os.getpid()).encode()]
    return False


_seen = _Seen()


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie's environment is still readable)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, starttime, flags) from /proc/<pid>/stat, or None when it is gone. Plain os
    calls, the fields after these left unsplit: a sweep reads one per process on the
    machine."""
    try:
        fields = _read(f"/proc/{pid}/stat", whole=False).rsplit(b")", 1)[1].split(None, 20)
        return fields[0].decode(), int(fields[19]), int(fields[6])
    except (OSError, IndexError, ValueError):
        return None


def started_at(pid: int) -> int:
    """When process `pid` started (clock ticks after boot, what sweep()'s `since` compares
    with); 0 when unknown."""
    stat = _stat(pid)
    return stat[1] if stat else 0


def _await_death(pids: list[int], limit: float = 5.0) -> None:
    """SIGKILL is delivered asynchronously: wait (bounded) until the processes are gone."""
    deadline = time.monotonic() + limit
    while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.005)


def tag_build(build: str) -> None:
    """Mark every process started from now on as this build's."""
    _build[BUILD_MARKER] = build


def sweep_build(previous: Mapping[str, object]) -> int:
    """Kill what a killed build left running (its agents' processes outlive it otherwise),
    given what the previous build wrote in the build lock: nothing when it got to its end
    (every process of its beads had been stopped), else the processes started after it."""
    build = str(previous.get("build") or "")
    if not build or previous.get("ended") is True:
        return 0
    started = previous.get("started")
    return sweep(build, BUILD_MARKER, since=started if isinstance(started, int) else 0)


def _pids() -> list[int]:
    mine = str(os.getpid())
    try:
        names = os.listdir("/proc")
    except OSError:  # no /proc: nothing to sweep
        return []
    return [int(name) for name in names if name.isdigit() and name != mine]


def _environ(pid: int) -> bytes:
    return _read_or_empty(f"/proc/{pid}/environ")


EXEC_WAIT = 0.2  # seconds a sweep waits at most for one process's exec to set up its memory
_KERNEL_THREAD = 0x00200000  # PF_KTHREAD in /proc/<pid>/stat's flags


def _settled_environ(pid: int) -> bytes:
    """/proc/<pid>/environ once an exec under way has set it up. From the moment a new
    program's memory is in place until its arguments and environment are copied in, the
    kernel shows it empty: a process whose parent's Popen has just returned (its exec closed
    the pipe Popen waits on) may read as having no environment for a moment. Empty at once
    for what has none to read: a process gone or not ours to read, a kernel thread, a zombie,
    a program given none (its arguments are there)."""
    deadline = time.monotonic() + EXEC_WAIT
    while True:
        try:
            environ = _read(f"/proc/{pid}/environ")
        except OSError:
            return b""
        if environ or time.monotonic() >= deadline:
            return environ
        if _read_or_empty(f"/proc/{pid}/cmdline"):
            return _environ(pid)  # its arguments are there, so its environment is
        stat = _stat(pid)
        if stat is None or stat[0] in ("Z", "X") or stat[2] & _KERNEL_THREAD:
            return environ
        time.sleep(0.001)


def _read_or_empty(path: str) -> bytes:
    try:
        return _read(path)
    except OSError:
        return b""


def _read(path: str, *, whole: bool = True) -> bytes:
    """The file read with os calls (no file object): the whole of it, or what one read of a
    page gives (all of a stat line, which is far shorter, without a read to see the end)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = [os.read(fd, 4096)]
        while whole and chunks[-1]:
            chunks.append(os.read(fd, 1 << 16))
    finally:
        os.close(fd)
    return b"".join(chunks)


def stop_all() -> None:
    """Stop every process gastown started that is still running, and start no more."""
    _closed.set()
    with _live_lock:
        procs = list(_live)
    threads = [threading.Thread(target=stop, args=(proc,)) for proc in procs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def reopen() -> None:
    """Allow new processes again (a new build in the same Python process)."""
    _closed.clear()
